"""The anchoring regulariser R(w) (eq:ewc_penalty): L2-SP (F = I) or EWC (diagonal Fisher), online.

:class:`ElasticAnchor` keeps the anchor ``w_A*`` and the accumulated diagonal ``F_A`` across tasks. Its
:meth:`~ElasticAnchor.penalty` is a differentiable R for a potential Phi (eq:potential), and
:meth:`~ElasticAnchor.add_gradient_` adds ``grad R = lam F (w - w*)`` to ``p.grad`` in place for optimizers
that take the gradient as given (the EWC and L2-SP baselines).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from .._tensor_lists import at_least_float32
from .fisher import empirical_fisher_diagonal, online_fisher, true_fisher_diagonal

__all__ = ["ElasticAnchor", "ewc_penalty", "ewc_penalty_grad"]

_KINDS = ("identity", "empirical", "true")


def ewc_penalty(params: Sequence[Tensor], anchors: Sequence[Tensor], fisher: Sequence[Tensor], lam: float) -> Tensor:
    """``R(w) = (lam/2) sum_i F_i (w_i - w*_i)^2`` (eq:ewc_penalty) with a diagonal ``F_A``, in at least float32 (a
    float16 displacement of 1e-4 squares to 0 in float16)."""
    if not lam >= 0.0:
        raise ValueError(f"Invalid lam: {lam}")
    total = at_least_float32(params[0].new_zeros(()))
    for p, a, f in zip(params, anchors, fisher, strict=True):
        total = total + (f * at_least_float32(p - a).pow(2)).sum()
    return 0.5 * lam * total


def ewc_penalty_grad(p: Tensor, anchor: Tensor, fisher: Tensor | None, lam: float) -> Tensor:
    """The gradient of R for one parameter, ``lam F (w - w*)`` (eq:ewc_grad), with ``F = I`` when ``fisher`` is None."""
    diff = p - anchor
    return lam * (diff if fisher is None else fisher * diff)


class ElasticAnchor:
    """R(w) around the weights at the end of the last task (eq:ewc_penalty).

    Args:
        params: the anchored parameters.
        lam: the penalty strength ``lam`` of eq:ewc_penalty.
        fisher: ``"identity"`` (L2-SP), ``"empirical"`` or ``"true"`` diagonal Fisher (EWC).
        gamma: online-EWC decay of earlier tasks' Fisher (1 sums them).
    """

    def __init__(self, params: Sequence[Tensor] | Any, lam: float, *, fisher: str = "empirical", gamma: float = 1.0):
        if not lam >= 0.0:
            raise ValueError(f"Invalid lam: {lam}")
        if fisher not in _KINDS:
            raise ValueError(f"Invalid fisher: {fisher}")
        if not 0.0 <= gamma <= 1.0:
            raise ValueError(f"Invalid gamma: {gamma}")
        self.params = list(params)
        self.lam, self.kind, self.gamma = lam, fisher, gamma
        self.anchors = [p.detach().clone() for p in self.params]
        self.fisher: list[Tensor] | None = None
        self.n_tasks = 0

    @torch.no_grad()
    def consolidate(
        self,
        model: nn.Module | None = None,
        inputs: Tensor | None = None,
        targets: Tensor | None = None,
        *,
        chunk_size: int | None = None,
    ) -> None:
        """End of a task: anchor at the current weights and accumulate that task's Fisher (online EWC).

        ``chunk_size`` bounds the Fisher's memory: at most that many samples' gradients at once (None: all).
        """
        self.anchors = [p.detach().clone() for p in self.params]
        if self.kind != "identity":
            if model is None or inputs is None or (self.kind == "empirical" and targets is None):
                raise ValueError(f"Invalid consolidate: the {self.kind} Fisher needs the model and the task's samples")
            with torch.enable_grad():
                if self.kind == "empirical":
                    new = empirical_fisher_diagonal(model, inputs, targets, self.params, chunk_size=chunk_size)
                else:
                    new = true_fisher_diagonal(model, inputs, self.params, chunk_size=chunk_size)
            self.fisher = online_fisher(self.fisher, new, self.gamma)
        self.n_tasks += 1

    def _weights(self) -> Sequence[Tensor | None]:
        return self.fisher if self.fisher is not None else [None] * len(self.params)

    def _active(self) -> bool:
        """Whether R acts: always for L2-SP, for EWC from the first :meth:`consolidate` on (before it, there is
        no old task and no Fisher: R is zero rather than an L2 pull back to the starting weights)."""
        return self.kind == "identity" or self.fisher is not None

    def penalty(self) -> Tensor:
        """R(w), differentiable (eq:ewc_penalty): F = I for L2-SP; zero for EWC before the first task is
        consolidated."""
        if not self._active():
            return self.params[0].new_zeros(())
        fisher = self.fisher if self.fisher is not None else [torch.ones_like(p) for p in self.params]
        return ewc_penalty(self.params, self.anchors, fisher, self.lam)

    @torch.no_grad()
    def add_gradient_(self) -> None:
        """``p.grad += lam F (w - w*)`` (eq:ewc_grad): the gradient of R added to whatever the loss gave (nothing for
        EWC before the first task is consolidated). A frozen parameter (``requires_grad=False``) gets none, as from
        autograd on R: a gradient would let the base optimizer (its weight decay, its momentum) move it."""
        if not self._active():
            return
        for p, a, f in zip(self.params, self.anchors, self._weights(), strict=True):
            if not p.requires_grad:
                continue
            g = ewc_penalty_grad(p, a, f, self.lam).to(p.dtype)  # a float32 Fisher promotes a float16 weight's
            p.grad = g if p.grad is None else p.grad.add_(g)

    def state_dict(self) -> dict[str, Any]:
        """Anchors, Fisher and the task counter."""
        return {"anchors": [a.clone() for a in self.anchors], "fisher": self.fisher, "n_tasks": self.n_tasks}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned, on the parameters' device and dtype (as ``torch.optim`` does
        with its state: a checkpoint read with ``map_location="cpu"`` resumes a CUDA run)."""
        if len(state["anchors"]) != len(self.params):
            raise ValueError(f"Invalid state: {len(state['anchors'])} anchors for {len(self.params)} parameters")
        self.anchors = [a.to(p, copy=True) for a, p in zip(state["anchors"], self.params, strict=True)]
        fisher = state["fisher"]  # kept in at least float32, as computed: in float16 a small Fisher is 0
        self.fisher = (
            None
            if fisher is None
            else [
                f.to(device=p.device, dtype=torch.promote_types(p.dtype, torch.float32), copy=True)
                for f, p in zip(fisher, self.params, strict=True)
            ]
        )
        self.n_tasks = int(state["n_tasks"])
