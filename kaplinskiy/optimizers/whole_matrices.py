"""Whole matrices under FSDP2. Newton-Schulz, the spectral soft sign and the temperature fits act on a whole
matrix (or a whole group's values), while ``fully_shard`` splits each weight by rows across the ranks (a DTensor).
Each rank gathers the matrix, computes the same result, and keeps its own rows of it: a matrix's worth of memory
and an all-gather per matrix, as distributed Muon implementations pay too."""

from __future__ import annotations

import sys
from collections.abc import Callable

from torch import Tensor

__all__ = ["gathered"]


def gathered(t: Tensor) -> tuple[Tensor, Callable[[Tensor], Tensor]]:
    """``t``'s full value on every rank, and the map that shards a result of its shape as ``t`` is sharded (each
    rank keeps its part of its own copy, with no communication: every rank computed the same). For a plain tensor:
    ``t`` and the identity."""
    module = sys.modules.get("torch.distributed.tensor")
    if module is None or not isinstance(t, module.DTensor):
        return t, lambda x: x
    mesh, placements = t.device_mesh, t.placements
    return t.full_tensor(), lambda x: module.distribute_tensor(x, mesh, placements, src_data_rank=None)
