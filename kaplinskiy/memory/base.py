"""What every projection memory G_A offers the optimizers (eq:projected).

A memory covers a fixed list of parameters (``memory.params``). ``project_(tensors)`` applies
``P_perp(G_A)`` in place to tensors shaped like those parameters (gradients or updates), so that a
direction ``d`` built from them satisfies ``G_A^T d = 0`` (eq:orthogonal) and, with ``grad L_A`` in span(G_A),
``grad L_A . d = 0``. ``coefficients`` and ``subtract_`` split that projection into two linear halves; ``restore_``
projects a step taken from a point whose coefficients were kept. ``residual(tensors)`` measures what is left,
``||G_A^T d||`` over an orthonormal basis of the memory, for the step certificate.

Also the memories' small helpers: ordinary tensors out of inference mode, progress bars on long work (recording a
task, the snapshots' passes, with tqdm, an optional dependency) and lists of names in messages.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, Protocol, runtime_checkable

import torch
from torch import Tensor

__all__ = ["ProjectionMemory", "check_trainable", "listed", "ordinary", "progress_bar", "progress_ticks"]


@runtime_checkable
class ProjectionMemory(Protocol):
    """The interface of :class:`~kaplinskiy.DenseMemory` and :class:`~kaplinskiy.LayerwiseMemory`."""

    params: list[Tensor]
    linear_split: bool  # whether subtract_(t, coefficients(t)) equals project_(t)

    def project_(self, tensors: Sequence[Tensor]) -> None:
        """Apply ``P_perp(G_A)`` in place to ``tensors`` (aligned with ``params``)."""
        ...

    def coefficients(self, tensors: Sequence[Tensor]) -> list[Tensor]:
        """The memory's coordinates of ``tensors`` (linear in them): what :meth:`subtract_` removes."""
        ...

    def subtract_(self, tensors: Sequence[Tensor], coefficients: Sequence[Tensor]) -> None:
        """Remove the part with the given coordinates in place; ``project_(t)`` is
        ``subtract_(t, coefficients(t))``, and by linearity an update ``w1 - w0`` is projected by
        ``subtract_(w1, coefficients(w1) - coefficients(w0))`` without a copy of ``w0``."""
        ...

    def restore_(self, tensors: Sequence[Tensor], reference: Sequence[Tensor], skip: Tensor | None = None) -> None:
        """``subtract_(t, coefficients(t) - reference)`` in place: the coordinates of ``t`` become ``reference``
        again. With ``reference = coefficients(w0)``, this projects the step from ``w0`` to ``t`` (eq:projected_update).
        ``skip``, a 0-dim device flag, makes it a no-op where it is 1 (a step the base optimizer skipped)."""
        ...

    def stored_tensors(self) -> list[Tensor]:
        """The tensors that hold the memory (its bases): a change to the memory replaces or edits one of them."""
        ...

    def residual(self, tensors: Sequence[Tensor]) -> float:
        """``||Q^T d||`` for the tensors ``d`` (aligned with ``params``): 0 after ``project_``."""
        ...

    def state_dict(self) -> dict[str, Any]:
        """The memory's contents, for ``torch.save``."""
        ...

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""
        ...


def check_trainable(memory: ProjectionMemory, stepped: Iterable[Tensor] = ()) -> None:
    """Raise ``ValueError`` if a parameter of ``memory`` was frozen (``requires_grad=False``) after it was built:
    the projection couples parameters (a layer's weight and bias; every parameter, for a dense memory), so a
    projected step would move the frozen one, or, leaving it out, would no longer be the projection.

    Or if one of the parameters an optimizer steps (``stepped``) was frozen in the model when a
    :class:`~kaplinskiy.LayerwiseMemory` was built and is trainable now (``frozen_at_build``): no basis covers
    it, so its steps would carry the old outputs away unprojected."""
    frozen = [i for i, p in enumerate(memory.params) if not p.requires_grad]
    if frozen:
        raise ValueError(
            f"Invalid memory: its parameters {frozen} were frozen (requires_grad=False) after it was built; "
            "build the memory over the parameters being trained"
        )
    thawed = [(name, p) for name, p in getattr(memory, "frozen_at_build", ()) if p.requires_grad]
    if thawed:
        ids = {id(p) for p in stepped}
        thawed = [name for name, p in thawed if id(p) in ids]
        if thawed:
            raise ValueError(
                f"Invalid memory: the model's parameters {listed(thawed)} were frozen when it was built and are "
                "trained now; no basis covers them, so their steps would move the old outputs unprojected; unfreeze "
                "them before building the memory (and recording the old task), or keep them frozen"
            )


def ordinary(t: Tensor) -> Tensor:
    """``t`` as an ordinary tensor: one made under ``torch.inference_mode`` (a memory built or recorded there) is
    cloned outside it. Inference tensors have no version counter, and the projection's caches and the guard's
    kept coordinates read the stored tensors' counters to notice a changed memory."""
    if not t.is_inference():
        return t
    with torch.inference_mode(False):
        return t.clone()


def listed(names: Sequence[str], shown: int = 3) -> str:
    """The first ``shown`` of ``names`` quoted, and how many more: ``'a', 'b', 'c' and 2 more``."""
    more = f" and {len(names) - shown} more" if len(names) > shown else ""
    return ", ".join(map(repr, names[:shown])) + more


def _tqdm() -> Any:
    try:
        from tqdm.auto import tqdm
    except ImportError as err:
        raise ImportError("progress=True needs tqdm: pip install tqdm") from err
    return tqdm


def progress_bar(items: Iterable[Any], show: bool, desc: str, unit: str) -> Iterable[Any]:
    """``items``, under a tqdm bar when ``show``."""
    return _tqdm()(items, desc=desc, unit=unit) if show else items


@contextlib.contextmanager
def progress_ticks(total: int, show: bool, desc: str, unit: str) -> Iterator[Callable[[], None]]:
    """A function that advances a tqdm bar of ``total`` steps by one when ``show`` (else it does nothing); the
    bar is closed on leaving the block."""
    if not show:
        yield lambda: None
        return
    bar = _tqdm()(total=total, desc=desc, unit=unit)
    try:
        yield lambda: bar.update(1)
    finally:
        bar.close()
