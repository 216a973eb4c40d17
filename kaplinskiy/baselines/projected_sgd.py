"""OGD (Farajtabar et al. 2020) and GPM (Saha et al. 2021): SGD with its gradient projected (eq:projected).

They differ only in the memory: OGD stores per-sample model-output gradients in a dense basis
(:class:`~kaplinskiy.DenseMemory`, OGD-GTL by default); GPM stores each layer's input space
(:class:`~kaplinskiy.LayerwiseMemory`). Both are :class:`~kaplinskiy.ForgettingGuard` around ``torch.optim.SGD``
in ``project="gradient"`` mode, which is exactly their published update.
"""

from __future__ import annotations

from typing import Any

import torch

from ..memory.dense import DenseMemory
from ..memory.layerwise.memory import LayerwiseMemory
from ..optim.forgetting_guard import ForgettingGuard

__all__ = ["GPM", "OGD"]


class OGD(ForgettingGuard):
    """``w <- w - lr P_perp(G_A) g`` (eq:projected) with a dense memory (SGD with optional momentum)."""

    def __init__(self, params: Any, memory: DenseMemory, lr: float = 1e-3, momentum: float = 0.0) -> None:
        super().__init__(torch.optim.SGD(params, lr=lr, momentum=momentum), memory, project="gradient")


class GPM(ForgettingGuard):
    """``G <- G - G U U^T`` per layer (eq:layerwise_projection), then SGD (optional momentum)."""

    def __init__(self, params: Any, memory: LayerwiseMemory, lr: float = 1e-2, momentum: float = 0.0) -> None:
        super().__init__(torch.optim.SGD(params, lr=lr, momentum=momentum), memory, project="gradient")
