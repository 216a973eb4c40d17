"""EWC and L2-SP as optimizers: the gradient of R (eq:ewc_grad) is added before the base optimizer steps."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor
from torch.optim import Optimizer

from ..optim.wrapper import OptimizerWrapper
from ..regularizers.elastic_anchor import ElasticAnchor

__all__ = ["Anchored"]


class Anchored(OptimizerWrapper):
    """``g <- g + lam F (w - w*)`` (eq:ewc_grad), then ``base.step()``: EWC with a Fisher anchor, L2-SP with
    ``fisher="identity"``.

    Call ``anchor.consolidate(...)`` at the end of each task; the anchor has its own ``state_dict``. For L2-SP
    (Li et al. 2018) anchor only the pretrained parameters; its second term, ``(beta/2) ||w||^2`` on the new
    ones (a new head), is the base optimizer's coupled ``weight_decay`` on their group (``SGD``, not ``AdamW``).
    """

    state_key = "anchored"

    def __init__(self, base: Optimizer, anchor: ElasticAnchor) -> None:
        super().__init__(base)
        owned = {id(p) for g in base.param_groups for p in g["params"]}
        if any(id(p) not in owned for p in anchor.params):
            raise ValueError("Invalid anchor: it covers parameters the base optimizer does not update")
        self.anchor = anchor

    @torch.no_grad()
    def step(self, closure: Callable[[], Tensor | float] | None = None) -> Any:
        """Add the penalty's gradient to ``p.grad`` and step the base optimizer."""
        loss, skip = self._begin_step(closure)
        if skip:
            return loss
        self.anchor.add_gradient_()
        self.base.step()
        self.wrapper_state["step"] += 1
        return loss
