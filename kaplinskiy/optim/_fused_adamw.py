"""The step of ``HybridAdamW(fused=True)``: AdamW and the layer-wise projection of its update (eq:projected_update) of
every Linear/Conv layer the grouped kernel takes in one launch (:mod:`kaplinskiy._kernels.adamw_rows`), torch's fused
AdamW for every other parameter, and the layers the kernel does not take projected around that step by the per-layer
path. What the host prepares (the plan, the lists of tensors, the launch) is kept between steps.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor
from torch.optim.adamw import adamw as functional_adamw

from .._kernels.adamw_rows import AdamWRowPlan
from .._kernels.launch import Launch
from .._tensor_lists import copy_list, dot
from ..memory.layerwise.memory import LayerwiseMemory
from ._acceptance import old_task_gradient

__all__ = ["FusedAdamWStep", "refuse_sparse"]


@dataclass
class _FusedLists:
    """What a fused step hands to its kernels: the parameters with a gradient; the kernel's tensors' moments and
    step counts and their groups' indices (in the plan's order); per group, torch's fused AdamW calls; and per
    parameter its state dict and tensors, to tell whether the state was replaced since."""

    params: list[Tensor]
    kernel_moments: list[Any]
    kernel_groups: list[int]
    rest: list[list[tuple[Any, ...]]]
    kernel_steps: list[Tensor] = field(default_factory=list)
    states: list[tuple[Any, ...]] = field(default_factory=list)

    def hold(self, state: Any) -> bool:
        """Whether ``state`` (the optimizer's) still holds, for every parameter, the dict and tensors these lists
        hold (not after ``state.clear()``, a new dict, or a moment replaced)."""
        return all(
            (st := state.get(p)) is d and st.get("exp_avg") is m and st.get("exp_avg_sq") is v and st.get("step") is t
            for p, (d, m, v, t) in zip(self.params, self.states, strict=True)
        )


@dataclass
class _PreparedStep:
    """The host's part of a fused step, made before the finite check's verdict is read (it moves nothing, and
    creates no state): the kernel's plan, the layers outside it, and, while the kept lists hold, those lists,
    the groups' hyperparameters and the kernel's launch."""

    plan: AdamWRowPlan | None
    outside_layers: list[int]
    skip: Tensor | None
    lists: _FusedLists | None = None
    hyper: list[tuple[float, ...]] = field(default_factory=list)
    launch: Launch | None = None


class FusedAdamWStep:
    """A fused optimizer's host side: the kernel's plan over a memory's layers (``None`` without a memory, or
    without Triton or CUDA: every parameter then goes through torch's fused AdamW) and the lists it keeps while the
    plan, the groups, the parameters with a gradient and their state stay the same."""

    def __init__(self) -> None:
        self.plan: AdamWRowPlan | None = None
        self._cache: tuple[Any, _FusedLists] | None = None

    def __getstate__(self) -> dict[str, Any]:
        """A copy rebuilds the plan and lists (they hold the original's tensors)."""
        return {"plan": None, "_cache": None}

    def forget(self) -> None:
        """Drop the kept lists (the groups or the state tensors they hold are being replaced)."""
        self._cache = None

    def prepare(
        self, memory: LayerwiseMemory | None, param_groups: list[dict[str, Any]], state: Any, skip: Tensor | None
    ) -> _PreparedStep:
        """The host's part of a step: nothing moves, no state is created, so a step the check then rejects
        leaves everything as it was. Raises if a projected layer has no gradient."""
        rows, layers, outside_layers = memory.fused_layers() if memory is not None else (None, [], [])
        if rows is None:
            self.plan = None
        elif self.plan is None or self.plan.rows is not rows:
            self.plan = AdamWRowPlan(rows, layers)
        if self.plan is not None:
            self.plan.check_gradients()
        prepared = _PreparedStep(self.plan, outside_layers, skip, self._kept_lists(param_groups, state))
        if prepared.lists is not None:
            _prepare_launch(param_groups, prepared)
        return prepared

    def step(
        self,
        memory: LayerwiseMemory | None,
        param_groups: list[dict[str, Any]],
        state: Any,
        prepared: _PreparedStep,
        old_task_closure: Callable[[], Tensor | float] | None = None,
    ) -> float | None:
        """The step: the projected layers in one grouped launch (AdamW, then ``C = Delta U`` and
        ``w <- w - C U^T``), every other parameter through torch's fused AdamW (with lr 0, so that only its
        moments move, for a parameter the memory freezes); the layers the kernel does not take (embeddings'
        protected rows, a weight tied to another layer) are projected by the per-layer path around it, from their
        coordinates taken before the step. Where the device flag ``prepared.skip`` is 1, nothing moves (torch's
        ``found_inf``; the step counts are set back). Returns ``grad L_A . (w1 - w0)`` when ``old_task_closure``
        is given (it calls ``backward()`` on L_A), else None."""
        skip = prepared.skip
        if prepared.lists is None:  # a first step (or one after the state changed): the lists, with new state
            prepared.lists = self._lists(memory, param_groups, state)
            _prepare_launch(param_groups, prepared)
        lists = prepared.lists
        witness = None
        if old_task_closure is not None:  # grad L_A and w0, to certify grad L_A . (w1 - w0) after the step
            witness = (old_task_gradient(lists.params, old_task_closure), copy_list(lists.params))
        outside = memory.outside_coefficients(prepared.outside_layers) if prepared.outside_layers else {}
        for parts, (lr, weight_decay, beta1, beta2, eps) in zip(lists.rest, prepared.hyper, strict=True):
            for is_frozen, ps, exp_avgs, exp_avg_sqs, steps in parts:
                functional_adamw(
                    ps,
                    [p.grad for p in ps],
                    exp_avgs,
                    exp_avg_sqs,
                    [],
                    steps,
                    fused=True,
                    amsgrad=False,
                    beta1=beta1,
                    beta2=beta2,
                    lr=0.0 if is_frozen else lr,
                    weight_decay=weight_decay,
                    eps=eps,
                    maximize=False,
                    found_inf=skip,
                )
        if prepared.launch is not None:
            torch._foreach_add_(lists.kernel_steps, 1)
            prepared.launch()
            if skip is not None:
                torch._foreach_sub_(lists.kernel_steps, [skip] * len(lists.kernel_steps))
        if outside:
            memory.restore_outside_(outside, skip)
        return None if witness is None else dot(witness[0], torch._foreach_sub(lists.params, witness[1]))

    def _kept_lists(self, param_groups: list[dict[str, Any]], state: Any) -> _FusedLists | None:
        """The kept lists, if the plan, the groups, the parameters with a gradient and their state are the same."""
        cache = self._cache
        key = _lists_key(self.plan, param_groups)
        return cache[1] if cache is not None and cache[0] == key and cache[1].hold(state) else None

    def _lists(self, memory: LayerwiseMemory | None, param_groups: list[dict[str, Any]], state: Any) -> _FusedLists:
        """Which parameters the kernel steps and which torch's fused AdamW does, with their state tensors (created
        on a parameter's first step); kept, so that a step does not rebuild them."""
        kept = self._kept_lists(param_groups, state)
        if kept is not None:
            return kept
        refuse_sparse(param_groups)
        plan = self.plan
        in_kernel = {id(p): i for i, p in enumerate(plan.tensors)} if plan is not None else {}
        frozen = {id(p) for p in memory.frozen_params()} if memory is not None else set()
        lists = _FusedLists([], [None] * len(in_kernel), [0] * len(in_kernel), [])
        for gi, group in enumerate(param_groups):
            rest: dict[bool, list[Tensor]] = {False: [], True: []}
            for p in group["params"]:
                if p.grad is None:
                    continue
                lists.params.append(p)
                st = state[p]
                if len(st) == 0:
                    st["step"] = torch.zeros((), dtype=torch.float32, device=p.device)
                    st["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    st["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                if id(p) in in_kernel:
                    i = in_kernel[id(p)]
                    lists.kernel_moments[i] = (st["exp_avg"], st["exp_avg_sq"], st["step"])
                    lists.kernel_groups[i] = gi
                else:
                    rest[id(p) in frozen].append(p)
            lists.rest.append(
                [
                    (is_frozen, ps, *([state[p][k] for p in ps] for k in ("exp_avg", "exp_avg_sq", "step")))
                    for is_frozen, ps in rest.items()
                    if ps
                ]
            )
        lists.kernel_steps = [m[2] for m in lists.kernel_moments]
        lists.states = [(st := state[p], st["exp_avg"], st["exp_avg_sq"], st["step"]) for p in lists.params]
        self._cache = (_lists_key(plan, param_groups), lists)
        return lists


def _lists_key(plan: AdamWRowPlan | None, param_groups: list[dict[str, Any]]) -> tuple[Any, ...]:
    """What the kept lists depend on besides the state: the plan, the number of groups and which parameters have
    a gradient."""
    return (plan, len(param_groups), tuple(p.grad is not None for g in param_groups for p in g["params"]))


def _prepare_launch(param_groups: list[dict[str, Any]], prepared: _PreparedStep) -> None:
    """The groups' hyperparameters and the kernel's launch (its tables uploaded without a synchronisation)."""
    # as numbers: a tensor lr that a scheduler fills in place must still change the kernel's table
    prepared.hyper = [tuple(map(float, (g["lr"], g["weight_decay"], *g["betas"], g["eps"]))) for g in param_groups]
    if prepared.plan is not None:
        lists = prepared.lists
        kernel_hyper = [prepared.hyper[g] for g in lists.kernel_groups]
        prepared.launch = prepared.plan.launch(lists.kernel_moments, kernel_hyper, prepared.skip)


def refuse_sparse(param_groups: list[dict[str, Any]]) -> None:
    """Raise before anything moves if a gradient is sparse (``torch.optim.AdamW`` refuses them too)."""
    if any(p.grad is not None and p.grad.is_sparse for g in param_groups for p in g["params"]):
        raise RuntimeError(
            "HybridAdamW does not support sparse gradients (nn.Embedding(sparse=True)); use sparse=False, or "
            "torch.optim.SparseAdam for those parameters"
        )
