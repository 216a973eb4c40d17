"""Update rules checked on a fixed sequence of gradients (no model): the same random parameters and gradients fed
to an optimizer and to a literal reference, step for step."""

from __future__ import annotations

from collections.abc import Callable

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


def resumes_bit_for_bit(
    make: Callable[[list[Tensor]], torch.optim.Optimizer], shapes: list[tuple[int, ...]], steps: int, stop: int
) -> bool:
    """Whether ``steps`` steps of ``make(params)`` end where ``stop`` steps, a ``state_dict`` saved and loaded into
    a fresh ``make(params)``, then the rest end, bit for bit (the same parameters and gradients for both)."""
    grads = gradient_sequence(shapes, steps, 1)
    straight, resumed = random_params(shapes, 0), random_params(shapes, 0)
    run_steps(make(straight), straight, grads)
    first = make(resumed)
    run_steps(first, resumed, grads[:stop])
    second = make(resumed)
    second.load_state_dict(first.state_dict())
    run_steps(second, resumed, grads[stop:])
    return all(torch.equal(a, b) for a, b in zip(straight, resumed, strict=True))
