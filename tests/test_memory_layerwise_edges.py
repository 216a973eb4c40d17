"""LayerwiseMemory at the edges real models reach: attention whose output projection is never called as a
module, a tied decoder with its own bias under the fused step's restore, dropout at recording time, inputs
with a wide spectrum in float32, bases edited in place, a model cast after use, a padding token, embeddings
that read other rows than their argument."""

from __future__ import annotations

import warnings
from collections.abc import Callable

import pytest
import torch
from strategies_optim import TiedLM
from torch import Tensor, nn

from kaplinskiy import ForgettingGuard, LayerwiseMemory


def _encoder(batch_first: bool) -> tuple[nn.Module, Callable[[nn.Module, Tensor], Tensor], Tensor]:
    layer = nn.TransformerEncoderLayer(8, 2, dim_feedforward=16, dropout=0.0, batch_first=batch_first)
    x = torch.randn(2, 3, 8, dtype=torch.float64)
    return layer, lambda model, batch: model(batch), x


def _decoder(batch_first: bool) -> tuple[nn.Module, Callable[[nn.Module, Tensor], Tensor], Tensor]:
    """Self-attention under a causal mask, and cross-attention to a memory with padded positions."""
    layer = nn.TransformerDecoderLayer(8, 2, dim_feedforward=16, dropout=0.0, batch_first=batch_first)
    memory = torch.randn(2, 4, 8, dtype=torch.float64)
    padded = torch.tensor([[False, False, False, True], [False, False, True, True]])
    if not batch_first:
        memory = memory.transpose(0, 1)
    causal = nn.Transformer.generate_square_subsequent_mask(3, dtype=torch.float64)

    def forward(model: nn.Module, batch: Tensor) -> Tensor:
        return model(batch, memory, tgt_mask=causal, tgt_is_causal=True, memory_key_padding_mask=padded)

    x = torch.randn(2, 3, 8, dtype=torch.float64)
    return layer, forward, x if batch_first else x.transpose(0, 1)


def _padded_stack(batch_first: bool) -> tuple[nn.Module, Callable[[nn.Module, Tensor], Tensor], Tensor]:
    """torch's TransformerEncoder with padded sequences: batch-first, in eval mode, it hands its layers nested
    tensors (the sequences without their padding)."""
    layer = nn.TransformerEncoderLayer(8, 2, dim_feedforward=16, dropout=0.0, batch_first=batch_first)
    stack = nn.TransformerEncoder(layer, 2, enable_nested_tensor=True)
    padded = torch.tensor([[False, False, True], [False, False, False]])
    x = torch.randn(2, 3, 8, dtype=torch.float64)
    return (
        stack,
        lambda model, batch: model(batch, src_key_padding_mask=padded),
        x if batch_first else x.transpose(0, 1),
    )


@pytest.mark.parametrize("batch_first", [True, False])
@pytest.mark.parametrize("build", [_encoder, _decoder, _padded_stack], ids=["encoder", "decoder", "padded stack"])
def test_attention_projections_are_covered_and_the_old_outputs_do_not_move(build, batch_first: bool) -> None:
    """nn.MultiheadAttention reads its input and output projections without calling a layer. Its packed input
    projection is covered as an AttentionInProjection, its out_proj by inputs computed again from the attention's
    arguments (masks included); with threshold 1 and the rest frozen, a projected step leaves the old outputs
    unchanged to first order, while an unprojected one moves them."""
    torch.manual_seed(0)
    layer, forward, xa = build(batch_first)
    layer = layer.double().eval()
    memory = LayerwiseMemory(layer, threshold=1.0, freeze_uncovered=True)
    attentions = [m for m in layer.modules() if isinstance(m, nn.MultiheadAttention)]
    covered = {id(m.weight) for m in memory.layers}
    assert all(id(a.in_proj_weight) in covered and id(a.out_proj.weight) in covered for a in attentions)
    assert all(p.ndim == 1 for p in memory.frozen_params())  # only LayerNorm scales and shifts are left
    memory.add_task([xa], forward=forward)
    assert all(memory._size(i) > 0 for i in range(len(memory.layers)))
    with torch.no_grad():  # as below: torch's encoder takes its nested path only without grad
        before = forward(layer, xa)

    def moved(project: bool) -> float:
        d = [torch.randn_like(p) for p in memory.params]
        if project:
            memory.project_(d)
        with torch.no_grad():
            for p, step in zip(memory.params, d, strict=True):
                p.add_(1e-7 * step)
            change = float((forward(layer, xa) - before).abs().max())
            for p, step in zip(memory.params, d, strict=True):
                p.sub_(1e-7 * step)
        return change

    assert moved(project=False) > 1e-9  # the test can fail
    assert moved(project=True) < 1e-13  # first order in a 1e-7 step: zero


