"""Recording a task in several passes (``LayerwiseMemory.add_task(max_factor_bytes=...)``): runs of consecutive
layers, each recorded in its own pass over the batches, hold at most the budget at once, free their factors before
the next pass, and grow the bases of one pass bit for bit; whatever is refused leaves the memory as it was."""

from __future__ import annotations

import itertools
import weakref
from collections.abc import Iterator

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch import Tensor, nn

import kaplinskiy.memory.layerwise.memory as memory_layerwise
from kaplinskiy import LayerwiseMemory
from kaplinskiy.memory.layerwise.bases import basis_size
from kaplinskiy.memory.layerwise.recording import factor_bytes, recording_passes


class _Mixed(nn.Module):
    """An embedding, three Linear layers reading one tensor, a decoder layer (self- and cross-attention, MLP) and
    a convolution: every kind of recorded statistic."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(12, 8)
        self.q, self.k, self.v = (nn.Linear(8, 8) for _ in range(3))
        self.decoder = nn.TransformerDecoderLayer(8, 2, dim_feedforward=16, dropout=0.0, batch_first=True)
        self.conv = nn.Conv1d(8, 4, 3, padding=1)

    def forward(self, batch: tuple[Tensor, Tensor]) -> Tensor:
        tokens, context = batch
        x = self.embed(tokens)
        x = x + self.q(x) * torch.sigmoid(self.k(x)) + self.v(x)
        return self.conv(self.decoder(x, context).transpose(1, 2))


def _model() -> _Mixed:
    torch.manual_seed(0)
    return _Mixed().double().eval()


def _task(seed: int) -> list[tuple[Tensor, Tensor]]:
    gen = torch.Generator().manual_seed(seed)
    return [
        (torch.randint(0, 12, (2, 5), generator=gen), torch.randn(2, 4, 8, generator=gen, dtype=torch.float64))
        for _ in range(3)
    ]


def _budgets(memory: LayerwiseMemory) -> list[int]:
    """The smallest budget (each pass holds the largest layer's factor at most) and one of about a third."""
    sizes = [factor_bytes(m, b is not None) for m, (_, b) in zip(memory.layers, memory._slots, strict=True)]
    return [max(sizes), max(max(sizes), sum(sizes) // 3)]


def test_passes_grow_the_bases_of_one_pass_bit_for_bit() -> None:
    """Over two tasks, with a budget that puts one layer in each pass and one that puts several: the same bases
    (bit for bit) and the same gains as recording every layer in one pass."""
    one = LayerwiseMemory(_model(), threshold=0.95, max_new_per_task=5)
    gains = [one.add_task(_task(seed)) for seed in (1, 2)]
    for budget in _budgets(one):
        memory = LayerwiseMemory(_model(), threshold=0.95, max_new_per_task=5)
        biased = [b is not None for _, b in memory._slots]
        assert len(recording_passes(memory.model, memory.layers, biased, budget)) > 2
        assert [memory.add_task(_task(seed), max_factor_bytes=budget) for seed in (1, 2)] == gains
        for U, V in zip(memory.bases, one.bases, strict=True):
            assert torch.equal(U, V)
        assert memory.n_tasks == 2
    assert all(U.shape[-1] > 0 for U in one.bases)


def test_each_pass_holds_at_most_the_budget_and_frees_its_factors_before_the_next(monkeypatch) -> None:
    """The factors a pass returns add up to at most the budget (each distinct tensor counted once), and none of
    them is alive when the next pass starts recording."""
    memory = LayerwiseMemory(_model(), threshold=0.95)
    budget = _budgets(memory)[1]
    record = memory_layerwise.record_layer_inputs
    earlier: list[weakref.ref[Tensor]] = []
    held: list[int] = []

    def recording(*args, **kwargs):
        assert all(ref() is None for ref in earlier), "a factor of the previous pass is still alive"
        recorded = record(*args, **kwargs)
        distinct = {id(f): f for f in recorded.factors if f is not None}.values()
        held.append(sum(f.numel() * f.element_size() for f in distinct))
        earlier[:] = [weakref.ref(f) for f in distinct]
        return recorded

    monkeypatch.setattr(memory_layerwise, "record_layer_inputs", recording)
    memory.add_task(_task(1), max_factor_bytes=budget)
    assert len(held) > 2 and max(held) <= budget


class _Shrinking:
    """Batches that lose their last one after the first pass (a DataLoader whose sampler changed)."""

    def __init__(self, batches: list) -> None:
        self.batches, self.passes = batches, 0

    def __iter__(self) -> Iterator:
        self.passes += 1
        return iter(self.batches if self.passes == 1 else self.batches[:-1])


def _unchanged(memory: LayerwiseMemory, before: list[Tensor]) -> bool:
    return memory.n_tasks == 1 and all(U is V for U, V in zip(memory.bases, before, strict=True))


def test_what_is_refused_leaves_the_memory_as_it_was() -> None:
    """A generator where several passes are needed, a budget below one layer's factor (the layer named), batches
    that change between passes, and non-finite inputs met in a later pass: each refused after the memory grew
    from one task, which it keeps, its basis objects included."""
    memory = LayerwiseMemory(_model(), threshold=0.95)
    memory.add_task(batch for batch in _task(1))  # one pass: a generator is fine
    before = list(memory.bases)
    budget = _budgets(memory)[0]
    with pytest.raises(ValueError, match="iterator"):
        memory.add_task((batch for batch in _task(2)), max_factor_bytes=budget)
    with pytest.raises(ValueError, match=r"recording layer 'conv' holds"):
        memory.add_task(_task(2), max_factor_bytes=budget - 1)
    with pytest.raises(ValueError, match="Invalid max_factor_bytes: 0"):
        memory.add_task(_task(2), max_factor_bytes=0)
    with pytest.raises(ValueError, match=r"pass 2 of .* ran on 2 batches, pass 1 on 3"):
        memory.add_task(_Shrinking(_task(2)), max_factor_bytes=budget)
    assert _unchanged(memory, before)
    with torch.no_grad():
        memory.model.decoder.linear2.weight.fill_(1e308)  # overflows the convolution's inputs, the last pass's
    with pytest.raises(ValueError, match=r"inputs of 'conv' hold NaN or infinite"):
        memory.add_task(_task(2), max_factor_bytes=budget)
    assert _unchanged(memory, before)


@given(
    widths=st.lists(st.integers(1, 9), min_size=2, max_size=5),
    bias=st.booleans(),
    seed=st.integers(0, 2**16),
    extra=st.integers(0, 2000),
)
def test_any_budget_grows_the_bases_of_one_pass(widths: list[int], bias: bool, seed: int, extra: int) -> None:
    """A random MLP, a random budget at or above its largest factor: the passes hold at most the budget each, and
    two tasks grow the bases (and the gains) of one pass, bit for bit."""
    torch.manual_seed(seed)
    layers = [nn.Linear(a, b, bias=bias) for a, b in itertools.pairwise(widths)]
    model = nn.Sequential(*itertools.chain.from_iterable((layer, nn.Tanh()) for layer in layers)).eval()
    gen = torch.Generator().manual_seed(seed)
    tasks = [[torch.randn(3, widths[0], generator=gen) for _ in range(2)] for _ in range(2)]
    sizes = [factor_bytes(layer, bias) for layer in layers]
    budget = max(sizes) + extra
    one, passes = (LayerwiseMemory(model, threshold=0.9) for _ in range(2))
    assert [one.add_task(task) for task in tasks] == [passes.add_task(task, max_factor_bytes=budget) for task in tasks]
    assert all(torch.equal(U, V) for U, V in zip(one.bases, passes.bases, strict=True))
    runs = recording_passes(model, passes.layers, [bias] * len(layers), budget)
    assert sorted(i for run in runs for i in run) == list(range(len(layers)))
    assert all(sum(sizes[i] for i in run) <= budget for run in runs)


def test_a_compiled_forward_is_recorded_in_passes_as_the_eager_one() -> None:
    """A forward compiled and run before the memory: recording runs it eagerly, so each pass's hooks fire (Dynamo
    does not guard on module hooks) and the bases are those of one eager pass, bit for bit."""
    torch._dynamo.reset()
    one = LayerwiseMemory(_model(), threshold=0.95)
    one.add_task(_task(1))
    model = _model()
    compiled = torch.compile(model, backend="eager")
    with torch.no_grad():
        compiled(_task(1)[0])
    memory = LayerwiseMemory(model, threshold=0.95)
    memory.add_task(_task(1), forward=lambda _, batch: compiled(batch), max_factor_bytes=_budgets(memory)[0])
    assert all(torch.equal(U, V) for U, V in zip(memory.bases, one.bases, strict=True))


def test_a_forward_that_calls_no_covered_layer_is_refused() -> None:
    memory = LayerwiseMemory(_model(), threshold=0.95)
    with pytest.raises(ValueError, match="ran on 3 batches but called no covered layer"):
        memory.add_task(_task(1), forward=lambda model, batch: batch[1].sum())
    assert memory.n_tasks == 0
    used_up = iter(_task(1))
    list(used_up)
    with pytest.warns(UserWarning, match=r"gave no batch \(an iterator used up before\?\)") as caught:
        memory.add_task(used_up)  # no batches: nothing to record, said, not refused (a rank may have none)
    assert caught[0].filename == __file__
    assert memory.n_tasks == 0 and all(basis_size(U) == 0 for U in memory.bases)  # a task without data is not one
    memory.add_task(_task(1))
    assert memory.n_tasks == 1 and all(basis_size(U) > 0 for U in memory.bases)
