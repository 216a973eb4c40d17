"""A-GEM (Chaudhry et al., ICLR 2019): a rank-one, gated instance of the projection (eq:projected).

When the new-task gradient ``g`` conflicts with the reference gradient ``g_ref`` of a minibatch from the
episodic memory (``g . g_ref < 0``), ``g <- g - (g . g_ref / ||g_ref||^2) g_ref``; otherwise ``g`` is kept.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor
from torch.optim import Optimizer

from .._tensor_lists import dot, drop_zero_grads, grads_of, sq_norm
from ..optim._acceptance import skip_step
from ..optim.wrapper import OptimizerWrapper
from ..regularizers.replay import ReplayBuffer

__all__ = ["AGEM", "agem_project"]


def agem_project(g: Sequence[Tensor], g_ref: Sequence[Tensor]) -> bool:
    """A-GEM's rule, in place on ``g``: project off ``g_ref`` only when ``g . g_ref < 0``; returns whether it did."""
    inner, ref_sq = dot(g, g_ref), sq_norm(g_ref)
    if not (inner < 0 and 0 < ref_sq < math.inf):  # a NaN never projects
        return False
    for a, b in zip(g, g_ref, strict=True):
        a.sub_(b, alpha=inner / ref_sq)
    return True


class AGEM(OptimizerWrapper):
    """Compute ``g_ref`` on a buffer minibatch, apply :func:`agem_project` to ``p.grad``, then ``base.step()``.

    ``replay_loss(x, y)`` returns the mean old-task loss of the model on a minibatch; the fraction of
    projected steps is ``state_dict()["agem"]["n_projected"] / ["step"]``. A non-finite reference gradient
    rejects the step (counted in ``["skipped"]``), as a non-finite gradient does. Only trainable parameters
    take part; a parameter without a gradient keeps none unless the projection gives it one.
    """

    state_key = "agem"

    def __init__(
        self,
        base: Optimizer,
        buffer: ReplayBuffer,
        replay_loss: Callable[[Tensor, Tensor], Tensor],
        *,
        batch_size: int = 256,
    ) -> None:
        super().__init__(base)
        if batch_size < 1:
            raise ValueError(f"Invalid batch_size: {batch_size}")
        self.buffer, self.replay_loss, self.batch_size = buffer, replay_loss, batch_size
        self.wrapper_state["n_projected"] = 0
        self.wrapper_state["skipped"] = 0

    @torch.no_grad()
    def step(self, closure: Callable[[], Tensor | float] | None = None) -> Any:
        """Project the current gradient when it conflicts with the memory's, then step the base optimizer."""
        loss, skip = self._begin_step(closure)
        if skip:
            return loss
        if len(self.buffer):
            params = [p for p in self._params() if p.requires_grad]
            g = [t.clone() for t in grads_of(params)]
            x, y = self.buffer.sample(self.batch_size)
            with torch.enable_grad():
                ref = torch.autograd.grad(self.replay_loss(x, y), params, allow_unused=True)
            g_ref = [torch.zeros_like(p) if r is None else r for p, r in zip(params, ref, strict=True)]
            if skip_step(None, g_ref, "AGEM", skip_zero=False):
                self.wrapper_state["skipped"] += 1
                return loss
            if agem_project(g, g_ref):
                self.wrapper_state["n_projected"] += 1
                filled = [p for p in params if p.grad is None]
                for p, gp in zip(params, g, strict=True):  # in place: a grad may be a view (DDP's buckets)
                    if p.grad is None:
                        p.grad = gp
                    else:
                        p.grad.copy_(gp)
                drop_zero_grads(filled)
        self.base.step()
        self.wrapper_state["step"] += 1
        return loss