def test_an_attention_with_its_own_key_and_value_sizes_is_left_uncovered_with_a_warning() -> None:
    model = nn.ModuleDict({"attention": nn.MultiheadAttention(8, 2, kdim=4, vdim=4), "head": nn.Linear(8, 2)})
    with pytest.warns(UserWarning, match=r"'attention.q_proj_weight'"):
        memory = LayerwiseMemory(model)
    assert memory.layers == [model["head"]]


def test_the_fused_restore_keeps_a_tied_decoders_old_rows_with_its_bias() -> None:
    """The restore around a fused step sets the old tokens' rows back, head bias entries included, after the
    head's own restore (which would otherwise move them again)."""
    torch.manual_seed(0)
    model = TiedLM(bias=True)
    memory = LayerwiseMemory(model, threshold=1.0)
    memory._backend = "torch"
    ids = torch.tensor([[0, 1, 2]])
    memory.add_task([ids])
    _, _, outside = memory.fused_layers()
    reference = memory.outside_coefficients(outside)
    rows = memory.bases[0]
    w0, b0 = model.tok.weight.detach().clone(), model.head.bias.detach().clone()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    memory.restore_outside_(reference)
    assert torch.equal(model.tok.weight[rows], w0[rows]) and torch.equal(model.head.bias[rows], b0[rows])
    hidden = torch.tanh(model.tok(ids))[0]
    step = torch.cat([model.tok.weight - w0, (model.head.bias - b0)[:, None]], dim=1)
    assert float((step @ torch.cat([hidden, torch.ones(3, 1)], dim=1).T).abs().max().detach()) < 1e-12


def test_recording_in_training_mode_with_dropout_is_refused() -> None:
    model = nn.Sequential(nn.Linear(4, 8), nn.Dropout(0.3), nn.Linear(8, 2))
    memory = LayerwiseMemory(model)
    with pytest.raises(ValueError, match=r"model.eval\(\)"):
        memory.add_task([torch.randn(5, 4)])
    model.eval()
    assert sum(memory.add_task([torch.randn(5, 4)])) > 0


def test_float32_inputs_with_a_wide_spectrum_keep_every_direction_at_threshold_one() -> None:
    """In float32, R R^T squares the condition number: singular values down to 1e-4 of the largest would be
    dropped. The statistics are kept in float64, so every direction stays and D x = 0 holds to float32."""
    torch.manual_seed(0)
    model = nn.Linear(100, 10).float()
    Q = torch.linalg.qr(torch.randn(100, 60, dtype=torch.float64))[0]
    x = (torch.randn(400, 60, dtype=torch.float64) * torch.logspace(0, -4, 60, dtype=torch.float64)) @ Q.T
    memory = LayerwiseMemory(model, threshold=1.0)
    memory.add_task([x.float()])
    assert memory.bases[0].shape[1] == 61  # 60 input directions and the bias' 1
    d = [torch.randn_like(p) for p in memory.params]
    memory.project_(d)
    xs = torch.cat([x, torch.ones(400, 1, dtype=torch.float64)], dim=1)
    D = torch.cat([d[0], d[1][:, None]], dim=1).double()
    assert float((D @ xs.T).norm() / (D.norm() * xs.norm())) < 1e-6


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_a_basis_edited_in_place_is_the_one_used(dtype: torch.dtype) -> None:
    torch.manual_seed(0)
    model = nn.Linear(6, 4).to(dtype)
    memory = LayerwiseMemory(model)
    memory._backend = "torch"
    memory.bases[0] = torch.linalg.qr(torch.randn(7, 2, dtype=torch.float64))[0].float()
    memory.project_([torch.randn(4, 6).to(dtype), torch.randn(4).to(dtype)])  # caches the views
    memory.stored_tensors()[0].copy_(torch.linalg.qr(torch.randn(7, 2, dtype=torch.float64))[0].float())
    d = [torch.randn(4, 6).to(dtype), torch.randn(4).to(dtype)]
    norm = float(torch.cat([d[0], d[1][:, None]], dim=1).float().norm())
    memory.project_(d)
    assert memory.residual(d) < 1e-2 * norm


