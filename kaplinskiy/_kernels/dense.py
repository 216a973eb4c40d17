"""A dense memory's projection ``g <- g - Q (Q^T g - c_ref)`` (eq:projected) over all parameter tensors in two
grouped Triton launches, on CUDA.

Per parameter tensor, :class:`~kaplinskiy.DenseMemory` otherwise runs two matrix-vector products (one per
half of the projection): 300 launches for GPT-2's 148 tensors, several of them too small to stream at full
bandwidth. Here one launch forms every block's share of the coordinates ``Q^T g`` (then summed in a fixed
order, so the result does not depend on scheduling) and a second subtracts ``Q c``: two streaming reads of the
basis, the projection's bandwidth floor ``2 r n``. Kernels in :mod:`kaplinskiy._kernels.dense_triton`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from .launch import Launch, TensorBlocks

__all__ = ["DensePlan", "dense_kernel_takes"]

_BLOCK, _WARPS = 4096, 8
_DTYPES = (torch.float32, torch.bfloat16, torch.float16)


def dense_kernel_takes(tensors: Sequence[Tensor], device: torch.device) -> bool:
    """Whether one plan can take ``tensors``: contiguous, of one float32, bfloat16 or float16 dtype, all on
    ``device`` (the kernels dereference every tensor's address on that device)."""
    dtype = tensors[0].dtype
    return dtype in _DTYPES and all(t.dtype == dtype and t.device == device and t.is_contiguous() for t in tensors)


class DensePlan:
    """The launch table of a fixed list of contiguous tensors over a basis of directions (``r x n``)."""

    def __init__(self, tensors: Sequence[Tensor], directions: Tensor, layout: DensePlan | None = None) -> None:
        if not dense_kernel_takes(tensors, directions.device):
            raise ValueError(
                "Invalid tensors: one plan takes contiguous tensors of one floating dtype (float32, bfloat16 or "
                "float16), on the basis' device"
            )
        dtype = tensors[0].dtype
        if directions.dtype != torch.float32 or not directions.is_contiguous():
            raise ValueError("Invalid directions: the kernels read a contiguous float32 basis")
        sizes = tuple(t.numel() for t in tensors)
        if sum(sizes) != directions.shape[1]:
            raise ValueError(f"Invalid tensors: {sum(sizes)} entries for a basis over {directions.shape[1]}")
        self.directions, self.dtype, self.sizes = directions, dtype, sizes
        # the kernels read its type only; a tensor of its own, so the plan keeps no gradient alive (the memory
        # keys plans on addresses, which a freed gradient's successor usually reuses)
        self.like = torch.empty(1, dtype=dtype, device=directions.device)
        reuse = layout is not None and layout.directions is directions
        self.cut = TensorBlocks(tensors, _BLOCK, layout=layout.cut if reuse else None)
        self.blocks, self.table, self.aligned = self.cut.blocks, self.cut.table, self.cut.aligned

    def launch(self, kernel: Any, out: Tensor) -> Launch:
        """``kernel`` (:func:`dense_partial_dots` writing to ``out``, or :func:`dense_apply` reading the
        coefficients from it) over every block of every tensor."""
        r, n = self.directions.shape
        args = (self.directions, n, r, self.table, self.blocks, out, self.like)
        constants = {"BLOCK": _BLOCK, "ALIGNED": self.aligned}
        return Launch(kernel, (self.blocks.shape[0],), args, constants, {"num_warps": _WARPS})

    def coefficients(self) -> Tensor:
        """``Q^T g`` (float32, length ``r``): per-block shares from one launch, summed in block order."""
        from .dense_triton import dense_partial_dots

        partial = torch.empty(self.blocks.shape[0], self.directions.shape[0], device=self.directions.device)
        self.launch(dense_partial_dots, partial)()
        return partial.sum(0)

    def subtract_(self, coefficients: Tensor) -> None:
        """``g <- g - Q c`` in place, in one launch."""
        from .dense_triton import dense_apply

        self.launch(dense_apply, coefficients.to(torch.float32).contiguous())()
