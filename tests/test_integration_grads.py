"""Gradients and parameters a real model brings: a sparse embedding (``nn.Embedding(sparse=True)``) under SGD or
SparseAdam, complex parameters, a dense memory over parameters of several dtypes. Each either works or is
refused with a message that says why, before anything deep inside fails."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

from kaplinskiy import DenseMemory, ForgettingGuard, HybridAdamW, LayerwiseMemory
from kaplinskiy._tensor_lists import max_abs


def test_max_abs_reads_sparse_and_complex_gradients() -> None:
    sparse = torch.sparse_coo_tensor(
        [[0, 2, 2]], [1.0, -3.0, 0.5], (4,), check_invariants=True
    )  # duplicates sum: entry 2 is -2.5
    complex_ = torch.tensor([1 - 4j, 2 + 0j])
    peaks = max_abs([sparse, complex_, torch.tensor([float("nan")])])
    assert peaks[:2].tolist() == [2.5, 4.0] and peaks[2].isnan()
    assert max_abs([torch.sparse_coo_tensor([[0]], [0.0], (3,), check_invariants=True)]).tolist() == [0.0]


@pytest.mark.parametrize("base", ["sgd", "sparse_adam"])
def test_update_mode_guards_a_sparse_embedding(base: str) -> None:
    """SGD and SparseAdam take sparse gradients; the guard's finite check reads them and its update-mode
    projection works on the dense update (the step stays off the memory)."""
    torch.manual_seed(0)
    emb = nn.Embedding(10, 4, sparse=True).float()
    memory = DenseMemory(emb.parameters(), k_per_task=2)
    memory.add_directions(torch.randn(memory.numel, 2, dtype=torch.float32))
    opt = (
        torch.optim.SGD(emb.parameters(), lr=0.1)
        if base == "sgd"
        else torch.optim.SparseAdam(list(emb.parameters()), lr=0.1)
    )
    guard = ForgettingGuard(opt, memory)
    w0 = emb.weight.detach().clone()
    emb(torch.tensor([1, 2, 2])).pow(2).sum().backward()
    assert emb.weight.grad.is_sparse
    guard.step()
    step = emb.weight.detach() - w0
    assert step.norm() > 0.01 and memory.residual([step]) < 1e-5 * float(step.norm())


def test_the_finite_check_rejects_a_non_finite_sparse_gradient() -> None:
    emb = nn.Embedding(5, 2, sparse=True).float()
    guard = ForgettingGuard(torch.optim.SGD(emb.parameters(), lr=0.1), _dense(emb))
    emb(torch.tensor([3])).sum().backward()
    emb.weight.grad = torch.sparse_coo_tensor(
        [[3]], [[float("inf"), 0.0]], (5, 2), dtype=torch.float32, check_invariants=True
    )
    w0 = emb.weight.detach().clone()
    with pytest.warns(RuntimeWarning, match="non-finite gradient"):
        guard.step()
    assert torch.equal(emb.weight, w0)


def test_a_guard_steps_a_model_with_a_sparse_embedding_outside_its_memory() -> None:
    """GPM on the Linear layers, SGD on everything, the embedding sparse: the embedding steps as SGD's."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Embedding(10, 4, sparse=True), nn.Linear(4, 3)).float()
    memory = LayerwiseMemory(model[1:], threshold=0.9)
    memory.add_task([torch.randn(6, 4, dtype=torch.float32)])
    guard = ForgettingGuard(torch.optim.SGD(model.parameters(), lr=0.1), memory)
    w0 = model[0].weight.detach().clone()
    model(torch.tensor([1, 2])).sum().backward()
    expected = w0 - 0.1 * model[0].weight.grad.to_dense()
    guard.step()
    torch.testing.assert_close(model[0].weight.detach(), expected)


def test_gradient_mode_over_a_sparse_gradient_says_to_project_the_update() -> None:
    emb = nn.Embedding(5, 2, sparse=True).float()
    guard = ForgettingGuard(torch.optim.SGD(emb.parameters(), lr=0.1), _dense(emb), project="gradient")
    emb(torch.tensor([3])).sum().backward()
    with pytest.raises(RuntimeError, match="project='update'"):
        guard.step()


@pytest.mark.parametrize("fused", [False, True])
def test_hybrid_adamw_refuses_a_sparse_gradient_as_adamw_does(fused: bool) -> None:
    emb = nn.Embedding(5, 2, sparse=True).float()
    opt = HybridAdamW(emb.parameters(), lr=0.1, fused=fused)
    emb(torch.tensor([3])).sum().backward()
    w0 = emb.weight.detach().clone()
    with pytest.raises(RuntimeError, match="does not support sparse gradients"):
        opt.step()
    assert torch.equal(emb.weight, w0)


def test_a_guard_steps_a_complex_parameter_outside_its_memory() -> None:
    torch.manual_seed(0)
    real = nn.Parameter(torch.randn(3, dtype=torch.float32))
    z = nn.Parameter(torch.randn(2, dtype=torch.complex64))
    memory = DenseMemory([real], k_per_task=1)
    memory.add_directions(torch.randn(3, 1, dtype=torch.float32))
    guard = ForgettingGuard(torch.optim.SGD([real, z], lr=0.1), memory)
    (real.sum() + (z.abs() ** 2).sum()).backward()
    expected = z.detach() - 0.1 * z.grad
    guard.step()
    torch.testing.assert_close(z.detach(), expected)


def test_a_dense_memory_refuses_complex_parameters() -> None:
    """Its basis is real (``Q^T``, not ``Q^H``): a complex memory's step was not orthogonal to it."""
    z = nn.Parameter(torch.randn(3, dtype=torch.complex64))
    with pytest.raises(ValueError, match="Invalid params: a complex parameter"):
        DenseMemory([z])
    with pytest.raises(ValueError, match="Invalid params: a complex parameter"):
        DenseMemory([nn.Parameter(torch.randn(3))], dtype=torch.complex128)


def test_a_dense_memory_keeps_its_basis_in_the_widest_dtype_whatever_the_order() -> None:
    """A float64 parameter beside a float32 one is projected in float64, listed first or not."""
    torch.manual_seed(0)
    a = nn.Parameter(torch.randn(4, dtype=torch.float32))
    b = nn.Parameter(torch.randn(3, dtype=torch.float64))
    for params in ([a, b], [b, a]):
        memory = DenseMemory(params, k_per_task=2)
        assert memory.dtype == torch.float64
        memory.add_directions(torch.randn(7, 2))
        step = [torch.randn_like(p) for p in params]
        memory.project_(step)
        assert memory.residual(step) < 1e-6  # float32 rounding at most, from the float32 parameter's part
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            guard = ForgettingGuard(torch.optim.SGD(params, lr=0.1), memory)
        for p in params:
            p.grad = torch.ones_like(p)
        w0 = [p.detach().clone() for p in params]
        guard.step()
        assert memory.residual([p.detach() - w for p, w in zip(params, w0, strict=True)]) < 1e-6


def _dense(emb: nn.Embedding) -> DenseMemory:
    memory = DenseMemory(emb.parameters(), k_per_task=1)
    memory.add_directions(torch.randn(memory.numel, 1, dtype=torch.float32))
    return memory
