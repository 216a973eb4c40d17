"""Continual-learning metrics of an accuracy matrix ``R``: ``R[i][j]`` is the accuracy on task ``j`` after training
task ``i`` (both counted from 0, ``T`` tasks), as GEM (Lopez-Paz and Ranzato 2017) defines it.

:func:`average_accuracy`, :func:`backward_transfer`, :func:`learning_accuracy` and :func:`sequence_metrics` are the
permuted-MNIST study's (sec:optimizers), with the same arithmetic; :func:`forward_transfer` is GEM's, against the
accuracies of the initial model, and :func:`forgetting` is Chaudhry et al. 2018's average forgetting.

May import: NumPy; nothing of the library.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = [
    "average_accuracy",
    "backward_transfer",
    "forgetting",
    "forward_transfer",
    "learning_accuracy",
    "sequence_metrics",
]


def average_accuracy(R: Sequence[Sequence[float]]) -> float:
    """ACC = mean_j R[T-1][j] (eq:acc): every task's accuracy after the last one."""
    return float(np.mean(R[-1]))


def backward_transfer(R: Sequence[Sequence[float]]) -> float:
    """BWT = mean_{j < T-1} (R[T-1][j] - R[j][j]) (eq:bwt): how much each old task's accuracy changed since it was
    learned (negative: forgetting). Zero for one task."""
    T = len(R)
    return float(np.mean([R[-1][j] - R[j][j] for j in range(T - 1)])) if T > 1 else 0.0


def learning_accuracy(R: Sequence[Sequence[float]]) -> float:
    """LA = mean_j R[j][j] (eq:la): each task's accuracy just after it was learned (plasticity)."""
    return float(np.mean([R[j][j] for j in range(len(R))]))


def forward_transfer(R: Sequence[Sequence[float]], initial: Sequence[float]) -> float:
    """FWT = mean_{j >= 1} (R[j-1][j] - b[j]) (eq:fwt): how much training the tasks before ``j`` helps task ``j``
    before it is learned, against ``initial`` (``b``), the initial model's accuracy on each task (GEM's definition;
    positive: the earlier tasks help). Zero for one task."""
    T = len(R)
    if len(initial) != T:
        raise ValueError(f"Invalid initial: {len(initial)} accuracies for {T} tasks")
    return float(np.mean([R[j - 1][j] - initial[j] for j in range(1, T)])) if T > 1 else 0.0


def forgetting(R: Sequence[Sequence[float]]) -> float:
    """F = mean_{j < T-1} max_{l < T-1} (R[l][j] - R[T-1][j]) (eq:forgetting): how far each old task's accuracy
    has fallen from the best it had before the last task (Chaudhry et al. 2018's average forgetting; at least
    ``-BWT``). Zero for one task."""
    T = len(R)
    if T < 2:
        return 0.0
    return float(np.mean([max(R[i][j] for i in range(T - 1)) - R[-1][j] for j in range(T - 1)]))


def sequence_metrics(R: Sequence[Sequence[float]]) -> dict[str, float]:
    """ACC, BWT and LA of one accuracy matrix, by the functions above.

    They compute eq:acc, eq:bwt and eq:la, under the keys ``"acc"``, ``"bwt"`` and ``"la"``.
    """
    return {"acc": average_accuracy(R), "bwt": backward_transfer(R), "la": learning_accuracy(R)}
