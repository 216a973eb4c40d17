"""Recording the old task's layer inputs (:mod:`kaplinskiy.memory.layerwise.recording`): Linear layers that read one
tensor (a transformer's query, key and value projections; its gate and up projections) share one factor, made once, and
grow the bases they would grow recorded one by one; an input changed between its readers, or readers whose earlier
inputs differed, are recorded apart."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import Tensor, nn

from kaplinskiy import LayerwiseMemory
from kaplinskiy.functional.memory_update import energy_basis_update_rows, stacked_factor
from kaplinskiy.memory.layerwise.coverage import AttentionInProjection
from kaplinskiy.memory.layerwise.recording import record_layer_inputs


class _Block(nn.Module):
    """A LLaMA-shaped block: separate query, key and value projections of one input, an output projection, and a
    gated MLP whose gate and up projections read one input. With ``copies``, each projection reads its own copy
    of its input, as a recording without sharing sees them."""

    def __init__(self, d: int = 6, bias: bool = False) -> None:
        super().__init__()
        self.q, self.k, self.v, self.o = (nn.Linear(d, d, bias=bias) for _ in range(4))
        self.gate, self.up = nn.Linear(d, 2 * d, bias=bias), nn.Linear(d, 2 * d, bias=bias)
        self.down = nn.Linear(2 * d, d, bias=bias)
        self.copies = False

    def _read(self, x: Tensor) -> Tensor:
        return x.clone() if self.copies else x

    def forward(self, x: Tensor) -> Tensor:
        attention = torch.softmax(self.q(self._read(x)) @ self.k(self._read(x)).transpose(-1, -2), dim=-1)
        h = x + self.o(attention @ self.v(self._read(x)))
        return h + self.down(torch.nn.functional.silu(self.gate(self._read(h))) * self.up(self._read(h)))


def _layers(model: _Block) -> list[nn.Module]:
    return [model.q, model.k, model.v, model.o, model.gate, model.up, model.down]


@pytest.mark.parametrize("bias", [False, True])
def test_layers_that_read_one_tensor_share_one_factor_and_grow_the_bases_they_would_alone(bias: bool) -> None:
    """q, k and v hold one factor object, gate and up another, o and down their own; every factor, and every
    basis over two tasks, equals (bit for bit) that of a recording where each layer reads its own copy."""
    torch.manual_seed(0)
    model = _Block(bias=bias).eval()
    tasks = [[torch.randn(2, 5, 6) for _ in range(3)] for _ in range(2)]
    layers = _layers(model)
    shared = record_layer_inputs(model, layers, [bias] * len(layers), tasks[0]).factors
    model.copies = True
    alone = record_layer_inputs(model, layers, [bias] * len(layers), tasks[0]).factors
    groups = [{id(shared[i]) for i in group} for group in ([0, 1, 2], [3], [4, 5], [6])]
    assert [len(g) for g in groups] == [1, 1, 1, 1] and len(set.union(*groups)) == 4
    assert len({id(f) for f in alone}) == len(layers)
    for a, b in zip(shared, alone, strict=True):
        assert torch.equal(a, b)
    memories = []
    for copies in (False, True):
        twin = copy.deepcopy(model)
        twin.copies = copies
        memory = LayerwiseMemory(twin, threshold=0.9, max_new_per_task=3)
        for task in tasks:
            memory.add_task(task)
        memories.append(memory)
    for U, V in zip(memories[0].bases, memories[1].bases, strict=True):
        assert U.shape[1] > 0 and torch.equal(U, V)
    assert len({U.data_ptr() for U in memories[0].bases}) == len(layers)  # equal bases, each its own tensor


class _Readers(nn.Module):
    """Two Linear layers fed by the forward below, which says what each reads."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Linear(4, 3), nn.Linear(4, 3)


def _reference(inputs: list[Tensor]) -> Tensor:
    """The factor of ``inputs`` (with the bias' input of 1), joined batch by batch as the recording joins them."""
    factor = None
    for x in inputs:
        rows = torch.cat([x, x.new_ones(x.shape[0], 1)], dim=1)
        factor = stacked_factor([rows] if factor is None else [factor, rows])
    return factor


