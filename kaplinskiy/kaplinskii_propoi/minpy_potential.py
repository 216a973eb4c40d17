"""minpy's ``minimize_potential_nonlocal`` as its audit documents it, with its two defects behind flags.

Clean-room, from the audit's specification (sec:kp_benchmark; no minpy code). A population of K particles;
each epoch t:
  1. softmax weights ``w_j = exp(-beta_t (f_j - min f)) / sum_k exp(-beta_t (f_k - min f))``;
  2. a radial kernel G(r; eps_t) and its derivative G' (``inv_power``: ``1/(r^p + eps)``;
     ``inv_multiquadric``: ``(r^2 + eps)^{-1/2}``; ``gaussian``: ``exp(-r^2/(2 p^2))``);
  3. the "force" ``F_i = sum_{j != i} w_j (G'(r_ij)/r_ij)(u_j - u_i)`` (``-grad`` of sum_j w_j G(||x - u_j||));
  4. ``u_i <- clip(u_i + eta F_i)``, all K re-evaluated;
  5. the ceil(rK) worst particles are replaced by ``best + N(0, max(eps_t, 1e-3)^2 I)`` and evaluated;
  6. ``eps <- max(rho_eps eps, eps_final)``, ``beta <- min(rho_beta beta, beta_final)``.
Defects (``PotentialDefects``): ``repulsive`` keeps the documented sign (G' < 0 and w > 0 push every
particle away from the others, hardest from the best); off, the force is negated and attracts
particles to the low-f ones. ``population_of_one`` keeps the demos' K = 1 (the force is then 0 and
the method is a (1+1) random search around the best); off, K particles start in a unit cube around x0.
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
from .sampling import cube_sample

__all__ = ["KERNELS", "PotentialDefects", "minimize_potential_nonlocal", "potential_force", "softmax_weights"]


@dataclass(frozen=True)
class PotentialDefects:
    """Which of ``minimize_potential_nonlocal``'s documented defects to reproduce (default: both, as shipped)."""

    repulsive: bool = True
    population_of_one: bool = True


def softmax_weights(fu: Tensor, beta: float) -> Tensor:
    """``w_j = softmax(-beta (f_j - min f))`` (step 1 above): positive, favouring low f, sign-less."""
    return torch.softmax(-beta * (fu - fu.min()), dim=0)


def _inv_power(r: Tensor, eps: float, p: float) -> Tensor:
    return -p * r ** (p - 1) / (r**p + eps) ** 2


def _inv_multiquadric(r: Tensor, eps: float, p: float) -> Tensor:
    return -r * (r * r + eps) ** -1.5


def _gaussian(r: Tensor, eps: float, p: float) -> Tensor:
    return -(r / p**2) * torch.exp(-r * r / (2 * p**2))


KERNELS: dict[str, Callable[[Tensor, float, float], Tensor]] = {
    "inv_power": _inv_power,
    "inv_multiquadric": _inv_multiquadric,
    "gaussian": _gaussian,
}
"""The derivative G'(r; eps, p) of each documented kernel (all negative for r > 0)."""


def potential_force(u: Tensor, w: Tensor, eps: float, kernel: str, p: float, repulsive: bool) -> Tensor:
    """``F_i = +-sum_{j != i} w_j (G'(r_ij)/r_ij)(u_j - u_i)`` (step 3 above); ``-`` when not repulsive."""
    diff = u.unsqueeze(0) - u.unsqueeze(1)  # diff[i, j] = u_j - u_i
    r = torch.linalg.vector_norm(diff, dim=-1)
    off = ~torch.eye(u.shape[0], dtype=torch.bool)
    scale = torch.zeros_like(r)
    scale[off] = KERNELS[kernel](r[off], eps, p) / r[off].clamp_min(torch.finfo(u.dtype).tiny)
    force = ((w.unsqueeze(0) * scale).unsqueeze(-1) * diff).sum(1)
    return force if repulsive else -force


def minimize_potential_nonlocal(
    f: Callable[[Tensor], Tensor] | CountedObjective,
    x0: Tensor,
    *,
    generator: torch.Generator | None = None,
    n_particles: int = 50,
    kernel: str = "inv_power",
    kernel_param: float = 2.0,
    eps0: float = 1.0,
    eps_final: float = 1e-3,
    rho_eps: float = 0.9,
    beta0: float = 1.0,
    beta_final: float = 20.0,
    rho_beta: float = 1.05,
    eta: float = 0.1,
    replace_worst_frac: float = 0.2,
    max_epochs: int = 200,
    max_evals: int = 10_000,
    f_target: float | None = None,
    defects: PotentialDefects | None = None,
    lower: Tensor | float | None = None,
    upper: Tensor | float | None = None,
) -> OptimizeResult:
    """Run minpy's potential_nonlocal (documented defaults) from ``x0``; ``n_particles`` is ignored when
    ``defects.population_of_one``. ``m`` in the result is the best particle of the final population,
    ``n_accepted`` the number of epochs that improved the best value."""
    defects = defects or PotentialDefects()
    if kernel not in KERNELS:
        raise ValueError(f"Invalid kernel: {kernel}")
    if n_particles < 1:
        raise ValueError(f"Invalid n_particles: {n_particles}")
    if not 0.0 <= replace_worst_frac <= 1.0:
        raise ValueError(f"Invalid replace_worst_frac: {replace_worst_frac}")
    counter = as_counter(f)
    lo, hi = as_bound(lower, x0), as_bound(upper, x0)
    K = 1 if defects.population_of_one else n_particles
    u = clamp(x0.unsqueeze(0) if K == 1 else cube_sample(x0, 1.0, K, generator)[0], lo, hi)
    fu = counter(u)
    n_replace = math.ceil(replace_worst_frac * K)
    eps, beta, epoch, improved, stop = eps0, beta0, 0, 0, "max_iters"
    while True:
        if f_target is not None and counter.best_f <= f_target:
            stop = "f_target"
            break
        if counter.n_evals + K + n_replace > max_evals:
            stop = "max_evals"
            break
        if epoch >= max_epochs:
            break
        epoch += 1
        best_before = counter.best_f
        finite = torch.isfinite(fu)
        w = softmax_weights(torch.where(finite, fu, fu[finite].max() if bool(finite.any()) else 0.0), beta)
        w = torch.where(finite, w, torch.zeros_like(w))
        u = clamp(u + eta * potential_force(u, w, eps, kernel, kernel_param, defects.repulsive), lo, hi)
        fu = counter(u)
        if n_replace > 0 and counter.best_x is not None:
            worst = torch.argsort(torch.where(torch.isfinite(fu), fu, math.inf), descending=True)[:n_replace]
            noise = max(eps, 1e-3) * torch.randn(n_replace, u.shape[-1], generator=generator, dtype=u.dtype)
            u[worst] = clamp(counter.best_x + noise, lo, hi)
            fu[worst] = counter(u[worst])
        eps, beta = max(rho_eps * eps, eps_final), min(rho_beta * beta, beta_final)
        improved += counter.best_f < best_before
    i = int(torch.argmin(torch.where(torch.isfinite(fu), fu, math.inf)))
    return OptimizeResult.from_counter(counter, u[i], float(fu[i]), epoch, improved, stop)
