"""EWC's Fisher (eq. 6) from per-sample gradients, online accumulation, and the anchoring penalty R."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from strategies_optim import TaskPair, task_pairs
from torch import nn

from kaplinskiy import (
    ElasticAnchor,
    empirical_fisher_diagonal,
    ewc_penalty,
    l2sp_penalty,
    online_fisher,
    true_fisher_diagonal,
)


def _loop_grads(model: nn.Module, value: torch.Tensor) -> list[torch.Tensor]:
    return list(torch.autograd.grad(value, list(model.parameters()), retain_graph=True))


@settings(max_examples=25)
@given(task_pairs())
def test_empirical_fisher_matches_a_per_sample_loop(case: TaskPair) -> None:
    F = empirical_fisher_diagonal(case.model, case.xa, case.ya)
    ref = [torch.zeros_like(p) for p in case.model.parameters()]
    for s in range(case.xa.shape[0]):
        loss = nn.functional.cross_entropy(case.model(case.xa[s : s + 1]), case.ya[s : s + 1])
        for r, g in zip(ref, _loop_grads(case.model, loss), strict=True):
            r += g.pow(2) / case.xa.shape[0]
    assert all(torch.allclose(a, b, rtol=1e-12, atol=1e-14) for a, b in zip(F, ref, strict=True))


@settings(max_examples=25)
@given(task_pairs())
def test_true_fisher_matches_a_loop_over_samples_and_classes(case: TaskPair) -> None:
    F = true_fisher_diagonal(case.model, case.xa)
    ref = [torch.zeros_like(p) for p in case.model.parameters()]
    for s in range(case.xa.shape[0]):
        logp = torch.log_softmax(case.model(case.xa[s : s + 1])[0], dim=0)
        for c in range(logp.shape[0]):
            for r, g in zip(ref, _loop_grads(case.model, logp[c]), strict=True):
                r += logp[c].exp().detach() * g.pow(2) / case.xa.shape[0]
    assert all(torch.allclose(a, b, rtol=1e-12, atol=1e-14) for a, b in zip(F, ref, strict=True))


def test_fisher_is_not_the_square_of_the_mean_gradient() -> None:
    """Two samples with opposite gradients: the mean gradient is zero, the Fisher is not."""
    model = nn.Linear(1, 2, bias=False)
    with torch.no_grad():
        model.weight.zero_()
    x, y = torch.tensor([[1.0], [-1.0]]), torch.tensor([0, 0])
    F = empirical_fisher_diagonal(model, x, y)
    assert F[0].sum() > 0.1


def test_online_accumulation_and_anchor() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2))
    xs, ys = [torch.randn(5, 3) for _ in range(2)], [torch.randint(2, (5,)) for _ in range(2)]
    anchor = ElasticAnchor(model.parameters(), lam=2.0, fisher="empirical", gamma=0.5)
    anchor.consolidate(model, xs[0], ys[0])
    f1 = empirical_fisher_diagonal(model, xs[0], ys[0])
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1)
    anchor.consolidate(model, xs[1], ys[1])
    f2 = empirical_fisher_diagonal(model, xs[1], ys[1])
    assert all(torch.allclose(a, 0.5 * b + c) for a, b, c in zip(anchor.fisher, f1, f2, strict=True))
    assert all(torch.equal(a, p) for a, p in zip(anchor.anchors, model.parameters(), strict=True))
    assert online_fisher(None, f1)[0] is not f1[0]


@pytest.mark.parametrize("kind", ["identity", "empirical", "true"])
def test_penalty_gradient_is_lam_F_times_the_displacement(kind: str) -> None:
    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(3, 2))
    x, y = torch.randn(4, 3), torch.randint(2, (4,))
    anchor = ElasticAnchor(model.parameters(), lam=3.0, fisher=kind)
    anchor.consolidate(model, x, y)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p))
    auto = torch.autograd.grad(anchor.penalty(), list(model.parameters()))
    model.zero_grad()
    anchor.add_gradient_()
    assert all(torch.allclose(a, p.grad) for a, p in zip(auto, model.parameters(), strict=True))
    if kind == "identity":
        assert torch.allclose(anchor.penalty(), l2sp_penalty(list(model.parameters()), anchor.anchors, 3.0))


def test_round_trip_and_bad_arguments() -> None:
    model = nn.Linear(2, 2)
    anchor = ElasticAnchor(model.parameters(), lam=1.0, fisher="true")
    anchor.consolidate(model, torch.randn(3, 2))
    other = ElasticAnchor(model.parameters(), lam=1.0, fisher="true")
    other.load_state_dict(anchor.state_dict())
    assert torch.equal(other.penalty(), anchor.penalty())
    with pytest.raises(ValueError, match="Invalid consolidate"):
        ElasticAnchor(model.parameters(), lam=1.0).consolidate()
    for kw, name in [({"lam": -1.0}, "lam"), ({"fisher": "full"}, "fisher"), ({"gamma": 2.0}, "gamma")]:
        with pytest.raises(ValueError, match=f"Invalid {name}"):
            ElasticAnchor(model.parameters(), **{"lam": 1.0, **kw})
    with pytest.raises(ValueError, match="Invalid lam"):
        ewc_penalty([torch.zeros(1)], [torch.zeros(1)], [torch.ones(1)], -1.0)


@pytest.mark.parametrize("kind", ["empirical", "true"])
def test_fisher_chunks_hold_at_most_chunk_size_samples_and_give_the_same_fisher(kind: str, monkeypatch) -> None:
    """``chunk_size`` bounds what is held at once: no (N, n) matrix of per-sample gradients or Jacobians."""
    import kaplinskiy.regularizers.fisher as fisher

    torch.manual_seed(2)
    model = nn.Sequential(nn.Linear(3, 5), nn.Tanh(), nn.Linear(5, 3))
    x, y = torch.randn(11, 3), torch.randint(3, (11,))

    def compute(chunk_size: int | None) -> list[torch.Tensor]:
        if kind == "empirical":
            return fisher.empirical_fisher_diagonal(model, x, y, chunk_size=chunk_size)
        return fisher.true_fisher_diagonal(model, x, chunk_size=chunk_size)

    whole = compute(None)
    held: list[int] = []
    spied, name = (
        (fisher.per_sample_gradients, "per_sample_gradients") if kind == "empirical" else (fisher.vmap, "vmap")
    )

    def spy(*args, **kwargs):
        if name == "per_sample_gradients":
            held.append(args[2].shape[0])
            return spied(*args, **kwargs)
        batched = spied(*args, **kwargs)
        return lambda values, inputs: (held.append(inputs.shape[0]), batched(values, inputs))[1]

    monkeypatch.setattr(fisher, name, spy)
    chunked = compute(4)
    assert held == [4, 4, 3]
    assert all(torch.allclose(a, b, rtol=1e-12, atol=1e-15) for a, b in zip(chunked, whole, strict=True))
    with pytest.raises(ValueError, match="Invalid chunk_size"):
        compute(0)
    with pytest.raises(ValueError, match="no samples"):
        fisher.empirical_fisher_diagonal(model, x[:0], y[:0])


def test_consolidate_passes_chunk_size_to_the_fisher(monkeypatch) -> None:
    import kaplinskiy.regularizers.elastic_anchor as anchor_penalty

    seen: list[int | None] = []
    real = anchor_penalty.empirical_fisher_diagonal
    monkeypatch.setattr(
        anchor_penalty,
        "empirical_fisher_diagonal",
        lambda *a, chunk_size=None, **k: (seen.append(chunk_size), real(*a, chunk_size=chunk_size, **k))[1],
    )
    model = nn.Linear(3, 2)
    ElasticAnchor(model.parameters(), lam=1.0).consolidate(
        model, torch.randn(5, 3), torch.randint(2, (5,)), chunk_size=2
    )
    assert seen == [2]


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("kind", ["empirical", "true"])
def test_half_precision_fisher_is_squared_in_float32(dtype: torch.dtype, kind: str) -> None:
    """A float16 model's Fisher is not 0 where its squared gradients fall below float16's range: the first
    layer's gradients, about 1e-4 on inputs of that size, square to about 1e-8 (float16's smallest number is 6e-8).
    Squared and summed in float32, it matches the float64 Fisher to the precision of the half-precision gradients."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 3))
    x, y = 1e-4 * torch.randn(64, 8), torch.randint(0, 3, (64,))
    fisher = empirical_fisher_diagonal if kind == "empirical" else true_fisher_diagonal
    args = (x, y) if kind == "empirical" else (x,)
    ref = fisher(model, *args)
    half = fisher(model.to(dtype), x.to(dtype), *args[1:])
    assert all(f.dtype == torch.float32 for f in half)
    assert ref[0].max() < 6e-8  # the first layer's squares are below float16's range
    for a, b in zip(half, ref, strict=True):
        assert ((a == 0) & (b > 0)).sum() == 0
        assert (a.double() - b).abs().sum() / b.abs().sum() < 3e-2


