"""Exact cost accounting: every point counts once, the trace is the best value against the cost."""

from __future__ import annotations

import math

import pytest
import torch

from kaplinskiy.kaplinskii_propoi.counting import CountedObjective, OptimizeResult
from kaplinskiy.kaplinskii_propoi.objectives import sphere


def test_counts_points_and_gradients() -> None:
    c = CountedObjective(sphere)
    c(torch.zeros(3))
    c(torch.ones(4, 3))
    c(torch.ones(2, 5, 3))
    assert c.n_evals == 15 and c.n_grads == 0
    f, g = c.value_and_grad(torch.ones(2, 3))
    assert c.n_evals == 17 and c.n_grads == 2
    assert torch.allclose(g, 2 * torch.ones(2, 3)) and torch.allclose(f, torch.full((2,), 3.0))


def test_trace_records_each_improvement_at_its_cost() -> None:
    c = CountedObjective(sphere)
    c(torch.tensor([3.0]))
    c(torch.tensor([[5.0], [2.0]]))
    c(torch.tensor([4.0]))
    c(torch.tensor([1.0]))
    assert [(p.n_evals, p.best_f) for p in c.trace] == [(1, 9.0), (3, 4.0), (5, 1.0)]
    assert torch.equal(c.best_x, torch.tensor([1.0]))
    result = OptimizeResult.from_counter(c, torch.tensor([1.0]), 1.0, 4, 2, "max_iters")
    assert result.evals_to_reach(4.0) == 3 and result.evals_to_reach(0.5) is None


def test_nonfinite_values_become_inf_and_are_never_best() -> None:
    c = CountedObjective(lambda x: torch.where(x[..., 0] > 0, torch.nan, -torch.inf * torch.ones(x.shape[:-1])))
    out = c(torch.tensor([[1.0], [-1.0]]))
    assert out.tolist() == [math.inf, math.inf]
    assert c.best_f == math.inf and c.best_x is None and c.trace == [] and c.n_evals == 2


def test_bounds_are_enforced() -> None:
    c = CountedObjective(sphere, lower=torch.tensor([-1.0, -1.0]), upper=torch.tensor([1.0, 2.0]))
    c(torch.tensor([1.0, 2.0]))
    with pytest.raises(ValueError, match="upper bound"):
        c(torch.tensor([1.0, 2.5]))
    with pytest.raises(ValueError, match="lower bound"):
        c.value_and_grad(torch.tensor([[-1.5, 0.0]]))
