"""Checks on param groups shared by the optimizers whose groups carry a ``project`` flag (Muon's ``use_muon`` idea)."""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from typing import Any

from ..memory.base import ProjectionMemory

__all__ = ["check_group_keys", "check_memory_covers_projected_groups"]


# Hyperparameters of torch.optim's optimizers: set in a group of an optimizer that lacks them, they would be
# silently ignored, so they are refused (any other key, a name or timm's lr_scale, is kept as torch.optim keeps it).
_FOREIGN_HYPERPARAMETERS = frozenset(
    {
        "alpha", "amsgrad", "beta1", "beta2", "betas", "capturable", "centered", "dampening",
        "decoupled_weight_decay", "differentiable", "eps", "etas", "foreach", "fused", "history_size",
        "initial_accumulator_value", "lambd", "line_search_fn", "lr", "lr_decay", "max_eval", "max_iter",
        "maximize", "momentum", "momentum_decay", "nesterov", "ns_coefficients", "ns_steps", "rho", "step_sizes",
        "t0", "tolerance_change", "tolerance_grad", "weight_decay",
    }
)  # fmt: skip


def check_group_keys(param_group: Mapping[str, Any], defaults: Mapping[str, Any]) -> None:
    """Raise ``ValueError`` naming a key of ``param_group`` that this optimizer would silently ignore: another
    torch optimizer's hyperparameter, or a near miss of one of ``defaults`` (a typo). Other keys are kept."""
    for key in sorted(set(param_group) - {"params", *defaults}):
        near = difflib.get_close_matches(key, list(defaults), n=1, cutoff=0.8)
        if key in _FOREIGN_HYPERPARAMETERS or near:
            hint = f" (did you mean {near[0]}?)" if near else " (this optimizer has no such hyperparameter)"
            raise ValueError(f"Invalid param group key: {key}{hint}")


def check_memory_covers_projected_groups(
    param_groups: Iterable[Mapping[str, Any]], memory: ProjectionMemory | None
) -> None:
    """Raise ``ValueError`` if ``memory`` holds a parameter that no group with ``project=True`` updates."""
    if memory is None:
        return
    projected = {id(p) for g in param_groups if g["project"] for p in g["params"]}
    if any(id(p) not in projected for p in memory.params):
        raise ValueError("Invalid memory: it covers parameters outside the groups with project=True")
