"""Layer-wise memory (GPM style): eq. (12) per layer, on MLPs, convolutions and a small transformer block."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from strategies_optim import TaskPair, TiedLM, TinyBlock, eq12_tolerance, task_pairs
from torch import nn

from kaplinskiy import LayerwiseMemory, energy_basis_update, energy_basis_update_rows


def _eq12_ratio(grads_a: list[torch.Tensor], d: list[torch.Tensor], d_norm: float) -> float:
    """``|grad L_A . d| / (||grad L_A|| ||g||)`` where ``d = P_perp g`` and ``d_norm = ||g||`` (before projection)."""
    num = abs(sum(float((a * b).sum()) for a, b in zip(grads_a, d, strict=True)))
    den = sum(float((a * a).sum()) for a in grads_a) ** 0.5 * d_norm
    return num / den if den > 0 else 0.0


def _norm(ts: list[torch.Tensor]) -> float:
    return sum(float((t * t).sum()) for t in ts) ** 0.5


def _slot(mem: LayerwiseMemory, p: torch.Tensor) -> int:
    return next(i for i, q in enumerate(mem.params) if q is p)


def _grads(model: nn.Module, loss: torch.Tensor) -> list[torch.Tensor]:
    params = [p for p in model.parameters() if p.requires_grad]
    gs = torch.autograd.grad(loss, params, allow_unused=True)
    return [torch.zeros_like(p) if g is None else g for p, g in zip(params, gs, strict=True)]


@settings(max_examples=60)
@given(task_pairs(), st.integers(0, 2**31 - 1))
def test_full_energy_memory_gives_eq12_on_an_mlp(case: TaskPair, seed: int) -> None:
    """Threshold 1 keeps every old input direction: grad L_A . P_perp g = 0 for any g (eq. 12)."""
    mem = LayerwiseMemory(case.model, threshold=1.0)
    mem.add_task([case.xa])
    gen = torch.Generator().manual_seed(seed)
    d = [torch.randn(p.shape, generator=gen) for p in mem.params]
    g_norm = _norm(d)
    mem.project_(d)
    n = sum(p.numel() for p in mem.params)
    assert _eq12_ratio(case.grad_a(), d, g_norm) <= eq12_tolerance(n)
    assert mem.residual(d) <= eq12_tolerance(n) * g_norm


@settings(max_examples=60)
@given(task_pairs(bias=True))
def test_old_outputs_of_the_first_layer_are_unchanged(case: TaskPair) -> None:
    """A projected first-layer step leaves W x_A + b exactly where it was (the layer-wise meaning of eq. 12)."""
    mem = LayerwiseMemory(case.model, threshold=1.0)
    mem.add_task([case.xa])
    first = case.model[0]
    before = first(case.xa).detach()
    d = [torch.randn_like(p) for p in mem.params]
    mem.project_(d)
    with torch.no_grad():
        first.weight.add_(d[0])
        first.bias.add_(d[1])
    assert torch.allclose(first(case.xa), before, rtol=0, atol=1e-10 * (1 + before.abs().max().item()))


def test_energy_threshold_picks_the_fewest_directions() -> None:
    cov = torch.diag(torch.tensor([10.0, 5.0, 1.0, 0.0]))
    assert energy_basis_update(torch.zeros(4, 0), cov, 0.6).shape[1] == 1
    assert energy_basis_update(torch.zeros(4, 0), cov, 0.9).shape[1] == 2
    assert energy_basis_update(torch.zeros(4, 0), cov, 1.0).shape[1] == 3
    U = energy_basis_update(torch.zeros(4, 0), cov, 0.6)
    assert energy_basis_update(U, cov, 0.6).shape[1] == 1  # already enough energy: nothing added
    assert energy_basis_update(U, cov, 0.9).shape[1] == 2


def test_rows_and_covariance_pick_the_same_directions() -> None:
    """From the inputs as rows or from their covariance, the same fewest directions (same spans) for every
    threshold, with or without a basis already kept."""
    torch.manual_seed(0)
    rows = torch.randn(30, 6, dtype=torch.float64) @ torch.diag(torch.tensor([5.0, 3.0, 2.0, 1.0, 0.5, 0.1]))
    rows = rows.to(torch.float64)
    for threshold in (0.5, 0.9, 0.99, 1.0):
        for U in (torch.zeros(6, 0, dtype=torch.float64), torch.linalg.qr(torch.randn(6, 2, dtype=torch.float64))[0]):
            a, b = energy_basis_update(U, rows.T @ rows, threshold), energy_basis_update_rows(U, rows, threshold)
            assert a.shape == b.shape
            torch.testing.assert_close(a @ a.T, b @ b.T, rtol=0, atol=1e-10)


def test_rows_resolve_a_direction_the_covariance_loses() -> None:
    """Inputs along singular values 1 and 1e-9: the covariance's second eigenvalue, 1e-18, is below float64's
    rounding of the first, so a basis from the covariance leaves the inputs' small part, 1e-9 of them, outside;
    from the rows (the memory keeps a triangular factor of them, fed here in two batches) only rounding is left.
    At 1e-6 the covariance keeps the direction, but off by an angle of about eps times its condition, 1e12."""
    torch.manual_seed(0)
    Q = torch.linalg.qr(torch.randn(3, 3, dtype=torch.float64))[0]
    rows = torch.randn(8, 2, dtype=torch.float64) @ torch.diag(torch.tensor([1.0, 1e-9], dtype=torch.float64)) @ Q[:2]

    def outside(U: torch.Tensor) -> float:
        return float((rows - rows @ U @ U.T).norm() / rows.norm())

    none = torch.zeros(3, 0, dtype=torch.float64)
    from_covariance = energy_basis_update(none, rows.T @ rows, 1.0)
    assert from_covariance.shape[1] == 1 and outside(from_covariance) > 1e-10
    assert energy_basis_update_rows(none, rows, 1.0).shape[1] == 2
    # singular values 1 and 1e-6: both keep two directions, the covariance's off by about eps * 1e12
    wide = torch.randn(8, 2, dtype=torch.float64) @ torch.diag(torch.tensor([1.0, 1e-6], dtype=torch.float64)) @ Q[:2]
    found = [energy_basis_update(none, wide.T @ wide, 1.0), energy_basis_update_rows(none, wide, 1.0)]
    left = [float((wide - wide @ U @ U.T).norm() / wide.norm()) for U in found]
    assert [U.shape[1] for U in found] == [2, 2] and left[0] > 1e-13 and left[1] < 1e-15
    layer = nn.Linear(3, 2, bias=False).double()
    memory = LayerwiseMemory(layer, threshold=1.0)
    memory.add_task([rows[:5], rows[5:]])
    assert memory.bases[0].shape[1] == 2 and outside(memory.bases[0]) < 1e-15


def test_budget_per_task_caps_each_layer() -> None:
    model = nn.Sequential(nn.Linear(6, 4), nn.ReLU(), nn.Linear(4, 3))
    mem = LayerwiseMemory(model, threshold=1.0, max_new_per_task=2)
    assert mem.add_task([torch.randn(20, 6)]) == [2, 2]


def test_total_budget_caps_each_layer_over_tasks() -> None:
    """With at most 3 vectors per layer, a second task adds what is left of the budget and a third adds nothing;
    an embedding's protected rows obey the same cap."""
    model = nn.Sequential(nn.Embedding(10, 6), nn.Linear(6, 5))
    mem = LayerwiseMemory(model, threshold=1.0, max_new_per_task=2, max_per_layer=3)
    tokens = lambda lo: torch.arange(lo, lo + 4)[None, :]  # noqa: E731
    assert mem.add_task([tokens(0)]) == [2, 2]
    assert mem.add_task([tokens(4)]) == [1, 1]
    assert mem.add_task([tokens(6)]) == [0, 0]
    assert [mem.bases[0].numel(), mem.bases[1].shape[1]] == [3, 3]
    with pytest.raises(ValueError, match="Invalid max_per_layer"):
        LayerwiseMemory(model, max_per_layer=0)


