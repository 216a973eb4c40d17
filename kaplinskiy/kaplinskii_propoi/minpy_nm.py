"""minpy's "NM-stochastic" and "NM-nonlocal" as its audit documents them, each defect behind a flag.

Clean-room, from the audit's specification (sec:kp_benchmark; no minpy code). Both
move the centre with the KP step ``m + eps/K sum_i (f_i - c)(m - u_i)/||m - u_i||^n`` (1993, eqs. 28,
32) with c the sample mean, accept when ``f(m_new) < f(m)`` after adjusting eps, and stop when
``D = ((1/(K-1)) sum (f_i - c)^2)^{1/2} < tol``. NM-stochastic draws its K points once (a unit cube
around x0) and moves them with eq. 32; NM-nonlocal draws fresh points around m at every step.

``MinpyDefects`` switches on the documented bugs one at a time, so an experiment can price each:
  * ``increasing_step``: the step "adjustment" raises eps by +0.1 up to 11 times instead of contracting;
  * ``drop_worst``: m and the step average over the K-1 best points (``update_simplex``), not all K;
  * ``stale_values``: the vertices never move, so the same f values are reused (NM-stochastic only);
  * ``stop_at_zero``: the stopping rule is ``||f||_2 < tol`` (c never updated: fires only if min f = 0);
  * ``fixed_seed``: the draws come from a generator seeded with 5, whatever generator is passed.
All flags off is the specification as written (the fixed unit sampling cube included).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from .beam import as_bound, as_counter
from .counting import CountedObjective, OptimizeResult
from .descent import clamp
from .nonlocal_gradient import potential_gradient, vertex_steps
from .sampling import cube_sample

__all__ = ["MinpyDefects", "minimize_nm_nonlocal", "minimize_nm_stochastic"]


@dataclass(frozen=True)
class MinpyDefects:
    """Which of minpy's documented NM defects to reproduce (all off: the specification)."""

    increasing_step: bool = False
    drop_worst: bool = False
    stale_values: bool = False
    stop_at_zero: bool = False
    fixed_seed: bool = False

    @classmethod
    def all_on(cls) -> MinpyDefects:
        """Every defect at once: the behaviour of minpy's own code paths."""
        return cls(True, True, True, True, True)


def _trial_steps(eps0: float, shrink: float, max_trials: int, increasing: bool) -> list[float]:
    if increasing:
        return [eps0 + 0.1 * j for j in range(11)]
    return [eps0 * shrink**j for j in range(max_trials)]


