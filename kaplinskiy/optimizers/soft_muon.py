"""SoftMuon (Feoktistov et al. 2026, arXiv 2605.31371): Muon for ``sign_steps`` steps, then the spectral soft
sign with temperatures fitted once, towards SGD.

For a matrix with gradient ``G``: ``M <- mu M + (1 - mu) G``, ``U = G + mu (M - G)`` (Nesterov) or ``M``, and
``W <- (1 - eta wd) W - eta s D`` with ``s = sqrt(max(1, m / n))`` and

* ``t <= S`` (or ``sign_steps=None``: always): ``D = NS_K(U)``, Muon's step;
* ``t = S + 1``: the temperatures are fitted once on the singular values of the group's gradients
  (:func:`~kaplinskiy.optimizers.soft_muon_temperatures`);
* ``t > S``: ``D = Phi_tau(U)`` (:func:`~kaplinskiy.optimizers.spectral_soft_sign`), ``tau = tau_k``,
  ``k = min(t - S - 1, T - 1)``.

``t`` counts the steps in which the group had gradients; the counter and the temperatures live in the state of the
group's first parameter. Groups with ``use_muon=False`` take AdamW steps (:mod:`~kaplinskiy.optimizers.muon_groups`). A
convolution's weight is taken as its ``dim 0 x rest`` matrix (also for ``s``; the authors' code takes the ratio of a 4-D
tensor's last two dimensions).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from .group_optimizer import SoftSignSchedule, check_hyperparameters
from .muon_groups import MuonGroupOptimizer
from .newton_schulz import aspect_scale, newton_schulz
from .soft_sign_temperatures import soft_muon_temperatures
from .spectral_soft_sign import spectral_soft_sign

__all__ = ["SoftMuon"]


class SoftMuon(SoftSignSchedule, MuonGroupOptimizer):
    """SoftMuon (module docstring). Defaults are the authors' code's (AdamW groups: betas (0.9, 0.95), eps
    1e-10); with ``sign_steps=None`` it is Keller Jordan's Muon (torch.optim.Muon's default step). ``ns_dtype``:
    the dtype both iterations run in (bfloat16 as the authors'; ``torch.float32`` is far faster on a CPU)."""

    def __init__(
        self,
        params: Any,
        lr: float = 0.02,
        momentum: float = 0.95,
        nesterov: bool = True,
        weight_decay: float = 0.0,
        ns_steps: int = 5,
        sign_steps: int | None = None,
        transition_steps: int | None = None,
        eps: float = 1e-4,
        max_temperature: float = 1e9,
        *,
        use_muon: bool = True,
        adamw_betas: tuple[float, float] = (0.9, 0.95),
        adamw_eps: float = 1e-10,
        ns_dtype: torch.dtype = torch.bfloat16,
        maximize: bool = False,
    ) -> None:
        defaults = dict(
            lr=lr,
            momentum=momentum,
            nesterov=nesterov,
            weight_decay=weight_decay,
            ns_steps=ns_steps,
            sign_steps=sign_steps,
            transition_steps=transition_steps,
            eps=eps,
            max_temperature=max_temperature,
            use_muon=use_muon,
            adamw_betas=adamw_betas,
            adamw_eps=adamw_eps,
            ns_dtype=ns_dtype,
            maximize=maximize,
        )
        super().__init__(params, defaults)

    def _matrix_step(self, group: dict[str, Any], params: list[Tensor]) -> None:
        if not params:
            return
        fit = lambda: soft_muon_temperatures(  # noqa: E731
            [p.grad for p in params], group["transition_steps"], group["eps"], group["max_temperature"]
        )
        tau = self._temperature(group, fit)
        mu = group["momentum"]
        for p in params:
            grad = -p.grad if group["maximize"] else p.grad
            state = self.state[p]
            if "momentum_buffer" not in state:
                state["momentum_buffer"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            buf = state["momentum_buffer"].lerp_(grad, 1 - mu)
            update = grad.lerp(buf, mu) if group["nesterov"] else buf
            if tau is None:
                direction = newton_schulz(update, group["ns_steps"], dtype=group["ns_dtype"])
            else:
                direction = spectral_soft_sign(update, tau, group["ns_steps"], group["ns_dtype"])
            p.mul_(1 - group["lr"] * group["weight_decay"])
            p.add_(direction.to(p.dtype), alpha=-group["lr"] * aspect_scale(p.shape))

    @staticmethod
    def _check_hyperparameters(h: dict[str, Any]) -> None:
        """``ValueError(f"Invalid {name}: {value}")`` for the first hyperparameter out of its range."""
        check_hyperparameters(
            h,
            nonnegative=("lr", "weight_decay", "adamw_eps"),
            betas=("adamw_betas",),
            counts=(("ns_steps", 0),),
            dtypes=("ns_dtype",),
        )
        if not 0.0 <= h["momentum"] < 1.0:
            raise ValueError(f"Invalid momentum: {h['momentum']}")
        if (h["sign_steps"] is None) != (h["transition_steps"] is None):
            raise ValueError("Invalid sign_steps: sign_steps and transition_steps are given together, or neither")
        SoftSignSchedule._check_schedule(h, optional=True)