def _conv_net(bias: bool) -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(2, 3, 3, padding=1, stride=2, bias=bias), nn.Tanh(), nn.Flatten(), nn.Linear(27, 4, bias=bias)
    )


@pytest.mark.parametrize(
    ("make", "x_shape", "classes"),
    [
        (lambda: _conv_net(bias=True), (3, 2, 5, 5), 4),
        (lambda: _conv_net(bias=False), (3, 2, 5, 5), 4),
        (
            lambda: nn.Sequential(nn.Conv1d(2, 3, 3, padding=1, stride=2), nn.Tanh(), nn.Flatten(), nn.Linear(9, 2)),
            (4, 2, 6),
            2,
        ),
    ],
    ids=["conv2d-bias", "conv2d-no-bias", "conv1d"],
)
def test_convolutions_and_eq12(make, x_shape: tuple[int, ...], classes: int) -> None:
    model = make()
    x = torch.randn(*x_shape)
    y = torch.randint(classes, (x_shape[0],))
    mem = LayerwiseMemory(model, threshold=1.0)
    mem.add_task([x])
    d = [torch.randn_like(p) for p in mem.params]
    g_norm = _norm(d)
    mem.project_(d)
    ga = _grads(model, nn.functional.cross_entropy(model(x), y))
    assert _eq12_ratio(ga, d, g_norm) <= eq12_tolerance(sum(p.numel() for p in mem.params))


