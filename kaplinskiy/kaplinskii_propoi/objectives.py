"""Test functions for the Kaplinskii-Propoi benchmark, batched over leading dimensions.

Every function maps ``x`` of shape ``(..., n)`` to values of shape ``(...)``, is written with torch
operations only (so ``torch.autograd`` gives the analytic gradient), and is pure. ``OBJECTIVES`` names
each one with its minimum value, a minimiser and the box its starts are drawn from.

Definitions follow the standard references; the minpy audit (sec:kp_benchmark)
lists where minpy's ``optfun.py`` departs from them (2-D-only Ackley, Shor with the first coordinate
dropped from the inner sums). Here Ackley, Rastrigin, Rosenbrock and the sphere are n-dimensional,
and Shor is the 5-D maximum of ten weighted quadratics with minimum 22.600162 (Shor 1985; the data
are those of the Luksan-Vlcek nonsmooth test set, problem "Shor").
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = [
    "OBJECTIVES",
    "SHOR_A",
    "SHOR_B",
    "SHOR_F_STAR",
    "Objective",
    "ackley",
    "booth",
    "easom",
    "himmelblau",
    "rastrigin",
    "rosenbrock",
    "shor",
    "sphere",
]


def _check_dim(x: Tensor, n: int, name: str) -> None:
    if x.shape[-1] != n:
        raise ValueError(f"Invalid x: {name} is {n}-dimensional, got last dimension {x.shape[-1]}")


def sphere(x: Tensor) -> Tensor:
    """``sum_i x_i^2``; minimum 0 at 0, any dimension."""
    return (x * x).sum(-1)


def booth(x: Tensor) -> Tensor:
    """``(x1 + 2 x2 - 7)^2 + (2 x1 + x2 - 5)^2``; minimum 0 at (1, 3)."""
    _check_dim(x, 2, "booth")
    x1, x2 = x[..., 0], x[..., 1]
    return (x1 + 2 * x2 - 7) ** 2 + (2 * x1 + x2 - 5) ** 2


def easom(x: Tensor) -> Tensor:
    """``-cos x1 cos x2 exp(-(x1 - pi)^2 - (x2 - pi)^2)``; minimum -1 at (pi, pi), flat almost everywhere else."""
    _check_dim(x, 2, "easom")
    x1, x2 = x[..., 0], x[..., 1]
    return -torch.cos(x1) * torch.cos(x2) * torch.exp(-((x1 - math.pi) ** 2) - (x2 - math.pi) ** 2)


def ackley(x: Tensor) -> Tensor:
    """n-D Ackley: ``-20 exp(-0.2 sqrt(mean x^2)) - exp(mean cos 2 pi x) + 20 + e``; minimum 0 at 0.

    The ``sqrt`` is taken of ``mean x^2 + tiny`` so that the gradient at the minimiser is finite (0 by
    symmetry would be the limit); the value there is exact to float64 rounding.
    """
    r = torch.sqrt((x * x).mean(-1) + torch.finfo(x.dtype).tiny)
    return -20.0 * torch.exp(-0.2 * r) - torch.exp(torch.cos(2 * math.pi * x).mean(-1)) + 20.0 + math.e


def himmelblau(x: Tensor) -> Tensor:
    """``(x1^2 + x2 - 11)^2 + (x1 + x2^2 - 7)^2``; four global minima of value 0 (one at (3, 2))."""
    _check_dim(x, 2, "himmelblau")
    x1, x2 = x[..., 0], x[..., 1]
    return (x1 * x1 + x2 - 11) ** 2 + (x1 + x2 * x2 - 7) ** 2


def rosenbrock(x: Tensor) -> Tensor:
    """``sum_i 100 (x_{i+1} - x_i^2)^2 + (1 - x_i)^2``; minimum 0 at (1, ..., 1), n >= 2."""
    if x.shape[-1] < 2:
        raise ValueError(f"Invalid x: rosenbrock needs n >= 2, got {x.shape[-1]}")
    a, b = x[..., :-1], x[..., 1:]
    return (100.0 * (b - a * a) ** 2 + (1.0 - a) ** 2).sum(-1)


def rastrigin(x: Tensor) -> Tensor:
    """``10 n + sum_i (x_i^2 - 10 cos 2 pi x_i)``; minimum 0 at 0."""
    return 10.0 * x.shape[-1] + (x * x - 10.0 * torch.cos(2 * math.pi * x)).sum(-1)


SHOR_A = (
    (0.0, 0.0, 0.0, 0.0, 0.0),
    (2.0, 1.0, 1.0, 1.0, 3.0),
    (1.0, 2.0, 1.0, 1.0, 2.0),
    (1.0, 4.0, 1.0, 2.0, 2.0),
    (3.0, 2.0, 1.0, 0.0, 1.0),
    (0.0, 2.0, 1.0, 0.0, 1.0),
    (1.0, 1.0, 1.0, 1.0, 1.0),
    (1.0, 0.0, 1.0, 2.0, 1.0),
    (0.0, 0.0, 2.0, 1.0, 0.0),
    (1.0, 1.0, 2.0, 0.0, 0.0),
)
"""Centres a_i (rows) of Shor's ten quadratics in R^5."""