def test_an_input_changed_in_place_between_its_readers_is_recorded_as_each_read_it() -> None:
    """``a`` reads ``x``, then ``x`` is doubled in place, then ``b`` reads it: ``b``'s factor is that of ``2x``,
    not ``a``'s (the tensor is the same object, its version is not)."""
    torch.manual_seed(1)
    model = _Readers().eval()
    xs = [torch.randn(5, 4) for _ in range(2)]

    def forward(m: _Readers, x: Tensor) -> None:
        x = x.clone()
        m.a(x)
        x.mul_(2)
        m.b(x)

    factors = record_layer_inputs(model, [model.a, model.b], [True, True], xs, forward).factors
    torch.testing.assert_close(factors[0], _reference(xs), rtol=0, atol=1e-12)
    torch.testing.assert_close(factors[1], _reference([2 * x for x in xs]), rtol=0, atol=1e-12)


def test_readers_share_a_factor_only_while_everything_they_read_was_one() -> None:
    """Batches where ``a`` and ``b`` read one tensor, then different ones, then one again: each factor is that
    of its own inputs (after the batch where they differ, their factors differ for good)."""
    torch.manual_seed(2)
    model = _Readers().eval()
    xs = [torch.randn(5, 4) for _ in range(3)]
    other = torch.randn(5, 4)

    def forward(m: _Readers, batch: tuple[Tensor, bool]) -> None:
        x, apart = batch
        m.a(x)
        m.b(other if apart else x)

    batches = [(xs[0], False), (xs[1], True), (xs[2], False)]
    factors = record_layer_inputs(model, [model.a, model.b], [True, True], batches, forward).factors
    assert factors[0] is not factors[1]
    torch.testing.assert_close(factors[0], _reference(xs), rtol=0, atol=1e-12)
    torch.testing.assert_close(factors[1], _reference([xs[0], other, xs[2]]), rtol=0, atol=1e-12)


def test_recording_under_inference_mode_gives_the_bases_of_an_ordinary_recording() -> None:
    """Tensors made under ``torch.inference_mode`` keep no version counter: they are recorded, not shared."""
    torch.manual_seed(3)
    model = _Block().eval()
    batches = [torch.randn(2, 5, 6) for _ in range(2)]
    ordinary, inference = LayerwiseMemory(model, threshold=0.95), LayerwiseMemory(model, threshold=0.95)
    ordinary.add_task(batches)
    with torch.inference_mode():
        inference.add_task(batches)
    for U, V in zip(ordinary.bases, inference.bases, strict=True):
        assert U.shape[1] > 0 and torch.equal(U, V)


def test_layers_that_share_a_task_s_factor_grow_their_own_earlier_bases() -> None:
    """``a`` and ``b`` read different inputs in the first task and one tensor in the second: the second task's
    factor is shared, but each grows its own basis from the first, as a recording of copies grows them."""
    torch.manual_seed(4)
    first = [(torch.randn(2, 4), torch.randn(2, 4)) for _ in range(2)]
    second = [torch.randn(2, 4) for _ in range(2)]
    bases = []
    for copies in (False, True):
        model = _Readers().eval()

        def forward(m: _Readers, batch: Tensor | tuple[Tensor, Tensor], copies: bool = copies) -> None:
            x, y = batch if isinstance(batch, tuple) else (batch, batch.clone() if copies else batch)
            m.a(x)
            m.b(y)

        memory = LayerwiseMemory(model, threshold=1.0)
        memory.add_task(first, forward)
        memory.add_task(second, forward)
        bases.append(memory.bases)
    assert not torch.equal(bases[0][0], bases[0][1])
    for U, V in zip(*bases, strict=True):
        assert torch.equal(U, V)


def test_a_hugging_face_llama_records_one_factor_for_q_k_v_and_one_for_gate_up() -> None:
    """In Hugging Face's LLaMA the query, key and value projections read one tensor, and so do the gate and up
    projections: each block records three factors for its seven Linear layers."""
    transformers = pytest.importorskip("transformers")
    config = transformers.LlamaConfig(
        vocab_size=32, hidden_size=16, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2,
        num_key_value_heads=1, max_position_embeddings=16,
    )  # fmt: skip
    torch.manual_seed(5)
    model = transformers.LlamaForCausalLM(config).eval()
    memory = LayerwiseMemory(model, threshold=0.99)
    batches = [torch.randint(0, 32, (2, 6)) for _ in range(2)]
    linear = [i for i, m in enumerate(memory.layers) if isinstance(m, nn.Linear) and m is not model.lm_head]
    factors = record_layer_inputs(model, [memory.layers[i] for i in linear], [False] * len(linear), batches).factors
    blocks = [model.model.layers[b] for b in range(2)]
    expected = [[b.self_attn.q_proj, b.self_attn.k_proj, b.self_attn.v_proj] for b in blocks]
    expected += [[b.mlp.gate_proj, b.mlp.up_proj] for b in blocks]
    by_layer = {id(memory.layers[i]): f for i, f in zip(linear, factors, strict=True)}
    for group in expected:
        assert len({id(by_layer[id(m)]) for m in group}) == 1
    assert len({id(f) for f in factors}) == 4 * len(blocks)  # with o_proj and down_proj, their own


