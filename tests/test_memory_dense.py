"""Dense memory (OGD style, eqs. 11-12): orthonormal, budgeted, and it annihilates what it stores."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings, target
from hypothesis import strategies as st
from strategies import GradientSet, gradient_sets, tolerance
from strategies_optim import TaskPair, eq12_tolerance, task_pairs

from kaplinskiy import DenseMemory, orthonormal_extension, per_sample_gradients, sample_loss
from kaplinskiy.regularizers.per_sample import ground_truth_logit


def _memory_for(G: torch.Tensor, **kw) -> DenseMemory:
    return DenseMemory([torch.zeros(G.shape[0])], **kw)


@settings(max_examples=50)
@given(gradient_sets(), gradient_sets())
def test_extension_is_orthonormal_and_orthogonal_to_what_is_stored(a: GradientSet, b: GradientSet) -> None:
    n = a.G.shape[0]
    C = b.G[:n] if b.G.shape[0] >= n else torch.cat([b.G, torch.zeros(n - b.G.shape[0], b.G.shape[1])])
    mem = _memory_for(a.G, k_per_task=50)
    mem.add_directions(a.G)
    mem.add_directions(C)
    Q = mem.basis
    err = (Q.T @ Q - torch.eye(Q.shape[1])).abs().max().item() if Q.shape[1] else 0.0
    target(err, label="orthonormality")
    assert err <= tolerance(n, factor=1e3)
    assert Q.shape[1] <= n


@given(gradient_sets())
def test_stored_directions_are_annihilated(case: GradientSet) -> None:
    """G_A^T P_perp g = 0 for every stored column, to rounding (eq. 11-12 on the memory)."""
    mem = _memory_for(case.G, k_per_task=max(1, case.G.shape[1]))
    mem.add_directions(case.G)
    g = case.g.clone()
    mem.project_([g])
    scale = torch.linalg.matrix_norm(case.G, ord=2).item() * case.g.norm().item() if case.G.numel() else 0.0
    err = (case.G.T @ g).abs().max().item() if case.G.numel() else 0.0
    assert err <= tolerance(*case.G.shape, factor=1e4) * scale
    assert mem.rank == case.rank or scale == 0.0


def test_budget_per_task_and_cap_and_dependence() -> None:
    n = 10
    mem = DenseMemory([torch.zeros(n)], k_per_task=3, max_vectors=5)
    C = torch.randn(n, 4)
    assert mem.add_directions(torch.cat([C, C[:, :1] * 2.0], dim=1)) == 3  # dependent column dropped, k caps
    assert mem.add_directions(torch.randn(n, 4)) == 2  # the total cap leaves room for two
    assert mem.rank == 5 and mem.n_dropped == 1 and mem.n_tasks == 2
    assert mem.add_directions(mem.basis[:, :2] @ torch.randn(2, 3)) == 0  # already in the span
    with pytest.raises(ValueError, match="Invalid directions"):
        mem.add_directions(torch.randn(n + 1, 2))


def test_kept_directions_are_the_principal_ones() -> None:
    """With a budget k below the candidates' rank, the top-k singular directions are kept (PCA-OGD)."""
    n = 6
    C = torch.diag(torch.tensor([5.0, 0.1, 3.0, 0.0, 0.0, 0.0]))[:, :3]
    Q = orthonormal_extension(torch.zeros(n, 0), C, 2, 1e-8)
    assert torch.allclose((Q @ Q.T).diagonal(), torch.tensor([1.0, 0, 1.0, 0, 0, 0]), atol=1e-12)


@settings(max_examples=25)
@given(task_pairs())
def test_loss_gradient_memory_gives_eq12_for_the_old_task(case: TaskPair) -> None:
    """With per-sample loss gradients stored, grad L_A lies in span(G_A), so grad L_A . P_perp g = 0."""
    params = list(case.model.parameters())
    mem = DenseMemory(params, k_per_task=64)
    mem.add_task(case.model, case.xa, case.ya, sample_loss)
    g = [torch.randn_like(p) for p in params]
    g_norm = sum(float((t * t).sum()) for t in g) ** 0.5
    mem.project_(g)
    ga = case.grad_a()
    num = abs(sum(float((a * b).sum()) for a, b in zip(ga, g, strict=True)))
    norm = sum(float((a * a).sum()) for a in ga) ** 0.5 * g_norm
    n = sum(p.numel() for p in params)
    assert num <= eq12_tolerance(n) * max(norm, 1e-300)


@settings(max_examples=20)
@given(task_pairs(), st.sampled_from([sample_loss, ground_truth_logit]))
def test_per_sample_gradients_match_a_loop(case: TaskPair, fn) -> None:
    params = list(case.model.parameters())
    G = per_sample_gradients(case.model, fn, case.xa, case.ya)
    for s in range(case.xa.shape[0]):
        val = fn(case.model(case.xa[s : s + 1]), case.ya[s])
        row = torch.cat([g.reshape(-1) for g in torch.autograd.grad(val, params)])
        assert torch.allclose(G[s], row, rtol=1e-12, atol=1e-12)


def test_state_dict_round_trip() -> None:
    p = torch.zeros(4)
    mem = DenseMemory([p])
    mem.add_directions(torch.randn(4, 2))
    other = DenseMemory([p])
    other.load_state_dict(mem.state_dict())
    assert torch.equal(other.basis, mem.basis) and other.n_tasks == 1


@pytest.mark.parametrize(
    ("kw", "name"),
    [({"k_per_task": 0}, "k_per_task"), ({"max_vectors": 0}, "max_vectors"), ({"drop_tol": 0.0}, "drop_tol")],
)
def test_bad_arguments(kw, name) -> None:
    with pytest.raises(ValueError, match=f"Invalid {name}"):
        DenseMemory([torch.zeros(2)], **kw)


def test_a_basis_beyond_the_budget_is_not_loaded() -> None:
    p = torch.zeros(6)
    mem = DenseMemory([p])
    mem.add_directions(torch.randn(6, 3))
    with pytest.raises(ValueError, match="at most 2"):
        DenseMemory([p], max_vectors=2).load_state_dict(mem.state_dict())
