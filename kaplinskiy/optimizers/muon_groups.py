"""Param groups of the Muon-family optimizers (LionMuon, SoftMuon): a ``use_muon`` flag per group, as Keller
Jordan's ``MuonWithAuxAdam``. Groups with ``use_muon=True`` hold matrices; the others (embeddings, biases, norms)
take AdamW steps with their own ``lr``, ``adamw_betas``, ``adamw_eps`` and ``weight_decay``."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from ..optim.hybrid_adamw import adamw_update
from .group_optimizer import GroupStepOptimizer

__all__ = ["MuonGroupOptimizer", "aux_adamw_step", "check_muon_group", "muon_param_groups"]


def muon_param_groups(model: nn.Module, **adamw_group: Any) -> list[dict[str, Any]]:
    """Two param groups: the trainable hidden matrices (Linear and Conv weights) with ``use_muon=True``, and with
    ``use_muon=False`` everything else, updated with ``adamw_group``'s settings (``lr``, ``adamw_betas``, ...):
    embeddings, biases, norms, and the output head, as Muon's authors advise (a head tied to an embedding shares
    its weight; an untied one is found by Hugging Face's ``get_output_embeddings()``). A group left empty is
    dropped."""
    embedded = {id(m.weight) for m in model.modules() if isinstance(m, (nn.Embedding, nn.EmbeddingBag))}
    head = model.get_output_embeddings() if callable(getattr(model, "get_output_embeddings", None)) else None
    if isinstance(getattr(head, "weight", None), Tensor):
        embedded.add(id(head.weight))
    matrices, others = [], []
    for p in model.parameters():
        if p.requires_grad:
            (matrices if p.ndim >= 2 and id(p) not in embedded else others).append(p)
    groups = [{"params": matrices, "use_muon": True}, {"params": others, "use_muon": False, **adamw_group}]
    return [g for g in groups if g["params"]]


def check_muon_group(group: dict[str, Any]) -> None:
    """Raise ``ValueError`` for a non-matrix parameter in a group with ``use_muon=True``."""
    for p in group["params"]:
        if group["use_muon"] and p.ndim < 2:
            raise ValueError(
                f"Invalid param group: a parameter of shape {tuple(p.shape)} in a group with use_muon=True; Muon "
                "steps take matrices: put it in a group with use_muon=False (see muon_param_groups)"
            )


def aux_adamw_step(state: dict[Tensor, dict[str, Any]], group: dict[str, Any], params: list[Tensor]) -> None:
    """The AdamW step (decoupled weight decay) of a ``use_muon=False`` group's parameters with gradients."""
    beta1, beta2 = group["adamw_betas"]
    for p in params:
        s = state[p]
        if len(s) == 0:
            s["step"] = 0
            s["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            s["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        s["step"] += 1
        grad = -p.grad if group["maximize"] else p.grad
        (update,) = adamw_update(
            [p],
            [grad],
            [s["exp_avg"]],
            [s["exp_avg_sq"]],
            s["step"],
            lr=group["lr"],
            beta1=beta1,
            beta2=beta2,
            eps=group["adamw_eps"],
            weight_decay=group["weight_decay"],
        )
        p.add_(update)


class MuonGroupOptimizer(GroupStepOptimizer):
    """An optimizer whose ``use_muon=True`` groups hold matrices, stepped by ``_matrix_step(group, params)``, and
    whose other groups take :func:`aux_adamw_step`."""

    def _check_group(self, group: dict[str, Any]) -> None:
        super()._check_group(group)
        check_muon_group(group)

    def _step_group(self, group: dict[str, Any], params: list[Tensor]) -> None:
        if group["use_muon"]:
            self._matrix_step(group, params)
        else:
            aux_adamw_step(self.state, group, params)

    def _matrix_step(self, group: dict[str, Any], params: list[Tensor]) -> None:
        raise NotImplementedError