def test_a_model_cast_after_the_memory_was_used_is_projected_in_its_new_dtype() -> None:
    torch.manual_seed(0)
    model = nn.Linear(6, 4)
    memory = LayerwiseMemory(model)
    memory._backend = "torch"
    memory.add_task([torch.randn(3, 6)])
    memory.project_([torch.randn_like(p) for p in memory.params])
    model.to(torch.bfloat16)
    d = [torch.randn_like(p) for p in memory.params]
    memory.project_(d)
    assert all(t.dtype == torch.bfloat16 for t in d)


def test_the_padding_row_takes_no_share_of_the_reads_and_only_a_slot_left_over() -> None:
    """The pad token gets no gradient: it takes no share of the energy, and a slot of the budget only where the
    other rows leave one (read four times of seven, it is still protected last)."""
    tokens = [torch.tensor([[0, 0, 0, 0, 7, 8, 9]])]
    capped = LayerwiseMemory(nn.Embedding(10, 4, padding_idx=0), threshold=1.0, max_per_layer=3)
    capped.add_task(tokens)
    assert sorted(capped.bases[0].tolist()) == [7, 8, 9]
    partial = LayerwiseMemory(nn.Embedding(10, 4, padding_idx=0), threshold=0.5)
    partial.add_task(tokens)
    assert partial.bases[0].tolist()[-1] == 0 and len(partial.bases[0]) == 3  # half of 7, 8, 9's reads, and the pad
    free = LayerwiseMemory(nn.Embedding(10, 4, padding_idx=0), threshold=1.0)
    free.add_task(tokens)
    free.add_task(tokens)  # protected once
    assert free.bases[0].tolist() == [7, 8, 9, 0]


def test_a_pad_token_the_old_task_reads_keeps_its_outputs_under_adamw_weight_decay() -> None:
    """The old task feeds the pad token as an ordinary input: its row gets no gradient, but AdamW's decay would
    shrink it, were it not zero (torch makes it zero; a pretrained table need not hold a zero row there: the
    old outputs moved by 0.09 when it was left unprotected); guarded steps now keep them."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Embedding(10, 4, padding_idx=0), nn.Linear(4, 3))
    with torch.no_grad():
        model[0].weight[0] = torch.randn(4)
    old, new = torch.tensor([[0, 1, 2, 0]]), torch.tensor([[0, 5, 6, 7]])
    memory = LayerwiseMemory(model, threshold=1.0, freeze_uncovered=True)
    memory.add_task([old])
    before = model(old).detach().clone()
    guard = ForgettingGuard(torch.optim.AdamW(model.parameters(), lr=0.1, weight_decay=0.5), memory)
    for _ in range(5):
        guard.zero_grad()
        model(new).square().sum().backward()
        guard.step()
    torch.testing.assert_close(model(old), before, rtol=0, atol=1e-12)


def test_a_state_that_does_not_fit_is_not_loaded() -> None:
    model = nn.Sequential(nn.Embedding(10, 4), nn.Linear(4, 3))
    memory = LayerwiseMemory(model)
    state = {"bases": [torch.zeros(4, 2), torch.zeros(5, 1)], "n_tasks": 1}
    with pytest.raises(ValueError, match="layer 0's basis of shape"):
        memory.load_state_dict(state)
    small = LayerwiseMemory(model, max_per_layer=1)
    with pytest.raises(ValueError, match="above max_per_layer"):
        small.load_state_dict({"bases": [torch.tensor([1, 2]), torch.zeros(5, 1)], "n_tasks": 1})


@pytest.mark.parametrize(
    "conv", [nn.Conv1d(3, 4, 3, padding=1, padding_mode="reflect"), nn.Conv2d(3, 4, 3), nn.Conv3d(3, 2, 2, stride=2)]
)
def test_unbatched_convolution_inputs_give_the_batched_basis(conv: nn.Module) -> None:
    """torch convolutions take an input without its batch axis; the memory records it as a batch of one."""
    torch.manual_seed(0)
    conv = conv.double()
    xs = [torch.randn(3, *([6] * (conv.weight.dim() - 2)), dtype=torch.float64) for _ in range(3)]
    unbatched, batched = LayerwiseMemory(conv, threshold=0.99), LayerwiseMemory(conv, threshold=0.99)
    unbatched.add_task(xs)
    batched.add_task([x.unsqueeze(0) for x in xs])
    assert unbatched.bases[0].shape[1] > 0
    torch.testing.assert_close(unbatched.bases[0], batched.bases[0])


def _weight_norm(layer: nn.Module) -> nn.Module:
    return nn.utils.parametrizations.weight_norm(layer)


@pytest.mark.parametrize("parametrize", [_weight_norm, nn.utils.parametrizations.spectral_norm])
def test_a_computed_weight_is_uncovered_with_a_warning(parametrize: Callable[[nn.Module], nn.Module]) -> None:
    """A parametrized weight is not a parameter: projecting its gradient would not constrain the parameters it
    is computed from, so the layer is uncovered (frozen with freeze_uncovered), and the user is told."""
    model = nn.Sequential(nn.Linear(4, 4), parametrize(nn.Linear(4, 2)))
    with pytest.warns(UserWarning, match="'1' are computed from other parameters"):
        memory = LayerwiseMemory(model, freeze_uncovered=True)
    assert memory.layers == [model[0]]
    frozen = {id(p) for p in memory.frozen_params()}
    assert {id(p) for p in model[1].parameters()} <= frozen


def test_a_sparse_embedding_and_an_uninitialised_lazy_layer_are_refused() -> None:
    with pytest.raises(ValueError, match="sparse=True"):
        LayerwiseMemory(nn.Sequential(nn.Embedding(10, 4, sparse=True), nn.Linear(4, 2)))
    LayerwiseMemory(nn.Sequential(nn.Embedding(10, 4, sparse=True).requires_grad_(False), nn.Linear(4, 2)))
    with pytest.raises(ValueError, match="lazy layer not yet initialised"):
        LayerwiseMemory(nn.Sequential(nn.LazyLinear(2)))


class _MaskPositions(nn.Embedding):
    """Like OPT's learned positions: called with the attention mask, reads the positions offset by 2."""

    def forward(self, mask: torch.Tensor) -> torch.Tensor:
        return super().forward(torch.cumsum(mask, 1) + 1)


