"""A grouped kernel's launch as data, and the launch table of a list of tensors.

:class:`Launch` is one Triton launch: the jitted kernel, its grid, arguments, compile-time constants and options.
The grouped kernels' plans (:mod:`kaplinskiy._kernels.layerwise`, :mod:`kaplinskiy._kernels.dense`) build one and
call it; the same object tells the ahead-of-time compilation (workflow/gpu_tools/compile_kernels.py) what to
compile for a GPU architecture, on a machine without one.

:class:`TensorBlocks` is a list of contiguous tensors cut into blocks of a fixed number of entries: the launch table
of a grouped kernel that takes every tensor in one launch (one program per block). ``table`` holds each tensor's
address, size and offset in the list's concatenation (``int64``, ``n x 3``); ``blocks`` holds each program's tensor
and first entry (``int64``, ``m x 2``). On CUDA both are sent from pinned memory without waiting, so that building
a table (the gradients of a step moved to new addresses, say) adds no host synchronisation. The block list depends
on the sizes alone and is reused for tensors of the same sizes. Read by the kernels of
:mod:`kaplinskiy._kernels.dense_triton` and :mod:`kaplinskiy._kernels.gradient_check_triton`.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

__all__ = ["Launch", "TensorBlocks", "grouped_kernel_available"]


@dataclass(frozen=True)
class Launch:
    """``kernel[grid](*args, **constants, **options)``, not yet run."""

    kernel: Any
    grid: tuple[int, ...]
    args: tuple[Any, ...]
    constants: dict[str, Any] = field(default_factory=dict)
    options: dict[str, int] = field(default_factory=dict)  # num_warps, num_stages

    def __call__(self) -> None:
        """Run it."""
        self.kernel[self.grid](*self.args, **self.constants, **self.options)


def _to_device(rows: list[list[int]], device: torch.device) -> Tensor:
    """``rows`` as an ``int64`` tensor on ``device``; to CUDA from pinned memory, without waiting."""
    host = torch.tensor(rows, dtype=torch.int64).reshape(len(rows), -1)
    if device.type != "cuda":
        return host.to(device)
    return host.pin_memory().to(device, non_blocking=True)


class TensorBlocks:
    """The launch table of ``tensors`` in blocks of ``block`` entries (see the module's docstring).

    ``layout``: an earlier table whose block list is reused if its sizes and block are the same (a list of tens
    of thousands of rows, slow to build in Python). ``aligned``: every address 16-byte aligned and every size
    and offset a multiple of 4 entries of at most 4 bytes, so that the kernels may read 16 bytes at a time.
    """

    def __init__(self, tensors: Sequence[Tensor], block: int, layout: TensorBlocks | None = None) -> None:
        if not tensors:
            raise ValueError("Invalid tensors: a table needs at least one tensor")
        if block <= 0:
            raise ValueError(f"Invalid block: {block} (entries per program, a positive number)")
        device = tensors[0].device
        self.sizes = tuple(t.numel() for t in tensors)
        self.block, self.device = block, device
        offsets = [0]
        for size in self.sizes[:-1]:
            offsets.append(offsets[-1] + size)
        if layout is not None and layout.sizes == self.sizes and layout.block == block:
            self.blocks = layout.blocks
        else:
            starts = [[i, s] for i, size in enumerate(self.sizes) for s in range(0, size, block)]
            self.blocks = _to_device(starts, device) if starts else torch.zeros(0, 2, dtype=torch.int64, device=device)
        rows = [[t.data_ptr(), size, o] for t, size, o in zip(tensors, self.sizes, offsets, strict=True)]
        self.table = _to_device(rows, device)
        vec = 16 // tensors[0].element_size()
        self.aligned = vec >= 4 and all(p % 16 == 0 and m % 4 == 0 and o % 4 == 0 for p, m, o in rows)

    @property
    def n_blocks(self) -> int:
        """The number of programs a launch over the table runs."""
        return self.blocks.shape[0]


@functools.cache
def _triton() -> Any:
    try:
        import triton
    except ImportError:
        return None
    return triton


def grouped_kernel_available(device: torch.device, *, interpreted: bool = False) -> bool:
    """Triton is installed and the tensors live on a CUDA device, or (``interpreted``) Triton's CPU
    interpreter is on (``TRITON_INTERPRET=1`` before Triton's import; for tests, far too slow for training)."""
    import os

    if _triton() is None:
        return False
    return device.type == "cuda" or (interpreted and os.environ.get("TRITON_INTERPRET") == "1")