_CONVS = [  # sized so that one old input spans a proper subspace of each layer's patch space
    lambda: nn.Conv2d(8, 6, 3, padding="same", groups=2),
    lambda: nn.Conv2d(4, 4, 2, padding="same"),  # even kernel: the extra pad goes right
    lambda: nn.Conv2d(2, 2, 5, padding=2, groups=2, bias=False),  # depthwise
    lambda: nn.Conv2d(2, 3, 3, padding=1, padding_mode="reflect"),
    lambda: nn.Conv2d(2, 3, (3, 2), padding=(1, 2), stride=2, padding_mode="circular"),
    lambda: nn.Conv2d(2, 3, 3, padding="valid", padding_mode="replicate"),
    lambda: nn.Conv1d(4, 2, 4, padding="same", groups=2, padding_mode="replicate"),
    lambda: nn.Conv1d(2, 2, 3, padding=2, dilation=2, stride=2, padding_mode="circular"),
    lambda: nn.Conv3d(2, 3, (2, 3, 2), padding=(1, 0, 1), dilation=(2, 1, 1), stride=(2, 1, 1)),
    lambda: nn.Conv3d(8, 2, 3, padding="same", groups=2, padding_mode="reflect"),
    lambda: nn.Conv3d(4, 2, (1, 2, 3), padding=(0, 1, 1), stride=(1, 2, 2), padding_mode="circular", bias=False),
]


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel")
@pytest.mark.parametrize("make", _CONVS, ids=lambda make: repr(make()))
def test_every_convolution_keeps_its_old_outputs(make) -> None:
    """For any padding, padding mode, dilation and groups, a projected step leaves conv(x_A) where it was."""
    conv = make()
    x = torch.randn(1, conv.in_channels, *(3, 4, 3)[: conv.weight.ndim - 2])
    mem = LayerwiseMemory(conv, threshold=1.0)
    assert mem.layers == [conv]
    mem.add_task([x])
    assert 0 < mem.bases[0].shape[1] < mem.bases[0].shape[0]  # a proper subspace: the test can fail
    before = conv(x).detach()
    d = [torch.randn_like(p) for p in mem.params]
    mem.project_(d)
    with torch.no_grad():
        for p, step in zip(mem.params, d, strict=True):
            p.add_(step)
    assert torch.allclose(conv(x), before, rtol=0, atol=1e-10 * (1 + before.abs().max().item()))