class _SlicedPositions(nn.Embedding):
    """Like Whisper's decoder positions: indexes its weight, without F.embedding."""

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.weight[: ids.shape[1]]


class _OneHot(nn.Embedding):
    """Reads its weight through a matrix product: which rows matter is not a lookup."""

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return nn.functional.one_hot(ids, self.num_embeddings).to(self.weight.dtype) @ self.weight


@pytest.mark.parametrize(
    ("embedding", "rows"), [(_MaskPositions(10, 3), [2, 3, 4, 5]), (_SlicedPositions(10, 3), [0, 1, 2, 3])]
)
def test_an_embedding_protects_the_rows_it_reads_not_the_argument_it_is_called_with(
    embedding: nn.Embedding, rows: list[int]
) -> None:
    """The rows are counted where the weight is read (F.embedding, an index), not from the module's argument."""
    memory = LayerwiseMemory(embedding, threshold=1.0)
    memory.add_task(
        [
            torch.tensor([[7, 8, 9, 9]])
            if isinstance(embedding, _SlicedPositions)
            else torch.ones(2, 4, dtype=torch.long)
        ]
    )
    assert sorted(memory.bases[0].tolist()) == rows
    d = [torch.ones_like(embedding.weight)]
    memory.project_(d)
    assert d[0][rows].abs().sum() == 0 and d[0].abs().sum() == 3 * (10 - len(rows))


def test_an_embedding_called_without_reading_a_row_is_refused() -> None:
    memory = LayerwiseMemory(_OneHot(10, 3), threshold=1.0)
    with pytest.raises(ValueError, match="read no row of its weight"):
        memory.add_task([torch.tensor([[1, 2]])])


def test_weight_matrices_no_covered_layer_owns_are_named_in_a_warning_unless_frozen() -> None:
    """A bilinear layer and a raw matrix: weights no covered layer owns."""
    model = nn.ModuleDict({"conv": nn.Bilinear(2, 2, 3), "linear": nn.Linear(3, 3)})
    model.register_parameter("mixing", nn.Parameter(torch.randn(3, 3)))
    with pytest.warns(UserWarning, match=r"2 trainable weight tensors .*'mixing', 'conv.weight'"):
        LayerwiseMemory(model)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        LayerwiseMemory(model, freeze_uncovered=True)
        LayerwiseMemory(nn.Sequential(nn.Linear(3, 4), nn.LayerNorm(4), nn.Linear(4, 2)))  # scales and biases: silent
        LayerwiseMemory(nn.TransformerEncoderLayer(8, 2, 16, batch_first=True))  # attention is covered


