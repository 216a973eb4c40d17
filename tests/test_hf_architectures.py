"""The layerwise guard's promise on the Hugging Face architectures people fine-tune, built from tiny random configs.

The promise (``LayerwiseMemory(threshold=1.0, freeze_uncovered=True)``): a guarded step leaves the model's outputs
on the recorded old-task inputs unchanged to first order. Measured two ways in float64, each against the same
for the unguarded step: the exact first-order change ``J d`` of the old logits along the step ``d`` (forward-mode
AD, hence eager attention: torch's CPU SDPA has no forward derivative); and the change of the logits after a real
step. With ``threshold=1.0`` and the old inputs themselves, the second is rounding too: the invariance is exact.

Needs the optional ``transformers`` package; no download (models come from configs, inputs are random).
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from step_probes import dot, first_order_change, step_and_restore
from torch import Tensor, nn

transformers = pytest.importorskip("transformers")

from kaplinskiy import ForgettingGuard, HybridAdamW, LayerwiseMemory  # noqa: E402
from kaplinskiy.memory.layerwise.recording import factor_bytes, recording_passes  # noqa: E402
from kaplinskiy.optimizers import LionMuon, SoftMuon, SoftSignum, muon_param_groups  # noqa: E402

VOCAB = 50
Batch = dict[str, Tensor]


def _ids(g: torch.Generator, rows: int, length: int) -> Tensor:
    return torch.randint(3, VOCAB, (rows, length), generator=g)  # 0-2 are pad/bos/eos in some configs


def _lm(model: nn.Module, g: torch.Generator) -> tuple[nn.Module, Batch, Batch]:
    """A language model: old task one sequence, new task two other sequences (labels = inputs)."""
    new = _ids(g, 2, 6)
    return model, {"input_ids": _ids(g, 1, 6)}, {"input_ids": new, "labels": new}


def _seq2seq(model: nn.Module, g: torch.Generator, inputs: Callable[[int], Batch]) -> tuple[nn.Module, Batch, Batch]:
    return model, {**inputs(1), "decoder_input_ids": _ids(g, 1, 4)}, {**inputs(2), "labels": _ids(g, 2, 4)}


def _gpt2(g: torch.Generator) -> tuple[nn.Module, Batch, Batch]:
    """HF Conv1D layers, learned positions, LM head tied to the token embedding (no bias)."""
    config = transformers.GPT2Config(vocab_size=VOCAB, n_positions=16, n_embd=16, n_layer=1, n_head=2)
    return _lm(transformers.GPT2LMHeadModel(config), g)


def _bert(g: torch.Generator) -> tuple[nn.Module, Batch, Batch]:
    """Token, position and token-type embeddings; the MLM decoder tied to the token embedding, with a bias."""
    config = transformers.BertConfig(
        vocab_size=VOCAB, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
        max_position_embeddings=16,
    )  # fmt: skip
    return _lm(transformers.BertForMaskedLM(config), g)


def _llama(g: torch.Generator) -> tuple[nn.Module, Batch, Batch]:
    """No biases, RMSNorm, rotary positions, grouped-query attention, an untied head."""
    config = transformers.LlamaConfig(
        vocab_size=VOCAB, hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
        num_key_value_heads=1, max_position_embeddings=16,
    )  # fmt: skip
    return _lm(transformers.LlamaForCausalLM(config), g)


def _opt(g: torch.Generator) -> tuple[nn.Module, Batch, Batch]:
    """Learned positions in an nn.Embedding subclass that takes the attention mask and reads rows offset by 2."""
    config = transformers.OPTConfig(
        vocab_size=VOCAB, hidden_size=16, ffn_dim=32, num_hidden_layers=1, num_attention_heads=2,
        max_position_embeddings=16, word_embed_proj_dim=16,
    )  # fmt: skip
    return _lm(transformers.OPTForCausalLM(config), g)


def _t5(g: torch.Generator) -> tuple[nn.Module, Batch, Batch]:
    """Relative-attention-bias embeddings (rows are position buckets), no biases, shared tied embeddings."""
    config = transformers.T5Config(
        vocab_size=VOCAB, d_model=16, d_kv=8, d_ff=32, num_layers=1, num_heads=2, relative_attention_num_buckets=8,
        decoder_start_token_id=0, pad_token_id=0, attn_implementation="eager",
    )  # fmt: skip
    return _seq2seq(transformers.T5ForConditionalGeneration(config), g, lambda n: {"input_ids": _ids(g, n, 6)})


def _bart(g: torch.Generator) -> tuple[nn.Module, Batch, Batch]:
    """Learned positions in an nn.Embedding subclass that takes the token ids and reads positions + 2."""
    config = transformers.BartConfig(
        vocab_size=VOCAB, d_model=16, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2,
        decoder_attention_heads=2, encoder_ffn_dim=32, decoder_ffn_dim=32, max_position_embeddings=16,
    )  # fmt: skip
    return _seq2seq(transformers.BartForConditionalGeneration(config), g, lambda n: {"input_ids": _ids(g, n, 6)})


def _whisper(g: torch.Generator) -> tuple[nn.Module, Batch, Batch]:
    """Conv1d front end; decoder positions read by indexing the weight, without F.embedding."""
    config = transformers.WhisperConfig(
        vocab_size=VOCAB, d_model=16, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2,
        decoder_attention_heads=2, encoder_ffn_dim=32, decoder_ffn_dim=32, num_mel_bins=4, max_source_positions=4,
        max_target_positions=16, decoder_start_token_id=1, pad_token_id=0,
    )  # fmt: skip
    features = lambda n: {"input_features": torch.randn(n, 4, 8, generator=g)}  # noqa: E731
    return _seq2seq(transformers.WhisperForConditionalGeneration(config), g, features)


def _vit(g: torch.Generator) -> tuple[nn.Module, Batch, Batch]:
    """A Conv2d patch embedding; the CLS token and position embeddings are raw parameters (frozen)."""
    config = transformers.ViTConfig(
        image_size=8, patch_size=4, num_channels=3, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=32, num_labels=3,
    )  # fmt: skip
    model = transformers.ViTForImageClassification(config)
    new = {"pixel_values": torch.randn(2, 3, 8, 8, generator=g), "labels": torch.tensor([0, 2])}
    return model, {"pixel_values": torch.randn(1, 3, 8, 8, generator=g)}, new


ARCHITECTURES = {
    "gpt2": _gpt2,
    "bert": _bert,
    "llama": _llama,
    "opt": _opt,
    "t5": _t5,
    "bart": _bart,
    "whisper": _whisper,
    "vit": _vit,
}


def _build(name: str) -> tuple[nn.Module, Batch, Batch, LayerwiseMemory]:
    """The model in float64 and eval mode, its old and new batches, and a memory of the old batch."""
    torch.manual_seed(0)
    model, old, new = ARCHITECTURES[name](torch.Generator().manual_seed(1))
    model.set_attn_implementation("eager")  # forward-mode AD: torch's CPU SDPA has no forward derivative
    model.double().eval()
    memory = LayerwiseMemory(model, threshold=1.0, freeze_uncovered=True)
    memory.add_task([old], forward=lambda m, batch: m(**batch))
    return model, old, new, memory


def _change_after(model: nn.Module, old: Batch, steps: list[Tensor], t: float) -> float:
    """``||f(w + t d) - f(w)||`` on the old-task logits, the parameters put back after."""
    params = [p for p in model.parameters() if p.requires_grad]
    with torch.no_grad():
        before = model(**old).logits
        for p, d in zip(params, steps, strict=True):
            p.add_(d, alpha=t)
        after = model(**old).logits
        for p, d in zip(params, steps, strict=True):
            p.sub_(d, alpha=t)
    return float((after - before).norm())


@pytest.mark.parametrize("name", list(ARCHITECTURES))
def test_a_guarded_step_leaves_the_old_outputs_unchanged(name: str) -> None:
    """SGD guarded and not: the guarded step's first-order change of the old logits is ~1e-16 of the plain
    step's, and it still descends on the new task.

    More holds than first order: each covered layer's step is orthogonal to every input it saw, so each layer's
    output on the old inputs is unchanged exactly, and by induction so are the model's: a real step of any size
    moves the old logits by rounding only (the plain step, at first order).
    """
    model, old, new, memory = _build(name)
    params = [p for p in model.parameters() if p.requires_grad]
    plain, grads = step_and_restore(model, torch.optim.SGD(params, lr=1e-2), lambda: model(**new).loss)
    guarded, _ = step_and_restore(
        model, ForgettingGuard(torch.optim.SGD(params, lr=1e-2), memory, from_copy=True), lambda: model(**new).loss
    )
    leak, reference = first_order_change(model, old, guarded), first_order_change(model, old, plain)
    assert reference > 1e-4  # without the guard the old outputs move at first order: the test can fail
    assert leak <= 1e-11 * reference, f"{name}: first-order change {leak:.2e} against {reference:.2e} unguarded"
    assert dot(grads, guarded) < -1e-3 * abs(dot(grads, plain))  # a descent step for task B: not all frozen
    for t in (1.0, 100.0):  # the steps of SGD at lr 1e-2 and at lr 1
        moved, plain_moved = _change_after(model, old, guarded, t), _change_after(model, old, plain, t)
        assert moved <= 1e-10 * plain_moved, f"{name}, t = {t}: {moved:.2e} against {plain_moved:.2e} unguarded"


@pytest.mark.parametrize("name", ["gpt2", "bert", "t5", "whisper"])
@pytest.mark.parametrize("optimizer", ["guarded AdamW", "HybridAdamW"])
def test_adamw_with_weight_decay_keeps_the_promise(name: str, optimizer: str) -> None:
    """Update mode projects AdamW's whole update, decoupled weight decay included (which moves every weight,
    tied heads and embeddings too), and HybridAdamW's projected update does the same."""
    model, old, new, memory = _build(name)
    params = [p for p in model.parameters() if p.requires_grad]
    plain, grads = step_and_restore(
        model, torch.optim.AdamW(params, lr=1e-3, weight_decay=0.1), lambda: model(**new).loss
    )
    if optimizer == "HybridAdamW":
        opt = HybridAdamW(params, lr=1e-3, weight_decay=0.1, memory=memory)
    else:
        opt = ForgettingGuard(torch.optim.AdamW(params, lr=1e-3, weight_decay=0.1), memory)
    guarded, _ = step_and_restore(model, opt, lambda: model(**new).loss)
    leak, reference = first_order_change(model, old, guarded), first_order_change(model, old, plain)
    assert reference > 1e-3
    assert leak <= 1e-11 * reference, f"{name}: first-order change {leak:.2e} against {reference:.2e} unguarded"
    assert dot(grads, guarded) < 0


