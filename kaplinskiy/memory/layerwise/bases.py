"""A :class:`~kaplinskiy.LayerwiseMemory`'s bases: growing them from the inputs one pass recorded (GPM's memory
update layer by layer, eq:energy_basis): an embedding's protected rows, an attention's input projection block by
block, and layers that read one tensor grown once while their bases are equal; and using them, the projection of
one layer by BLAS (eq:layerwise_projection): its basis ``U`` split into the views the products use,
``C = [D_W, d_b] U`` and ``[D_W, d_b] <- [D_W, d_b] - C U^T``, and a cross-attention's input projection, whose
blocks of rows (query, key, value) each have a basis, stored stacked.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F  # noqa: N812 (the torch idiom)

from ..._kernels.layerwise import padded_bases
from ..._tensor_lists import is_dtensor
from ...functional.memory_update import energy_basis_update_rows, protected_rows_update
from ..base import ordinary, progress_bar
from .recording import RecordedInputs

_EPS64 = torch.finfo(torch.float64).eps

__all__ = [
    "BasisBudget",
    "BasisFactors",
    "BlockFactors",
    "basis_size",
    "grow_recorded",
    "grown_basis",
    "grown_block_bases",
    "row_blocks",
    "stacked_bases",
    "unstacked_bases",
]


def basis_size(U: Tensor) -> int:
    """A basis' vectors: protected rows, for an embedding; the largest block's, for an attention's input projection
    with a basis per block."""
    return U.numel() if U.ndim == 1 else U.shape[-1]


@dataclass(frozen=True)
class BasisBudget:
    """The budget ``k`` of vectors one task may add to a layer, and the most a layer holds over all tasks."""

    max_new_per_task: int | None
    max_per_layer: int | None

    def room(self, size: int) -> int | None:
        """How many vectors a layer (or a block of rows) holding ``size`` may still gain from one task."""
        caps = [c for c in (self.max_new_per_task,) if c is not None]
        if self.max_per_layer is not None:
            caps.append(max(self.max_per_layer - size, 0))
        return min(caps) if caps else None


def grown_basis(
    module: nn.Module, U: Tensor, s: Tensor, threshold: float, room: int | None, resolution: float | None
) -> Tensor:
    """``U`` grown from what recording took for ``module`` (eq:energy_basis): its input factor ``s``, or for an
    embedding how often each row was read."""
    if isinstance(module, nn.Embedding):
        return protected_rows_update(U, s, threshold, room, module.padding_idx)
    return energy_basis_update_rows(U.to(s.dtype), s, threshold, room, resolution).to(U.dtype)


def grown_block_bases(U: Tensor, s: Tensor, threshold: float, budget: BasisBudget, resolution: float | None) -> Tensor:
    """An attention's input projection's basis ``U``, grown from its three blocks' input factors ``s`` (query,
    key, value). While the three are one input (self-attention) it stays one basis ``(in_eff, r)`` of that input;
    once they differ (cross-attention), each block of rows gets a basis of its own input, and the layer holds them
    stacked, ``(3, in_eff, r)``, zero columns padding a block of fewer vectors (an earlier common basis is every
    block's). A basis of their union would constrain each block's rows by the other blocks' inputs too."""
    if U.ndim == 2 and torch.equal(s[0], s[1]) and torch.equal(s[0], s[2]):
        return energy_basis_update_rows(U.to(s.dtype), s[0], threshold, budget.room(basis_size(U)), resolution).to(
            U.dtype
        )
    blocks = unstacked_bases(U) if U.ndim == 3 else [U] * 3
    return stacked_bases(
        [
            energy_basis_update_rows(V.to(s.dtype), s[b], threshold, budget.room(V.shape[1]), resolution).to(U.dtype)
            for b, V in enumerate(blocks)
        ]
    )


def grow_recorded(
    layers: Sequence[nn.Module],
    bases: Sequence[Tensor],
    thresholds: Sequence[float],
    budget: BasisBudget,
    indices: Sequence[int],
    recorded: RecordedInputs,
    *,
    progress: bool = False,
) -> dict[int, Tensor]:
    """The bases of the covered layers ``indices`` grown from ``recorded``, their inputs taken in one pass, by
    index (``layers``, ``bases``, ``thresholds``: those of every covered layer); a layer that saw no input is
    left out. Layers that share a recorded factor and hold equal bases grow one basis, copied to each."""
    grown: dict[int, Tensor] = {}
    grown_from: dict[tuple[Any, ...], tuple[Tensor, Tensor]] = {}  # a basis grown already, from which, by factor
    pairs = list(zip(indices, recorded.factors, strict=True))
    for j, (i, s) in enumerate(progress_bar(pairs, progress, "LayerwiseMemory: bases", "layer")):
        if s is None:
            continue
        m, U = layers[i], bases[i]
        # float64 inputs are resolved down to d eps of the largest singular value; others carry rounding in
        # every direction: below sqrt(d eps) of it (a float64 covariance's resolution) a direction is dropped
        resolution = math.sqrt(U.shape[-2] * _EPS64) if j in recorded.coarse else None
        if s.ndim == 3:  # an attention's input projection
            grown[i] = ordinary(grown_block_bases(U, s, thresholds[i], budget, resolution))
            continue
        room = budget.room(basis_size(U))
        key = (id(s), getattr(m, "padding_idx", None), thresholds[i], room, resolution)
        prior = grown_from.get(key)
        if prior is not None and _equal(prior[0], U):
            grown[i] = ordinary(prior[1].clone())
        else:
            grown[i] = ordinary(grown_basis(m, U, s, thresholds[i], room, resolution))
            grown_from[key] = (U, grown[i])
    return grown


def _equal(a: Tensor, b: Tensor) -> bool:
    """Whether two bases are the same: shape, dtype, device and values."""
    return a.shape == b.shape and a.dtype == b.dtype and a.device == b.device and torch.equal(a, b)


@dataclass(frozen=True)
class BasisFactors:
    """A layer's basis ``U`` (``in_eff x r``) as the views its projection by BLAS uses (eq:layerwise_projection).

    ``U_w`` (weight rows, and its transpose) and ``u_b`` (the bias row, the input of 1), so a projection is a few
    BLAS calls per layer.

    The products run in the basis' precision (at least float32) whatever the weights' dtype: a bfloat16
    coefficient of a weight row carries an error of ~4e-3 of that row's coordinate, far more than a small
    step's, and ``restore_`` subtracts two of them. Weights in bfloat16 or float16 are rounded once, after
    ``D - C U^T`` is formed in float32."""

    basis: Tensor
    version: int  # the basis' version counter when these views were made (an in-place edit changes it)
    U_w: Tensor
    U_w_T: Tensor
    u_b: Tensor | None
    padded_basis: Tensor  # float32, rows padded with zeros to a multiple of 4: what the grouped kernel reads
    transposed_basis: Tensor  # U^T, float32, row-major, rows padded likewise

    @property
    def dtype(self) -> torch.dtype:
        """The products' dtype, the basis'."""
        return self.U_w.dtype

    @classmethod
    def of(cls, U: Tensor, has_bias: bool) -> BasisFactors:
        """Views of ``U``."""
        d_w = U.shape[0] - int(has_bias)
        return cls(U, U._version, U[:d_w], U[:d_w].T, U[d_w] if has_bias else None, *padded_bases(U))

    def coefficients(self, w: Tensor, b: Tensor | None, *, transposed: bool) -> Tensor:
        """``C = D_W U_w + d_b u_b^T`` (``out x r``); ``transposed`` for HF Conv1D, whose ``W`` is ``(in, out)``."""
        w = w.to(self.U_w.dtype)
        b = b.to(self.U_w.dtype) if b is not None else None
        if transposed:
            C = torch.mm(self.U_w_T, w)  # (r, out)
            return C.addr_(self.u_b, b) if b is not None else C
        C = torch.mm(_as_matrix(w), self.U_w)
        return C.addr_(b, self.u_b) if b is not None else C

    def subtract_(self, w: Tensor, b: Tensor | None, C: Tensor, *, transposed: bool) -> None:
        """``D_W <- D_W - C U_w^T`` and ``d_b <- d_b - C u_b``, in place (in the basis' precision, rounded once
        into tensors of a lower one)."""
        dtype = self.U_w.dtype
        C = C.to(dtype)
        if w.dtype != dtype:
            high = w.to(dtype)
            self._subtract_(high, C, transposed)
            w.copy_(high)
        else:
            self._subtract_(w, C, transposed)
        if b is not None:
            db = (C.T if transposed else C) @ self.u_b
            if b.dtype == dtype:
                b.sub_(db)
            else:
                b.copy_(b.to(dtype) - db)

    def _subtract_(self, w: Tensor, C: Tensor, transposed: bool) -> None:
        if transposed:
            w.addmm_(self.U_w, C, alpha=-1)
        elif w.ndim == 2 or w.is_contiguous():
            _as_matrix(w).addmm_(C, self.U_w_T, alpha=-1)
        else:  # a convolution weight in another memory format (channels_last): no matrix view of it exists
            w.sub_(torch.mm(C, self.U_w_T).view(w.shape))


@dataclass(frozen=True)
class BlockFactors:
    """An attention input projection's bases, one per block of rows (query, key, value: ``U`` of shape
    ``(3, in_eff, r)``), as one :class:`BasisFactors` per block, applied to the local row ranges each block
    covers (``segments``: ``(block, first, end)``)."""

    basis: Tensor
    version: int
    blocks: tuple[BasisFactors, ...]
    segments: tuple[tuple[int, int, int], ...]

    @property
    def dtype(self) -> torch.dtype:
        """The products' dtype, the basis'."""
        return self.basis.dtype

    @classmethod
    def of(cls, U: Tensor, has_bias: bool, segments: tuple[tuple[int, int, int], ...]) -> BlockFactors:
        """Views of ``U``'s blocks (their zero columns, padding, give zero coefficients)."""
        return cls(U, U._version, tuple(BasisFactors.of(V, has_bias) for V in U), segments)

    def coefficients(self, w: Tensor, b: Tensor | None, *, transposed: bool) -> Tensor:
        """``C = D_W U_w + d_b u_b^T`` row by row, each row with its block's basis (``out x r``)."""
        if not self.segments:  # a shard holding no row
            return self.basis.new_zeros(0, self.basis.shape[-1])
        return torch.cat(
            [
                self.blocks[k].coefficients(w[lo:hi], None if b is None else b[lo:hi], transposed=transposed)
                for k, lo, hi in self.segments
            ]
        )

    def subtract_(self, w: Tensor, b: Tensor | None, C: Tensor, *, transposed: bool) -> None:
        """``D_W <- D_W - C U_w^T`` and ``d_b <- d_b - C u_b``, each row with its block's basis, in place."""
        for k, lo, hi in self.segments:
            self.blocks[k].subtract_(w[lo:hi], None if b is None else b[lo:hi], C[lo:hi], transposed=transposed)


def unstacked_bases(U: Tensor) -> list[Tensor]:
    """The blocks' bases of a stacked ``(3, in_eff, r)`` basis, without the zero columns that pad them."""
    ranks = (U.norm(dim=1) > 0).sum(dim=1).tolist()
    return [V[:, :r] for V, r in zip(U, ranks, strict=True)]


def stacked_bases(bases: Sequence[Tensor]) -> Tensor:
    """Bases ``(in_eff, r_b)`` stacked as ``(3, in_eff, max r_b)``, zero columns padding the narrower ones."""
    width = max(V.shape[1] for V in bases)
    return torch.stack([F.pad(V, (0, width - V.shape[1])) for V in bases])


def _as_matrix(w: Tensor) -> Tensor:
    """A weight as ``out x in_eff`` (a view for Linear and contiguous Conv weights)."""
    return w if w.ndim == 2 else w.reshape(w.shape[0], -1)


def row_blocks(w: Tensor) -> tuple[tuple[int, int, int], ...]:
    """An attention input projection's blocks (0: query, 1: key, 2: value) among the rows of its weight ``w``
    (``3E x E``) this rank holds, as ``(block, first, end)`` local row ranges: all three whole on one process,
    those a shard meets under FSDP2 (the shard's global offset from its DTensor placement)."""
    rows, offset = w.shape[0], 0
    if is_dtensor(w):
        from torch.distributed.tensor._utils import compute_local_shape_and_global_offset

        local, global_offset = compute_local_shape_and_global_offset(w.shape, w.device_mesh, w.placements)
        rows, offset = local[0], global_offset[0]
    size = w.shape[0] // 3
    ranges = [(b, max(b * size, offset) - offset, min((b + 1) * size, offset + rows) - offset) for b in range(3)]
    return tuple((b, first, end) for b, first, end in ranges if first < end)
