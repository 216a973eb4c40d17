"""The gradient hybrid (1993, eq. 44): both of its terms estimate the smoothed gradient."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from strategies_kp import SteinCase, stein_cases

from kaplinskiy.kaplinskii_propoi.counting import CountedObjective
from kaplinskiy.kaplinskii_propoi.descent import DescentOptions
from kaplinskiy.kaplinskii_propoi.gradient_hybrid import hybrid_gradient, minimize_gradient_hybrid
from kaplinskiy.kaplinskii_propoi.objectives import sphere


@settings(max_examples=50)
@given(stein_cases())
def test_both_terms_estimate_the_smoothed_gradient(case: SteinCase) -> None:
    """mix = 1 and mix = 0 each estimate grad f_sigma(m) (the second by Stein's identity), within 5 s.e."""
    n, K = case.m.shape[0], 4000
    u = case.m + case.sigma * torch.randn(K, n, generator=torch.Generator().manual_seed(case.seed))
    fu = case.f(u)
    gu = u @ case.f.A + case.f.b
    expected = case.f.smoothed_grad(case.m)
    local = hybrid_gradient(case.m, u, fu, gu, case.c, case.sigma, 0.0, 1.0)
    nonlocal_ = hybrid_gradient(case.m, u, fu, None, case.c, case.sigma, 0.0, 0.0)
    se_local = gu.std(0) / math.sqrt(K)
    se_nonlocal = ((fu - case.c).unsqueeze(-1) * (u - case.m)).std(0) / case.sigma**2 / math.sqrt(K)
    assert torch.all((local - expected).abs() <= 5 * se_local + 1e-9 * (1 + expected.abs()))
    assert torch.all((nonlocal_ - expected).abs() <= 5 * se_nonlocal + 1e-9 * (1 + expected.abs()))
    half = hybrid_gradient(case.m, u, fu, gu, case.c, case.sigma, 0.0, 0.5)
    assert torch.allclose(half, 0.5 * local + 0.5 * nonlocal_)


def test_mix_needs_gradients_and_a_valid_weight() -> None:
    m, u, fu = torch.zeros(2), torch.ones(3, 2), torch.ones(3)
    with pytest.raises(ValueError, match="Invalid gu"):
        hybrid_gradient(m, u, fu, None, 0.0, 1.0, 0.0, 0.5)
    with pytest.raises(ValueError, match="Invalid mix"):
        hybrid_gradient(m, u, fu, None, 0.0, 1.0, 0.0, 1.5)


def test_zeroth_order_mix_counts_no_gradient_and_first_order_does() -> None:
    x0 = torch.tensor([2.0, -1.0])
    for mix, has_grads in ((0.0, False), (0.5, True)):
        counter = CountedObjective(sphere)
        r = minimize_gradient_hybrid(
            counter, x0, generator=torch.Generator().manual_seed(0), mix=mix, options=DescentOptions(max_evals=60)
        )
        assert (r.n_grads > 0) == has_grads
        assert r.n_evals == counter.n_evals <= 60
        assert r.f_m <= float(sphere(x0))
