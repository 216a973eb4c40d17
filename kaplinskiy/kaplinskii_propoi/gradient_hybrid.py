"""A gradient hybrid motivated by the 1993 paper's eq. 44: a blend of two estimators of the smoothed gradient.

When grad f is available, the 1993 paper splits the potential gradient into two integrals,

    grad phi(x) = -lam int E(x, z) grad f(z) p_U(z) dz - lam int E(x, z) (f(z) - c) grad p_U(z) dz   (eq. 44):

a kernel-smoothed true gradient (local) and the (f - c) grad p_U term (nonlocal: it sees f where p_U
is spread). This module does not implement eq. 44 itself. For Gaussian p_U = N(m, sigma^2 I),
``grad p_U = -p_U (z - m)/sigma^2``, and the two integrals of eq. 44 then carry opposite signs: with a
constant kernel they cancel exactly (their sum is ``-lam int grad[(f - c) p_U] = 0``), and eq. 44 is the
integration by parts that moves the gradient onto the kernel. What each integral estimates, up to its
sign, is the gradient of the Gaussian-smoothed f (the second by Stein's identity). We therefore mix those
two sample estimates with the same sign,

    g_hat = mix * sum_i w_i grad f(u_i) + (1 - mix) * sum_i w_i (f(u_i) - c)(u_i - m)/sigma^2,

with kernel weights ``w_i ~ ||m - u_i||^{-lam}`` normalised to sum 1, and step along ``-g_hat`` with
the acceptance and contraction of ``descent.py``. ``mix = 1`` is smoothed-gradient descent (with
K = 1 and a small sigma, gradient descent with a line search); ``mix = 0`` is the zeroth-order step
(no gradient is computed or counted).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

from .beam import as_bound, as_counter
from .counting import CountedObjective, OptimizeResult
from .descent import DescentOptions, Proposal, clamp, descend
from .level import LEVELS

__all__ = ["hybrid_gradient", "minimize_gradient_hybrid"]


def hybrid_gradient(
    m: Tensor, u: Tensor, fu: Tensor, gu: Tensor | None, c: float, sigma: float, lam: float, mix: float
) -> Tensor:
    """``mix * sum w_i grad f(u_i) + (1 - mix) * sum w_i (f(u_i) - c)(u_i - m)/sigma^2`` (the two estimators of
    the smoothed gradient that the integrals of 1993's eq. 44 suggest; see the module docstring).

    ``w_i ~ ||m - u_i||^{-lam}`` (normalised in log space; ``lam = 0``: the plain sample mean). Samples
    with a non-finite value or gradient get weight 0. ``gu`` may be ``None`` only when ``mix = 0``.
    """
    if not 0.0 <= mix <= 1.0:
        raise ValueError(f"Invalid mix: {mix}")
    if gu is None and mix > 0.0:
        raise ValueError(f"Invalid gu: None with mix = {mix} > 0")
    valid = torch.isfinite(fu)
    if gu is not None:
        valid = valid & torch.isfinite(gu).all(-1)
    r = torch.linalg.vector_norm(u - m, dim=-1)
    valid = valid & ((r > 0) | (lam == 0.0))
    if not bool(valid.any()):
        return torch.zeros_like(m)
    log_w = -lam * torch.log(r[valid]) if lam != 0.0 else torch.zeros_like(r[valid])
    w = torch.softmax(log_w, dim=0).unsqueeze(-1)
    nonlocal_term = (w * (fu[valid] - c).unsqueeze(-1) * (u[valid] - m)).sum(0) / sigma**2
    if mix == 0.0:
        return nonlocal_term
    local_term = (w * gu[valid]).sum(0)
    return mix * local_term + (1.0 - mix) * nonlocal_term


def minimize_gradient_hybrid(
    f: Callable[[Tensor], Tensor] | CountedObjective,
    x0: Tensor,
    *,
    generator: torch.Generator | None = None,
    n_samples: int | None = None,
    mix: float = 0.5,
    lam: float = 0.0,
    level: str = "mean",
    lower: Tensor | float | None = None,
    upper: Tensor | float | None = None,
    options: DescentOptions | None = None,
    callback: Callable[[Tensor, float], None] | None = None,
) -> OptimizeResult:
    """Minimise ``f`` with the eq. 44 hybrid: K Gaussian samples, their values and (if ``mix > 0``) gradients.

    Each iteration costs ``n_samples`` (default n + 1) evaluations and, when ``mix > 0``, as many
    gradients, plus the contraction trials. The level defaults to the sample mean (with K = 1 the
    nonlocal term is then 0). The spread used by the ``tol`` rule is ``sigma ||g_hat||``, the
    first-order change of f across the cloud.
    """
    n_samples = x0.shape[-1] + 1 if n_samples is None else n_samples
    if n_samples < 1:
        raise ValueError(f"Invalid n_samples: {n_samples}")
    if not 0.0 <= mix <= 1.0:
        raise ValueError(f"Invalid mix: {mix}")
    if not 0.0 <= lam <= x0.shape[-1]:
        raise ValueError(f"Invalid lam: {lam}")
    if level not in LEVELS:
        raise ValueError(f"Invalid level: {level}")
    counter = as_counter(f)
    lo, hi = as_bound(lower, x0), as_bound(upper, x0)
    state: dict[str, float | None] = {"c": None}

    def propose(m: Tensor, f_m: float, sigma: float, budget: int) -> Proposal | None:
        K = min(n_samples, budget)
        u = clamp(m + sigma * torch.randn(K, m.shape[-1], generator=generator, dtype=m.dtype), lo, hi)
        if mix > 0.0:
            fu, gu = counter.value_and_grad(u)
        else:
            fu, gu = counter(u), None
        if not bool(torch.isfinite(fu).any()):
            return None
        c = LEVELS[level](fu, state["c"] if state["c"] is not None else f_m)
        state["c"] = c
        g = hybrid_gradient(m, u, fu, gu, c, sigma, lam, mix)
        norm = float(torch.linalg.vector_norm(g))
        direction = -g / norm if norm > 0 and math.isfinite(norm) else torch.zeros_like(m)
        return Proposal(m, direction, max(c, f_m), sigma * norm if math.isfinite(norm) else math.inf)

    return descend(counter, x0, propose, options or DescentOptions(), lower=lo, upper=hi, callback=callback)
