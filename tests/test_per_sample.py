"""Per-sample functions on token models: OGD-GTL and the loss with ignored positions, for language models."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from strategies_optim import eq12_tolerance
from torch import nn

from kaplinskiy import (
    IGNORE_INDEX,
    DenseMemory,
    causal_lm_targets,
    ground_truth_logit,
    per_sample_gradients,
    sample_loss,
)


class _TinyLM(nn.Module):
    """Embedding, a causal running mean over positions, tanh, a linear head: a token model with no downloads."""

    def __init__(self, vocab: int, width: int) -> None:
        super().__init__()
        self.emb, self.head = nn.Embedding(vocab, width), nn.Linear(width, vocab)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        h = self.emb(ids)
        steps = torch.arange(1, ids.shape[-1] + 1, dtype=h.dtype)[:, None]
        return self.head(torch.tanh(h.cumsum(dim=-2) / steps))


@st.composite
def token_batches(draw) -> tuple[_TinyLM, torch.Tensor, torch.Tensor]:
    """A tiny LM, a batch of sequences and next-token targets with right padding (some rows fully padded)."""
    vocab, width = draw(st.integers(2, 7)), draw(st.integers(1, 4))
    n, length = draw(st.integers(1, 4)), draw(st.integers(1, 6))
    torch.manual_seed(draw(st.integers(0, 2**16)))
    ids = torch.randint(0, vocab, (n, length))
    lengths = torch.tensor(draw(st.lists(st.integers(0, length), min_size=n, max_size=n)))
    mask = (torch.arange(length)[None, :] < lengths[:, None]).long()
    return _TinyLM(vocab, width), ids, causal_lm_targets(ids, mask)


@settings(max_examples=60)
@given(token_batches(), st.sampled_from([sample_loss, ground_truth_logit]))
def test_token_per_sample_gradients_match_a_loop(case, fn) -> None:
    model, ids, targets = case
    params = list(model.parameters())
    G = per_sample_gradients(model, fn, ids, targets)
    for s in range(ids.shape[0]):
        val = fn(model(ids[s : s + 1]), targets[s])
        grads = torch.autograd.grad(val, params, allow_unused=True, materialize_grads=True)
        row = torch.cat([g.reshape(-1) for g in grads])
        assert torch.allclose(G[s], row, rtol=1e-12, atol=1e-12)


@settings(max_examples=60)
@given(token_batches())
def test_token_functions_are_means_over_counted_positions(case) -> None:
    model, ids, targets = case
    for s in range(ids.shape[0]):
        logits, y = model(ids[s : s + 1])[0], targets[s]
        counted = y != IGNORE_INDEX
        if not counted.any():  # nothing counts: both are exactly 0, never NaN
            assert sample_loss(logits[None], y) == 0 and ground_truth_logit(logits[None], y) == 0
            continue
        ce = nn.functional.cross_entropy(logits, y, ignore_index=IGNORE_INDEX)
        assert torch.allclose(sample_loss(logits[None], y), ce, rtol=1e-13, atol=1e-13)
        true_logits = logits[counted].gather(1, y[counted][:, None])
        assert torch.allclose(ground_truth_logit(logits[None], y), true_logits.mean(), rtol=1e-13, atol=1e-13)


def test_causal_lm_targets_shift_and_mask() -> None:
    ids = torch.tensor([[5, 6, 7, 8], [1, 2, 0, 0]])
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0]])
    assert causal_lm_targets(ids).tolist() == [[6, 7, 8, -100], [2, 0, 0, -100]]
    assert causal_lm_targets(ids, mask).tolist() == [[6, 7, 8, -100], [2, -100, -100, -100]]
    with pytest.raises(ValueError, match="Invalid attention_mask"):
        causal_lm_targets(ids, mask[:, :3])


def test_target_positions_must_match_the_output() -> None:
    with pytest.raises(ValueError, match="Invalid target: 3 positions for an output with 4 positions"):
        sample_loss(torch.zeros(1, 4, 5), torch.zeros(3, dtype=torch.long))


@pytest.mark.parametrize("fn", [sample_loss, ground_truth_logit])
def test_bad_samples_are_refused_in_words_and_leave_the_memory_empty(fn) -> None:
    """No samples, a target count other than the inputs', float targets, and a class beyond the model's outputs
    are refused with what is wrong (raw torch or vmap errors before), and the memory holds nothing after."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 4), nn.Tanh(), nn.Linear(4, 3)).eval()
    memory = DenseMemory(model.parameters(), drop_tol=1e-4)  # a float64 basis takes held gradients so
    x, y = torch.randn(5, 4), torch.tensor([0, 1, 2, 0, 1])
    cases = [
        ((x[:0], y[:0]), "Invalid inputs: no samples"),
        ((x, y[:3]), "Invalid targets: 3 for 5 inputs"),
        ((x, y.float()), "class indices are integers, not torch.float32"),
        ((x, torch.full((5,), 3)), "a target class not below the number of the model's outputs"),
    ]
    for (inputs, targets), message in cases:
        with pytest.raises(ValueError, match=message):
            memory.add_task(model, inputs, targets, fn)
        with pytest.raises(ValueError, match=message):
            memory.add_task(model, inputs, targets, fn, held=2)
    assert memory.n_tasks == 0 and memory.basis.numel() == 0


@pytest.mark.filterwarnings("ignore:There is a performance drop")  # vmap over SDPA on CPU: slower, not wrong
def test_ogd_gtl_memory_on_a_hugging_face_causal_lm() -> None:
    """OGD-GTL on GPT-2 (built from a config, no download): the stored per-sequence true-token logit gradients
    are annihilated by the projection, so a projected step leaves each old sequence's mean true logit unchanged
    to first order (eq. 12 with G_A the GTL gradients)."""
    transformers = pytest.importorskip("transformers")
    config = transformers.GPT2Config(vocab_size=16, n_positions=8, n_embd=8, n_layer=1, n_head=2)
    model = transformers.GPT2LMHeadModel(config).to(torch.float64).eval()
    ids = torch.randint(0, 16, (3, 6))
    targets = causal_lm_targets(ids)
    params = [p for p in model.parameters() if p.requires_grad]
    memory = DenseMemory(params, k_per_task=3)
    assert memory.add_task(model, ids, targets) == 3
    g = [torch.randn_like(p) for p in params]
    memory.project_(g)
    n = sum(p.numel() for p in params)
    for s in range(3):
        grad = torch.autograd.grad(ground_truth_logit(model(ids[s : s + 1]), targets[s]), params)
        num = abs(sum(float((a * b).sum()) for a, b in zip(grad, g, strict=True)))
        norm = sum(float((a * a).sum()) for a in grad) ** 0.5 * sum(float((b * b).sum()) for b in g) ** 0.5
        assert num <= eq12_tolerance(n) * norm


def test_fishers_on_a_token_model() -> None:
    """The empirical Fisher takes sequences (the square of each sequence's loss gradient); the true Fisher,
    defined here for class logits, refuses token outputs instead of mixing positions into one softmax."""
    from kaplinskiy import empirical_fisher_diagonal, true_fisher_diagonal

    model, ids = _TinyLM(5, 3), torch.randint(0, 5, (3, 4))
    targets = causal_lm_targets(ids)
    fisher = empirical_fisher_diagonal(model, ids, targets)
    G = per_sample_gradients(model, sample_loss, ids, targets)
    assert torch.allclose(torch.cat([f.reshape(-1) for f in fisher]), G.pow(2).mean(0))
    with pytest.raises(ValueError, match="true_fisher_diagonal needs class logits"):
        true_fisher_diagonal(model, ids)
