"""Exact cost accounting for zeroth- and first-order methods: every point evaluated is counted.

``CountedObjective`` wraps a batched objective. Each row of a batch is one function evaluation and
each gradient one gradient evaluation; the wrapper keeps the best finite value seen and a trace of
``(n_evals, n_grads, best_f)`` each time that best improves, so a benchmark can read off the cost to
reach any tolerance without re-running. Non-finite values are passed through as ``+inf`` (never a
best) so callers can reject them with an ordinary comparison.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor

__all__ = ["CountedObjective", "OptimizeResult", "TracePoint"]


@dataclass(frozen=True)
class TracePoint:
    """The cost spent when the best value improved to ``best_f``."""

    n_evals: int
    n_grads: int
    best_f: float


@dataclass
class CountedObjective:
    """Counts the evaluations of ``f`` (batched: ``(..., n) -> (...)``) and records the best value.

    ``lower``/``upper`` (optional, broadcastable to ``(n,)``) are checked on every point: evaluating
    outside the box raises ``ValueError``, so a method that leaves its bounds fails loudly.
    """

    f: Callable[[Tensor], Tensor]
    lower: Tensor | None = None
    upper: Tensor | None = None
    n_evals: int = 0
    n_grads: int = 0
    best_f: float = math.inf
    best_x: Tensor | None = None
    trace: list[TracePoint] = field(default_factory=list)

    def _check_box(self, x: Tensor) -> None:
        if self.lower is not None and bool((x < self.lower).any()):
            raise ValueError(f"Invalid x: a point lies below the lower bound {self.lower.tolist()}")
        if self.upper is not None and bool((x > self.upper).any()):
            raise ValueError(f"Invalid x: a point lies above the upper bound {self.upper.tolist()}")

    def _record(self, x: Tensor, fx: Tensor) -> Tensor:
        fx = torch.where(torch.isfinite(fx), fx, torch.full_like(fx, math.inf))
        flat_f, flat_x = fx.reshape(-1), x.reshape(-1, x.shape[-1])
        if flat_f.numel() > 0:
            i = int(torch.argmin(flat_f))
            if float(flat_f[i]) < self.best_f:
                self.best_f = float(flat_f[i])
                self.best_x = flat_x[i].detach().clone()
                self.trace.append(TracePoint(self.n_evals, self.n_grads, self.best_f))
        return fx

    def __call__(self, x: Tensor) -> Tensor:
        """``f(x)`` for a point ``(n,)`` or a batch ``(..., n)``; one evaluation per point."""
        self._check_box(x)
        with torch.no_grad():
            fx = self.f(x)
        self.n_evals += fx.numel()
        return self._record(x, fx)

    def value_and_grad(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``f(x)`` and ``grad f(x)`` by autograd, for a point or a batch: one evaluation and one gradient per point."""
        self._check_box(x)
        with torch.enable_grad():
            xg = x.detach().clone().requires_grad_(True)
            fx = self.f(xg)
            (g,) = torch.autograd.grad(fx.sum(), xg)
        fx = fx.detach()
        self.n_evals += fx.numel()
        self.n_grads += fx.numel()
        return self._record(x, fx), g


@dataclass(frozen=True)
class OptimizeResult:
    """What a method did: its best point, its final centre and its exact cost.

    ``x``/``f`` are the best evaluated point and value (over every evaluation the method made);
    ``m``/``f_m`` the method's own final iterate and its value; ``n_iters`` the iterations run and
    ``n_accepted`` how many of them moved the iterate; ``stop`` why it stopped (``"tolerance"``,
    ``"max_evals"``, ``"f_target"``, ``"max_iters"``, ``"sigma_min"``); ``trace`` the cost at each
    improvement of the best value.
    """

    x: Tensor
    f: float
    m: Tensor
    f_m: float
    n_evals: int
    n_grads: int
    n_iters: int
    n_accepted: int
    stop: str
    trace: tuple[TracePoint, ...]

    def evals_to_reach(self, f_target: float) -> int | None:
        """Function evaluations spent when the best value first reached ``f <= f_target`` (``None``: never)."""
        for point in self.trace:
            if point.best_f <= f_target:
                return point.n_evals
        return None

    @classmethod
    def from_counter(
        cls, counter: CountedObjective, m: Tensor, f_m: float, n_iters: int, n_accepted: int, stop: str
    ) -> OptimizeResult:
        """Package a finished run; the best point comes from the counter."""
        x = counter.best_x if counter.best_x is not None else m
        return cls(
            x=x,
            f=counter.best_f,
            m=m.detach().clone(),
            f_m=f_m,
            n_evals=counter.n_evals,
            n_grads=counter.n_grads,
            n_iters=n_iters,
            n_accepted=n_accepted,
            stop=stop,
            trace=tuple(counter.trace),
        )
