"""The finite check's flags: whether any gradient entry is NaN or infinite, and whether all are zero.

An optimizer that rejects a non-finite step (and skips an all-zero one) reads the gradients once before it
touches anything. :func:`gradient_flags` does so with one multi-tensor reduction (:func:`~kaplinskiy.max_abs`),
which on CUDA returns one peak per tensor: GPT-2's 148 gradients cost about half a millisecond of the host's
time per step (measured on an H100), more than the device's pass. :class:`GradientCheck` reads them in one
grouped Triton launch instead, whose table it keeps while the gradients' addresses stay the same (a freed
gradient's successor usually reuses them), and falls back to :func:`gradient_flags` for gradients the kernel
does not take (sparse, complex, non-contiguous, sharded, of mixed dtypes or devices, or on a CPU). Both give
the same flags.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from .kernel_launch import Launch
from .layerwise_kernel import grouped_kernel_available
from .tensor_blocks import TensorBlocks
from .tensor_lists import any_dtensor, max_abs

__all__ = ["GradientCheck", "flags_launch", "gradient_flags"]

_BLOCK, _WARPS = 4096, 8
_DTYPES = (torch.float32, torch.bfloat16, torch.float16)


def gradient_flags(grads: Sequence[Tensor]) -> Tensor:
    """``[non-finite, all zero]`` (bool, on the gradients' device) from their peaks, without synchronising; no
    gradients at all are all zero."""
    peaks = max_abs(grads)
    return torch.stack([~torch.isfinite(peaks).all(), (peaks == 0).all()])


def _kernel_takes(grads: Sequence[Tensor], interpreted: bool) -> bool:
    """Whether one grouped launch can read ``grads``: dense, contiguous, of one float dtype, on one device."""
    if not grads or any_dtensor(grads):
        return False
    first = grads[0]
    if first.dtype not in _DTYPES or not grouped_kernel_available(first.device, interpreted=interpreted):
        return False
    return all(
        g.layout == torch.strided and g.dtype == first.dtype and g.device == first.device and g.is_contiguous()
        for g in grads
    )


def flags_launch(cut: TensorBlocks, flags: Tensor, like: Tensor) -> Launch:
    """The kernel's launch over every block of ``cut``: two ``int32`` flags per block into ``flags`` (``m x 2``);
    ``like``: any tensor of the gradients' dtype."""
    from .gradient_check_triton import block_flags  # Triton compiles (or interprets) it on first launch

    constants = {"BLOCK": cut.block, "ALIGNED": cut.aligned}
    return Launch(block_flags, (cut.n_blocks,), (cut.table, cut.blocks, flags, like), constants, {"num_warps": _WARPS})


class GradientCheck:
    """:func:`gradient_flags` in one grouped launch where the kernel takes the gradients (see the module).

    ``interpreted``: also run the kernel on a CPU under Triton's interpreter (``TRITON_INTERPRET=1``; for tests).
    """

    def __init__(self, *, interpreted: bool = False) -> None:
        self.interpreted = interpreted
        self._key: tuple[object, ...] | None = None
        self._cut: TensorBlocks | None = None
        self._like: Tensor | None = None

    def __call__(self, grads: Sequence[Tensor]) -> Tensor:
        """``[non-finite, all zero]`` (bool, on the gradients' device), without synchronising."""
        if not _kernel_takes(grads, self.interpreted) or sum(g.numel() for g in grads) == 0:
            return gradient_flags(grads)
        key = (tuple(g.data_ptr() for g in grads), tuple(g.numel() for g in grads), grads[0].dtype, _BLOCK)
        if key != self._key or self._cut is None:
            nonempty = [g for g in grads if g.numel()]
            self._cut = TensorBlocks(nonempty, _BLOCK, layout=self._cut)
            self._like = torch.empty(1, dtype=grads[0].dtype, device=grads[0].device)
            self._key = key
        cut = self._cut
        flags = torch.empty(cut.n_blocks, 2, dtype=torch.int32, device=cut.device)
        flags_launch(cut, flags, self._like)()
        bad, nonzero = flags.amax(0).unbind()
        return torch.stack([bad > 0, nonzero == 0])
