"""Small operations on lists of tensors (one per parameter), the way torch.optim handles parameters.

The optimizers never flatten a model into one vector: they walk the parameter list, as LBFGS's
``_gather_flat_grad`` and ``_add_grad`` do, so memory stays at one copy per parameter.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

__all__ = ["all_finite", "assign_", "copy_list", "dot", "grads_of", "is_all_zero", "max_abs", "sq_norm"]


def grads_of(params: Sequence[Tensor]) -> list[Tensor]:
    """The gradients of ``params``, with a zero tensor where ``p.grad`` is ``None``."""
    return [torch.zeros_like(p) if p.grad is None else p.grad for p in params]


def copy_list(tensors: Sequence[Tensor]) -> list[Tensor]:
    """Detached copies, bit for bit."""
    return [t.detach().clone() for t in tensors]


def max_abs(tensors: Sequence[Tensor]) -> Tensor:
    """The largest ``|entry|`` of each tensor (NaN where a tensor holds a NaN), by ``aminmax``.

    One pass per tensor, no overflow (unlike a 2-norm) and no temporary of the tensor's size (unlike
    ``isfinite``); reading the result is one host synchronisation.
    """
    peaks = []
    for t in tensors:
        if t.numel():
            lo, hi = torch.aminmax(t.detach())
            peaks.append(torch.maximum(lo.abs(), hi.abs()).float())
    return torch.stack(peaks) if peaks else torch.zeros(0)


def all_finite(tensors: Sequence[Tensor]) -> bool:
    """True when no entry of any tensor is NaN or infinite."""
    return bool(torch.isfinite(max_abs(tensors)).all())


def is_all_zero(tensors: Sequence[Tensor]) -> bool:
    """True when every tensor is exactly zero (or the list is empty)."""
    return bool((max_abs(tensors) == 0).all())


def dot(a: Sequence[Tensor], b: Sequence[Tensor]) -> float:
    """The Euclidean inner product of two matching tensor lists, accumulated in float64."""
    total = torch.zeros((), dtype=torch.float64, device=a[0].device if len(a) else None)
    for x, y in zip(a, b, strict=True):
        total = total + (x.double() * y.double()).sum()
    return float(total)


def sq_norm(a: Sequence[Tensor]) -> float:
    """The squared Euclidean norm of a tensor list, accumulated in float64."""
    return dot(a, a)


@torch.no_grad()
def assign_(params: Sequence[Tensor], origin: Sequence[Tensor], t: float, direction: Sequence[Tensor]) -> None:
    """Set ``p = origin + t * direction`` in place for every parameter (``t = 0`` restores ``origin`` exactly)."""
    for p, w, d in zip(params, origin, direction, strict=True):
        if t == 0.0:
            p.copy_(w)
        else:
            p.copy_(w + t * d)
