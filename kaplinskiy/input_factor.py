"""A layer's recorded inputs as a running triangular factor ``R`` (``R^T R = sum_s x_s x_s^T``), joined by a QR of
``[R; rows]``: the statistics GPM's update reads (:func:`~kaplinskiy.energy_basis.energy_basis_update_rows`).

Rows wait in a buffer until a quarter of the width has come, and then join in one QR. Without the buffer, each
small batch of ``b`` inputs of a ``d``-wide layer costs a QR of ``(d + b) x d`` rows, which costs about as much as
one of ``d`` new rows: recording from batches of 8 inputs ran many times slower than from large batches. With it,
each QR joins at least ``d / 4`` rows, for at most a quarter more memory held than ``R`` alone
(:func:`pending_limit`). A batch of ``d / 4`` rows or more joins at once, as it did without the buffer. An
attention's input projection holds one per block of rows (query, key, value), one for all three in
self-attention.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from .energy_basis import stacked_factor

__all__ = ["InputFactor", "pending_limit"]


def pending_limit(width: int) -> int:
    """How many rows of ``width`` entries make a buffer join its factor: a quarter of the width (at least one)."""
    return max(1, width // 4)


@dataclass(frozen=True)
class InputFactor:
    """A running factor ``R`` (None before any input) and the rows that wait to join it (``pending``), so that
    ``R^T R + sum_p P^T P`` is the sum of the inputs' outer products. Immutable: :meth:`joined` returns the next
    one, so layers that read one tensor can hold one object."""

    factor: Tensor | None = None
    pending: tuple[Tensor, ...] = ()

    def joined(self, rows: Tensor) -> InputFactor:
        """This factor with ``rows`` (``n x d``, float64) added: buffered (a copy), or joined by one QR with the
        buffered ones once they reach :func:`pending_limit` of ``d``."""
        pending = (*self.pending, rows)
        if sum(p.shape[0] for p in pending) < pending_limit(rows.shape[1]):
            # a copy: the rows may be the forward's own tensor, which it may change in place later
            return InputFactor(self.factor, (*self.pending, rows.clone()))
        return InputFactor(InputFactor(self.factor, pending).flushed())

    def flushed(self) -> Tensor:
        """The triangular ``R`` of every row so far (``min(n, d) x d``), the buffered ones joined."""
        if not self.pending:
            if self.factor is None:
                raise ValueError("InputFactor: no input was recorded")
            return self.factor
        return stacked_factor(self.pending if self.factor is None else (self.factor, *self.pending))
