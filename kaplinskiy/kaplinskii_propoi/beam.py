"""The first-order Kaplinskii-Propoi methods: one sample (1993, eq. 16) and the beam (eqs. 27-32).

The variable-polyhedron ("beam") method, one iteration k:
  1. draw K points u_k^i around m_k (K = n + 1: the vertices of a polyhedron) and evaluate them;
  2. the level c_k (eq. 30: the mean; or the median, the record, or f(m_k));
  3. the perspective set L_k = {i : f(u_k^i) <= c_k} and its centroid (eq. 31), the step's base;
  4. the step m_hat = base + eps_k (1/K) sum_i (f(u_k^i) - c_k)(base - u_k^i)/||base - u_k^i||^lam
     (eqs. 28 and 32), accepted if f(m_hat) <= c_k, with contraction of eps_k otherwise;
  5. stop when D_k = (1/K) sum_i (f(u_k^i) - c_k)^2 is small.
The loop, the acceptance and the radius adaptation are in ``descent.py``; this module only builds
the proposal. With K = 1 and the level c = f(m_k) it is the one-sample method of eq. 16.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

from .counting import CountedObjective, OptimizeResult
from .descent import DescentOptions, Proposal, clamp, descend
from .level import LEVELS, dispersion, perspective_centroid
from .nonlocal_gradient import potential_gradient
from .sampling import SAMPLERS

__all__ = [
    "as_bound",
    "as_counter",
    "beam_proposal",
    "beam_proposer",
    "check_beam_options",
    "minimize_beam",
    "minimize_one_sample",
]

CENTERS = ("perspective", "current")


def as_counter(f: Callable[[Tensor], Tensor] | CountedObjective) -> CountedObjective:
    """``f`` itself if it already counts its evaluations, else a fresh counter around it."""
    return f if isinstance(f, CountedObjective) else CountedObjective(f)


def as_bound(b: Tensor | float | None, like: Tensor) -> Tensor | None:
    """A bound as a tensor broadcastable to ``like`` (``None`` stays ``None``)."""
    return None if b is None else torch.as_tensor(b, dtype=like.dtype).expand_as(like).clone()


def beam_proposal(
    counter: CountedObjective,
    m: Tensor,
    f_m: float,
    sigma: float,
    K: int,
    generator: torch.Generator | None,
    *,
    lam: float,
    level: str,
    sampling: str,
    center: str,
    previous_level: float | None = None,
    lower: Tensor | None = None,
    upper: Tensor | None = None,
) -> tuple[Proposal, Tensor, Tensor] | None:
    """Steps 1-4 above for one iteration: draw, evaluate, level, base, direction (eqs. 28-32).

    Returns the proposal with the samples and their values (for methods that reuse them), or
    ``None`` when no drawn sample has a finite value.
    """
    u, log_iw = SAMPLERS[sampling](m, sigma, K, generator)
    u = clamp(u, lower, upper)
    fu = counter(u)
    if not bool(torch.isfinite(fu).any()):
        return None
    c = f_m if level == "current" else LEVELS[level](fu, previous_level)
    base = perspective_centroid(u, fu, c) if center == "perspective" else m
    g = potential_gradient(base, u, fu, c, lam, log_iw)
    return Proposal(base, g.direction, c, math.sqrt(dispersion(fu, c))), u, fu


def beam_proposer(
    counter: CountedObjective,
    K: int,
    generator: torch.Generator | None,
    *,
    lam: float,
    level: str,
    sampling: str,
    center: str,
    lower: Tensor | None,
    upper: Tensor | None,
) -> Callable[[Tensor, float, float, int], tuple[Proposal, Tensor, Tensor] | None]:
    """``propose(m, f_m, sigma, budget)``: one :func:`beam_proposal` per call, with at most ``budget`` samples,
    carrying the level from call to call (the record level needs the previous one; the first uses f(m))."""
    previous: list[float | None] = [None]

    def propose(m: Tensor, f_m: float, sigma: float, budget: int) -> tuple[Proposal, Tensor, Tensor] | None:
        prior = previous[0] if previous[0] is not None else f_m
        out = beam_proposal(
            counter,
            m,
            f_m,
            sigma,
            min(K, budget),
            generator,
            lam=lam,
            level=level,
            sampling=sampling,
            center=center,
            previous_level=prior,
            lower=lower,
            upper=upper,
        )
        if out is not None:
            previous[0] = out[0].level
        return out

    return propose


def check_beam_options(level: str, sampling: str, center: str, lam: float, n: int, K: int) -> None:
    """Raise ``ValueError`` naming the first invalid beam option."""
    if level not in (*LEVELS, "current"):
        raise ValueError(f"Invalid level: {level}")
    if sampling not in SAMPLERS:
        raise ValueError(f"Invalid sampling: {sampling}")
    if center not in CENTERS:
        raise ValueError(f"Invalid center: {center}")
    if not 0.0 <= lam <= n:
        raise ValueError(f"Invalid lam: {lam}")
    if K < 1:
        raise ValueError(f"Invalid n_samples: {K}")


def minimize_beam(
    f: Callable[[Tensor], Tensor] | CountedObjective,
    x0: Tensor,
    *,
    generator: torch.Generator | None = None,
    n_samples: int | None = None,
    lam: float | None = None,
    level: str = "mean",
    sampling: str = "gaussian",
    center: str = "perspective",
    lower: Tensor | float | None = None,
    upper: Tensor | float | None = None,
    options: DescentOptions | None = None,
    callback: Callable[[Tensor, float], None] | None = None,
) -> OptimizeResult:
    """Minimise ``f`` from ``x0`` with the KP beam method (eq:kp_beam), 1993's eqs. 27-32.

    ``n_samples`` is K (default n + 1); ``lam`` the kernel power in [0, n] (default n, the printed
    kernel; 0 gives Gaussian-smoothing descent by Stein's identity); ``level`` one of ``mean``
    (eq. 30), ``median``, ``record`` or ``current`` (c = f(m_k)); ``sampling`` one of ``gaussian``,
    ``ball``, ``cube`` or ``radial`` (Part III, eqs. 17-18); ``center`` is ``perspective`` (eq. 31) or
    ``current`` (step from m_k itself). Randomness comes only from ``generator``.
    """
    n = x0.shape[-1]
    K = n + 1 if n_samples is None else n_samples
    lam = float(n) if lam is None else float(lam)
    check_beam_options(level, sampling, center, lam, n, K)
    counter = as_counter(f)
    lo, hi = as_bound(lower, x0), as_bound(upper, x0)
    beam = beam_proposer(
        counter, K, generator, lam=lam, level=level, sampling=sampling, center=center, lower=lo, upper=hi
    )

    def propose(m: Tensor, f_m: float, sigma: float, budget: int) -> Proposal | None:
        out = beam(m, f_m, sigma, budget)
        return None if out is None else out[0]

    return descend(counter, x0, propose, options or DescentOptions(), lower=lo, upper=hi, callback=callback)


def minimize_one_sample(
    f: Callable[[Tensor], Tensor] | CountedObjective,
    x0: Tensor,
    *,
    generator: torch.Generator | None = None,
    lam: float | None = None,
    sampling: str = "gaussian",
    lower: Tensor | float | None = None,
    upper: Tensor | float | None = None,
    options: DescentOptions | None = None,
    callback: Callable[[Tensor, float], None] | None = None,
) -> OptimizeResult:
    """The one-sample method ``x + eps (f(u) - c)(x - u)/||x - u||^lam`` (1993, eq. 16) with c = f(x_k).

    The beam with K = 1, the level ``current`` and the step taken from x_k; each iteration costs one
    sample plus the contraction trials.
    """
    return minimize_beam(
        f,
        x0,
        generator=generator,
        n_samples=1,
        lam=lam,
        level="current",
        sampling=sampling,
        center="current",
        lower=lower,
        upper=upper,
        options=options,
        callback=callback,
    )
