"""Rehearsal: a small buffer D_A of old-task samples and the replay term (eq:replay).

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
    """The replay term ``gamma * mean_s l(f(x_s), y_s)`` (eq:replay) over a batch drawn from D_A."""
    if not gamma >= 0.0:
        raise ValueError(f"Invalid gamma: {gamma}")
    return gamma * loss(outputs, targets)


class ReplayBuffer:
    """A fixed-capacity uniform sample of old-task pairs ``(x, y)``.

    Storage for ``capacity`` pairs is allocated at the first :meth:`add`, so filling costs one copy per pair
    (growing by concatenation would copy the buffer once per batch: quadratic in the capacity).
    ``inputs`` and ``targets`` are views of the pairs held so far (None while the buffer is empty).

    Args:
        capacity: the number of pairs kept.
        seed: seed of the buffer's own generator (reservoir choices and minibatch draws).
    """

    def __init__(self, capacity: int, *, seed: int = 0) -> None:
        if capacity < 1:
            raise ValueError(f"Invalid capacity: {capacity}")
        self.capacity = capacity
        self.generator = torch.Generator().manual_seed(seed)
        self._inputs: Tensor | None = None
        self._targets: Tensor | None = None
        self._size = 0
        self.n_seen = 0

    @property
    def inputs(self) -> Tensor | None:
        """The inputs held, ``(len(self), ...)``."""
        return None if self._inputs is None else self._inputs[: self._size]

    @property
    def targets(self) -> Tensor | None:
        """The targets held, ``(len(self), ...)``."""
        return None if self._targets is None else self._targets[: self._size]

    def __len__(self) -> int:
        return self._size

    def _store(self, inputs: Tensor, targets: Tensor) -> None:
        """Copy ``inputs`` and ``targets`` into the next free rows, allocating the storage the first time."""
        if self._inputs is None or self._targets is None:
            self._inputs = inputs.new_empty((self.capacity, *inputs.shape[1:]))
            self._targets = targets.new_empty((self.capacity, *targets.shape[1:]))
        end = self._size + inputs.shape[0]
        self._inputs[self._size : end] = inputs
        self._targets[self._size : end] = targets
        self._size = end

    @torch.no_grad()
    def add(self, inputs: Tensor, targets: Tensor) -> None:
        """Offer a batch; each pair is kept with probability ``capacity / n_seen`` (reservoir sampling).

        The pairs that fit while the buffer fills are kept without a random draw.
        """
        if inputs.shape[0] != targets.shape[0]:
            raise ValueError(f"Invalid batch: {inputs.shape[0]} inputs for {targets.shape[0]} targets")
        fill = min(self.capacity - len(self), inputs.shape[0])
        if fill:
            self._store(inputs[:fill].detach(), targets[:fill].detach())
            self.n_seen += fill
        for x, y in zip(inputs[fill:], targets[fill:], strict=True):
            self.n_seen += 1
            j = int(torch.randint(self.n_seen, (1,), generator=self.generator))
            if j < self.capacity:
                self._inputs[j], self._targets[j] = x.detach(), y.detach()

    def sample(self, batch_size: int) -> tuple[Tensor, Tensor]:
        """A minibatch drawn uniformly without replacement (all of it when the buffer is smaller)."""
        if len(self) == 0:
            raise ValueError("Invalid sample: the replay buffer is empty")
        idx = torch.randperm(len(self), generator=self.generator)[:batch_size]
        return self.inputs[idx], self.targets[idx]

    def state_dict(self) -> dict[str, Any]:
        """Contents (copies of the pairs held; None while empty), counters and the generator state."""
        return {
            "inputs": None if self.inputs is None else self.inputs.clone(),
            "targets": None if self.targets is None else self.targets.clone(),
            "n_seen": self.n_seen,
            "generator": self.generator.get_state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned, into a buffer of at least the saved number of pairs."""
        inputs, targets = state["inputs"], state["targets"]
        if inputs is not None and inputs.shape[0] > self.capacity:
            raise ValueError(f"Invalid state: {inputs.shape[0]} pairs for a buffer of capacity {self.capacity}")
        self._inputs, self._targets, self._size = None, None, 0
        if inputs is not None and targets is not None and inputs.shape[0]:
            self._store(inputs, targets)
        self.n_seen = int(state["n_seen"])
        self.generator.set_state(state["generator"])
