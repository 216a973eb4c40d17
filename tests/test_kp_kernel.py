"""The potential gradient (1993, eqs. 14-16, 28, 32): Stein's identity, log-space stability, literal agreement."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import assume, example, given, target
from hypothesis import strategies as st
from strategies_kp import EPS, Quadratic, SampleSet, SteinCase, sample_sets, stein_cases

from kaplinskiy.kaplinskii_propoi.nonlocal_gradient import (
    kernel_log_weights,
    one_sample_step,
    potential_gradient,
    vertex_steps,
)

F64 = torch.float64  # examples are built at import time, before conftest sets the default dtype
STEIN_K = 4000
STEIN_Z = 5.0  # standard errors allowed per component: a false alarm has probability < 1e-6 per component


def _direct(s: SampleSet, lam: float) -> torch.Tensor:
    """The literal formula, evaluated naively (valid only where float64 holds r^lam)."""
    diff = s.x - s.u
    r = torch.linalg.vector_norm(diff, dim=-1, keepdim=True)
    ok = torch.isfinite(s.fu)
    terms = (s.fu - s.c).unsqueeze(-1) * diff / r**lam
    return torch.where(ok.unsqueeze(-1), terms, torch.zeros_like(terms)).sum(0) / s.u.shape[0]


@given(stein_cases())
@example(
    SteinCase(
        Quadratic(torch.tensor([[2.0, 0.3], [0.3, 1.0]], dtype=F64), torch.tensor([1.0, -2.0], dtype=F64), 0.0),
        torch.tensor([1.0, 1.0], dtype=F64),
        0.5,
        0.0,
        0,
    )
)
def test_stein_identity_lambda_zero_gaussian(case: SteinCase) -> None:
    """lam = 0, u ~ N(m, sigma^2 I), fixed c: E[(f(U) - c)(m - U)] = -sigma^2 grad f_sigma(m) (Stein)."""
    n = case.m.shape[0]
    gen = torch.Generator().manual_seed(case.seed)
    u = case.m + case.sigma * torch.randn(STEIN_K, n, generator=gen)
    fu = case.f(u)
    est = potential_gradient(case.m, u, fu, case.c, 0.0).vector()
    per_sample = (fu - case.c).unsqueeze(-1) * (case.m - u)
    se = per_sample.std(0) / math.sqrt(STEIN_K)
    expected = -(case.sigma**2) * case.f.smoothed_grad(case.m)
    err = (est - expected).abs()
    target(float((err / (se + 1e-300)).max()), label="standard errors off")
    assert torch.all(err <= STEIN_Z * se + 1e3 * EPS * per_sample.abs().mean(0))


@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_stein_identity_detects_wrong_sign(sign: float) -> None:
    """The Stein check has power: a flipped estimate fails it by many standard errors on a plain case."""
    f = Quadratic(torch.diag(torch.tensor([1.0, 3.0])), torch.zeros(2), 0.0)
    m, sigma = torch.tensor([2.0, -1.0]), 0.3
    u = m + sigma * torch.randn(STEIN_K, 2, generator=torch.Generator().manual_seed(1))
    fu = f(u)
    est = sign * potential_gradient(m, u, fu, float(f(m)), 0.0).vector()
    se = ((fu - float(f(m))).unsqueeze(-1) * (m - u)).std(0) / math.sqrt(STEIN_K)
    ok = bool(torch.all((est + sigma**2 * f.smoothed_grad(m)).abs() <= STEIN_Z * se))
    assert ok == (sign > 0)


@given(sample_sets(allow_nonfinite=True), st.floats(0.0, 1.0))
def test_matches_direct_formula(s: SampleSet, lam_frac: float) -> None:
    """Where float64 holds every term, the log-space estimate equals the naive sum of eq. 28."""
    lam = lam_frac * s.x.shape[0]
    g = potential_gradient(s.x, s.u, s.fu, s.c, lam)
    direct = _direct(s, lam)
    diff = s.x - s.u
    r = torch.linalg.vector_norm(diff, dim=-1)
    ok = torch.isfinite(s.fu)
    scale = ((s.fu - s.c).abs() * r ** (1 - lam))[ok].sum() / s.u.shape[0] if bool(ok.any()) else torch.tensor(0.0)
    assert torch.allclose(g.vector(), direct, rtol=0.0, atol=float(1e3 * EPS * scale) + 1e-300)
    norm = float(torch.linalg.vector_norm(g.direction))
    assert norm == pytest.approx(1.0, abs=1e-12) or (norm == 0.0 and g.log_norm == -math.inf)


@given(sample_sets(), st.sampled_from([2.0**-40, 1e-3, 7.0, 2.0**40]), st.floats(0.0, 1.0))
def test_scale_covariance(s: SampleSet, t: float, lam_frac: float) -> None:
    """Scaling every distance by t leaves the direction and shifts log ||grad phi|| by (1 - lam) log t.

    Centred at 0 so the scaled points carry the same digits as the originals. Left out: a sum that cancels to
    rounding (below 1e-9 of the sum of its terms' sizes), whose direction is that of the rounding (two samples on
    one side of x in one dimension with lam = 1 and the level their mean: the terms are -a_1 and -a_2 = a_1).
    """
    lam = lam_frac * s.x.shape[0]
    zero, d = torch.zeros_like(s.x), s.u - s.x
    g1 = potential_gradient(zero, d, s.fu, s.c, lam)
    sizes = torch.log((s.fu - s.c).abs()) + (1 - lam) * torch.log(torch.linalg.vector_norm(d, dim=-1))
    assume(g1.log_norm > float(torch.logsumexp(sizes, 0)) - math.log(s.u.shape[0]) + math.log(1e-9))
    g2 = potential_gradient(zero, t * d, s.fu, s.c, lam)
    assert torch.allclose(g1.direction, g2.direction, atol=1e-9)
    if g1.log_norm != -math.inf:
        assert g2.log_norm == pytest.approx(g1.log_norm + (1 - lam) * math.log(t), abs=1e-9 * (1 + abs(g2.log_norm)))


@pytest.mark.parametrize("n", [200, 500])
def test_high_dimension_newton_kernel_is_finite(n: int) -> None:
    """n in the hundreds with lam = n: ||x - u||^n leaves float64, the direction does not."""
    gen = torch.Generator().manual_seed(n)
    x = torch.randn(n, generator=gen)
    u = x + 1e-3 * torch.randn(8, n, generator=gen)
    fu = torch.randn(8, generator=gen)
    assert not bool(torch.isfinite(torch.linalg.vector_norm(x - u, dim=-1) ** (-float(n))).all())
    g = potential_gradient(x, u, fu, float(fu.mean()), float(n))
    assert bool(torch.isfinite(g.direction).all()) and math.isfinite(g.log_norm)
    assert float(torch.linalg.vector_norm(g.direction)) == pytest.approx(1.0)


def test_kernel_log_weights_rejects_negative_power() -> None:
    with pytest.raises(ValueError, match="Invalid lam"):
        kernel_log_weights(torch.ones(3), -1.0)


@pytest.mark.parametrize("lam", [0.0, 1.0, 2.0])
def test_one_sample_step_attracts_good_and_repels_bad(lam: float) -> None:
    """Eq. 16: a better sample pulls x towards itself, a worse one pushes it away, by eps |f - c| r^{1 - lam}."""
    x, u = torch.tensor([0.0, 0.0]), torch.tensor([3.0, 4.0])
    good = one_sample_step(x, u, -2.0, 0.0, 0.1, lam)
    bad = one_sample_step(x, u, 2.0, 0.0, 0.1, lam)
    assert float((good - x) @ (u - x)) > 0 > float((bad - x) @ (u - x))
    assert float(torch.linalg.vector_norm(good - x)) == pytest.approx(0.1 * 2.0 * 5.0 ** (1 - lam))


@given(sample_sets(allow_nonfinite=True), st.floats(0.0, 1.0), st.floats(0.0, 2.0))
def test_vertex_steps_average_to_the_beam_step(s: SampleSet, lam_frac: float, eps: float) -> None:
    """Eq. 32's per-vertex points average to eq. 28's step; non-finite vertices stay at m."""
    lam = lam_frac * s.x.shape[0]
    steps = vertex_steps(s.x, s.u, s.fu, s.c, eps, lam)
    g = potential_gradient(s.x, s.u, s.fu, s.c, lam).vector()
    r = torch.linalg.vector_norm(s.x - s.u, dim=-1)
    ok = torch.isfinite(s.fu)
    scale = ((s.fu - s.c).abs() * r ** (1 - lam))[ok].sum() / s.u.shape[0] if bool(ok.any()) else torch.tensor(0.0)
    assert torch.allclose(steps.mean(0), s.x + eps * g, rtol=1e-12, atol=float(1e3 * EPS * eps * scale) + 1e-12)
    assert torch.equal(steps[~ok], s.x.expand_as(steps)[~ok])