def test_half_precision_anchor_keeps_a_float32_fisher_and_gives_half_gradients() -> None:
    """EWC on a float16 model: the Fisher stays in float32 through a state_dict round trip (cast to float16, the
    small values would be 0 again), and the penalty's gradient has the weight's dtype (an optimizer needs it). With
    EWC's usual large ``lam``, ``lam F (w - w*)`` is within float16's range though ``F`` is not."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 3)).to(torch.float16)
    x, y = (1e-4 * torch.randn(64, 8)).to(torch.float16), torch.randint(0, 3, (64,))
    anchor = ElasticAnchor(model.parameters(), lam=1e5)
    anchor.consolidate(model, x, y)
    restored = ElasticAnchor(model.parameters(), lam=1e5)
    restored.load_state_dict(anchor.state_dict())
    pairs = zip(restored.fisher, anchor.fisher, strict=True)
    assert all(f.dtype == torch.float32 and torch.equal(f, g) for f, g in pairs)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.01)
    restored.add_gradient_()
    assert all(p.grad.dtype == torch.float16 and p.grad.abs().sum() > 0 for p in model.parameters())


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_penalty_is_summed_in_float32(dtype: torch.dtype) -> None:
    """R(w), EWC's and L2-SP's, of float16 weights 1e-4 from their anchors: each square, 1e-8, is below float16's
    range, so a penalty formed in float16 is 0; formed in float32 it matches the float64 one."""
    torch.manual_seed(0)
    anchors = [torch.randn(50, 20), torch.randn(20)]
    params = [(a + 1e-4 * torch.randn_like(a)).to(dtype) for a in anchors]
    anchors = [a.to(dtype) for a in anchors]
    fisher = [torch.rand_like(a, dtype=torch.float32) for a in anchors]
    got = ewc_penalty(params, anchors, fisher, lam=2.0)
    ref = ewc_penalty([p.double() for p in params], [a.double() for a in anchors], [f.double() for f in fisher], 2.0)
    assert got.dtype == torch.float32 and ref > 0
    assert abs(float(got) - float(ref)) < 1e-5 * float(ref)
    got, ref = l2sp_penalty(params, anchors, 2.0), l2sp_penalty([p.double() for p in params], anchors, 2.0)
    assert got.dtype == torch.float32 and abs(float(got) - float(ref)) < 1e-5 * float(ref)
