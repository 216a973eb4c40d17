"""Sampling the control vector U around the current point (the distribution p_U of the KP papers).

Each sampler draws K points around ``m`` with scale ``sigma`` from the ``torch.Generator`` it is
given (``None``: torch's default generator; nothing here reseeds anything) and returns them with
the log importance weights ``log p_U(u)/q(u)`` that the potential-gradient estimate needs, or
``None`` when the points are drawn from p_U itself.

The radial sampler is Part III's fix for the infinite variance of the estimator near the pole
``||x - u||^{-(n-1)}``: draw ``u`` with density ``q ~ r^{-alpha}`` on the ball B_R (eq. 17) and
weight by ``p_U/q`` (eq. 18), with p_U uniform on B_R. With ``alpha = n - 1`` and kernel power
``lam = n`` the weights cancel the pole exactly.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

__all__ = [
    "SAMPLERS",
    "ball_sample",
    "cube_sample",
    "gaussian_sample",
    "radial_log_weight",
    "radial_sample",
    "unit_directions",
]

Sampler = Callable[[Tensor, float, int, "torch.Generator | None"], tuple[Tensor, "Tensor | None"]]


def _check(sigma: float, K: int) -> None:
    if not (math.isfinite(sigma) and sigma > 0.0):
        raise ValueError(f"Invalid sigma: {sigma}")
    if K < 1:
        raise ValueError(f"Invalid K: {K}")


def unit_directions(K: int, n: int, generator: torch.Generator | None, dtype: torch.dtype) -> Tensor:
    """K directions uniform on the unit sphere S^{n-1} (normalised Gaussians)."""
    z = torch.randn(K, n, generator=generator, dtype=dtype)
    return z / torch.linalg.vector_norm(z, dim=-1, keepdim=True).clamp_min(torch.finfo(dtype).tiny)


def gaussian_sample(m: Tensor, sigma: float, K: int, generator: torch.Generator | None) -> tuple[Tensor, None]:
    """``u_i ~ N(m, sigma^2 I)``: the distribution of Stein's identity (lam = 0 gives Gaussian smoothing)."""
    _check(sigma, K)
    return m + sigma * torch.randn(K, m.shape[-1], generator=generator, dtype=m.dtype), None


def ball_sample(m: Tensor, sigma: float, K: int, generator: torch.Generator | None) -> tuple[Tensor, None]:
    """``u_i`` uniform in the ball of radius ``sigma`` around ``m`` (radius ``sigma * V^{1/n}``)."""
    _check(sigma, K)
    n = m.shape[-1]
    theta = unit_directions(K, n, generator, m.dtype)
    r = sigma * torch.rand(K, 1, generator=generator, dtype=m.dtype) ** (1.0 / n)
    return m + r * theta, None


def cube_sample(m: Tensor, sigma: float, K: int, generator: torch.Generator | None) -> tuple[Tensor, None]:
    """``u_ij = m_j - sigma/2 + sigma U[0, 1)``: the cube of side ``sigma`` minpy draws its simplex from."""
    _check(sigma, K)
    return m - 0.5 * sigma + sigma * torch.rand(K, m.shape[-1], generator=generator, dtype=m.dtype), None


def radial_sample(
    m: Tensor, sigma: float, K: int, generator: torch.Generator | None, alpha: float | None = None
) -> tuple[Tensor, Tensor]:
    """Density ``(n - alpha) omega_n^{-1} R^{alpha - n} r^{-alpha}`` on the ball B_R, R = ``sigma`` (Part III, eq. 17).

    The radius is ``R V^{1/(n - alpha)}`` (inverse CDF), the direction uniform; ``alpha`` defaults to
    ``n - 1`` (the radius is then uniform on [0, R]). Returns the points and their eq. 18 weights.
    """
    _check(sigma, K)
    n = m.shape[-1]
    alpha = n - 1.0 if alpha is None else alpha
    if not 0.0 <= alpha < n:
        raise ValueError(f"Invalid alpha: {alpha}")
    theta = unit_directions(K, n, generator, m.dtype)
    r = sigma * torch.rand(K, generator=generator, dtype=m.dtype) ** (1.0 / (n - alpha))
    return m + r.unsqueeze(-1) * theta, radial_log_weight(r, sigma, alpha, n)


def radial_log_weight(r: Tensor, R: float, alpha: float, n: int) -> Tensor:
    """``log p_U(u)/q(u)`` with p_U uniform on B_R and q of eq. 17 (Part III, eq. 18).

    ``p_U = n/(omega_n R^n)`` and ``q = (n - alpha) r^{-alpha}/(omega_n R^{n - alpha})``, so the ratio is
    ``n/(n - alpha) (r/R)^alpha``: it vanishes at the pole and removes ``alpha`` powers of the kernel's
    ``r^{1 - n}``.
    """
    return math.log(n / (n - alpha)) + alpha * (torch.log(r) - math.log(R))


SAMPLERS: dict[str, Sampler] = {
    "gaussian": gaussian_sample,
    "ball": ball_sample,
    "cube": cube_sample,
    "radial": radial_sample,
}
"""The samplers by name: ``(m, sigma, K, generator) -> (u, log_iw or None)``."""
