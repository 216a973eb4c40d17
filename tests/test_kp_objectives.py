"""The benchmark's test functions: minima, batching, gradients, and Shor's minimum certified both ways."""

from __future__ import annotations

import math

import pytest
import torch

from kaplinskiy.kaplinskii_propoi.objectives import OBJECTIVES, SHOR_A, SHOR_B, SHOR_F_STAR, ackley, himmelblau, shor

# Dual weights lambda of the epigraph problem min t s.t. t >= b_i ||x - a_i||^2 (from an SLSQP solve of
# the dual max_lambda min_x sum_i lambda_i b_i ||x - a_i||^2). Weak duality makes the value a lower bound.
SHOR_DUAL = (0.0, 0.229614, 0.0, 0.213379, 0.196887, 0.0, 0.0, 0.0, 0.36012, 0.0)


def _dims(name: str) -> list[int]:
    o = OBJECTIVES[name]
    return [n for n in (1, 2, 5, 10, 100) if o.supports(n)]


@pytest.mark.parametrize("name", sorted(OBJECTIVES))
def test_value_at_the_documented_minimiser(name: str) -> None:
    o = OBJECTIVES[name]
    for n in _dims(name):
        assert float(o.f(o.x_star(n))) == pytest.approx(o.f_star, abs=2e-7), n


@pytest.mark.parametrize("name", sorted(OBJECTIVES))
def test_minimiser_beats_random_points_and_batches(name: str) -> None:
    """No random point in the start box is below f*, and a batch evaluates row by row."""
    o = OBJECTIVES[name]
    for n in _dims(name):
        lo, hi = o.box
        x = lo + (hi - lo) * torch.rand(3, 50, n, generator=torch.Generator().manual_seed(n))
        fx = o.f(x)
        assert fx.shape == (3, 50)
        assert bool((fx >= o.f_star - 1e-9).all())
        assert torch.allclose(fx[1, 7], o.f(x[1, 7]))


@pytest.mark.parametrize("name", ["sphere", "booth", "easom", "ackley", "himmelblau", "rosenbrock", "rastrigin"])
def test_smooth_minimisers_are_stationary(name: str) -> None:
    o = OBJECTIVES[name]
    for n in _dims(name):
        x = o.x_star(n).clone().requires_grad_(True)
        (g,) = torch.autograd.grad(o.f(x), x)
        assert float(g.abs().max()) < 1e-6, n


def test_himmelblau_has_four_global_minima() -> None:
    pts = torch.tensor([[3.0, 2.0], [-2.805118, 3.131312], [-3.779310, -3.283186], [3.584428, -1.848126]])
    assert bool((himmelblau(pts) < 1e-9).all())


def test_ackley_is_n_dimensional() -> None:
    """The n-D form uses every coordinate (minpy's uses only x1, x2) and equals the 2-D formula at n = 2."""
    x = torch.tensor([0.3, -1.2])
    two_d = -20 * math.exp(-0.2 * math.sqrt(0.5 * float((x * x).sum()))) - math.exp(
        0.5 * float(torch.cos(2 * math.pi * x).sum())
    )
    assert float(ackley(x)) == pytest.approx(two_d + 20 + math.e)
    assert float(ackley(torch.tensor([0.0, 0.0, 1.0]))) > 0.1


def test_shor_minimum_is_certified_from_both_sides() -> None:
    """f* = 22.600162: an upper bound f(x*) and the weak-duality lower bound of the stored dual weights."""
    a, b, lam = torch.tensor(SHOR_A), torch.tensor(SHOR_B), torch.tensor(SHOR_DUAL)
    w = lam * b
    x_dual = (w.unsqueeze(-1) * a).sum(0) / w.sum()
    lower = float((w * ((x_dual - a) ** 2).sum(-1)).sum())
    upper = float(shor(OBJECTIVES["shor"].x_star(5)))
    assert lower <= upper
    assert lower == pytest.approx(22.600162, abs=1e-6)
    assert upper - lower < 1e-6
    assert SHOR_F_STAR == pytest.approx(22.600162, abs=1e-6)


def test_shor_minimum_with_scipy() -> None:
    """An independent solve of the epigraph problem, when scipy is installed."""
    so = pytest.importorskip("scipy.optimize")
    import numpy as np

    A, b = np.array(SHOR_A), np.array(SHOR_B)
    cons = [{"type": "ineq", "fun": lambda z, i=i: z[5] - b[i] * ((z[:5] - A[i]) ** 2).sum()} for i in range(10)]
    z0 = np.r_[np.ones(5), 100.0]
    res = so.minimize(lambda z: z[5], z0, constraints=cons, method="SLSQP", options={"ftol": 1e-14, "maxiter": 500})
    assert res.fun == pytest.approx(SHOR_F_STAR, abs=1e-6)


@pytest.mark.parametrize("name", ["booth", "easom", "himmelblau", "shor"])
def test_fixed_dimension_functions_reject_other_dimensions(name: str) -> None:
    with pytest.raises(ValueError, match="Invalid x"):
        OBJECTIVES[name].f(torch.zeros(3 if name != "shor" else 4))
