"""Growing a :class:`~kaplinskiy.memory_layerwise.LayerwiseMemory`'s bases from the inputs one pass recorded (GPM's
memory update, eqs. 8-9, layer by layer): an embedding's protected rows, an attention's input projection block by
block, and layers that read one tensor grown once while their bases are equal.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from .basis_factors import stacked_bases, unstacked_bases
from .energy_basis import energy_basis_update_rows, protected_rows_update
from .layer_recording import RecordedInputs
from .memory import ordinary
from .progress import progress_bar

_EPS64 = torch.finfo(torch.float64).eps

__all__ = ["BasisBudget", "basis_size", "grow_recorded", "grown_basis", "grown_block_bases"]


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
    """``U`` grown from what recording took for ``module`` (eqs. 8-9): its input factor ``s``, or for an
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