def _nm_loop(
    f: Callable[[Tensor], Tensor] | CountedObjective,
    x0: Tensor,
    fresh: bool,
    generator: torch.Generator | None,
    n_samples: int | None,
    width: float,
    eps0: float,
    shrink: float,
    max_trials: int,
    tol: float,
    max_evals: int,
    max_iters: int,
    f_target: float | None,
    defects: MinpyDefects,
    lower: Tensor | float | None,
    upper: Tensor | float | None,
) -> OptimizeResult:
    n = x0.shape[-1]
    K = max(n + 1, 30 if n_samples is None else n_samples)
    for name, value in (("width", width), ("eps0", eps0), ("tol", tol)):
        if not (math.isfinite(value) and value >= 0.0):
            raise ValueError(f"Invalid {name}: {value}")
    if not 0.0 < shrink < 1.0:
        raise ValueError(f"Invalid shrink: {shrink}")
    counter = as_counter(f)
    lo, hi = as_bound(lower, x0), as_bound(upper, x0)
    gen = torch.Generator().manual_seed(5) if defects.fixed_seed else generator
    u = clamp(cube_sample(x0, width, K, gen)[0], lo, hi)
    fu = counter(u)
    m = clamp(x0.clone() if fresh else u.mean(0), lo, hi)
    f_m = float(counter(m))
    if not math.isfinite(f_m):
        raise ValueError(f"Invalid x0: f = {f_m} at the start")
    n_iters = n_accepted = 0
    stop = "max_iters"
    revisit = not fresh and not defects.stale_values  # the K vertices are evaluated again after the trials
    while True:
        if f_target is not None and counter.best_f <= f_target:
            stop = "f_target"
            break
        if counter.n_evals + K + 1 > max_evals:
            stop = "max_evals"
            break
        if n_iters >= max_iters:
            break
        if fresh:
            u = clamp(cube_sample(m, width, K, gen)[0], lo, hi)
            fu = counter(u)
        finite = torch.isfinite(fu)
        c = 0.0 if defects.stop_at_zero else float(fu[finite].mean())
        spread = float(torch.sqrt(((fu[finite] - c) ** 2).sum() / (1 if defects.stop_at_zero else K - 1)))
        if spread < tol:
            stop = "tolerance"
            break
        n_iters += 1
        c_step = float(fu[finite].mean())
        keep = torch.argsort(torch.where(finite, fu, math.inf))[: K - 1] if defects.drop_worst else slice(None)
        g = potential_gradient(m, u[keep], fu[keep], c_step, float(n)).vector()
        m_prev, moved, eps = m, False, eps0
        for eps in _trial_steps(eps0, shrink, max_trials, defects.increasing_step):
            if counter.n_evals >= max_evals - K * revisit:  # the vertices' evaluations stay within the budget
                break
            m_new = clamp(m_prev + eps * g, lo, hi)
            f_new = float(counter(m_new))
            if math.isfinite(f_new) and f_new < f_m:
                m, f_m, moved = m_new, f_new, True
                break
        n_accepted += moved
        if revisit:
            # Eq. 32 with the adjusted eps (the last one tried when none was accepted).
            u = clamp(vertex_steps(m_prev, u, fu, c_step, eps, float(n)), lo, hi)
            fu = counter(u)
    return OptimizeResult.from_counter(counter, m, f_m, n_iters, n_accepted, stop)


def minimize_nm_stochastic(
    f: Callable[[Tensor], Tensor] | CountedObjective,
    x0: Tensor,
    *,
    generator: torch.Generator | None = None,
    n_samples: int | None = None,
    width: float = 1.0,
    eps0: float = 0.5,
    shrink: float = 0.5,
    max_trials: int = 10,
    tol: float = 1e-4,
    max_evals: int = 10_000,
    max_iters: int = 600,
    f_target: float | None = None,
    defects: MinpyDefects | None = None,
    lower: Tensor | float | None = None,
    upper: Tensor | float | None = None,
) -> OptimizeResult:
    """NM-stochastic (sec:kp_benchmark): K >= n + 1 points (default 30, minpy's K) drawn once in a cube of side
    ``width`` around ``x0``, moved by eq. 32 each step; m is their mean, moved by eq. 28."""
    return _nm_loop(
        f, x0, False, generator, n_samples, width, eps0, shrink, max_trials, tol, max_evals, max_iters,
        f_target, defects or MinpyDefects(), lower, upper,
    )  # fmt: skip


def minimize_nm_nonlocal(
    f: Callable[[Tensor], Tensor] | CountedObjective,
    x0: Tensor,
    *,
    generator: torch.Generator | None = None,
    n_samples: int | None = None,
    width: float = 1.0,
    eps0: float = 0.5,
    shrink: float = 0.5,
    max_trials: int = 10,
    tol: float = 1e-4,
    max_evals: int = 10_000,
    max_iters: int = 600,
    f_target: float | None = None,
    defects: MinpyDefects | None = None,
    lower: Tensor | float | None = None,
    upper: Tensor | float | None = None,
) -> OptimizeResult:
    """NM-nonlocal (sec:kp_benchmark): m_0 = x0 and K fresh points in a cube of side ``width`` around m at
    every step; m moves by eq. 28 when the adjusted step lowers f(m)."""
    return _nm_loop(
        f, x0, True, generator, n_samples, width, eps0, shrink, max_trials, tol, max_evals, max_iters,
        f_target, defects or MinpyDefects(), lower, upper,
    )  # fmt: skip
