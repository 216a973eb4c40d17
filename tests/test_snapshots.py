"""The dense memory's directions from candidates made a chunk at a time (kaplinskiy.memory.snapshots): the same
directions as from the candidates held together, within the Gram matrix's resolution, with at most ``held``
samples' gradients made at once."""

from __future__ import annotations

import itertools

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import kaplinskiy.memory.dense as memory_dense
from kaplinskiy import DenseMemory, orthonormal_extension, sample_loss
from kaplinskiy.memory.snapshots import chunks_made, snapshot_extension


def _projector(N: torch.Tensor) -> torch.Tensor:
    return N @ N.T


@st.composite
def _extension_cases(draw):
    """A stored basis ``Q`` (n x q) and candidates ``C = Q M + P diag(s) V^T`` (n x N) whose part off ``Q`` has
    distinct singular values ``s`` (halving from 1 down to at least 1/64, so the top ``k`` are unambiguous) and
    possibly fewer of them than columns (dependent candidates); the candidates split into random chunks."""
    n = draw(st.integers(4, 30))
    q = draw(st.integers(0, n // 2))
    r = draw(st.integers(0, min(n - q, 6)))
    N = draw(st.integers(max(r, 1), 12))
    seed = draw(st.integers(0, 2**31 - 1))
    gen = torch.Generator().manual_seed(seed)
    basis, _ = torch.linalg.qr(torch.randn(n, n, generator=gen))
    Q, P = basis[:, :q], basis[:, q : q + r]
    V, _ = torch.linalg.qr(torch.randn(N, max(r, 1), generator=gen))
    s = 2.0 ** -torch.randperm(7, generator=gen)[:r].double()
    C = Q @ torch.randn(q, N, generator=gen) + (P * s) @ V[:, :r].T
    cuts = sorted(draw(st.lists(st.integers(1, N - 1), max_size=4, unique=True))) if N > 1 else []
    k = draw(st.integers(0, r + 1))
    return Q, C, [0, *cuts, N], k


@settings(max_examples=60)
@given(_extension_cases())
def test_snapshot_extension_keeps_the_directions_of_the_candidates_held_together(case) -> None:
    """Same number of directions, same span (to the Gram matrix's resolution), orthonormal and off ``Q``."""
    Q, C, edges, k = case
    chunks = [C[:, a:b] for a, b in itertools.pairwise(edges)]
    held = orthonormal_extension(Q, C, k, 1e-6)
    made = snapshot_extension(Q, lambda i: chunks[i], len(chunks), k, 1e-6)
    assert made.shape == held.shape
    assert torch.dist(_projector(made), _projector(held)) <= 1e-9
    assert torch.dist(made.T @ made, torch.eye(made.shape[1])) <= 1e-12
    assert (Q.T @ made).norm() <= 1e-12


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(5, 7), nn.Tanh(), nn.Linear(7, 3)).eval()


def _data(n: int = 11) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(1)
    return torch.randn(n, 5, generator=gen), torch.randint(0, 3, (n,), generator=gen)


@pytest.mark.parametrize("held", [1, 2, 4, 10])
def test_add_task_with_held_samples_stores_the_directions_of_all_held_together(held: int, monkeypatch) -> None:
    """Two tasks, the second with a budget below its rank: the bases' spans, counts and drops agree with
    the gradients held together, and ``per_sample_gradients`` is never asked for more than ``held`` samples, as
    many times as the progress bar counts."""
    model, (x, y) = _model(), _data()
    whole, chunked = (DenseMemory(list(model.parameters()), k_per_task=6, drop_tol=1e-4) for _ in range(2))
    for task in (slice(0, 5), slice(5, 11)):
        whole.add_task(model, x[task], y[task], sample_loss)
    sizes = []
    real = memory_dense.per_sample_gradients

    def counted(model, fn, inputs, targets, params, chunk_size=None):
        sizes.append(inputs.shape[0])
        return real(model, fn, inputs, targets, params, chunk_size=chunk_size)

    monkeypatch.setattr(memory_dense, "per_sample_gradients", counted)
    for task in (slice(0, 5), slice(5, 11)):
        chunked.add_task(model, x[task], y[task], sample_loss, held=held)
    assert (chunked.rank, chunked.n_tasks, chunked.n_dropped) == (whole.rank, whole.n_tasks, whole.n_dropped)
    assert torch.dist(_projector(chunked.basis), _projector(whole.basis)) <= 1e-8
    assert max(sizes) <= held
    assert len(sizes) == sum(1 if n <= held else chunks_made(-(-n // held)) for n in (5, 6))


def test_progress_counts_every_batch_made(capsys) -> None:
    pytest.importorskip("tqdm")
    model, (x, y) = _model(), _data()
    memory = DenseMemory(list(model.parameters()), k_per_task=4, drop_tol=1e-4)
    memory.add_task(model, x, y, sample_loss, held=3, progress=True)
    err, total = capsys.readouterr().err, chunks_made(4)
    assert "DenseMemory: held samples: 100%" in err and f"{total}/{total}" in err


def test_held_is_refused_where_the_gram_matrix_cannot_resolve_the_basis() -> None:
    model, (x, y) = _model(), _data()
    memory = DenseMemory(list(model.parameters()), k_per_task=4)  # float64, drop_tol sqrt(eps64)
    with pytest.raises(ValueError, match="Invalid held"):
        memory.add_task(model, x, y, sample_loss, held=3)
    with pytest.raises(ValueError, match="Invalid held: 0"):
        memory.add_task(model, x, y, sample_loss, held=0)
    float32 = _model().float()
    memory = DenseMemory(list(float32.parameters()), k_per_task=4)  # float32's default drop_tol is resolved
    assert memory.add_task(float32, x.float(), y, sample_loss, held=3) == 4


def test_a_non_finite_gradient_in_a_later_chunk_leaves_the_memory_as_it_was() -> None:
    model, (x, y) = _model(), _data()
    memory = DenseMemory(list(model.parameters()), k_per_task=4, drop_tol=1e-4)
    memory.add_task(model, x[:4], y[:4], sample_loss)
    before = memory.basis.clone()
    x = x.clone()
    x[9] = float("inf")
    with pytest.raises(ValueError, match="non-finite"):
        memory.add_task(model, x, y, sample_loss, held=4)
    assert memory.n_tasks == 1 and torch.equal(memory.basis, before)
