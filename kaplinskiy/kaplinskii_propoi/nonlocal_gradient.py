"""The nonlocal potential gradient of the Kaplinskii-Propoi methods (eq:kp_beam), computed in log space.

The zeroth-order KP step moves x along the gradient of the potential phi, estimated from samples u_i:

    grad phi(x) ~ (1/K) sum_i (f(u_i) - c) (x - u_i) / ||x - u_i||^lam        (1993, eqs. 14-15, 28)

with the kernel power ``lam`` in [0, n] (1993, Remark 2: "lam defines the real dimension of the
search manifold"; lam = n is Newton's kernel). The constant 1/omega_n of eq. 15 is absorbed into the
step length. For n in the hundreds ``||x - u||^n`` over- or underflows float64, so every function
here works with ``log ||x - u_i||`` and returns the estimate as a unit direction and a log norm;
the direction is exact whatever the scale. A good sample (f < c) pulls x towards itself
(dilatation), a bad one pushes it away (reflection).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import Tensor

__all__ = ["PotentialGradient", "kernel_log_weights", "one_sample_step", "potential_gradient", "vertex_steps"]


class PotentialGradient(NamedTuple):
    """``grad phi = exp(log_norm) * direction`` with ``||direction|| = 1`` (or 0 and ``log_norm = -inf``)."""

    direction: Tensor
    log_norm: float

    def vector(self) -> Tensor:
        """The literal estimate; it over- or underflows exactly when float64 cannot hold it."""
        if self.log_norm == -math.inf:
            return torch.zeros_like(self.direction)
        return self.direction * torch.exp(torch.tensor(self.log_norm, dtype=self.direction.dtype))


def kernel_log_weights(r: Tensor, lam: float) -> Tensor:
    """``log ||(x - u)/||x - u||^lam|| = (1 - lam) log r``: the kernel magnitude of 1993, Remark 2, in log space."""
    if not 0.0 <= lam:
        raise ValueError(f"Invalid lam: {lam}")
    return (1.0 - lam) * torch.log(r)


def potential_gradient(
    x: Tensor, u: Tensor, fu: Tensor, c: float, lam: float, log_iw: Tensor | None = None
) -> PotentialGradient:
    """``(1/K) sum_i w_i (f(u_i) - c)(x - u_i)/||x - u_i||^lam`` (eq:kp_beam), in log space (1993, eqs. 14-15, 28).

    ``log_iw`` are optional log importance weights ``log w_i`` (for example the radial sampling of
    Part III, eq. 18); without them ``w_i = 1``. Samples with a non-finite value or at ``u_i = x``
    (where the kernel is singular for lam > 1) contribute nothing; they still count in K, as eq. 28
    averages over all K draws.
    """
    K = u.shape[0]
    if K == 0:
        raise ValueError(f"Invalid u: no samples, shape {tuple(u.shape)}")
    diff = x - u
    r = torch.linalg.vector_norm(diff, dim=-1)
    a = fu - c
    valid = torch.isfinite(fu) & (r > 0) & (a != 0)
    if log_iw is not None:
        valid = valid & (log_iw > -math.inf)
    if not bool(valid.any()):
        return PotentialGradient(torch.zeros_like(x), -math.inf)
    # Masks by torch.where, not boolean indexing: same result, no data-dependent shapes.
    one = torch.ones_like(r)
    safe_r, safe_a = torch.where(valid, r, one), torch.where(valid, a, one)
    log_w = kernel_log_weights(safe_r, lam) - torch.log(safe_r) + torch.log(safe_a.abs())
    if log_iw is not None:
        log_w = log_w + torch.where(valid, log_iw, torch.zeros_like(log_iw))
    log_w = torch.where(valid, log_w, torch.full_like(log_w, -math.inf))
    top = float(log_w.max())
    coef = torch.where(valid, torch.sign(safe_a) * torch.exp(log_w - top), torch.zeros_like(log_w))
    v = (coef.unsqueeze(-1) * diff).sum(0) / K
    norm = float(torch.linalg.vector_norm(v))
    if norm == 0.0 or not math.isfinite(norm):
        return PotentialGradient(torch.zeros_like(x), -math.inf)
    return PotentialGradient(v / norm, top + math.log(norm))


def one_sample_step(x: Tensor, u: Tensor, fu: float, c: float, eps: float, lam: float) -> Tensor:
    """``x + eps (f(u) - c)(x - u)/||x - u||^lam`` (1993, eq. 16; eq. 40 of the second-order paper).

    One sample: a better point (f(u) < c) attracts x, a worse one repels it. ``lam = n`` is the
    printed kernel; the factor 1/omega_n is absorbed into ``eps``.
    """
    if not eps >= 0.0:
        raise ValueError(f"Invalid eps: {eps}")
    g = potential_gradient(x, u.unsqueeze(0), torch.tensor([fu], dtype=x.dtype), c, lam)
    return x + eps * g.vector()


def vertex_steps(m: Tensor, u: Tensor, fu: Tensor, c: float, eps: float, lam: float) -> Tensor:
    """``m_hat^i = m + eps (m - u_i)/||m - u_i||^lam (f(u_i) - c)`` for every vertex (1993, eq. 32).

    Their mean is ``m + eps * potential_gradient(...)`` (eq. 28). Computed per vertex in log space;
    a vertex at ``m`` or with a non-finite value stays at ``m``.
    """
    if not eps >= 0.0:
        raise ValueError(f"Invalid eps: {eps}")
    diff = m - u
    r = torch.linalg.vector_norm(diff, dim=-1)
    a = fu - c
    valid = torch.isfinite(fu) & (r > 0)
    safe_r = torch.where(valid, r, torch.ones_like(r))
    scale = torch.sign(a) * torch.exp(kernel_log_weights(safe_r, lam) - torch.log(safe_r) + torch.log(a.abs()))
    scale = torch.where(valid, scale, torch.zeros_like(scale))
    return m + eps * scale.unsqueeze(-1) * diff
