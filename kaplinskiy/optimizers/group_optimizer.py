"""The torch.optim plumbing of kaplinskiy.optimizers's optimizers, written once: hyperparameters checked at
construction and for every added group, keys this optimizer does not know refused, sparse gradients refused before
anything moves, and ``step`` a loop over the groups (each subclass says how one group steps)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor
from torch.optim import Optimizer

from ..optim._checks import check_group_keys

__all__ = ["GroupStepOptimizer", "SoftSignSchedule", "check_hyperparameters"]


def check_hyperparameters(
    h: dict[str, Any],
    nonnegative: tuple[str, ...] = (),
    betas: tuple[str, ...] = (),
    counts: tuple[tuple[str, int], ...] = (),
    dtypes: tuple[str, ...] = (),
) -> None:
    """``ValueError(f"Invalid {name}: {value}")`` for the first of ``h``'s hyperparameters out of its range:
    ``nonnegative`` reals, ``betas`` pairs in [0, 1), ``counts`` integers of at least their bound, ``dtypes``
    floating-point dtypes."""
    for name in nonnegative:
        if not h[name] >= 0.0:
            raise ValueError(f"Invalid {name}: {h[name]}")
    for name in betas:
        if len(h[name]) != 2 or not all(0.0 <= b < 1.0 for b in h[name]):
            raise ValueError(f"Invalid {name}: {h[name]}")
    for name, least in counts:
        if not (isinstance(h[name], int) and h[name] >= least):
            raise ValueError(f"Invalid {name}: {h[name]}")
    for name in dtypes:
        if not (isinstance(h[name], torch.dtype) and h[name].is_floating_point):
            raise ValueError(f"Invalid {name}: {h[name]}")


class GroupStepOptimizer(Optimizer):
    """Subclasses define ``_check_hyperparameters(h)`` (``ValueError(f"Invalid {name}: {value}")``) and
    ``_step_group(group, params)`` (``params``: the group's parameters with gradients), and may extend
    ``_check_group`` (a new group's parameters; complex ones are refused here)."""

    def __init__(self, params: Any, defaults: dict[str, Any]) -> None:
        self._check_hyperparameters(defaults)
        super().__init__(params, defaults)

    @staticmethod
    def _check_hyperparameters(h: dict[str, Any]) -> None:
        raise NotImplementedError

    def _check_group(self, group: dict[str, Any]) -> None:
        if any(p.is_complex() for p in group["params"]):
            raise ValueError("Invalid param group: complex parameters are not supported")

    def _step_group(self, group: dict[str, Any], params: list[Tensor]) -> None:
        raise NotImplementedError

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Add a group as ``torch.optim`` does, checking its hyperparameters and parameters, and refusing keys this
        optimizer does not know (another optimizer's hyperparameter, a typo)."""
        check_group_keys(param_group, self.defaults)
        self._check_hyperparameters({**self.defaults, **param_group})
        super().add_param_group(param_group)
        self._check_group(self.param_groups[-1])

    @torch.no_grad()
    def step(self, closure: Callable[[], Tensor | float] | None = None) -> Any:
        """One step of every parameter with a gradient; ``closure`` (optional) re-evaluates the loss."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        if any(p.grad is not None and p.grad.is_sparse for g in self.param_groups for p in g["params"]):
            raise ValueError(
                f"{type(self).__name__} does not support sparse gradients: build the embedding with sparse=False"
            )
        for group in self.param_groups:
            self._step_group(group, [p for p in group["params"] if p.grad is not None])
        return loss

    def _group_state(self, group: dict[str, Any]) -> dict[str, Any]:
        """Per-group state (a step counter, fitted temperatures): kept in the state of the group's first
        parameter, LBFGS's place for global state, so ``state_dict`` round-trips it."""
        return self.state[group["params"][0]]


class SoftSignSchedule:
    """The sign phase, then the transition, of SoftSignum and SoftMuon, for a :class:`GroupStepOptimizer`: the
    group's step counter ``t``, and its temperatures fitted once at ``t = sign_steps + 1``. They are kept as plain
    floats, since ``load_state_dict`` would cast a tensor to the parameters' dtype and device."""

    @staticmethod
    def _check_schedule(h: dict[str, Any], optional: bool = False) -> None:
        """The schedule's hyperparameters: ``sign_steps >= 0`` and ``transition_steps >= 1`` (both ``None`` where
        the schedule is ``optional``: no transition), ``eps`` in (0, 1), ``max_temperature >= 1``."""
        if not (optional and h["sign_steps"] is None and h["transition_steps"] is None):
            check_hyperparameters(h, counts=(("sign_steps", 0), ("transition_steps", 1)))
        if not 0.0 < h["eps"] < 1.0:
            raise ValueError(f"Invalid eps: {h['eps']}")
        if not h["max_temperature"] >= 1.0:
            raise ValueError(f"Invalid max_temperature: {h['max_temperature']}")

    def temperatures(self, group: int = 0) -> Tensor | None:
        """The temperatures fitted for param group ``group``, float64 (``None`` before step ``sign_steps + 1``)."""
        first = self.param_groups[group]["params"][0]
        taus = self.state[first].get("temperatures") if first in self.state else None
        return None if taus is None else torch.tensor(taus, dtype=torch.float64)

    def _temperature(self, group: dict[str, Any], fit: Callable[[], Tensor]) -> float | None:
        """Count the group's step ``t``: ``None`` while ``t <= sign_steps`` (always, where it is ``None``), else
        ``tau_k``, ``k = min(t - sign_steps - 1, T - 1)`` (the last past the transition), the temperatures fitted
        by ``fit()`` the first time. Called once per step in which the group has gradients."""
        shared = self._group_state(group)
        t, sign_steps = shared.get("group_step", 0) + 1, group["sign_steps"]
        if sign_steps is None or t <= sign_steps:
            shared["group_step"] = t
            return None
        if "temperatures" not in shared:
            shared["temperatures"] = fit().tolist()
        shared["group_step"] = t
        taus = shared["temperatures"]
        return taus[min(t - sign_steps - 1, len(taus) - 1)]
