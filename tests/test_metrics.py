"""The continual-learning metrics (kaplinskiy.metrics): each of a hand-computed matrix, the identities that tie them
together on any matrix, and the permuted-MNIST study's arithmetic, bit for bit."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kaplinskiy.metrics import (
    average_accuracy,
    backward_transfer,
    forgetting,
    forward_transfer,
    learning_accuracy,
    sequence_metrics,
)

# R[i][j]: the accuracy on task j after training task i. Task 1 peaks after task 2 (0.7 > 0.6 = R[1][1]), so the
# best accuracy before the last task is not the one just after learning it.
R = [
    [0.50, 0.20, 0.10, 0.25],
    [0.40, 0.60, 0.15, 0.20],
    [0.30, 0.70, 0.80, 0.30],
    [0.25, 0.45, 0.60, 0.90],
]
INITIAL = [0.10, 0.10, 0.10, 0.10]


def test_the_metrics_of_a_hand_computed_matrix() -> None:
    assert average_accuracy(R) == pytest.approx((0.25 + 0.45 + 0.60 + 0.90) / 4)  # 0.55
    assert backward_transfer(R) == pytest.approx(((0.25 - 0.50) + (0.45 - 0.60) + (0.60 - 0.80)) / 3)  # -0.2
    assert learning_accuracy(R) == pytest.approx((0.50 + 0.60 + 0.80 + 0.90) / 4)  # 0.7
    # R[j-1][j] - b[j] for j = 1, 2, 3: 0.2 - 0.1, 0.15 - 0.1, 0.3 - 0.1
    assert forward_transfer(R, INITIAL) == pytest.approx((0.10 + 0.05 + 0.20) / 3)
    # the best before the last task minus the last: task 0 0.50 - 0.25, task 1 0.70 - 0.45, task 2 0.80 - 0.60
    assert forgetting(R) == pytest.approx((0.25 + 0.25 + 0.20) / 3)
    assert sequence_metrics(R) == {
        "acc": average_accuracy(R),
        "bwt": backward_transfer(R),
        "la": learning_accuracy(R),
    }


def test_one_task_has_no_transfer_and_no_forgetting() -> None:
    assert backward_transfer([[0.4]]) == forward_transfer([[0.4]], [0.1]) == forgetting([[0.4]]) == 0.0
    assert average_accuracy([[0.4]]) == learning_accuracy([[0.4]]) == 0.4


def test_forward_transfer_needs_one_initial_accuracy_per_task() -> None:
    with pytest.raises(ValueError, match="Invalid initial"):
        forward_transfer(R, INITIAL[:3])


def _matrices(min_tasks: int = 1):
    return st.integers(min_tasks, 7).flatmap(
        lambda T: st.lists(st.lists(st.floats(0, 1), min_size=T, max_size=T), min_size=T, max_size=T)
    )


@given(_matrices(min_tasks=2))
def test_forgetting_is_at_least_minus_the_backward_transfer(R: list[list[float]]) -> None:
    """The best accuracy before the last task is at least the one just after learning: F >= -BWT, exactly (every
    term is, and rounding is monotone)."""
    assert forgetting(R) >= -backward_transfer(R)


@given(_matrices(), st.data())
def test_the_metrics_tie_together(R: list[list[float]], data: st.DataObject) -> None:
    """ACC = LA + (T - 1)/T BWT; FWT is 0 against an initial model as good as the previous task's, and shifts by
    the mean gap otherwise."""
    T = len(R)
    assert average_accuracy(R) == pytest.approx(learning_accuracy(R) + (T - 1) / T * backward_transfer(R), abs=1e-12)
    same = [0.0] + [R[j - 1][j] for j in range(1, T)]
    assert forward_transfer(R, same) == 0.0
    gap = data.draw(st.floats(-0.5, 0.5))
    shifted = [b - gap for b in same]
    assert forward_transfer(R, shifted) == pytest.approx(gap if T > 1 else 0.0, abs=1e-12)
    for value in (average_accuracy(R), learning_accuracy(R), forgetting(R)):
        assert -1.0 <= value <= 1.0 and math.isfinite(value)


def test_the_permuted_mnist_study_takes_its_metrics_from_here() -> None:
    """The study's records hold these functions' numbers, not a copy's."""
    from permuted_mnist import _training

    assert _training.sequence_metrics is sequence_metrics
