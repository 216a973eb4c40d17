"""Projector laws for P_perp(G_A) (eqs. 11-12) on random memories of random rank."""

from __future__ import annotations

import pytest
import torch
from hypothesis import example, given, target
from hypothesis import strategies as st
from strategies import GradientSet, gradient_sets, tolerance

from kaplinskiy import complement_projector, orthonormal_basis, project_out, projected_direction


@given(gradient_sets())
def test_basis_is_orthonormal_with_the_true_rank(case: GradientSet) -> None:
    Q = orthonormal_basis(case.G)
    n, r = Q.shape
    assert r == case.rank
    err = (Q.T @ Q - torch.eye(r)).abs().max().item() if r else 0.0
    target(err, label="orthonormality error")
    assert err <= tolerance(n)


@given(gradient_sets())
def test_projector_is_symmetric_and_idempotent(case: GradientSet) -> None:
    P = complement_projector(orthonormal_basis(case.G))
    n = P.shape[0]
    assert torch.allclose(P, P.T, rtol=0, atol=tolerance(n))
    err = (P @ P - P).abs().max().item()
    target(err, label="idempotence error")
    assert err <= tolerance(n)


@given(gradient_sets())
def test_projection_annihilates_the_memory(case: GradientSet) -> None:
    """G_A^T P_perp g = 0: the projected vector has no component along any stored direction."""
    Q = orthonormal_basis(case.G)
    pg = project_out(case.g, Q)
    scale = torch.linalg.matrix_norm(case.G, ord=2).item() * case.g.norm().item() if case.G.numel() else 0.0
    err = (case.G.T @ pg).abs().max().item() if case.G.numel() else 0.0
    target(err / (scale or 1.0), label="relative residual")
    assert err <= tolerance(*case.G.shape) * scale


@given(gradient_sets(), st.integers(0, 2**31 - 1))
@example(GradientSet(torch.zeros(3, 2, dtype=torch.float64), torch.ones(3, dtype=torch.float64), 0), 0)
def test_old_task_gradient_is_orthogonal_to_the_direction(case: GradientSet, seed: int) -> None:
    """Eq. (12): if grad L_A lies in span(G_A), then grad L_A . d = 0 for d = -P_perp g."""
    gen = torch.Generator().manual_seed(seed)
    coef = torch.randn(case.G.shape[1], generator=gen, dtype=torch.float64)
    grad_old = case.G @ coef
    d = projected_direction(case.g, orthonormal_basis(case.G))
    err = abs(float(grad_old @ d))
    bound = tolerance(*case.G.shape) * grad_old.norm().item() * case.g.norm().item()
    target(err / (bound or 1.0), label="eq. 12 residual over tolerance")
    assert err <= bound


@given(gradient_sets())
def test_projection_keeps_what_is_orthogonal_and_never_lengthens(case: GradientSet) -> None:
    """P_perp g is the closest point of the complement: ||P g|| <= ||g||, and P(P g) = P g."""
    Q = orthonormal_basis(case.G)
    pg = project_out(case.g, Q)
    n = case.g.shape[0]
    assert pg.norm() <= case.g.norm() * (1 + tolerance(n))
    assert torch.allclose(project_out(pg, Q), pg, rtol=tolerance(n), atol=tolerance(n) * case.g.norm().item())


def test_empty_and_zero_memories_leave_the_gradient_alone() -> None:
    g = torch.randn(5)
    for G in (torch.zeros(5, 0), torch.zeros(5, 3)):
        Q = orthonormal_basis(G)
        assert Q.shape == (5, 0)
        assert torch.equal(project_out(g, Q), g)


def test_full_rank_memory_projects_everything_away() -> None:
    G = torch.randn(4, 6)
    assert project_out(torch.randn(4), orthonormal_basis(G)).abs().max() < 1e-12


@pytest.mark.parametrize(
    ("G", "message"),
    [
        (torch.zeros(3), "2-D"),
        (torch.zeros(3, 2, dtype=torch.int64), "floating-point"),
        (torch.tensor([[float("nan")], [1.0]]), "non-finite"),
    ],
)
def test_bad_memory_is_rejected_with_a_clear_message(G: torch.Tensor, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        orthonormal_basis(G)


def test_shape_mismatch_is_rejected() -> None:
    with pytest.raises(ValueError, match="Invalid shapes"):
        project_out(torch.zeros(4), torch.zeros(3, 1))
