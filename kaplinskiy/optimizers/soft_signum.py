"""SoftSignum (Feoktistov et al. 2026, arXiv 2605.31371): Signum for ``sign_steps`` steps, then a tanh
transition towards SGD.

With SGD's momentum ``m_t`` (``buf <- mu buf + (1 - dampening) g``, ``buf = g`` at the first step; Nesterov
``g + mu buf``; ``m_t = g`` when ``mu = 0``) and decoupled weight decay ``W <- (1 - eta wd) W``:

* ``t <= S``: ``W <- W - eta sign(m_t)``;
* ``t = S + 1``: the temperatures ``tau_0 >= ... >= tau_{T-1}`` are fitted once on the group's momentum
  (:func:`~kaplinskiy.optimizers.soft_sign_temperatures`);
* ``t > S``: ``W <- W - eta tanh(tau_k m_t)`` with ``k = min(t - S - 1, T - 1)``.

``t`` counts the steps in which the group had gradients. Past ``S + T`` steps the last temperature is kept (the
authors' code has no step there: its schedule index runs out). Their optional global-norm rate scalings
(``normalized``, ``sign_norm``) are left out. The step counter and the temperatures live in the state of the
group's first parameter (LBFGS's place for global state), so ``state_dict`` round-trips them.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from .group_optimizer import GroupStepOptimizer, SoftSignSchedule, check_hyperparameters
from .soft_sign_temperatures import soft_sign_temperatures

__all__ = ["SoftSignum"]


class SoftSignum(SoftSignSchedule, GroupStepOptimizer):
    """SoftSignum (module docstring). Defaults are the authors' code's, except ``sign_steps`` and
    ``transition_steps``, which have none that fits every run: their README puts the switch at 90% of training
    (``sign_steps = 0.9 * total``, ``transition_steps = 0.1 * total``), so both are required."""

    def __init__(
        self,
        params: Any,
        lr: float = 1e-3,
        momentum: float = 0.0,
        dampening: float = 0.0,
        weight_decay: float = 0.0,
        nesterov: bool = False,
        *,
        sign_steps: int,
        transition_steps: int,
        eps: float = 1e-4,
        max_temperature: float = 20.0,
        maximize: bool = False,
    ) -> None:
        defaults = dict(
            lr=lr,
            momentum=momentum,
            dampening=dampening,
            weight_decay=weight_decay,
            nesterov=nesterov,
            sign_steps=sign_steps,
            transition_steps=transition_steps,
            eps=eps,
            max_temperature=max_temperature,
            maximize=maximize,
        )
        super().__init__(params, defaults)

    def _step_group(self, group: dict[str, Any], params: list[Tensor]) -> None:
        if not params:
            return
        directions = [self._momentum(group, p) for p in params]
        fit = lambda: soft_sign_temperatures(  # noqa: E731
            directions, group["transition_steps"], group["eps"], group["max_temperature"]
        )
        tau = self._temperature(group, fit)
        for p, d in zip(params, directions, strict=True):
            u = d.sign() if tau is None else torch.tanh(tau * d)
            p.mul_(1 - group["lr"] * group["weight_decay"]).add_(u, alpha=-group["lr"])

    def _momentum(self, group: dict[str, Any], p: Tensor) -> Tensor:
        """``m_t``: SGD's momentum of ``p``'s gradient (its buffer updated in place), or the gradient itself."""
        grad = -p.grad if group["maximize"] else p.grad
        mu = group["momentum"]
        if mu == 0:
            return grad
        state = self.state[p]
        if "momentum_buffer" not in state:
            state["momentum_buffer"] = grad.clone()
        else:
            state["momentum_buffer"].mul_(mu).add_(grad, alpha=1 - group["dampening"])
        buf = state["momentum_buffer"]
        return grad.add(buf, alpha=mu) if group["nesterov"] else buf

    @staticmethod
    def _check_hyperparameters(h: dict[str, Any]) -> None:
        """``ValueError(f"Invalid {name}: {value}")`` for the first hyperparameter out of its range."""
        check_hyperparameters(h, nonnegative=("lr", "momentum", "weight_decay", "dampening"))
        if h["nesterov"] and (h["momentum"] <= 0 or h["dampening"] != 0):
            raise ValueError("Invalid nesterov: Nesterov momentum needs a momentum and zero dampening")
        SoftSignSchedule._check_schedule(h)