SHOR_B = (1.0, 5.0, 10.0, 2.0, 4.0, 3.0, 1.7, 2.5, 6.0, 4.5)
"""Weights b_i of Shor's ten quadratics."""


def shor(x: Tensor) -> Tensor:
    """Shor's nonsmooth function ``max_i b_i sum_{j=1..5} (x_j - a_ij)^2``; minimum 22.600162 (5-D).

    Every coordinate enters every quadratic: minpy's version sums over j = 2..5 only, which changes
    the minimum to about 18.66.
    """
    _check_dim(x, 5, "shor")
    a = torch.tensor(SHOR_A, dtype=x.dtype, device=x.device)
    b = torch.tensor(SHOR_B, dtype=x.dtype, device=x.device)
    d = x.unsqueeze(-2) - a  # (..., 10, 5)
    return (b * (d * d).sum(-1)).amax(-1)


@dataclass(frozen=True)
class Objective:
    """A named test function with what a benchmark needs to know about it.

    ``f_star`` is the global minimum value; ``x_star(n)`` one global minimiser in dimension ``n``;
    ``box`` the half-open interval ``[low, high)`` (same in every coordinate) starts are drawn from;
    ``dims`` the dimensions it is defined in (``None``: any ``n >= min_dim``); ``multimodal`` whether
    it has non-global local minima (the benchmark also reports the 1e-3 tolerance for those).
    """

    name: str
    f: Callable[[Tensor], Tensor]
    f_star: float
    x_star: Callable[[int], Tensor]
    box: tuple[float, float]
    dims: tuple[int, ...] | None
    multimodal: bool
    min_dim: int = 1

    def supports(self, n: int) -> bool:
        """Whether the function is defined in dimension ``n``."""
        return n in self.dims if self.dims is not None else n >= self.min_dim


SHOR_F_STAR = 22.600162095
# From an SLSQP epigraph solve (min t s.t. t >= b_i ||x - a_i||^2); tests/test_kp_objectives.py re-checks it.
_SHOR_X_STAR = (1.12435101, 0.9794616, 1.47770774, 0.92023348, 1.12429159)


def _const(values: tuple[float, ...]) -> Callable[[int], Tensor]:
    def x_star(n: int) -> Tensor:
        return torch.tensor(values, dtype=torch.float64)

    return x_star


def _fill(value: float) -> Callable[[int], Tensor]:
    def x_star(n: int) -> Tensor:
        return torch.full((n,), value, dtype=torch.float64)

    return x_star


OBJECTIVES: dict[str, Objective] = {
    o.name: o
    for o in (
        Objective("sphere", sphere, 0.0, _fill(0.0), (-5.0, 5.0), None, False),
        Objective("booth", booth, 0.0, _const((1.0, 3.0)), (-10.0, 10.0), (2,), False),
        Objective("easom", easom, -1.0, _const((math.pi, math.pi)), (-20.0, 20.0), (2,), True),
        Objective("ackley", ackley, 0.0, _fill(0.0), (-5.0, 5.0), None, True),
        Objective("himmelblau", himmelblau, 0.0, _const((3.0, 2.0)), (-5.0, 5.0), (2,), True),
        Objective("rosenbrock", rosenbrock, 0.0, _fill(1.0), (-2.0, 2.0), None, False, min_dim=2),
        Objective("rastrigin", rastrigin, 0.0, _fill(0.0), (-5.12, 5.12), None, True),
        Objective("shor", shor, SHOR_F_STAR, _const(_SHOR_X_STAR), (-1.0, 4.0), (5,), False),
    )
}
"""The benchmark's test functions by name. Himmelblau's four minima are all global (value 0), so it
counts as multimodal only in the sense that a start can land in any of them."""
