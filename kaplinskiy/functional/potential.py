"""The potential Phi(w) = sum_i a_i L_i(w) + R(w) (eq:potential) and its L2-SP regulariser.

Pure functions of tensors: they work on a flat parameter vector or on a list of parameter tensors
(as ``module.parameters()`` gives), so an optimizer and an experiment share the same equations.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from .._tensor_lists import at_least_float32

__all__ = ["l2sp_penalty", "potential"]


def l2sp_penalty(params: Tensor | Sequence[Tensor], anchors: Tensor | Sequence[Tensor], lam: float) -> Tensor:
    """L2-SP's ``R(w) = (lam/2) ||w - w_A||^2`` (eq:ewc_penalty), F = I, in at least float32.

    ``params`` and ``anchors`` are matching tensors or matching sequences of tensors; ``lam >= 0``.
    """
    if not lam >= 0.0:
        raise ValueError(f"Invalid lam: {lam}")
    ps = [params] if isinstance(params, Tensor) else list(params)
    anc = [anchors] if isinstance(anchors, Tensor) else list(anchors)
    if len(ps) != len(anc):
        raise ValueError(f"Invalid anchors: {len(anc)} anchor tensors for {len(ps)} parameter tensors")
    total = at_least_float32(ps[0].new_zeros(()))
    for p, a in zip(ps, anc, strict=True):
        if p.shape != a.shape:
            raise ValueError(f"Invalid anchors: shape {tuple(a.shape)} does not match parameter shape {tuple(p.shape)}")
        total = total + at_least_float32(p - a).pow(2).sum()
    return 0.5 * lam * total


def potential(losses: Sequence[Tensor], alphas: Sequence[float], reg: Tensor | float = 0.0) -> Tensor:
    """``Phi = sum_i a_i L_i + R`` (eq:potential) with task weights ``a_i > 0`` and a regulariser ``R``."""
    if len(losses) == 0:
        raise ValueError("Invalid losses: at least one task loss is needed")
    if len(losses) != len(alphas):
        raise ValueError(f"Invalid alphas: {len(alphas)} weights for {len(losses)} losses")
    for a in alphas:
        if not a > 0.0:
            raise ValueError(f"Invalid alpha: {a}")
    total = sum((a * loss for a, loss in zip(alphas, losses, strict=True)), start=torch.zeros_like(losses[0]))
    return total + reg
