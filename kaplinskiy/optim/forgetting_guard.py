"""ForgettingGuard: any torch optimizer's step projected out of a memory G_A (eq:projected_update).

The wrapper delegates ``param_groups``, ``state``, ``defaults``, ``zero_grad`` and ``add_param_group`` to the
base optimizer, like schedule_free's ``ScheduleFreeWrapper``, so LR schedulers and training loops see the
base optimizer. ``step`` is pre-process, ``base.step()``, post-process:

* ``project="update"`` (the default): ``w+ = w + P_perp (base(w) - w)`` after ``base.step()`` (eq:projected_update;
  Adam-NSCL's idea, for any optimizer: AdamW, Muon, Lion...). eq:orthogonal holds for every base optimizer, weight
  decay included.
* ``project="gradient"``: ``g <- P_perp g`` before ``base.step()`` (eq:projected). Cheap; eq:orthogonal holds for
  optimizers whose update is a linear combination of past projected gradients (SGD with momentum, no weight
  decay), once the momentum gathered before the memory was built has decayed (reset the base optimizer's state at
  a task switch to have it from the first step).
* ``armijo=True`` (needs a closure): the projected step is scaled by backtracking until Phi decreases (eq:armijo).

In update mode a guarded step leaves the memory's coordinates ``Q^T w`` where they were before it, so with
``reuse_coefficients=True`` they are computed once and kept: a step then reads the covered weights twice
instead of three times. The kept coordinates are dropped whenever a covered parameter is replaced or changed
in place through a torch operation (its version counter moves) or the memory changes; a write through
``p.data`` is invisible to torch's version counters, so leave the flag off when anything else moves the
parameters that way between steps (weight averaging through ``.data``, for example). The kept coordinates are
not saved in ``state_dict()``: a run resumed from a checkpoint recomputes them once, so it matches the
uninterrupted run to rounding rather than bit for bit (with the flag off, it matches bit for bit).

Precision of update mode: in place, the step's coordinates are the difference ``Q^T w1 - Q^T w0`` of two
products of the weights, so the projection leaves an error of about float epsilon times the weights' own
coordinates ``|Q^T w|``, whatever the step's size. That is negligible while steps are large against ``1e-6 |w|``
in float32; below that (plain SGD with a tiny learning rate, weights far along the memory) it is not, and
``from_copy=True`` takes the update as ``base(w) - w`` from a copy of the parameters, whose projection error is
epsilon times the step (one copy of the parameters more per step). ``HybridAdamW`` projects the update itself.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor
from torch.optim import Optimizer

from .._kernels.gradient_check import GradientCheck
from .._tensor_lists import any_dtensor, copy_list, dot, drop_zero_grads, grads_of, sq_norm
from ..functional.armijo import ArmijoResult, check_armijo_args
from ..memory.base import ProjectionMemory, check_trainable
from ._acceptance import Certificate, armijo_on_params, old_task_gradient, skip_step
from ._finite_check import VerdictQueue, found_inf, takes_found_inf
from .wrapper import OptimizerWrapper

__all__ = ["ForgettingGuard", "GradientModeWarning"]

_MODES = ("gradient", "update")


class GradientModeWarning(UserWarning):
    """``project="gradient"`` around a base optimizer whose step is not a linear combination of the projected
    gradients: its steps are not orthogonal to the memory, so the old outputs move at first order."""


class ForgettingGuard(OptimizerWrapper):
    """Wrap ``base`` so that its steps never move along the memory ``G_A`` (eq:projected_update).

    Args:
        base: any ``torch.optim.Optimizer`` over (a superset of) ``memory.params``.
        memory: a :class:`~kaplinskiy.DenseMemory` or :class:`~kaplinskiy.LayerwiseMemory`.
        project: ``"update"`` (default, exact for every base optimizer) or ``"gradient"`` (exact for SGD without
            weight decay; a :class:`GradientModeWarning` around any other base).
        armijo: accept the step by backtracking on the closure's Phi (eq:armijo).
        c, shrink, max_trials: the Armijo constant, backtracking factor and trial cap.
        certify: also measure how far each step leaves the memory, ``||Q^T d||``, for the certificate (one more
            pass over the memory).
        reuse_coefficients: keep the memory's coordinates of the weights from one update-mode step to the next,
            one pass over the covered weights less per step (when not to: the module docstring).
        from_copy: in update mode, form the update from a copy of the parameters: precise for tiny steps, at one
            copy of the parameters per step (the module docstring). Always so for a memory with tied weights.
        check_finite: skip a step whose loss or gradient is NaN or infinite (with a
            :class:`~kaplinskiy.NonFiniteStepWarning`) or whose gradient is all zero, at one read of the gradients
            and a wait for its result per step. Turn it off only where something else skips such steps (a
            ``GradScaler`` does).
        defer_check: make that check without holding the step up: the base optimizer skips a rejected step
            itself, and the warning comes a step or two later (or when ``certificate`` is read). Needs torch's
            fused Adam, AdamW or SGD as the base, update mode, no Armijo and no tied weights; tested on the CPU and
            on an H100 GPU. Off by default, so that a rejected step is reported at once.

    A step skipped by the finite check leaves parameters and state bit-identical, deferred or not (up to the sign
    of a zero weight; a skipped first step creates the base optimizer's zero state, as under a ``GradScaler``).
    A step rejected by Armijo's test (``certificate["accepted"]`` false) leaves the parameters where they were,
    but not the base optimizer's state: its moments have absorbed the gradient, as in ``HybridAdamW``.

    The last step's :class:`~kaplinskiy.Certificate` is ``guard.certificate`` (a dict); it and the step
    counter travel in ``state_dict()["forgetting_guard"]``. The memory has its own ``state_dict``.
    """

    state_key = "forgetting_guard"

    def __init__(
        self,
        base: Optimizer,
        memory: ProjectionMemory,
        *,
        project: str = "update",
        armijo: bool = False,
        c: float = 1e-4,
        shrink: float = 0.5,
        max_trials: int = 20,
        certify: bool = False,
        reuse_coefficients: bool = False,
        from_copy: bool = False,
        check_finite: bool = True,
        defer_check: bool = False,
    ) -> None:
        super().__init__(base)
        if project not in _MODES:
            raise ValueError(f"Invalid project: {project}")
        if from_copy and (project != "update" or reuse_coefficients):
            raise ValueError("Invalid from_copy: it is a way of update mode, and keeps no coordinates to reuse")
        check_armijo_args(c, shrink, max_trials)
        if armijo:
            _check_minimizes(base)
        if project == "gradient":
            _check_linear(base)
        owned = {id(p) for g in base.param_groups for p in g["params"]}
        if any(id(p) not in owned for p in memory.params):
            hint = ""
            if any_dtensor(memory.params):
                hint = (
                    " (under FSDP2's fully_shard, a forward without backward leaves the root module's parameters "
                    "gathered: call model.reshard() before building the base optimizer)"
                )
            raise ValueError(f"Invalid memory: it covers parameters the base optimizer does not update{hint}")
        if any_dtensor(memory.params):
            _check_sharded(armijo=armijo, certify=certify, reuse_coefficients=reuse_coefficients)
        self.memory = memory
        self.project, self.armijo, self.certify = project, armijo, certify
        self.reuse_coefficients, self.check_finite = reuse_coefficients, check_finite
        self.from_copy = from_copy or not memory.linear_split
        deferrable = check_finite and project == "update" and not armijo and not self.from_copy
        if defer_check and not (deferrable and takes_found_inf(base)):
            raise ValueError(
                "Invalid defer_check: it needs a base optimizer that takes found_inf (torch's fused Adam, AdamW or "
                "SGD), check_finite, project='update', no Armijo search, no from_copy and a memory without tied "
                "weights"
            )
        self.defer_check = defer_check
        self._verdicts = VerdictQueue("ForgettingGuard")
        self._gradient_check = GradientCheck()
        self._kept: tuple[list[tuple[Tensor, int]], list[tuple[Tensor, int]], list[Tensor]] | None = None
        self.c, self.shrink, self.max_trials = c, shrink, max_trials
        self.wrapper_state["certificate"] = None
        self.wrapper_state["skipped"] = 0

    @property
    def guard_state(self) -> dict[str, Any]:
        """The step counter and the last certificate (saved in ``state_dict()["forgetting_guard"]``)."""
        return self.wrapper_state

    @property
    def certificate(self) -> dict[str, Any] | None:
        """The certificate of the last step taken, as plain values (``None`` before the first); a step skipped
        for a zero or non-finite gradient leaves it as it was (counted in ``"skipped"``), so its ``step``
        tells. With a deferred check, a non-finite step is certified as not accepted, and reading the certificate
        waits for the pending verdicts, so that ``accepted`` is final."""
        self._settle(wait=True)
        return self.wrapper_state["certificate"]

    def state_dict(self) -> dict[str, Any]:
        """The base optimizer's state and the guard's record (pending verdicts are read first)."""
        self._settle(wait=True)
        return super().state_dict()

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned (pending verdicts are read first, into the record being
        replaced)."""
        self._settle(wait=True)
        self._kept = None
        super().load_state_dict(state_dict)

    def __getstate__(self) -> dict[str, Any]:
        """What ``copy.deepcopy`` and ``pickle`` keep; pending verdicts are read first (a CUDA event does not copy)."""
        self._settle(wait=True)
        return super().__getstate__()

    def _settle(self, *, wait: bool) -> None:
        """Read the deferred checks' verdicts that have reached the host (all of them, when ``wait``)."""
        self._verdicts.settle(self.wrapper_state, wait=wait)

    @torch.no_grad()
    def step(
        self,
        closure: Callable[[], Tensor | float] | None = None,
        old_task_closure: Callable[[], Tensor | float] | None = None,
    ) -> Any:
        """Project, step the base optimizer, project its update, and (optionally) accept it by Armijo.

        With ``old_task_closure`` (a closure that calls ``backward()`` on L_A), the certificate also holds
        ``grad L_A . d`` for the step ``d`` actually taken (eq:orthogonal), at the cost of one more forward and
        backward pass and a copy of the parameters.
        """
        if self.armijo and closure is None:
            raise RuntimeError("ForgettingGuard(armijo=True) needs a closure that returns Phi (see kaplinskiy.optim)")
        if self.armijo:  # a group added since, or a flag set since
            _check_minimizes(self.base)
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        params = self._params()
        grads = [p.grad for p in params if p.grad is not None]
        verdict = None
        if self.defer_check:
            self._settle(wait=False)
            verdict = self._gradient_check(loss, grads)
        elif self.check_finite and skip_step(loss, grads, "ForgettingGuard", check=self._gradient_check):
            self.guard_state["skipped"] = self.guard_state.get("skipped", 0) + 1
            return loss
        check_trainable(self.memory, params)
        mem = self.memory.params
        witness = None
        if old_task_closure is not None:  # grad L_A and w0, to certify grad L_A . (w1 - w0) after the step
            witness = (old_task_gradient(params, old_task_closure), copy_list(params))
        filled = []
        if self.project == "gradient":  # a missing gradient is zero, and stays missing if projected to zero
            filled = [p for p in mem if p.grad is None]
            for p in filled:
                p.grad = torch.zeros_like(p)
        if not self.armijo:
            if verdict is not None:
                residual = self._step_in_place(mem, skip=verdict.amax())
                self._record(None, None, closure, residual, None, witness)
                self._verdicts.push(verdict, self.guard_state["step"], loss)
                return loss
            if not self.from_copy or self.project == "gradient":
                residual = self._step_in_place(mem, filled=filled)
            else:  # the update from a copy (asked for, or a projection that does not split: tied weights)
                origin, residual = self._step_from_copy(params, mem, filled)
                torch._foreach_add_(params, origin)
            self._record(None, loss, closure, residual, None, witness)
            return loss
        raw = copy_list(grads_of(params))
        origin, residual = self._step_from_copy(params, mem, filled)
        update = copy_list(params)
        search = armijo_on_params(
            params,
            origin,
            update,
            closure,
            float(loss),
            dot(raw, update),
            c=self.c,
            shrink=self.shrink,
            max_trials=self.max_trials,
        )
        self._record(search, loss, closure, residual, update, witness)
        return loss

    def _step_from_copy(
        self, params: list[Tensor], mem: list[Tensor], filled: list[Tensor]
    ) -> tuple[list[Tensor], float | None]:
        """``base.step()`` from a copy ``w0`` of the parameters; leaves the projected update in ``p``."""
        if self.project == "gradient":
            self.memory.project_([p.grad for p in mem])
            drop_zero_grads(filled)
        origin = copy_list(params)
        self.base.step()
        torch._foreach_sub_(params, origin)
        if self.project == "update":
            self.memory.project_(mem)
        return origin, (self.memory.residual(mem) if self.certify else None)

    def _step_in_place(
        self, mem: list[Tensor], skip: Tensor | None = None, filled: list[Tensor] | None = None
    ) -> float | None:
        """The full projected step; returns ``||Q^T d||`` when certifying.

        In update mode the projection is linear, so ``w1 - Q Q^T (w1 - w0)`` needs only the memory's
        coordinates of ``w0`` taken before ``base.step()``: no copy of the parameters is made. ``skip`` (a
        device flag, update mode) is handed to the base optimizer as ``found_inf`` and to the projection.
        ``filled``: the parameters given a zero gradient for the projection (gradient mode).
        """
        if self.project == "gradient":
            grads = [p.grad for p in mem]
            self.memory.project_(grads)
            drop_zero_grads(filled or [])
            residual = self.memory.residual(grads) if self.certify else None
            self.base.step()
            return residual
        before = self._coefficients_before(mem)
        if skip is None:
            self.base.step()
            self.memory.restore_(mem, before)
        else:
            with found_inf(self.base, skip):
                self.base.step()
            self.memory.restore_(mem, before, skip=skip)
        if self.reuse_coefficients:  # Q^T w is back at `before` (Q^T Q = I)
            self._kept = (_stamp(mem), _stamp(self.memory.stored_tensors()), before)
        if not self.certify:
            return None
        left = torch._foreach_sub(self.memory.coefficients(mem), before)
        return float(sum(float(c.double().pow(2).sum()) for c in left) ** 0.5)

    def _coefficients_before(self, mem: list[Tensor]) -> list[Tensor]:
        """``Q^T w``: the kept coordinates when nothing has moved since the last step, else computed."""
        kept, self._kept = self._kept, None
        if kept is not None and _unchanged(kept[0], mem) and _unchanged(kept[1], self.memory.stored_tensors()):
            return kept[2]
        return self.memory.coefficients(mem)

    def _record(
        self,
        search: ArmijoResult | None,
        loss: Any,
        closure: Any,
        residual: float | None,
        update: list[Tensor] | None,
        witness: tuple[list[Tensor], list[Tensor]] | None = None,
    ) -> None:
        """Count the step and store its certificate; without a search the step is taken whole (t = 1)."""
        self.guard_state["step"] += 1
        old_slope = None
        if witness is not None:
            grad_a, w0 = witness
            old_slope = dot(grad_a, torch._foreach_sub(self._params(), w0))
        lr = float(self.param_groups[0]["lr"])
        if search is None:  # the step taken whole: t = 1, nothing tried
            search, norm = ArmijoResult(1.0, None if loss is None else float(loss), None, None, 0, True), None
            passes = int(closure is not None) + int(witness is not None)
        else:
            norm = search.eta * sq_norm(update) ** 0.5
            passes = 1 + search.n_trials + int(witness is not None)
        measured = dict(step_norm=norm, memory_residual=residual, old_task_slope=old_slope)
        cert = Certificate.from_search(self.guard_state["step"], search, lr, passes, **measured)
        self.guard_state["certificate"] = cert.as_dict()


def _check_minimizes(base: Optimizer) -> None:
    """Armijo's test (eq:armijo) accepts a decrease of the closure's Phi: a base optimizer that maximizes would
    propose an ascent step, and every step would be rejected."""
    if any(g.get("maximize", False) for g in base.param_groups):
        raise ValueError(
            "Invalid armijo: the base optimizer maximizes (maximize=True), and the line search accepts decreases of "
            "the closure's Phi; minimize -objective instead"
        )


def _check_linear(base: Optimizer) -> None:
    """Warn where gradient mode does not keep its steps orthogonal to the memory: a base other than ``torch.optim.SGD``
    (Adam's and Lion's steps scale each coordinate by its own history, Muon's orthogonalises the momentum), or SGD with
    weight decay (it adds ``lambda w`` to the projected gradient)."""
    decays = any(g.get("weight_decay", 0) for g in base.param_groups)
    if isinstance(base, torch.optim.SGD) and not decays:
        return
    why = "adds weight decay to the projected gradient" if isinstance(base, torch.optim.SGD) else "is not SGD"
    warnings.warn(
        f"ForgettingGuard(project='gradient') around {type(base).__name__}, which {why}: its steps are not a linear "
        "combination of the projected gradients, so they are not orthogonal to the memory and the old outputs move; "
        "project='update' (the default) projects the step itself",
        GradientModeWarning,
        stacklevel=3,
    )


def _check_sharded(**flags: bool) -> None:
    """Refuse what a guard over DTensors (FSDP2's ``fully_shard``) cannot do right: with ``armijo`` each rank would
    judge the step on its own loss, and ``certify`` would measure its own shard; ``reuse_coefficients`` would miss
    a foreach write (an optimizer's, a weight average's), which moves neither a DTensor's version counter nor its
    shard's."""
    on = [name for name, value in flags.items() if value]
    if on:
        raise ValueError(
            f"Invalid {on[0]}: the parameters are DTensors (FSDP2's fully_shard or distribute_tensor), and the guard "
            "takes armijo, certify and reuse_coefficients only on ordinary tensors; leave them off, or use "
            "DistributedDataParallel"
        )


def _stamp(tensors: list[Tensor]) -> list[tuple[Tensor, int]]:
    """Each tensor with its version counter (the reference keeps it alive, so identity cannot be reused)."""
    return [(t, t._version) for t in tensors]


def _unchanged(stamp: list[tuple[Tensor, int]], tensors: list[Tensor]) -> bool:
    """The same tensors as stamped, none changed in place since."""
    if len(stamp) != len(tensors):
        return False
    return all(t is s and t._version == v for (s, v), t in zip(stamp, tensors, strict=True))
