"""Rehearsal: a small buffer D_A of old-task samples and the replay term of eq. (7).

``L_replay(w) = L_B(w) + gamma E_{(x, y) ~ D_A} l(f_w(x), y)``. The buffer is filled by reservoir sampling
(Vitter's algorithm R), so after any number of ``add`` calls it holds a uniform sample of everything offered.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

__all__ = ["ReplayBuffer", "replay_term"]


def replay_term(loss: Callable[[Tensor, Tensor], Tensor], outputs: Tensor, targets: Tensor, gamma: float) -> Tensor:
    """Eq. (7)'s second term: ``gamma * mean_s l(f(x_s), y_s)`` over a batch drawn from D_A."""
    if not gamma >= 0.0:
        raise ValueError(f"Invalid gamma: {gamma}")
    return gamma * loss(outputs, targets)


class ReplayBuffer:
    """A fixed-capacity uniform sample of old-task pairs ``(x, y)``.

    Args:
        capacity: the number of pairs kept.
        seed: seed of the buffer's own generator (reservoir choices and minibatch draws).
    """

    def __init__(self, capacity: int, *, seed: int = 0) -> None:
        if capacity < 1:
            raise ValueError(f"Invalid capacity: {capacity}")
        self.capacity = capacity
        self.generator = torch.Generator().manual_seed(seed)
        self.inputs: Tensor | None = None
        self.targets: Tensor | None = None
        self.n_seen = 0

    def __len__(self) -> int:
        return 0 if self.inputs is None else self.inputs.shape[0]

    @torch.no_grad()
    def add(self, inputs: Tensor, targets: Tensor) -> None:
        """Offer a batch; each pair is kept with probability ``capacity / n_seen`` (reservoir sampling)."""
        if inputs.shape[0] != targets.shape[0]:
            raise ValueError(f"Invalid batch: {inputs.shape[0]} inputs for {targets.shape[0]} targets")
        for x, y in zip(inputs, targets, strict=True):
            self.n_seen += 1
            if len(self) < self.capacity:
                xs, ys = x.detach().unsqueeze(0), y.detach().unsqueeze(0)
                self.inputs = xs.clone() if self.inputs is None else torch.cat([self.inputs, xs])
                self.targets = ys.clone() if self.targets is None else torch.cat([self.targets, ys])
                continue
            j = int(torch.randint(self.n_seen, (1,), generator=self.generator))
            if j < self.capacity:
                self.inputs[j], self.targets[j] = x.detach(), y.detach()

    def sample(self, batch_size: int) -> tuple[Tensor, Tensor]:
        """A minibatch drawn uniformly without replacement (all of it when the buffer is smaller)."""
        if len(self) == 0:
            raise ValueError("Invalid sample: the replay buffer is empty")
        idx = torch.randperm(len(self), generator=self.generator)[:batch_size]
        return self.inputs[idx], self.targets[idx]

    def state_dict(self) -> dict[str, Any]:
        """Contents, counters and the generator state."""
        return {
            "inputs": self.inputs.clone(),  # copies: the buffer overwrites its rows in place once full
            "targets": self.targets.clone(),
            "n_seen": self.n_seen,
            "generator": self.generator.get_state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""
        self.inputs, self.targets = state["inputs"].clone(), state["targets"].clone()
        self.n_seen = int(state["n_seen"])
        self.generator.set_state(state["generator"])
