"""The samplers of p_U and Part III's radial importance sampling (eqs. 17-18)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor

from kaplinskiy.kaplinskii_propoi.descent import clamp
from kaplinskiy.kaplinskii_propoi.nonlocal_gradient import potential_gradient
from kaplinskiy.kaplinskii_propoi.sampling import SAMPLERS, ball_sample, cube_sample, radial_log_weight, radial_sample


@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_samplers_are_deterministic_for_a_generator_and_leave_the_global_rng_alone(name: str) -> None:
    m = torch.tensor([1.0, -2.0, 0.5])
    state = torch.get_rng_state()
    a, _ = SAMPLERS[name](m, 0.3, 16, torch.Generator().manual_seed(7))
    b, _ = SAMPLERS[name](m, 0.3, 16, torch.Generator().manual_seed(7))
    c, _ = SAMPLERS[name](m, 0.3, 16, torch.Generator().manual_seed(8))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert torch.equal(torch.get_rng_state(), state)


@pytest.mark.parametrize("bad", [0.0, -1.0, math.inf, math.nan])
def test_samplers_reject_a_bad_radius(bad: float) -> None:
    with pytest.raises(ValueError, match="Invalid sigma"):
        ball_sample(torch.zeros(2), bad, 3, None)


def test_ball_and_cube_stay_in_their_sets() -> None:
    m, g = torch.tensor([3.0, -1.0]), torch.Generator().manual_seed(0)
    u, _ = ball_sample(m, 0.5, 2000, g)
    assert float(torch.linalg.vector_norm(u - m, dim=-1).max()) <= 0.5
    v, _ = cube_sample(m, 0.5, 2000, g)
    assert float((v - m).abs().max()) <= 0.25


@pytest.mark.parametrize("n", [2, 5, 50])
def test_radial_radius_law(n: int) -> None:
    """Eq. 17 with alpha = n - 1: r uniform on [0, R] (mean R/2), every point in B_R, weights eq. 18."""
    m, R, K = torch.zeros(n), 2.0, 20000
    u, log_iw = radial_sample(m, R, K, torch.Generator().manual_seed(n))
    r = torch.linalg.vector_norm(u - m, dim=-1)
    assert float(r.max()) <= R
    assert float(r.mean()) == pytest.approx(R / 2, abs=4 * R / math.sqrt(12 * K))
    assert torch.allclose(log_iw, math.log(n) + (n - 1) * torch.log(r / R))


def test_radial_weights_are_an_unbiased_change_of_measure() -> None:
    """E_q[(p_U/q) h(U)] = E_{p_U}[h(U)] for h = r^2 (uniform ball in n = 3: E r^2 = 3 R^2 / 5)."""
    n, R, K = 3, 1.5, 200000
    u, log_iw = radial_sample(torch.zeros(n), R, K, torch.Generator().manual_seed(3))
    r2 = (u * u).sum(-1)
    est = float((torch.exp(log_iw) * r2).mean())
    assert est == pytest.approx(3 * R**2 / 5, rel=0.01)


def test_radial_weights_cancel_the_newton_pole() -> None:
    """With lam = n and alpha = n - 1 every sample's kernel magnitude times its weight is the same constant."""
    n = 4
    r = torch.tensor([1e-8, 1e-3, 0.5, 1.0])
    log_terms = (1 - n) * torch.log(r) + radial_log_weight(r, 1.0, n - 1.0, n)
    assert torch.allclose(log_terms, log_terms[0].expand_as(log_terms))


def test_radial_sampling_gives_a_descent_direction_on_a_sphere() -> None:
    """A sanity check of the whole estimator: grad phi at m points towards the minimiser 0."""
    n, m = 10, torch.full((10,), 1.0)
    u, log_iw = radial_sample(m, 0.5, 400, torch.Generator().manual_seed(0))
    fu = (u * u).sum(-1)
    g = potential_gradient(m, u, fu, float(fu.mean()), float(n), log_iw)
    assert float(g.direction @ (-m / m.norm())) > 0.8


def test_radial_rejects_alpha_out_of_range() -> None:
    with pytest.raises(ValueError, match="Invalid alpha"):
        radial_sample(torch.zeros(2), 1.0, 3, None, alpha=2.0)


def _clamped_terms(x: Tensor, u: Tensor, c: float, lam: float, log_iw: Tensor | None) -> Tensor:
    """Per-sample terms of eq. 28 with the samples moved onto the unit box, as ``beam_proposal`` does."""
    v = clamp(u, torch.zeros(2), torch.ones(2))
    fu = (v * v).sum(-1)
    w = torch.ones_like(fu) if log_iw is None else torch.exp(log_iw)
    diff = x - v
    return (w * (fu - c)).unsqueeze(-1) * diff / torch.linalg.vector_norm(diff, dim=-1, keepdim=True) ** lam


def test_clamped_radial_samples_keep_an_unbiased_estimate_for_the_clamped_cloud() -> None:
    """Eq. 18's weight of the *drawn* radius keeps eq. 28 unbiased when the sample is then moved to the box.

    E_q[(p_U/q)(U) h(Pi U)] = E_{p_U}[h(Pi U)] for any h: the radial estimate and a uniform-ball one (the same
    clamping) estimate the same vector, that of the clamped cloud. Reweighting by the clamped radius instead
    would be biased, and the test tells the two apart.
    """
    m, x, R, K, c, lam = torch.tensor([0.05, 0.1]), torch.tensor([0.3, 0.4]), 0.5, 400_000, 0.2, 1.0
    u, log_iw = radial_sample(m, R, K, torch.Generator().manual_seed(11))
    radial = _clamped_terms(x, u, c, lam, log_iw)
    ball = _clamped_terms(x, ball_sample(m, R, K, torch.Generator().manual_seed(12))[0], c, lam, None)
    se = torch.sqrt(radial.var(0) / K + ball.var(0) / K)
    assert torch.all((radial.mean(0) - ball.mean(0)).abs() < 5 * se)
    clamped_r = torch.linalg.vector_norm(clamp(u, torch.zeros(2), torch.ones(2)) - m, dim=-1)
    reweighted = _clamped_terms(x, u, c, lam, radial_log_weight(clamped_r, R, 1.0, 2))
    assert torch.any((reweighted.mean(0) - ball.mean(0)).abs() > 5 * se)
    v = clamp(u, torch.zeros(2), torch.ones(2))
    library = potential_gradient(x, v, (v * v).sum(-1), c, lam, log_iw).vector()
    assert torch.allclose(library, radial.mean(0), rtol=1e-9, atol=0.0)


def test_radial_pole_is_cancelled_only_for_samples_inside_the_box() -> None:
    """Weight times Newton kernel at the centre is R^{1-n} inside the box, larger for a sample moved onto it."""
    n, R = 2, 0.5
    m = torch.tensor([0.05, 0.5])
    u, log_iw = radial_sample(m, R, 2000, torch.Generator().manual_seed(5))
    v = clamp(u, torch.zeros(n), torch.ones(n))
    moved = (v != u).any(-1)
    log_terms = (1 - n) * torch.log(torch.linalg.vector_norm(m - v, dim=-1)) + log_iw
    constant = math.log(n) + (1 - n) * math.log(R)
    assert bool(moved.any()) and bool((~moved).any())
    assert torch.allclose(log_terms[~moved], torch.full_like(log_terms[~moved], constant))
    assert bool((log_terms[moved] > constant + 1e-12).all())