def test_fewer_inputs_than_their_width_make_a_short_factor_and_the_bases_of_a_square_one() -> None:
    """A layer 40 inputs wide sees 3 batches of 4: its factor has 12 rows, not 40 (each QR, and the SVD that reads
    it, works on those rows alone), its ``R^T R`` is the inputs' covariance, and the basis grown from it is that
    of the square factor padded with zero rows (to rounding), and grows square once the inputs outnumber the
    width."""
    torch.manual_seed(3)
    model = nn.Sequential(nn.Linear(40, 3)).eval()
    xs = [torch.randn(4, 40) for _ in range(3)]
    (factor,) = record_layer_inputs(model, [model[0]], [True], xs).factors
    rows = torch.cat([torch.cat([x, torch.ones(4, 1)], dim=1) for x in xs])
    assert factor.shape == (12, 41)
    torch.testing.assert_close(factor.T @ factor, rows.T @ rows, rtol=0, atol=1e-12)
    square = stacked_factor([rows], square=True)
    assert square.shape == (41, 41) and not square[12:].any()
    memory = LayerwiseMemory(model, threshold=0.95)
    memory.add_task(xs)
    U = energy_basis_update_rows(torch.zeros(41, 0), square, 0.95)
    torch.testing.assert_close(memory.bases[0].abs(), U.abs(), rtol=0, atol=1e-12)  # columns up to sign
    more = [torch.randn(20, 40) for _ in range(3)]
    assert record_layer_inputs(model, [model[0]], [True], more).factors[0].shape == (41, 41)


class _Cross(nn.Module):
    """A cross-attention: 2 queries attend to 5 memory tokens."""

    def __init__(self) -> None:
        super().__init__()
        self.attention = nn.MultiheadAttention(16, 2, batch_first=True)

    def forward(self, batch: tuple[Tensor, Tensor]) -> Tensor:
        queries, memory = batch
        return self.attention(queries, memory, memory, need_weights=False)[0]


def test_an_attention_s_blocks_keep_short_factors_stacked_to_the_longest() -> None:
    """The input projection's query block has seen 2 inputs, its key and value blocks 5: the three factors are
    stacked 5 rows high (zero rows under the query's 2), each with its own inputs' covariance."""
    torch.manual_seed(4)
    model = _Cross().eval()
    queries, memory = torch.randn(1, 2, 16), torch.randn(1, 5, 16)
    layers = LayerwiseMemory(model).layers
    i = next(k for k, m in enumerate(layers) if isinstance(m, AttentionInProjection))
    biased = [getattr(m, "bias", None) is not None for m in layers]
    factors = record_layer_inputs(model, layers, biased, [(queries, memory)]).factors[i]
    assert factors.shape == (3, 5, 17) and not factors[0, 2:].any()
    for block, x in zip(factors, (queries, memory, memory), strict=True):
        rows = torch.cat([x[0], torch.ones(x.shape[1], 1)], dim=1)
        torch.testing.assert_close(block.T @ block, rows.T @ rows, rtol=0, atol=1e-12)


def test_a_layer_called_with_its_input_by_name_is_recorded_as_by_position() -> None:
    torch.manual_seed(5)
    model = _Readers().eval()
    xs = [torch.randn(5, 4) for _ in range(2)]

    def forward(m: _Readers, x: Tensor) -> None:
        m.a(input=x)
        m.b(x)

    factors = record_layer_inputs(model, [model.a, model.b], [True, True], xs, forward).factors
    torch.testing.assert_close(factors[0], factors[1], rtol=0, atol=0)