def test_an_attention_called_with_positional_masks_is_recorded_as_with_keywords() -> None:
    """``attention(q, k, v, key_padding_mask, need_weights)``: the recorder reads every argument by its name."""
    torch.manual_seed(0)
    attention = nn.MultiheadAttention(16, 2, batch_first=True).double().eval()
    x = torch.randn(2, 3, 16, dtype=torch.float64)
    pad = torch.tensor([[False, False, True], [False, False, False]])
    bases = []
    for forward in (lambda m, b: m(b, b, b, pad, True), lambda m, b: m(b, b, b, key_padding_mask=pad)):
        memory = LayerwiseMemory(attention, threshold=1.0)
        memory.add_task([x], forward=forward)
        bases.append([U @ U.T for U in memory.bases])
    assert all(torch.allclose(a, b) for a, b in zip(*bases, strict=True))
    assert [U.shape[1] for U in memory.bases] == [6, 6]  # six positions recorded by each projection


def _complement(X: Tensor) -> Tensor:
    """``I - P``, the projector onto the orthogonal complement of the span of ``X``'s rows."""
    Q = torch.linalg.qr(X.T)[0][:, : int(torch.linalg.matrix_rank(X))]
    return torch.eye(X.shape[1], dtype=X.dtype) - Q @ Q.T


def _cross_attention_task() -> tuple[nn.MultiheadAttention, Tensor, Tensor]:
    """Cross-attention without biases whose queries lie in a plane of R^8 and whose keys and values (one memory
    tensor) lie in a 3-dimensional subspace meeting that plane only at 0."""
    torch.manual_seed(0)
    attention = nn.MultiheadAttention(8, 2, bias=False, batch_first=True).double().eval()
    basis = torch.linalg.qr(torch.randn(8, 5, dtype=torch.float64))[0].T
    queries = torch.randn(3, 4, 2, dtype=torch.float64) @ basis[:2]
    keys = torch.randn(3, 5, 3, dtype=torch.float64) @ basis[2:]
    return attention, queries, keys


def test_cross_attention_blocks_get_bases_of_their_own_inputs() -> None:
    """The query rows of a cross-attention's input projection are projected off the queries' span only, the key
    and value rows off the memory's: ``G_b (I - P_b)`` per block. One basis of the union (rank 5) would take from
    the query rows the memory's directions too, which no old output depends on through them."""
    attention, queries, keys = _cross_attention_task()
    memory = LayerwiseMemory(attention, threshold=1.0)
    memory.add_task([(queries, keys)], forward=lambda m, b: m(b[0], b[1], b[1], need_weights=False))
    i = next(i for i, m in enumerate(memory.layers) if m.weight is attention.in_proj_weight)
    assert memory.bases[i].shape == (3, 8, 3) and memory._size(i) == 3
    G = torch.randn(24, 8, dtype=torch.float64)
    d = [G.clone() if p is attention.in_proj_weight else torch.zeros_like(p) for p in memory.params]
    memory.project_(d)
    projected = d[memory._slots[i][0]]
    E_q, E_kv = _complement(queries.reshape(-1, 8)), _complement(keys.reshape(-1, 8))
    expected = torch.cat([G[:8] @ E_q, G[8:16] @ E_kv, G[16:] @ E_kv])
    torch.testing.assert_close(projected, expected, rtol=0, atol=1e-12)
    assert (G[:8] @ E_q - G[:8] @ _complement(torch.cat([queries, keys], 1).reshape(-1, 8))).norm() > 0.1


