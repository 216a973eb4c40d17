"""SoftSignum's temperature schedule (arXiv 2605.31371; seed2-optimizers.md section 2), fitted once on the momentum.

The momentum's entries are modelled as Cauchy(mu, sigma) with mu = median(m) and sigma = median|m - mu|. At
transition step ``k`` (``p_k = k / T``), ``q_k`` is the ``p_k``-quantile of ``|X|``, and ``tau_k =
atanh(1 - eps) / q_k``, clamped to ``[1, tau_max]``: then about a fraction ``p_k`` of the entries have
``|tanh(tau_k m)| < 1 - eps`` (they are not saturated), so the step moves from sign-like to SGD-like as ``k`` grows.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

__all__ = ["folded_cauchy_quantile", "soft_sign_temperatures"]


def folded_cauchy_quantile(p: Tensor, loc: float, scale: float) -> Tensor:
    """The ``p``-quantile ``q`` of ``|X|``, ``X ~ Cauchy(loc, scale)``, in closed form (float64).

    ``P(|X| <= q) = [atan((q - loc)/scale) + atan((q + loc)/scale)] / pi = p``; the tangent of the sum gives
    ``q^2 + 2 scale cot(pi p) q - (scale^2 + loc^2) = 0``, whose positive root is
    ``q = sqrt(scale^2 (1 + cot^2) + loc^2) - scale cot`` (taken as ``(scale^2 + loc^2) / (sqrt(...) + scale cot)``
    where ``cot > 0``, without cancellation). ``q(0) = 0``, ``q(1/2) = sqrt(scale^2 + loc^2)``, and
    ``scale = 0`` gives ``|loc|`` for every ``p`` (the point mass). The authors' code reaches the same root by
    ten Newton steps.
    """
    if not (scale >= 0.0 and math.isfinite(scale) and math.isfinite(loc)):
        raise ValueError(f"Invalid Cauchy parameters: loc {loc}, scale {scale}")
    p = torch.as_tensor(p, dtype=torch.float64)
    if ((p < 0) | (p >= 1)).any():
        raise ValueError("Invalid p: the quantile levels must lie in [0, 1)")
    if scale == 0.0:
        return torch.full_like(p, abs(loc))
    cot = torch.cos(math.pi * p) / torch.sin(math.pi * p)  # +inf at p = 0
    root = torch.sqrt(scale**2 * (1 + cot**2) + loc**2)
    stable = (scale**2 + loc**2) / (root + scale * cot)
    q = torch.where(cot > 0, stable, root - scale * cot)
    return torch.where(p == 0, torch.zeros_like(q), q)


def soft_sign_temperatures(
    momentum: Tensor | Sequence[Tensor], transition_steps: int, eps: float = 1e-4, max_temperature: float = 20.0
) -> Tensor:
    """``tau_k = clamp(atanh(1 - eps) / q_k, 1, tau_max)`` for ``k = 0 .. T-1`` (module docstring), fitted on the
    entries of ``momentum`` (one tensor, or a group's tensors, concatenated). Returns ``T`` float64 values on the
    CPU, non-increasing in ``k``; ``tau_0 = tau_max`` (``q_0 = 0``)."""
    if transition_steps < 1:
        raise ValueError(f"Invalid transition_steps: {transition_steps}")
    if not 0.0 < eps < 1.0:
        raise ValueError(f"Invalid eps: {eps}")
    if not max_temperature >= 1.0:
        raise ValueError(f"Invalid max_temperature: {max_temperature}")
    tensors = [momentum] if isinstance(momentum, Tensor) else list(momentum)
    values = torch.cat([t.detach().reshape(-1) for t in tensors]) if tensors else torch.zeros(0)
    if values.numel() == 0 or not bool(torch.isfinite(values).all()):
        raise ValueError(
            f"Invalid momentum: the temperatures are fitted on its entries, which must be finite; it has "
            f"{values.numel()} entries, {int((~torch.isfinite(values)).sum())} of them not finite"
        )
    loc = values.median()
    scale = float((values - loc).abs().median())
    p = torch.arange(transition_steps, dtype=torch.float64) / transition_steps
    q = folded_cauchy_quantile(p, float(loc), scale)
    return (math.atanh(1 - eps) / q).clamp(1.0, max_temperature)