def _lm_loss(model: nn.Module, ids: torch.Tensor) -> torch.Tensor:
    logits = model(ids[:, :-1])
    return nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), ids[:, 1:].reshape(-1))


def test_transformer_linear_layers_and_embeddings_with_uncovered_frozen() -> None:
    """On a transformer block every nn.Linear and nn.Embedding is covered; LayerNorm is frozen on request,
    and then eq. (12) holds for the whole model."""
    model = TinyBlock()
    ids_a = torch.randint(0, 6, (3, 6))  # old task uses tokens 0-5 only
    mem = LayerwiseMemory(model, threshold=1.0, freeze_uncovered=True)
    gained = mem.add_task([ids_a[:, :-1]])
    assert len(mem.layers) == 2 + 7 and all(g > 0 for g in gained)
    d = [torch.randn_like(p) for p in mem.params]
    g_norm = _norm(d)
    mem.project_(d)
    ga = _grads(model, _lm_loss(model, ids_a))
    assert _eq12_ratio(ga, d, g_norm) <= eq12_tolerance(2000)
    tok = d[_slot(mem, model.tok.weight)]
    assert torch.all(tok[:6] == 0) and torch.all(tok[6:] != 0)  # unseen tokens stay free


def test_transformer_without_freezing_leaves_layernorm_free() -> None:
    model = TinyBlock()
    mem = LayerwiseMemory(model, threshold=0.9)
    mem.add_task([torch.randint(0, 11, (2, 5))])
    d = [torch.ones_like(p) for p in mem.params]
    mem.project_(d)
    assert torch.equal(d[_slot(mem, model.ln1.weight)], torch.ones(8))


def test_state_dict_round_trip_and_bad_arguments() -> None:
    model = nn.Sequential(nn.Linear(3, 2))
    mem = LayerwiseMemory(model, threshold=0.99)
    mem.add_task([torch.randn(5, 3)])
    other = LayerwiseMemory(model)
    other.load_state_dict(mem.state_dict())
    assert all(torch.equal(a, b) for a, b in zip(mem.bases, other.bases, strict=True))
    with pytest.raises(ValueError, match="Invalid threshold"):
        LayerwiseMemory(model, threshold=1.5)
    with pytest.raises(ValueError, match="Invalid model"):
        LayerwiseMemory(nn.Sequential(nn.Tanh()))


def test_coefficients_and_subtract_compose_to_the_projection() -> None:
    model = TinyBlock()
    mem = LayerwiseMemory(model, threshold=0.95, freeze_uncovered=True)
    mem.add_task([torch.randint(0, 11, (2, 5))])
    assert mem.linear_split
    a = [torch.randn_like(p) for p in mem.params]
    b = [t.clone() for t in a]
    mem.project_(a)
    mem.subtract_(b, mem.coefficients(b))
    assert all(torch.allclose(x, y, rtol=0, atol=1e-12) for x, y in zip(a, b, strict=True))


@pytest.mark.parametrize("bias", [False, True])
def test_tied_weights_are_projected_by_both_layers(bias: bool) -> None:
    """A weight shared by an embedding and a head ends in both complements: old rows zero and D U = 0 (with the
    head's own bias, its entries of the old rows zero too: the only value D U = 0 then allows)."""
    model = TiedLM(bias=bias)
    ids = torch.tensor([[0, 1, 2]])
    mem = LayerwiseMemory(model, threshold=1.0)
    mem.add_task([ids])
    assert not mem.linear_split and len(mem.params) == 1 + bias
    d = [torch.randn_like(p) for p in mem.params]
    g_norm = _norm(d)
    mem.project_(d)
    rows = torch.cat([d[0], d[1][:, None]], dim=1) if bias else d[0]
    assert torch.all(rows[:3] == 0) and (rows @ mem.bases[1]).abs().max() < 1e-12
    loss = nn.functional.cross_entropy(model(ids)[0], torch.tensor([1, 2, 3]))
    assert _eq12_ratio(_grads(model, loss), d, g_norm) <= eq12_tolerance(28 + 7 * bias)