def test_a_common_basis_becomes_every_blocks_basis_and_bases_per_block_round_trip() -> None:
    """A self-attention task leaves one basis; a later cross-attention task gives each block that basis grown
    by its own inputs. The stacked bases round-trip through ``state_dict``; a stacked basis is refused for a
    layer that is not an attention's input projection."""
    attention, queries, keys = _cross_attention_task()
    memory = LayerwiseMemory(attention, threshold=1.0)
    selfish = torch.randn(1, 2, 8, dtype=torch.float64)
    memory.add_task([selfish], forward=lambda m, b: m(b, b, b, need_weights=False))
    i = next(i for i, m in enumerate(memory.layers) if m.weight is attention.in_proj_weight)
    assert memory.bases[i].shape == (8, 2)
    common = memory.bases[i] @ memory.bases[i].T
    memory.add_task([(queries, keys)], forward=lambda m, b: m(b[0], b[1], b[1], need_weights=False))
    U = memory.bases[i]
    assert U.shape == (3, 8, 5)
    for V, width in zip(U, (4, 5, 5), strict=True):  # 2 + 2 query directions, 2 + 3 memory directions
        torch.testing.assert_close(V.T @ V, torch.diag((torch.arange(5) < width).double()), rtol=0, atol=1e-12)
        torch.testing.assert_close(V @ V.T @ common, common, rtol=0, atol=1e-12)  # the common basis is kept
    restored = LayerwiseMemory(attention, threshold=1.0)
    restored.load_state_dict(memory.state_dict())
    d = [torch.randn_like(p) for p in memory.params]
    e = [t.clone() for t in d]
    memory.project_(d)
    restored.project_(e)
    assert all(torch.equal(a, b) for a, b in zip(d, e, strict=True))
    state = memory.state_dict()
    j = next(j for j, m in enumerate(memory.layers) if m is attention.out_proj)
    state["bases"][j] = U.clone()
    with pytest.raises(ValueError, match=r"does not fit \(8, r\)$"):
        restored.load_state_dict(state)


@pytest.mark.parametrize(
    "options", [{}, {"reuse_coefficients": True}, {"from_copy": True}, {"project": "gradient"}, {"armijo": True}]
)
def test_guarded_steps_keep_each_cross_attention_blocks_outputs_on_its_old_inputs(options: dict) -> None:
    """ForgettingGuard around AdamW (its update projected by coordinates, reused coordinates, from a copy;
    Armijo's trials) and around SGD (its gradient projected): after three steps the query block's outputs on the
    old queries and the key and value blocks' on the old memory are those of the start, though each block keeps
    only its own input's basis."""
    from kaplinskiy import ForgettingGuard

    attention, queries, keys = _cross_attention_task()
    memory = LayerwiseMemory(attention, threshold=1.0)
    memory.add_task([(queries, keys)], forward=lambda m, b: m(b[0], b[1], b[1], need_weights=False))

    def blocks() -> list[Tensor]:
        W = attention.in_proj_weight.detach()
        return [queries @ W[:8].T, keys @ W[8:16].T, keys @ W[16:].T]

    before, start = blocks(), attention.in_proj_weight.detach().clone()
    gradient = options.get("project") == "gradient"  # AdamW's rescaling would leave a projected gradient's span
    base = torch.optim.SGD if gradient else torch.optim.AdamW
    guard = ForgettingGuard(base(attention.parameters(), lr=0.05), memory, **options)
    new_q, new_kv = torch.randn(3, 4, 8, dtype=torch.float64), torch.randn(3, 5, 8, dtype=torch.float64)

    def closure() -> Tensor:
        guard.zero_grad()
        loss = attention(new_q, new_kv, new_kv, need_weights=False)[0].square().mean()
        if torch.is_grad_enabled():  # Armijo's trials evaluate it without grad
            loss.backward()
        return loss

    for _ in range(3):
        guard.step(closure)
    assert float((attention.in_proj_weight.detach() - start).abs().max()) > 1e-3  # the steps were taken
    moved = [float((a - b).abs().max()) for a, b in zip(blocks(), before, strict=True)]
    assert max(moved) < 1e-12


def test_non_finite_old_inputs_are_refused_before_any_basis_grows() -> None:
    """An overflow in the second layer's inputs: refused with the layer named, and the first layer's basis, whose
    inputs were finite, does not grow either (the memory is left as it was)."""
    model = nn.Sequential(nn.Linear(4, 3), nn.Linear(3, 2)).double()
    with torch.no_grad():
        model[0].weight.fill_(1e308)
    memory = LayerwiseMemory(model)
    with pytest.raises(ValueError, match=r"inputs of '1' hold NaN or infinite"):
        memory.add_task([torch.ones(5, 4, dtype=torch.float64)])
    assert [U.shape[1] for U in memory.bases] == [0, 0] and memory.n_tasks == 0
