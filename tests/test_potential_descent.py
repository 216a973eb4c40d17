"""Potential descent (sec. 5.4): Phi never increases across Armijo steps, and eq. (12) holds."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from strategies import QuadraticProblem, quadratic_problems, tolerance

from kaplinskiy import orthonormal_basis, potential_descent_step


@given(quadratic_problems(), st.integers(0, 5), st.floats(1e-3, 10.0), st.integers(0, 2**31 - 1))
def test_phi_is_monotone_over_a_run(problem: QuadraticProblem, k: int, eta0: float, seed: int) -> None:
    """Twenty Armijo-accepted projected steps: Phi(w_{t+1}) <= Phi(w_t) - c eta |slope| at every step."""
    n = problem.w0.shape[0]
    gen = torch.Generator().manual_seed(seed)
    basis = orthonormal_basis(torch.randn(n, min(k, n - 1) if n > 1 else 0, generator=gen))
    w = problem.w0
    c = 1e-4
    for _ in range(20):
        phi_before = float(problem.phi(w))
        w, cert = potential_descent_step(w, problem.phi, basis, eta0=eta0, c=c, max_trials=40)
        phi_after = float(problem.phi(w))
        s = cert.search
        assert phi_after == pytest.approx(s.phi_after, rel=1e-12, abs=1e-12)
        if s.accepted:
            assert phi_after <= phi_before + c * s.eta * s.slope
        else:
            assert phi_after == phi_before


@given(quadratic_problems(), st.integers(1, 4), st.integers(0, 2**31 - 1))
def test_first_order_forgetting_vanishes_when_grad_LA_is_in_the_memory(
    problem: QuadraticProblem, k: int, seed: int
) -> None:
    """Eq. (12): with G_A = [grad L_A(w), random columns], the certificate's grad L_A . d is 0."""
    n = problem.w0.shape[0]
    gen = torch.Generator().manual_seed(seed)
    HA = torch.randn(n, n, generator=gen)
    HA = HA @ HA.T
    wA = torch.randn(n, generator=gen)
    grad_old = HA @ (problem.w0 - wA)  # gradient of L_A(w) = 1/2 (w - wA)^T HA (w - wA) at w0
    G = torch.cat([grad_old[:, None], torch.randn(n, k - 1, generator=gen)], dim=1)
    _, cert = potential_descent_step(problem.w0, problem.phi, orthonormal_basis(G), eta0=1.0, grad_old=grad_old)
    grad_phi_norm = torch.func.grad(problem.phi)(problem.w0).norm().item()
    assert abs(cert.old_task_slope) <= tolerance(n, k) * grad_old.norm().item() * grad_phi_norm


def test_zero_gradient_is_a_no_op() -> None:
    w = torch.tensor([1.0, 2.0])
    w_new, cert = potential_descent_step(w, lambda v: ((v - w) ** 2).sum(), torch.zeros(2, 0), eta0=1.0)
    assert torch.equal(w_new, w) and not cert.search.accepted and cert.search.n_trials == 0


def test_fixed_step_without_armijo_is_plain_projected_gradient_descent() -> None:
    w = torch.tensor([1.0, -2.0, 0.5])
    basis = orthonormal_basis(torch.tensor([[1.0], [0.0], [0.0]]))
    w_new, cert = potential_descent_step(w, lambda v: 0.5 * (v**2).sum(), basis, eta0=0.1, armijo=False)
    assert torch.allclose(w_new, torch.tensor([1.0, -1.8, 0.45]))
    assert cert.search.n_trials == 1 and cert.step_norm == pytest.approx(0.1 * (4 + 0.25) ** 0.5)


def test_flat_vector_is_required() -> None:
    with pytest.raises(ValueError, match="Invalid w"):
        potential_descent_step(torch.zeros(2, 2), lambda v: v.sum(), torch.zeros(4, 0), eta0=1.0)
