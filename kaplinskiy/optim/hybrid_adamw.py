"""HybridAdamW: AdamW with the potential method (sec:method), as flags of one optimizer.

* the potential as an auxiliary loss: plain AdamW on the closure's Phi = L_B + R (+ replay) (eq:potential), no
  flag needed;
* ``project=True`` on a group: the AdamW *update* of that group is projected against the memory G_A
  (eq:projected_update, the Adam-NSCL idea), so ``G_A^T d = 0`` (eq:orthogonal) holds for the whole step, weight
  decay included;
* ``armijo=True``: the proposed AdamW step is scaled back until Phi decreases (eq:armijo); the moments have
  absorbed the gradient either way, only the move is certified.

With every flag off the step is ``torch.optim.AdamW``'s (checked step for step in the tests). The update is
computed with foreach kernels, as a list the projection and the line search can use; for the projected step
without a line search, ``ForgettingGuard(torch.optim.AdamW(..., fused=True), memory)`` takes the same step
(tested) with torch's fused kernel. ``fused=True`` (a GPU with Triton, a :class:`~kaplinskiy.LayerwiseMemory`, no
line search) takes it faster: AdamW and the projection together, in one pass over each Linear/Conv layer's
weights, and torch's fused AdamW for every other parameter (the layers it does not take are projected around
that step); its step counts are float32 tensors on the parameters' device, as ``torch.optim.AdamW(fused=True)``
keeps them.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor
from torch.optim import Optimizer

from .._kernels.gradient_check import GradientCheck
from .._tensor_lists import any_dtensor, copy_list, dot, sq_norm
from ..functional.armijo import ArmijoResult, check_armijo_args
from ..memory.base import ProjectionMemory, check_trainable
from ..memory.layerwise.memory import LayerwiseMemory
from ._acceptance import Certificate, armijo_on_params, old_task_gradient, skip_for_verdict, skip_step
from ._checks import check_group_keys, check_memory_covers_projected_groups
from ._finite_check import VerdictQueue
from ._fused_adamw import FusedAdamWStep, refuse_sparse
from .wrapper import copied_state

__all__ = ["HybridAdamW", "adamw_update"]


def adamw_update(
    params: list[Tensor],
    grads: list[Tensor],
    exp_avgs: list[Tensor],
    exp_avg_sqs: list[Tensor],
    step: int,
    *,
    lr: float,
    beta1: float,
    beta2: float,
    eps: float,
    weight_decay: float,
) -> list[Tensor]:
    """The AdamW step ``Delta`` (Loshchilov & Hutter), with the moments updated in place:

    ``m <- b1 m + (1-b1) g``, ``v <- b2 v + (1-b2) g^2``,
    ``Delta = -lr wd w - lr/(1-b1^t) * m / (sqrt(v/(1-b2^t)) + eps)``: the update ``u(w)`` that
    eq:projected_update projects.
    """
    torch._foreach_lerp_(exp_avgs, grads, 1 - beta1)
    torch._foreach_mul_(exp_avg_sqs, beta2)
    torch._foreach_addcmul_(exp_avg_sqs, grads, grads, 1 - beta2)
    update = torch._foreach_sqrt(exp_avg_sqs)  # the one temporary: sqrt(v), then the update in place
    torch._foreach_div_(update, math.sqrt(1 - beta2**step))
    torch._foreach_add_(update, eps)
    torch._foreach_reciprocal_(update)
    torch._foreach_mul_(update, exp_avgs)
    torch._foreach_mul_(update, -lr / (1 - beta1**step))
    if weight_decay != 0:
        torch._foreach_add_(update, params, alpha=-lr * weight_decay)
    return update


class HybridAdamW(Optimizer):
    """AdamW whose update can be projected against a memory (eq:projected_update) and accepted by Armijo.

    Args:
        params: parameters or groups; a group may set ``lr``, ``betas``, ``eps``, ``weight_decay`` and
            ``project`` (default True when a memory is given: project this group's update).
        memory: the projection memory G_A (``None``: no projection).
        armijo: scale the step back until eq:armijo holds on the closure's Phi (needs a closure).
        c, shrink, max_trials: Armijo's constant, backtracking factor and cap on trials.
        fused: take the step in one pass over each Linear/Conv layer's weights, AdamW and projection together
            (a GPU with Triton; see the module docstring); needs a :class:`~kaplinskiy.LayerwiseMemory` (or no
            memory) and no Armijo search.
            Set for the whole optimizer, not per group. Every layer the kernel takes needs a gradient at every
            step (a ``RuntimeError`` says so before anything moves): freeze a layer by leaving it out of the
            optimizer and the memory, not by ``requires_grad_(False)`` alone.
        check_finite: skip a step whose loss or gradient is NaN or infinite (with a
            :class:`~kaplinskiy.NonFiniteStepWarning`) or whose gradient is all zero, parameters and state left
            as they were, at one read of the gradients and a wait for its result per step. Turn it off only where
            something else skips such steps (a ``GradScaler`` does).
        defer_check: with ``fused=True``, make that check without waiting for its verdict (as
            ``ForgettingGuard(defer_check=True)`` does): a rejected step leaves parameters and state untouched,
            and its warning comes a step or two later (or when ``certificate`` is read).
    """

    def __init__(
        self,
        params: Any,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 1e-2,
        memory: ProjectionMemory | None = None,
        *,
        armijo: bool = False,
        c: float = 1e-4,
        shrink: float = 0.5,
        max_trials: int = 20,
        fused: bool = False,
        check_finite: bool = True,
        defer_check: bool = False,
    ) -> None:
        if not lr >= 0.0:
            raise ValueError(f"Invalid lr: {lr}")
        if not eps >= 0.0:
            raise ValueError(f"Invalid eps: {eps}")
        for i, b in enumerate(betas):
            if not 0.0 <= b < 1.0:
                raise ValueError(f"Invalid beta{i + 1}: {b}")
        if not weight_decay >= 0.0:
            raise ValueError(f"Invalid weight_decay: {weight_decay}")
        check_armijo_args(c, shrink, max_trials)
        if fused and armijo:
            raise ValueError("Invalid fused: the fused kernel takes the step whole, without an Armijo search")
        if fused and memory is not None and not isinstance(memory, LayerwiseMemory):
            raise ValueError("Invalid fused: the fused kernel projects against a LayerwiseMemory")
        if defer_check and not (fused and check_finite):
            raise ValueError("Invalid defer_check: it needs fused=True and check_finite=True")
        defaults = dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, project=memory is not None, fused=fused)
        self._fused = FusedAdamWStep()  # before the groups are added: add_param_group resets it
        super().__init__(params, defaults)
        self.memory, self.armijo, self.c, self.shrink, self.max_trials = memory, armijo, c, shrink, max_trials
        self.fused, self.check_finite, self.defer_check = fused, check_finite, defer_check
        self._verdicts = VerdictQueue("HybridAdamW")
        self._gradient_check = GradientCheck()
        self.hybrid_state: dict[str, Any] = {"step": 0, "certificate": None}
        check_memory_covers_projected_groups(self.param_groups, memory)
        if armijo and any_dtensor(p for g in self.param_groups for p in g["params"]):
            raise ValueError(
                "Invalid armijo: the parameters are DTensors (FSDP2's fully_shard), and each rank would judge the step "
                "on its own loss; leave it off, or use DistributedDataParallel"
            )

    def __getstate__(self) -> dict[str, Any]:
        """What ``copy.deepcopy`` and ``pickle`` keep: the settings, memory and record too (``torch.optim`` keeps
        only defaults, state and groups); pending verdicts are read first, the fused step's caches rebuilt."""
        self._verdicts.settle(self.hybrid_state, wait=True)
        return copied_state(self)

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Add a group as ``torch.optim`` does, rejecting keys this optimizer does not know."""
        check_group_keys(param_group, self.defaults)
        self._fused.forget()
        if param_group.get("fused", self.defaults["fused"]) != self.defaults["fused"]:
            raise ValueError("Invalid param group: fused is set for the whole optimizer, not per group")
        super().add_param_group(param_group)

    @property
    def certificate(self) -> dict[str, Any] | None:
        """The certificate of the last step taken, as plain values (``None`` before the first); a step skipped
        for a zero or non-finite gradient leaves it as it was (counted in ``"skipped"``), so its ``step``
        tells. With a deferred check, a non-finite step is certified as not accepted, and reading the certificate
        waits for the pending verdicts, so that ``accepted`` is final."""
        self._verdicts.settle(self.hybrid_state, wait=True)
        return self.hybrid_state["certificate"]

    def state_dict(self) -> dict[str, Any]:
        """``torch.optim``'s state dict plus the step counter and last certificate under ``"hybrid"`` (pending
        verdicts are read first)."""
        self._verdicts.settle(self.hybrid_state, wait=True)
        return {**super().state_dict(), "hybrid": dict(self.hybrid_state)}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned (or a ``torch.optim.AdamW`` state dict), fused or not: the
        step counts are kept as this optimizer keeps them. Pending verdicts are read first, into the record
        being replaced, and the loaded record is copied (the caller's dict is not written to later)."""
        self._verdicts.settle(self.hybrid_state, wait=True)
        self._fused.forget()  # it holds the state tensors being replaced
        state_dict = dict(state_dict)
        hybrid = state_dict.pop("hybrid", None)
        super().load_state_dict(state_dict)
        for group in self.param_groups:  # torch copies the saved groups, and casts the steps by their flag
            group["fused"] = self.fused
            for p in group["params"]:
                state = self.state.get(p)
                if state and "step" in state:
                    on = (torch.float32, p.device) if self.fused else (torch.float64, torch.device("cpu"))
                    state["step"] = torch.as_tensor(state["step"]).to(dtype=on[0], device=on[1])
        self.hybrid_state = copy.deepcopy(hybrid) if hybrid is not None else {"step": 0, "certificate": None}

    def _propose(self) -> tuple[list[Tensor], list[Tensor], list[Tensor]]:
        """AdamW's update for every parameter with a gradient; returns (params, grads, updates)."""
        refuse_sparse(self.param_groups)
        all_p, all_g, all_u = [], [], []
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            for p in params:
                state = self.state[p]
                if len(state) == 0:
                    state["step"] = torch.zeros((), dtype=torch.float64)
                    state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                state["step"] += 1
            beta1, beta2 = group["betas"]
            by_step: dict[int, list[Tensor]] = {}
            for p in params:  # bias corrections differ for parameters that missed steps
                by_step.setdefault(int(self.state[p]["step"]), []).append(p)
            for t, ps in by_step.items():
                grads = [p.grad for p in ps]
                update = adamw_update(
                    ps,
                    grads,
                    [self.state[p]["exp_avg"] for p in ps],
                    [self.state[p]["exp_avg_sq"] for p in ps],
                    t,
                    lr=group["lr"],
                    beta1=beta1,
                    beta2=beta2,
                    eps=group["eps"],
                    weight_decay=group["weight_decay"],
                )
                all_p += ps
                all_g += grads
                all_u += update
        if self.memory is not None:
            index = {id(p): i for i, p in enumerate(all_p)}
            mem = [all_u[index[id(p)]] if id(p) in index else torch.zeros_like(p) for p in self.memory.params]
            self.memory.project_(mem)
        return all_p, all_g, all_u

    @torch.no_grad()
    def step(
        self,
        closure: Callable[[], Tensor | float] | None = None,
        old_task_closure: Callable[[], Tensor | float] | None = None,
    ) -> Any:
        """One AdamW step, projected where flagged, Armijo-accepted when asked.

        With ``old_task_closure`` (it calls ``backward()`` on L_A) the certificate holds ``grad L_A . d`` for the
        proposed update ``d`` (eq:orthogonal); one more forward and backward pass.
        """
        if self.armijo and closure is None:
            raise RuntimeError("HybridAdamW(armijo=True) needs a closure that returns Phi (see kaplinskiy.optim)")
        if self.memory is not None:
            check_trainable(self.memory, (p for g in self.param_groups for p in g["params"]))
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        needed = self.check_finite or self.armijo  # a fused step without the check need not list them
        present = [p.grad for g in self.param_groups for p in g["params"] if p.grad is not None] if needed else []
        if self.defer_check:
            self._verdicts.settle(self.hybrid_state, wait=False)
            verdict = self._gradient_check(loss, present)
            prepared = self._fused.prepare(self.memory, self.param_groups, self.state, verdict.amax())
            self._fused_step(loss, closure, old_task_closure, prepared)
            self._verdicts.push(verdict, self.hybrid_state["step"], loss)
            return loss
        if self.fused:  # the host prepares the step while the device reduces the gradients for the check
            verdict = self._gradient_check(None, present) if self.check_finite else None
            prepared = self._fused.prepare(self.memory, self.param_groups, self.state, None)
            if verdict is not None and skip_for_verdict(loss, verdict, "HybridAdamW"):
                self.hybrid_state["skipped"] = self.hybrid_state.get("skipped", 0) + 1
                return loss
            self._fused_step(loss, closure, old_task_closure, prepared)
            return loss
        if self.check_finite and skip_step(loss, present, "HybridAdamW", check=self._gradient_check):
            self.hybrid_state["skipped"] = self.hybrid_state.get("skipped", 0) + 1
            return loss
        grads_before = copy_list(present) if self.armijo else None
        params, _, update = self._propose()
        old_slope = None
        if old_task_closure is not None:
            old_slope = dot(old_task_gradient(params, old_task_closure), update)
        lr = float(self.param_groups[0]["lr"])
        if self.armijo:
            slope = dot(grads_before, update)
            origin = copy_list(params)
            search = armijo_on_params(
                params,
                origin,
                update,
                closure,
                float(loss),
                slope,
                c=self.c,
                shrink=self.shrink,
                max_trials=self.max_trials,
            )
            passes, norm = 1 + search.n_trials, search.eta * sq_norm(update) ** 0.5
        else:
            torch._foreach_add_(params, update)
            phi = None if loss is None else float(loss)
            search, passes, norm = ArmijoResult(1.0, phi, None, None, 0, True), int(closure is not None), None
        passes += int(old_task_closure is not None)
        self._record(search, lr, passes, norm, old_slope)
        return loss

    def _record(self, search: ArmijoResult, lr: float, passes: int, norm: float | None, slope: float | None) -> None:
        """Count the step and keep its certificate."""
        self.hybrid_state["step"] += 1
        self.hybrid_state["certificate"] = Certificate.from_search(
            self.hybrid_state["step"], search, lr, passes, step_norm=norm, old_task_slope=slope
        ).as_dict()

    def _fused_step(self, loss: Any, closure: Any, old_task_closure: Any, prepared: Any) -> None:
        """The step of ``fused=True`` (:class:`~kaplinskiy.optim._fused_adamw.FusedAdamWStep`), certified."""
        slope = self._fused.step(self.memory, self.param_groups, self.state, prepared, old_task_closure)
        phi = None if loss is None or self.defer_check else float(loss)  # deferred: filled in with the verdict
        search = ArmijoResult(1.0, phi, None, None, 0, True)
        passes = int(closure is not None) + int(old_task_closure is not None)
        self._record(search, float(self.param_groups[0]["lr"]), passes, None, slope)
