"""Update rules checked on a fixed sequence of gradients (no model): the same random parameters and gradients fed
to an optimizer and to a literal reference, step for step."""

from __future__ import annotations

import torch
from torch import Tensor


def random_params(shapes: list[tuple[int, ...]], seed: int) -> list[Tensor]:
    """float64 leaf tensors of ``shapes``, drawn from ``seed``."""
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(s, generator=g, dtype=torch.float64).requires_grad_() for s in shapes]


def gradient_sequence(shapes: list[tuple[int, ...]], steps: int, seed: int) -> list[list[Tensor]]:
    """``steps`` lists of float64 gradients of ``shapes``, drawn from ``seed``."""
    g = torch.Generator().manual_seed(seed)
    return [[torch.randn(s, generator=g, dtype=torch.float64) for s in shapes] for _ in range(steps)]


def run_steps(opt: torch.optim.Optimizer, params: list[Tensor], grads: list[list[Tensor]]) -> None:
    """One ``opt.step()`` per list of ``grads``, set (copied) as the gradients of ``params``."""
    for gs in grads:
        for p, g in zip(params, gs, strict=True):
            p.grad = g.clone()
        opt.step()
