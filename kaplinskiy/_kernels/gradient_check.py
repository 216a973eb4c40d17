"""The finite check's verdict: whether the loss or any gradient entry is NaN or infinite, and whether all
gradient entries are zero.

An optimizer that rejects a non-finite step (and skips an all-zero one) reads the gradients once before it touches
anything. :func:`gradient_verdict` does so with one multi-tensor reduction (:func:`~kaplinskiy._tensor_lists.max_abs`),
which on CUDA returns one peak per tensor: GPT-2's 148 gradients cost about half a millisecond of the host's
time per step (measured on an H100), more than the device's pass over them. :class:`GradientCheck` reads them
in one grouped Triton launch that writes the verdict itself; it keeps the launch table while the gradients'
addresses stay the same (a freed gradient's successor usually reuses them), and hands the gradients the kernel
does not take (sparse, complex, non-contiguous, sharded, of mixed dtypes or devices, or on a CPU) to
:func:`gradient_verdict`. Both give the same verdict.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from .._tensor_lists import any_dtensor, max_abs
from .launch import Launch, TensorBlocks, grouped_kernel_available

__all__ = ["GradientCheck", "gradient_verdict", "verdict_launch"]

_BLOCK, _WARPS = 4096, 8
_DTYPES = (torch.float32, torch.bfloat16, torch.float16)


def _loss_is_bad(loss: Tensor | float, device: torch.device) -> Tensor:
    """Whether ``loss`` is not finite, as a 0-dim bool on ``device``, without synchronising."""
    if isinstance(loss, Tensor):
        return ~torch.isfinite(loss.detach().to(device)).all()
    return torch.full((), not math.isfinite(float(loss)), dtype=torch.bool, device=device)  # a fill: no copy


def gradient_verdict(loss: Tensor | float | None, grads: Sequence[Tensor]) -> Tensor:
    """``[non-finite, all zero]`` as a float32 pair on the gradients' device, without synchronising: the first
    is 1 if the loss or a gradient entry is NaN or infinite, the second if every entry is zero and the first is
    not (no gradients at all are all zero)."""
    peaks = max_abs(grads)
    bad, zero = ~torch.isfinite(peaks).all(), (peaks == 0).all()
    if loss is not None:
        bad = bad | _loss_is_bad(loss, bad.device)
    return torch.stack([bad, zero & ~bad]).float()


def _kernel_takes(grads: Sequence[Tensor], interpreted: bool) -> bool:
    """Whether one grouped launch can read ``grads``: dense, contiguous, of one float dtype, on one device."""
    if not grads or any_dtensor(grads):
        return False
    first = grads[0]
    if first.dtype not in _DTYPES or not grouped_kernel_available(first.device, interpreted=interpreted):
        return False
    if len({(g.dtype, g.layout) for g in grads}) > 1 or first.layout != torch.strided:
        return False
    return len(set(map(Tensor.get_device, grads))) == 1 and all(map(Tensor.is_contiguous, grads))


def verdict_launch(cut: TensorBlocks, verdict: Tensor, loss: Tensor | None, like: Tensor) -> Launch:
    """The kernel's launch over every block of ``cut``, folding them into ``verdict`` (``[0, 1]`` before it);
    ``loss``: one number on the gradients' device, or None; ``like``: any tensor of the gradients' dtype."""
    from .gradient_check_triton import block_verdict  # Triton compiles (or interprets) it on first launch

    args = (cut.table, cut.blocks, verdict, verdict if loss is None else loss, like)
    constants = {"BLOCK": cut.block, "ALIGNED": cut.aligned, "HAS_LOSS": loss is not None}
    return Launch(block_verdict, (cut.n_blocks,), args, constants, {"num_warps": _WARPS})


class GradientCheck:
    """:func:`gradient_verdict` in one grouped launch where the kernel takes the gradients (see the module).

    ``interpreted``: also run the kernel on a CPU under Triton's interpreter (``TRITON_INTERPRET=1``; for tests).
    """

    def __init__(self, *, interpreted: bool = False) -> None:
        self.interpreted = interpreted
        self._key: tuple[object, ...] | None = None
        self._cut: TensorBlocks | None = None
        self._start: Tensor | None = None  # [0, 1]: the verdict before the launch

    def __call__(self, loss: Tensor | float | None, grads: Sequence[Tensor]) -> Tensor:
        """``[non-finite, all zero]`` as a float32 pair on the gradients' device, without synchronising."""
        if not _kernel_takes(grads, self.interpreted):
            return gradient_verdict(loss, grads)
        sizes = tuple(map(Tensor.numel, grads))
        if not any(sizes):
            return gradient_verdict(loss, grads)
        device = grads[0].device
        key = (tuple(map(Tensor.data_ptr, grads)), sizes, grads[0].dtype, device, _BLOCK)
        if key != self._key or self._cut is None:
            self._cut = TensorBlocks([g for g in grads if g.numel()], _BLOCK, layout=self._cut)
            self._key = key
        if self._start is None or self._start.device != device:
            self._start = torch.zeros(2, device=device, dtype=torch.float32)
            self._start[1] = 1.0  # on the device: no host synchronisation
        verdict = self._start.clone()
        in_kernel = isinstance(loss, Tensor) and loss.numel() == 1 and loss.device == device
        in_kernel = in_kernel and loss.is_floating_point()
        verdict_launch(self._cut, verdict, loss.detach() if in_kernel else None, grads[0])()
        if loss is not None and not in_kernel:
            bad = _loss_is_bad(loss, device).float()
            verdict = torch.stack([verdict[0].maximum(bad), verdict[1] * (1 - bad)])
        return verdict
