"""Dilatation/reflection operators (1994b, eqs. 39, 45-48), charges (eq. 33) and memory (eqs. 43-44)."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from strategies_kp import SampleSet, sample_sets

from kaplinskiy.kaplinskii_propoi.second_order import (
    apply_dilations,
    dilation_operator,
    memory_coefficient,
    sample_charges,
    sample_coefficients,
)


@st.composite
def unit_vectors(draw, max_n: int = 10) -> torch.Tensor:
    n = draw(st.integers(1, max_n))
    z = torch.randn(n, generator=torch.Generator().manual_seed(draw(st.integers(0, 2**31 - 1))), dtype=torch.float64)
    return z / z.norm()


betas = st.one_of(st.sampled_from([-1.0, 0.0, 1.0, 2.0]), st.floats(-5.0, 5.0))


@given(unit_vectors(), betas)
def test_operator_acts_on_theta_and_its_complement(theta: torch.Tensor, beta: float) -> None:
    """R theta = beta theta; R v = v for v orthogonal to theta; R is symmetric."""
    R = dilation_operator(theta, beta)
    assert torch.allclose(R @ theta, beta * theta, atol=1e-12)
    v = torch.randn(theta.shape[0], generator=torch.Generator().manual_seed(0))
    v = v - (v @ theta) * theta
    assert torch.allclose(R @ v, v, atol=1e-12)
    assert torch.allclose(R, R.T)


@given(unit_vectors(), st.floats(0.01, 100.0) | st.floats(-100.0, -0.01))
def test_inverse_is_the_reciprocal_coefficient(theta: torch.Tensor, beta: float) -> None:
    """[R_beta(theta)]^{-1} = R_{1/beta}(theta) (1994b, eqs. 47-48)."""
    eye = torch.eye(theta.shape[0])
    assert torch.allclose(dilation_operator(theta, beta) @ dilation_operator(theta, 1.0 / beta), eye, atol=1e-10)


@given(unit_vectors())
def test_special_coefficients(theta: torch.Tensor) -> None:
    """beta = -1 is the Householder reflection (orthogonal, det -1); beta = 0 the projector I - theta theta^T."""
    H = dilation_operator(theta, -1.0)
    assert torch.allclose(H @ H.T, torch.eye(theta.shape[0]), atol=1e-12)
    assert float(torch.linalg.det(H)) == pytest.approx(-1.0)
    P = dilation_operator(theta, 0.0)
    assert torch.allclose(P @ P, P, atol=1e-12) and float(P @ theta @ theta) == pytest.approx(0.0, abs=1e-12)


@given(st.integers(1, 8), st.integers(1, 8), st.integers(0, 2**31 - 1))
def test_apply_dilations_is_the_operator_sum(n: int, K: int, seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    thetas = torch.randn(K, n, generator=gen)
    thetas = thetas / thetas.norm(dim=-1, keepdim=True)
    betas = 3 * torch.randn(K, generator=gen)
    v = torch.randn(n, generator=gen)
    R = torch.eye(n) + sum(dilation_operator(t, float(b)) - torch.eye(n) for t, b in zip(thetas, betas, strict=True))
    assert torch.allclose(apply_dilations(v, thetas, betas), R @ v, atol=1e-10)


@given(st.integers(1, 8), st.integers(1, 8), st.integers(0, 2**31 - 1))
def test_memory_coefficients_keep_a_descent_direction(n: int, K: int, seed: int) -> None:
    """With every beta >= 1 (what eq. 44 produces) R = I + PSD, so R g . g >= ||g||^2."""
    gen = torch.Generator().manual_seed(seed)
    thetas = torch.randn(K, n, generator=gen)
    thetas = thetas / thetas.norm(dim=-1, keepdim=True)
    betas = 1.0 + 5 * torch.rand(K, generator=gen)
    g = torch.randn(n, generator=gen)
    assert float(apply_dilations(g, thetas, betas) @ g) >= float(g @ g) * (1 - 1e-12)


def test_memory_coefficient_rules() -> None:
    """Eq. 44: trust grows on a perspective sample aligned with grad phi, resets to 1 otherwise, is capped."""
    assert memory_coefficient(1.0, -2.0, 0.5, 0.5) == pytest.approx(1.5)
    assert memory_coefficient(1.5, -2.0, 0.5, 0.5) == pytest.approx(2.0)
    assert memory_coefficient(3.0, 2.0, 1.0, 5.0) == 1.0  # a = -7: reset
    assert memory_coefficient(1.0, -1.0, -1.0, 1.0) == 1.0  # misaligned perspective sample: no trust
    assert memory_coefficient(9.0, -10.0, 1.0, 1.0, sigma_max=10.0) == 10.0


@given(sample_sets(allow_nonfinite=True))
def test_charges_signs_and_normalisation(s: SampleSet) -> None:
    """nu_i < 0 exactly for the finite samples below c; mean |nu| = 1 unless every charge is 0."""
    nu = sample_charges(s.x, s.u, s.fu, s.c)
    assert bool(torch.isfinite(nu).all())
    finite = torch.isfinite(s.fu)
    assert bool((nu[finite & (s.fu < s.c)] <= 0).all()) and bool((nu[finite & (s.fu > s.c)] >= 0).all())
    assert bool((nu[~finite] == 0).all())
    total = float(nu.abs().mean())
    assert total == pytest.approx(1.0) or total == 0.0


@given(sample_sets(allow_nonfinite=True), st.floats(0.0, 0.999))
def test_sample_coefficients_keep_r_positive_definite(s: SampleSet, kappa: float) -> None:
    """Eqs. 41-42 with the rate kappa/K: every beta_i > 0 and R = I + sum (beta_i - 1) theta_i theta_i^T has
    its eigenvalues at least 1 - kappa, so y = R grad phi stays a descent direction."""
    nu = sample_charges(s.x, s.u, s.fu, s.c)
    betas = sample_coefficients(nu, kappa)
    assert bool((betas > 0).all())
    diff = (s.u - s.x).double()
    thetas = diff / diff.norm(dim=-1, keepdim=True).clamp_min(1e-300)
    R = torch.eye(s.x.shape[-1], dtype=torch.float64) + (thetas.T * (betas.double() - 1)) @ thetas
    assert float(torch.linalg.eigvalsh(R).min()) >= 1 - kappa - 1e-9


def test_charges_are_finite_for_n_in_the_hundreds() -> None:
    n = 400
    gen = torch.Generator().manual_seed(0)
    x = torch.zeros(n)
    u = 1e-3 * torch.randn(6, n, generator=gen)
    fu = torch.tensor([1.0, -1.0, 2.0, -2.0, 0.5, math.nan])
    nu = sample_charges(x, u, fu, 0.0)
    assert bool(torch.isfinite(nu).all()) and float(nu.abs().mean()) == pytest.approx(1.0)
