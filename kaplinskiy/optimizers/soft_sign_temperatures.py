"""The temperature schedules of SoftSignum and SoftMuon (Feoktistov et al. 2026, arXiv 2605.31371), fitted once.

Values ``v`` (SoftSignum: the momentum's entries; SoftMuon: the gradients' singular values) are modelled as
Cauchy(mu, sigma) with mu = median(v) and sigma = median|v - mu|. At transition step ``k`` (``p_k = k / T``),
``q_k`` is the ``p_k``-quantile of ``|X|``, and ``tau_k = phi^{-1}(1 - eps) / q_k``, clamped to ``[1, tau_max]``:
then about a fraction ``p_k`` of the values have ``|phi(tau_k v)| < 1 - eps`` (they are not saturated), so the
step moves from sign-like to SGD-like as ``k`` grows. ``phi`` is the soft sign the step applies: ``tanh``
(SoftSignum, entrywise), or ``x / sqrt(1 + x^2)`` (SoftMuon, on singular values).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from .._tensor_lists import gathered

__all__ = ["cauchy_temperatures", "folded_cauchy_quantile", "soft_muon_temperatures", "soft_sign_temperatures"]


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


def cauchy_temperatures(
    values: Tensor, transition_steps: int, saturation: float, max_temperature: float, what: str = "values"
) -> Tensor:
    """``tau_k = clamp(saturation / q_k, 1, tau_max)`` for ``k = 0 .. T-1`` with ``saturation = phi^{-1}(1 - eps)``
    (module docstring), fitted on ``values``. Returns ``T`` float64 values on the CPU, non-increasing in ``k``;
    ``tau_0 = tau_max`` (``q_0 = 0``)."""
    if transition_steps < 1:
        raise ValueError(f"Invalid transition_steps: {transition_steps}")
    if not max_temperature >= 1.0:
        raise ValueError(f"Invalid max_temperature: {max_temperature}")
    if values.numel() == 0 or not bool(torch.isfinite(values).all()):
        raise ValueError(
            f"Invalid {what}: the temperatures are fitted on them, and they must be finite; there are "
            f"{values.numel()}, {int((~torch.isfinite(values)).sum())} of them not finite"
        )
    loc = values.median()
    scale = float((values - loc).abs().median())
    p = torch.arange(transition_steps, dtype=torch.float64) / transition_steps
    return (saturation / folded_cauchy_quantile(p, float(loc), scale)).clamp(1.0, max_temperature)


def soft_sign_temperatures(
    momentum: Tensor | Sequence[Tensor], transition_steps: int, eps: float = 1e-4, max_temperature: float = 20.0
) -> Tensor:
    """SoftSignum's schedule: :func:`cauchy_temperatures` of the entries of ``momentum`` (one tensor, or a group's
    tensors, concatenated), ``phi = tanh``."""
    if not 0.0 < eps < 1.0:
        raise ValueError(f"Invalid eps: {eps}")
    tensors = [momentum] if isinstance(momentum, Tensor) else list(momentum)
    values = torch.cat([gathered(t.detach())[0].reshape(-1) for t in tensors]) if tensors else torch.zeros(0)
    return cauchy_temperatures(values, transition_steps, math.atanh(1 - eps), max_temperature, "momentum entries")


def soft_muon_temperatures(
    grads: Sequence[Tensor], transition_steps: int, eps: float = 1e-4, max_temperature: float = 1e9
) -> Tensor:
    """SoftMuon's schedule: :func:`cauchy_temperatures` of the singular values of every gradient (each as its
    ``dim 0 x rest`` matrix, in float32 at least), ``phi(x) = x / sqrt(1 + x^2)``, ``phi^{-1}(y) = y / sqrt(1 - y^2)``.
    The authors' code takes them from a fast approximate SVD; these are exact."""
    if not 0.0 < eps < 1.0:
        raise ValueError(f"Invalid eps: {eps}")
    whole = [gathered(g.detach())[0] for g in grads]  # whole matrices under FSDP2 (whole_matrices.py)
    sigmas = [
        torch.linalg.svdvals(g.reshape(g.shape[0], -1).to(torch.promote_types(g.dtype, torch.float32))) for g in whole
    ]
    values = torch.cat([s.double().cpu() for s in sigmas]) if sigmas else torch.zeros(0)
    saturation = (1 - eps) / math.sqrt(1 - (1 - eps) ** 2)
    return cauchy_temperatures(values, transition_steps, saturation, max_temperature, "gradient singular values")