RECENT = {  # the first step of each: a Muon step (LionMuon), a soft sign step with fitted temperatures (the others)
    "LionMuon": lambda model: LionMuon(muon_param_groups(model, lr=1e-3), lr=1e-3),
    "SoftMuon": lambda model: SoftMuon(muon_param_groups(model, lr=1e-3), lr=1e-3, sign_steps=0, transition_steps=5),
    "SoftSignum": lambda model: SoftSignum(
        [p for p in model.parameters() if p.requires_grad], lr=1e-3, weight_decay=0.1, sign_steps=0, transition_steps=5
    ),
}


@pytest.mark.parametrize("name", ["gpt2", "bert"])
@pytest.mark.parametrize("optimizer", sorted(RECENT))
def test_recent_optimizers_guarded_keep_the_promise(name: str, optimizer: str) -> None:
    """The guard around LionMuon and SoftMuon (hidden matrices by Newton-Schulz iterations, embeddings by AdamW)
    and SoftSignum keeps the old logits to first order, as around AdamW."""
    model, old, new, memory = _build(name)
    plain, _ = step_and_restore(model, RECENT[optimizer](model), lambda: model(**new).loss)
    guarded, _ = step_and_restore(model, ForgettingGuard(RECENT[optimizer](model), memory), lambda: model(**new).loss)
    leak, reference = first_order_change(model, old, guarded), first_order_change(model, old, plain)
    assert reference > 1e-3
    assert leak <= 1e-11 * reference, f"{name}: first-order change {leak:.2e} against {reference:.2e} unguarded"


