"""The Kaplinskiy optimizer: d_Kap = -eta P_perp(G_A) grad Phi with Armijo acceptance (sec:method).

Each step evaluates Phi (eq:potential) and its gradient through the closure, builds ``d = -P_perp Lambda P_perp g``
where ``Lambda`` holds each group's learning rate (the projection comes last, so ``G_A^T d = 0`` (eq:orthogonal)
holds whatever the per-group rates; and first, so that ``g . d = -(P g)^T Lambda (P g) < 0`` stays a descent
direction when the rates differ, where ``P`` and ``Lambda`` do not commute; with one rate it is ``-eta P_perp g``,
eq:projected), and accepts ``w + t d`` for the first ``t = 1, shrink, ...`` that satisfies eq:armijo.
The functional core on one flat vector is :func:`kaplinskiy.potential_descent_step`; this class is its
``torch.optim`` form.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor
from torch.optim import Optimizer

from .._tensor_lists import assign_, copy_list, dot, grads_of, sq_norm
from ..functional.armijo import ArmijoResult, check_armijo_args
from ..memory.base import ProjectionMemory, check_trainable
from ._acceptance import Certificate, armijo_on_params, old_task_gradient, skip_step
from ._checks import check_group_keys, check_memory_covers_projected_groups
from .wrapper import copied_state

__all__ = ["Kaplinskiy"]


class Kaplinskiy(Optimizer):
    """Projected potential descent (eq:projected) with Armijo backtracking (eq:armijo).

    Args:
        params: parameters or parameter groups; a group may set ``lr`` and ``project`` (whether the
            memory's projection applies to it; groups outside the memory must set ``project=False``).
        lr: the trial step ``eta_0`` of the line search (an LR scheduler moves it).
        memory: a projection memory G_A (``None``: no projection, plain Armijo gradient descent).
        armijo: backtrack until eq:armijo holds; ``False`` takes the full step every time.
        c, shrink, max_trials: Armijo's constant, backtracking factor and cap on trials (like ``armijo``, the
            same for every group: a group may not set them to other values).

    ``step(closure)`` needs a closure returning Phi that calls ``backward()`` only under grad mode (see
    :mod:`kaplinskiy.optim`). Give ``old_task_closure`` (returning L_A, same convention) to have
    ``grad L_A . d`` in the certificate. The last :class:`~kaplinskiy.Certificate` is ``optimizer.certificate``.
    """

    def __init__(
        self,
        params: Any,
        lr: float = 1e-2,
        memory: ProjectionMemory | None = None,
        *,
        armijo: bool = True,
        c: float = 1e-4,
        shrink: float = 0.5,
        max_trials: int = 20,
    ) -> None:
        if not lr >= 0.0:
            raise ValueError(f"Invalid lr: {lr}")
        check_armijo_args(c, shrink, max_trials)
        defaults = dict(lr=lr, project=True, armijo=armijo, c=c, shrink=shrink, max_trials=max_trials)
        super().__init__(params, defaults)
        self.memory = memory
        check_memory_covers_projected_groups(self.param_groups, memory)

    def __getstate__(self) -> dict[str, Any]:
        """What ``copy.deepcopy`` and ``pickle`` keep: the memory too (``torch.optim`` keeps only defaults, state
        and groups)."""
        return copied_state(self)

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Add a group as ``torch.optim`` does, rejecting keys this optimizer does not know."""
        check_group_keys(param_group, self.defaults)
        super().add_param_group(param_group)

    @property
    def certificate(self) -> dict[str, Any] | None:
        """The certificate of the last step taken, as plain values (``None`` before the first); a step skipped
        for a zero or non-finite gradient leaves it as it was, so its ``step`` (the steps taken) tells."""
        first = self.param_groups[0]["params"][0]
        return self.state[first].get("certificate") if first in self.state else None

    def _direction(self, params: list[Tensor], grads: list[Tensor]) -> list[Tensor]:
        """``d = -P_perp Lambda P_perp g`` (eq:projected): the first projection only where the projected groups'
        rates differ (with one rate ``P Lambda P = eta P``)."""
        index = {id(p): j for j, p in enumerate(params)}
        covered = [index[id(p)] for p in self.memory.params] if self.memory is not None else []
        if covered and len({float(g["lr"]) for g in self.param_groups if g["project"]}) > 1:
            grads = list(grads)
            for j in covered:
                grads[j] = grads[j].clone()
            self.memory.project_([grads[j] for j in covered])
        d, i = [], 0
        for group in self.param_groups:
            for _ in group["params"]:
                d.append(-group["lr"] * grads[i])
                i += 1
        if covered:
            self.memory.project_([d[j] for j in covered])
        return d

    @torch.no_grad()
    def step(  # type: ignore[override]
        self,
        closure: Callable[[], Tensor | float] | None = None,
        old_task_closure: Callable[[], Tensor | float] | None = None,
    ) -> Tensor | float:
        """One projected, Armijo-accepted step on Phi; returns Phi before the step."""
        if closure is None:
            raise RuntimeError("Kaplinskiy needs a closure that returns Phi (see kaplinskiy.optim)")
        first = self.param_groups[0]
        for key in ("armijo", "c", "shrink", "max_trials"):
            if any(g[key] != first[key] for g in self.param_groups):
                raise ValueError(f"Invalid param groups: {key} is one for the whole optimizer, not per group")
        if self.memory is not None:
            check_trainable(self.memory, (p for g in self.param_groups for p in g["params"]))
        with torch.enable_grad():
            phi0 = closure()
        params = [p for g in self.param_groups for p in g["params"]]
        present = [p.grad for p in params if p.grad is not None]
        if skip_step(phi0, present, "Kaplinskiy"):
            return phi0
        grads = copy_list(grads_of(params))
        d = self._direction(params, grads)
        slope = dot(grads, d)
        passes, old_slope = 1, None
        if old_task_closure is not None:
            old_slope, passes = dot(old_task_gradient(params, old_task_closure), d), passes + 1
        group = self.param_groups[0]
        origin = copy_list(params)
        if group["armijo"]:
            search = armijo_on_params(
                params,
                origin,
                d,
                closure,
                float(phi0),
                slope,
                c=group["c"],
                shrink=group["shrink"],
                max_trials=group["max_trials"],
            )
        else:
            assign_(params, origin, 1.0, d)
            search = ArmijoResult(1.0, float(phi0), float("nan"), slope, 0, True)
        state = self.state[params[0]]
        state["step"] = state.get("step", 0) + 1
        residual = None
        if self.memory is not None:
            index = {id(p): j for j, p in enumerate(params)}
            residual = self.memory.residual([d[index[id(p)]] for p in self.memory.params])
        cert = Certificate.from_search(
            state["step"],
            search,
            1.0,
            passes + search.n_trials,
            step_norm=search.eta * sq_norm(d) ** 0.5,
            memory_residual=residual,
            old_task_slope=old_slope,
        ).as_dict()
        cert["eta"] = search.eta * float(group["lr"])
        if not group["armijo"]:
            cert["phi_after"] = None
        state["certificate"] = cert
        return phi0
