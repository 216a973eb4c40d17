"""Experience replay as an optimizer: the replay term ``gamma E_{D_A} l`` (eq:replay) joins the gradient before each
step."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor
from torch.optim import Optimizer

from ..optim._acceptance import skip_step
from ..optim.wrapper import OptimizerWrapper
from ..regularizers.replay import ReplayBuffer

__all__ = ["Replay"]


class Replay(OptimizerWrapper):
    """Before ``base.step()``, back-propagate the replay term ``gamma * replay_loss(x, y)`` (eq:replay) on a minibatch
    of ``buffer``.

    ``replay_loss(x, y)`` runs the model and returns the mean old-task loss on the minibatch, so ``p.grad`` becomes
    ``grad L_B + gamma grad E_{D_A} l`` (eq:replay) in an ordinary ``loss.backward(); opt.step()`` loop. A non-finite
    replay gradient rejects the step (counted in ``state_dict()["replay"]["skipped"]``), as a non-finite gradient does.
    """

    state_key = "replay"

    def __init__(
        self,
        base: Optimizer,
        buffer: ReplayBuffer,
        replay_loss: Callable[[Tensor, Tensor], Tensor],
        *,
        gamma: float = 1.0,
        batch_size: int = 32,
    ) -> None:
        super().__init__(base)
        if not gamma >= 0.0:
            raise ValueError(f"Invalid gamma: {gamma}")
        if batch_size < 1:
            raise ValueError(f"Invalid batch_size: {batch_size}")
        self.buffer, self.replay_loss, self.gamma, self.batch_size = buffer, replay_loss, gamma, batch_size
        self.wrapper_state["skipped"] = 0

    @torch.no_grad()
    def step(self, closure: Callable[[], Tensor | float] | None = None) -> Any:
        """Accumulate the replay gradient (when the buffer has samples) and step the base optimizer."""
        loss, skip = self._begin_step(closure)
        if skip:
            return loss
        if len(self.buffer) and self.gamma > 0:
            x, y = self.buffer.sample(self.batch_size)
            with torch.enable_grad():
                (self.gamma * self.replay_loss(x, y)).backward()
            if skip_step(None, [p.grad for p in self._params() if p.grad is not None], "Replay", skip_zero=False):
                self.wrapper_state["skipped"] += 1
                return loss  # a non-finite replay gradient: nothing stepped
        self.base.step()
        self.wrapper_state["step"] += 1
        return loss
