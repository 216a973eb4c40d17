"""The second-order KP variant: dilatation/reflection operators from sampled directions, with memory.

The second-order paper (Kaplinskii & Propoi 1994, ARC 55(8); "1994b" below) turns the first-order
direction grad phi into ``y = R grad phi`` with ``R = I + sum_i (beta_i - 1) theta_i theta_i^T``, a
sum of dilatation/reflection operators ``R_beta(theta) = I + (beta - 1) theta theta^T`` (eqs. 39, 45)
along the sampled directions ``theta_i = (u_i - x)/||u_i - x||``. Their coefficients come either
  * from the sample charges ``nu_i`` (eq. 33), ``beta_i = 1 - (kappa/K) nu_i`` (eqs. 41-42): perspective
    samples (nu < 0) dilate, nonperspective ones contract; with the charges normalised (sum |nu_i| = K) and
    ``kappa < 1``, ``R >= (1 - kappa) I`` stays positive definite (no reflection); or
  * from the memory coefficients sigma (eqs. 43-44): ``a_i = sigma_i - kappa nu_i (theta_i, grad phi)``,
    ``sigma_{i+1} = a_i if a_i > 1 else 1`` and ``beta_i = sigma_{i+1}``: trust in perspective
    directions accumulates over samples and iterations and is reset by a nonperspective one.
The scan prints eq. 43 as ``grad phi + (sigma_i - 1) theta_i``; we read it as the operator form
``R_sigma(theta) grad phi`` of eq. 39, which keeps the step a descent direction (sigma >= 1 makes R
positive definite). The charges are normalised (mean |nu| = 1), the paper's eps n/(2 K gamma p)
becomes the single rate ``kappa/K``.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

from .beam import as_bound, as_counter, beam_proposer, check_beam_options
from .counting import CountedObjective, OptimizeResult
from .descent import DescentOptions, Proposal, Trial, descend
from .nonlocal_gradient import kernel_log_weights

__all__ = [
    "apply_dilations",
    "dilation_operator",
    "memory_coefficient",
    "minimize_second_order",
    "sample_charges",
    "sample_coefficients",
]


def dilation_operator(theta: Tensor, beta: float) -> Tensor:
    """``R_beta(theta) = I + (beta - 1) theta theta^T`` for a unit ``theta`` (1994b, eqs. 39, 45).

    ``beta > 1`` dilates along theta, ``0 < beta < 1`` contracts, ``beta = 0`` projects out theta
    (the large-n limit of eq. 48), ``beta < 0`` reflects (``beta = -1``: the Householder reflection).
    Its inverse is ``R_{1/beta}(theta)`` (eqs. 47-48).
    """
    n = theta.shape[-1]
    return torch.eye(n, dtype=theta.dtype) + (beta - 1.0) * torch.outer(theta, theta)


def apply_dilations(v: Tensor, thetas: Tensor, betas: Tensor) -> Tensor:
    """``[I + sum_i (beta_i - 1) theta_i theta_i^T] v``, matrix-free in O(K n) (1994b, eqs. 39, 41-42)."""
    return v + ((betas - 1.0) * (thetas @ v)) @ thetas


def sample_charges(x: Tensor, u: Tensor, fu: Tensor, c: float) -> Tensor:
    """``nu_i ~ (f(u_i) - c)/(omega_n ||u_i - x||^n)`` (1994b, eq. 33, outside the small sphere S_rho).

    Normalised so that ``mean |nu_i| = 1`` (computed in log space, so n in the hundreds is safe);
    ``nu_i < 0`` marks a perspective sample. Non-finite values and samples at x get charge 0.
    """
    n = x.shape[-1]
    r = torch.linalg.vector_norm(u - x, dim=-1)
    a = fu - c
    valid = torch.isfinite(fu) & (r > 0) & (a != 0)
    nu = torch.zeros_like(fu)
    if not bool(valid.any()):
        return nu
    log_mag = torch.log(a[valid].abs()) + kernel_log_weights(r[valid], float(n)) - torch.log(r[valid])
    w = torch.exp(log_mag - log_mag.max())
    nu[valid] = torch.sign(a[valid]) * w / w.sum() * fu.shape[0]
    return nu


def sample_coefficients(nu: Tensor, kappa: float) -> Tensor:
    """Eqs. 41-42: ``beta_i = 1 - (kappa/K) nu_i`` from the normalised charges (``sum |nu_i| = K``); for
    ``0 <= kappa < 1`` every ``beta_i > 0`` and ``R >= (1 - kappa) I``."""
    return 1.0 - (kappa / nu.shape[0]) * nu


def memory_coefficient(sigma: float, nu: float, cos: float, rate: float, sigma_max: float = math.inf) -> float:
    """``a = sigma - rate nu (theta, grad phi)``; ``sigma' = a if a > 1 else 1`` (1994b, eqs. 43-44).

    A perspective sample (``nu < 0``) in the direction of grad phi (``cos > 0``) raises the trust
    sigma; anything else lowers it, and it never drops below 1 (no memory) or exceeds ``sigma_max``.
    """
    a = sigma - rate * nu * cos
    return min(a, sigma_max) if a > 1.0 else 1.0


def minimize_second_order(
    f: Callable[[Tensor], Tensor] | CountedObjective,
    x0: Tensor,
    *,
    generator: torch.Generator | None = None,
    n_samples: int | None = None,
    lam: float | None = None,
    level: str = "mean",
    sampling: str = "gaussian",
    center: str = "perspective",
    coefficients: str = "memory",
    kappa: float = 0.5,
    sigma_max_memory: float = 10.0,
    lower: Tensor | float | None = None,
    upper: Tensor | float | None = None,
    options: DescentOptions | None = None,
    callback: Callable[[Tensor, float], None] | None = None,
) -> OptimizeResult:
    """The beam method (``minimize_beam``) with its direction reshaped by ``R`` (1994b, eqs. 39-44).

    ``coefficients="memory"`` uses the trust recursion of eqs. 43-44 (carried across iterations);
    ``"sample"`` the memoryless ``beta_i = 1 - (kappa/K) nu_i`` of eqs. 41-42. ``kappa`` is the rate: in
    ``"sample"`` mode it must lie in [0, 1), so that ``R >= (1 - kappa) I`` stays positive definite.
    """
    n = x0.shape[-1]
    K = n + 1 if n_samples is None else n_samples
    lam = float(n) if lam is None else float(lam)
    check_beam_options(level, sampling, center, lam, n, K)
    if coefficients not in ("memory", "sample"):
        raise ValueError(f"Invalid coefficients: {coefficients}")
    if not (0.0 <= kappa and (coefficients == "memory" or kappa < 1.0)):
        raise ValueError(f"Invalid kappa: {kappa}")
    if not sigma_max_memory >= 1.0:
        raise ValueError(f"Invalid sigma_max_memory: {sigma_max_memory}")
    counter = as_counter(f)
    lo, hi = as_bound(lower, x0), as_bound(upper, x0)
    state: dict[str, float] = {"sigma": 1.0}
    beam = beam_proposer(
        counter, K, generator, lam=lam, level=level, sampling=sampling, center=center, lower=lo, upper=hi
    )

    def propose(m: Tensor, f_m: float, sigma: float, budget: int) -> Proposal | None:
        out = beam(m, f_m, sigma, budget)
        if out is None:
            return None
        proposal, u, fu = out
        g = proposal.direction
        diff = u - proposal.base
        r = torch.linalg.vector_norm(diff, dim=-1, keepdim=True)
        thetas = torch.where(r > 0, diff / r.clamp_min(torch.finfo(u.dtype).tiny), torch.zeros_like(diff))
        nu = sample_charges(proposal.base, u, fu, proposal.level)
        if coefficients == "sample":
            betas = sample_coefficients(nu, kappa)
        else:
            cos = thetas @ g
            betas = torch.empty_like(nu)
            for i in range(nu.shape[0]):
                state["sigma"] = memory_coefficient(
                    state["sigma"], float(nu[i]), float(cos[i]), kappa / nu.shape[0], sigma_max_memory
                )
                betas[i] = state["sigma"]
        y = apply_dilations(g, thetas, betas)
        norm = float(torch.linalg.vector_norm(y))
        direction = y / norm if norm > 0 and math.isfinite(norm) else g
        return Proposal(proposal.base, direction, proposal.level, proposal.spread)

    def on_step(proposal: Proposal, trial: Trial, m_before: Tensor) -> None:
        if not trial.accepted:
            state["sigma"] = 1.0  # a failed search: the remembered directions were not perspective

    return descend(
        counter, x0, propose, options or DescentOptions(), lower=lo, upper=hi, on_step=on_step, callback=callback
    )
