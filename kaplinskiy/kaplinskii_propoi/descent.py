"""The shared loop of the sampled KP methods: propose, accept with contraction, adapt the cloud.

Every KP method (beam, second order, gradient hybrid) proposes, at each iteration k, a base point, a
unit direction, the level c_k and the spread ``sqrt(D_k)``. The loop tries the points
``base + t_j * direction`` with ``t_j = step * sigma_k * shrink^j`` and accepts the first whose value is
finite and at most ``c_k`` (1993, step 5 after eq. 32: "accept if f(m_hat) <= c_k, otherwise decrease
eps_k (contraction)"). With ``monotone=True`` the threshold is ``min(c_k, f(m_k))``, so an accepted
step never increases f(m); the printed rule alone can (c_k is a sample mean, often above f(m_k)).

Choosing the first trial length proportional to the sampling radius fixes the paper's free initial
eps_k as ``step * sigma_k / ||grad phi_k||``; the direction is untouched. The radius (the size of the
"variable polyhedron") then follows the method's progress: after an accepted step it becomes the
step's length (clipped to [sigma_min, sigma_max]), after a failed search it shrinks by ``shrink``.
Part I's convergence theorem also lets the radius r^N go to zero.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from .counting import CountedObjective, OptimizeResult

__all__ = ["DescentOptions", "Proposal", "Trial", "clamp", "contract_step", "descend"]


@dataclass(frozen=True)
class Proposal:
    """One iteration's proposal: step from ``base`` along the unit ``direction``; accept below ``level``."""

    base: Tensor
    direction: Tensor
    level: float
    spread: float


@dataclass(frozen=True)
class Trial:
    """The outcome of a contraction search: the accepted point (or the old one), its value and cost."""

    x: Tensor
    f: float
    length: float
    n_trials: int
    accepted: bool


@dataclass(frozen=True)
class DescentOptions:
    """The loop's parameters (see the module docstring); every method shares them."""

    sigma0: float = 1.0
    sigma_min: float = 1e-12
    sigma_max: float = math.inf
    step: float = 2.0
    shrink: float = 0.5
    max_trials: int = 4
    monotone: bool = True
    tol: float = 0.0
    f_target: float | None = None
    max_evals: int = 10_000
    max_iters: int | None = None

    def __post_init__(self) -> None:
        if not (math.isfinite(self.sigma0) and self.sigma0 > 0.0):
            raise ValueError(f"Invalid sigma0: {self.sigma0}")
        if not 0.0 <= self.sigma_min <= self.sigma0 <= self.sigma_max:
            raise ValueError(f"Invalid sigma_min/sigma_max: {self.sigma_min}, {self.sigma_max}")
        if not self.step > 0.0:
            raise ValueError(f"Invalid step: {self.step}")
        if not 0.0 < self.shrink < 1.0:
            raise ValueError(f"Invalid shrink: {self.shrink}")
        if self.max_trials < 1:
            raise ValueError(f"Invalid max_trials: {self.max_trials}")
        if not self.tol >= 0.0:
            raise ValueError(f"Invalid tol: {self.tol}")
        if self.max_evals < 1:
            raise ValueError(f"Invalid max_evals: {self.max_evals}")


def clamp(x: Tensor, lower: Tensor | None, upper: Tensor | None) -> Tensor:
    """Project onto the box [lower, upper] (either side optional)."""
    if lower is not None:
        x = torch.maximum(x, lower)
    if upper is not None:
        x = torch.minimum(x, upper)
    return x


def contract_step(
    counter: CountedObjective,
    base: Tensor,
    direction: Tensor,
    length0: float,
    threshold: float,
    *,
    shrink: float,
    max_trials: int,
    lower: Tensor | None = None,
    upper: Tensor | None = None,
) -> Trial:
    """Try ``base + length0 shrink^j direction`` for j = 0, 1, ...; accept the first finite ``f <= threshold``.

    A non-finite value is a rejected trial, never an accepted step. Each trial costs one evaluation;
    stops early when the counter's budget (checked by the caller) would be exceeded.
    """
    length = length0
    for j in range(1, max_trials + 1):
        x = clamp(base + length * direction, lower, upper)
        fx = float(counter(x))
        if math.isfinite(fx) and fx <= threshold:
            return Trial(x, fx, float(torch.linalg.vector_norm(x - base)), j, True)
        length *= shrink
    return Trial(base, math.inf, 0.0, max_trials, False)


def descend(
    counter: CountedObjective,
    x0: Tensor,
    propose: Callable[[Tensor, float, float, int], Proposal | None],
    options: DescentOptions,
    *,
    lower: Tensor | None = None,
    upper: Tensor | None = None,
    on_step: Callable[[Proposal, Trial, Tensor], None] | None = None,
    callback: Callable[[Tensor, float], None] | None = None,
) -> OptimizeResult:
    """Run the propose / contract / adapt loop from ``x0`` until a stopping rule fires.

    ``propose(m, f_m, sigma, budget)`` draws and evaluates at most ``budget`` samples through the
    counter and returns a ``Proposal`` (``None``: nothing usable was drawn, counts as a failure).
    ``on_step(proposal, trial, m_before)`` lets a method update its memory after each search;
    ``callback(m, f_m)`` sees the iterate after every iteration (for tests and trajectories).
    Stopping rules: the best value reaches ``f_target``; ``sqrt(D_k) < tol`` (1993, after eq. 32);
    the budget ``max_evals`` or ``max_iters`` is spent; the radius falls below ``sigma_min``.
    """
    o = options
    m = clamp(x0.detach().clone(), lower, upper)
    f_m = float(counter(m))
    if not math.isfinite(f_m):
        raise ValueError(f"Invalid x0: f(x0) = {f_m} is not finite")
    sigma, n_iters, n_accepted, stop = o.sigma0, 0, 0, "max_iters"
    while True:
        if o.f_target is not None and counter.best_f <= o.f_target:
            stop = "f_target"
            break
        budget = o.max_evals - counter.n_evals
        if budget <= 1:
            stop = "max_evals"
            break
        if o.max_iters is not None and n_iters >= o.max_iters:
            stop = "max_iters"
            break
        if sigma < o.sigma_min:
            stop = "sigma_min"
            break
        n_iters += 1
        proposal = propose(m, f_m, sigma, budget - 1)
        if proposal is not None and proposal.spread < o.tol:
            stop = "tolerance"
            break
        trial = Trial(m, math.inf, 0.0, 0, False)
        budget = o.max_evals - counter.n_evals
        if proposal is not None and budget > 0 and bool(proposal.direction.any()):
            threshold = min(proposal.level, f_m) if o.monotone else proposal.level
            trial = contract_step(
                counter,
                proposal.base,
                proposal.direction,
                o.step * sigma,
                threshold,
                shrink=o.shrink,
                max_trials=min(o.max_trials, budget),
                lower=lower,
                upper=upper,
            )
        m_before = m
        if trial.accepted:
            m, f_m, n_accepted = trial.x, trial.f, n_accepted + 1
        if trial.accepted and trial.length > 0.0:
            sigma = min(max(trial.length, o.sigma_min), o.sigma_max)
        else:
            sigma *= o.shrink
        if on_step is not None and proposal is not None:
            on_step(proposal, trial, m_before)
        if callback is not None:
            callback(m, f_m)
    return OptimizeResult.from_counter(counter, m, f_m, n_iters, n_accepted, stop)