@pytest.mark.parametrize("name", ["gpt2", "llama"])
def test_muon_param_groups_give_the_head_to_adamw(name: str) -> None:
    """GPT-2's head is tied to its token embedding, LLaMA's is a Linear of its own: both go to AdamW, with the
    embeddings; every other matrix to Muon."""
    model, _, _ = ARCHITECTURES[name](torch.Generator().manual_seed(1))
    muon, rest = muon_param_groups(model)
    head = model.get_output_embeddings().weight
    assert any(p is head for p in rest["params"]) and all(p is not head for p in muon["params"])
    assert all(p.ndim == 2 for p in muon["params"]) and len(muon["params"]) >= 4


def _embedding_rows(model: nn.Module, memory: LayerwiseMemory, key: str) -> list[int]:
    module = model.get_submodule(key)
    return sorted(memory.bases[memory.layers.index(module)].tolist())


@pytest.mark.parametrize(
    ("name", "key", "rows"),
    [
        ("opt", "model.decoder.embed_positions", [2, 3, 4, 5, 6, 7]),  # called with the mask, reads cumsum + 1
        ("bart", "model.encoder.embed_positions", [2, 3, 4, 5, 6, 7]),  # called with the ids, reads arange + 2
        ("bart", "model.decoder.embed_positions", [2, 3, 4, 5]),
        ("whisper", "model.decoder.embed_positions", [0, 1, 2, 3]),  # reads self.weight[0:4]
        ("t5", "shared", None),  # never called: read by the encoder's and the decoder's embed_tokens
    ],
)
def test_an_embedding_protects_the_rows_it_reads_not_its_argument(name: str, key: str, rows: list[int] | None) -> None:
    """An nn.Embedding subclass whose forward takes other inputs than its rows (OPT's attention mask, BART's
    token ids) or indexes its weight directly (Whisper) protects the rows read, wherever the read is made."""
    model, old, _, memory = _build(name)
    if rows is None:  # the old tokens, of the encoder and of the decoder
        rows = sorted(set(old["input_ids"].flatten().tolist()) | set(old["decoder_input_ids"].flatten().tolist()))
    assert _embedding_rows(model, memory, key) == rows


@pytest.mark.parametrize("name", ARCHITECTURES)
def test_recording_in_passes_grows_the_bases_of_one_pass(name: str) -> None:
    """``add_task(max_factor_bytes=...)`` at the largest layer's factor (several passes): the bases of one
    pass, bit for bit, whatever each architecture computes between its layers (shared inputs, attention's fast
    paths, embedding reads by position)."""
    model, old, _, one = _build(name)
    passes = LayerwiseMemory(model, threshold=1.0, freeze_uncovered=True)
    biased = [b is not None for _, b in passes._slots]
    budget = max(factor_bytes(m, b) for m, b in zip(passes.layers, biased, strict=True))
    assert len(recording_passes(model, passes.layers, biased, budget)) > 2
    passes.add_task([old], forward=lambda m, batch: m(**batch), max_factor_bytes=budget)
    assert all(torch.equal(U, V) for U, V in zip(passes.bases, one.bases, strict=True))