def test_two_linear_layers_sharing_a_weight_are_refused() -> None:
    model = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 4))
    model[1].weight = model[0].weight
    with pytest.raises(ValueError, match="share one weight"):
        LayerwiseMemory(model)


@pytest.mark.parametrize(("make", "layout"), [(nn.Conv2d, torch.channels_last), (nn.Conv3d, torch.channels_last_3d)])
def test_channels_last_gradients_are_projected_like_contiguous_ones(make, layout: torch.memory_format) -> None:
    conv = make(3, 4, 3, padding=1)
    mem = LayerwiseMemory(conv, threshold=0.9)
    mem.add_task([torch.randn(1, 3, *[3] * (conv.weight.ndim - 2))])
    d = [torch.randn_like(p) for p in mem.params]
    strided = [d[0].to(memory_format=layout), d[1].clone()]
    assert not strided[0].is_contiguous()
    mem.project_(d)
    mem.project_(strided)
    assert all(torch.allclose(a, b, rtol=0, atol=1e-12) for a, b in zip(d, strided, strict=True))


def test_hugging_face_gpt2_conv1d_layers_and_eq12() -> None:
    """GPT-2's attention and MLP are HF ``Conv1D`` (``W`` is ``in x out``): covered, and eq. (12) holds for the
    whole model once LayerNorms are frozen (GPT-2 built from a config, no download)."""
    transformers = pytest.importorskip("transformers")
    config = transformers.GPT2Config(vocab_size=16, n_positions=8, n_embd=8, n_layer=1, n_head=2)
    model = transformers.GPT2LMHeadModel(config).to(torch.float64).eval()
    ids = torch.randint(0, 16, (2, 5))
    mem = LayerwiseMemory(model, threshold=1.0, freeze_uncovered=True)
    assert sum(type(m).__name__ == "Conv1D" for m in mem.layers) == 4
    mem.add_task([ids])
    d = [torch.randn_like(p) for p in mem.params]
    g_norm = _norm(d)
    mem.project_(d)
    loss = model(ids, labels=ids).loss
    assert _eq12_ratio(_grads(model, loss), d, g_norm) <= eq12_tolerance(sum(p.numel() for p in mem.params))


def test_freezing_with_every_parameter_covered_is_the_plain_projection() -> None:
    model = nn.Sequential(nn.Linear(3, 2))
    frozen, plain = LayerwiseMemory(model, freeze_uncovered=True), LayerwiseMemory(model)
    for mem in (frozen, plain):
        mem.add_task([torch.randn(2, 3, generator=torch.Generator().manual_seed(0))])
    a = [torch.randn_like(p) for p in frozen.params]
    b = [t.clone() for t in a]
    frozen.project_(a)
    plain.project_(b)
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))


def test_progress_bars_go_to_stderr_and_change_nothing(capsys) -> None:
    pytest.importorskip("tqdm")
    model = nn.Sequential(nn.Linear(4, 3), nn.Tanh(), nn.Linear(3, 2))
    batches = [torch.randn(2, 4, generator=torch.Generator().manual_seed(s)) for s in range(3)]
    quiet, shown = LayerwiseMemory(model), LayerwiseMemory(model)
    assert quiet.add_task(batches) == shown.add_task(batches, progress=True)
    assert all(torch.equal(a, b) for a, b in zip(quiet.bases, shown.bases, strict=True))
    err = capsys.readouterr().err
    assert "old-task batches" in err and "3/3" in err and "bases" in err
