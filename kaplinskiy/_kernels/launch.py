"""One Triton launch as data: the jitted kernel, its grid, arguments, compile-time constants and options.

The grouped kernels' plans (:mod:`kaplinskiy.layerwise_kernel`, :mod:`kaplinskiy.dense_kernel`) build a
:class:`Launch` and call it; the same object tells workflow/scripts/compile_kernels.py what to compile ahead of
time for a GPU architecture, on a machine without one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["Launch"]


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
