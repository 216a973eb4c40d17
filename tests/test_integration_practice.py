"""The guard in training set-ups practitioners use: PEFT LoRA adapters, ``torch.compile``, activation checkpointing,
bfloat16 autocast and bfloat16 weights, gradient accumulation, and recording with the model in training mode.

The promise measured, as in ``test_hf_architectures.py``: after ``memory.add_task`` on the old task, a guarded step
leaves the old task's outputs unchanged to first order (``||J d||`` by forward-mode AD, or, with ``threshold=1``,
the change after real steps, against the same for the unguarded step), and the new task's loss still goes down.
A set-up that cannot keep it is refused with a message that says why. Every model is tiny and built here.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest
import torch
from step_probes import dot, first_order_change, step_and_restore
from torch import Tensor, nn
from torch.nn import functional as F  # noqa: N812 (the torch idiom)
from torch.utils.checkpoint import checkpoint

from kaplinskiy import DenseMemory, ForgettingGuard, HybridAdamW, LayerwiseMemory, causal_lm_targets
from kaplinskiy.memory.layerwise.recording import factor_bytes

VOCAB = 50


def _ids(g: torch.Generator, rows: int, length: int = 6) -> Tensor:
    return torch.randint(3, VOCAB, (rows, length), generator=g)


class _TokenNet(nn.Module):
    """An embedding, a hidden Linear layer and a head: every parameter is covered."""

    def __init__(self) -> None:
        super().__init__()
        self.emb, self.hidden, self.head = nn.Embedding(20, 6), nn.Linear(6, 8), nn.Linear(8, 3)

    def forward(self, ids: Tensor) -> Tensor:
        return self.head(torch.tanh(self.hidden(self.emb(ids)))).mean(1)


def _same_bases(a: LayerwiseMemory, b: LayerwiseMemory) -> bool:
    """The same protected rows and the same spans (``U U^T``), layer by layer."""
    for U, V in zip(a.bases, b.bases, strict=True):
        if U.shape != V.shape:
            return False
        same = torch.equal(U.sort().values, V.sort().values) if U.ndim == 1 else torch.allclose(U @ U.T, V @ V.T)
        if not same:
            return False
    return True


def _train(model: nn.Module, opt: Any, loss: Callable[[Tensor], Tensor], batches: list[Tensor]) -> list[float]:
    losses = []
    for x in batches:
        opt.zero_grad()
        value = loss(x)
        value.backward()
        opt.step()
        losses.append(float(value.detach()))
    return losses


# 1. PEFT LoRA ---------------------------------------------------------------------------------------------------


def _lora(arch: str, **options: Any) -> nn.Module:
    """A tiny random GPT-2 (HF Conv1D targets) or BERT with LoRA adapters (random B: A gets gradients too)."""
    transformers = pytest.importorskip("transformers")
    peft = pytest.importorskip("peft")
    torch.manual_seed(0)
    if arch == "gpt2":
        config = transformers.GPT2Config(vocab_size=VOCAB, n_positions=16, n_embd=16, n_layer=1, n_head=2)
        model, targets = transformers.GPT2LMHeadModel(config), ["c_attn", "c_fc"]
        options.setdefault("fan_in_fan_out", True)
    else:
        config = transformers.BertConfig(
            vocab_size=VOCAB, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
            max_position_embeddings=16,
        )  # fmt: skip
        model, targets = transformers.BertForMaskedLM(config), ["query", "value"]
    model.set_attn_implementation("eager")  # forward-mode AD: torch's CPU SDPA has no forward derivative
    lora = peft.LoraConfig(r=4, lora_alpha=8, target_modules=targets, init_lora_weights=False, **options)
    return peft.get_peft_model(model, lora).double()


@pytest.mark.parametrize("arch", ["gpt2", "bert"])
@pytest.mark.parametrize("base", ["sgd", "adamw"])
def test_a_guard_over_lora_adapters_keeps_the_old_outputs(arch: str, base: str) -> None:
    """Only the adapters train (the base layers are frozen, so not covered); their lora_A and lora_B Linear
    layers are, and the memory records lora_A's input in eval mode, where lora_dropout does not act. Steps are
    taken in training mode, dropout on."""
    model = _lora(arch, lora_dropout=0.1).eval()
    trainable = [p for p in model.parameters() if p.requires_grad]
    memory = LayerwiseMemory(model, threshold=1.0)
    assert [id(p) for p in memory.params] == [id(p) for p in trainable] and len(memory.layers) == len(trainable)
    g = torch.Generator().manual_seed(1)
    old, new_ids = {"input_ids": _ids(g, 1)}, _ids(g, 2)
    memory.add_task([old], forward=lambda m, batch: m(**batch))
    make = {
        "sgd": lambda: torch.optim.SGD(trainable, lr=1e-2),
        "adamw": lambda: torch.optim.AdamW(trainable, lr=1e-3, weight_decay=0.1),
    }[base]
    model.train()
    loss = lambda: model(input_ids=new_ids, labels=new_ids).loss  # noqa: E731
    plain, _ = step_and_restore(model, make(), loss, seed=2)
    guarded, grads = step_and_restore(model, ForgettingGuard(make(), memory), loss, seed=2)
    model.eval()
    leak, reference = first_order_change(model, old, guarded), first_order_change(model, old, plain)
    assert reference > 1e-6  # without the guard the old outputs move at first order: the test can fail
    assert leak <= 1e-11 * reference, f"{arch}: first-order change {leak:.2e} against {reference:.2e} unguarded"
    assert dot(grads, guarded) < 0  # a descent step for the new task


def test_lora_dropout_is_refused_in_training_mode_and_inactive_in_eval_mode() -> None:
    model = _lora("bert", lora_dropout=0.5).train()
    g = torch.Generator().manual_seed(1)
    old = {"input_ids": _ids(g, 2)}
    with pytest.raises(ValueError, match="training mode"):
        LayerwiseMemory(model).add_task([old], forward=lambda m, batch: m(**batch))
    model.eval()
    memories = [LayerwiseMemory(model, threshold=0.9) for _ in range(2)]
    for memory in memories:
        memory.add_task([old], forward=lambda m, batch: m(**batch))
    assert all(torch.equal(U, V) for U, V in zip(*(m.bases for m in memories), strict=True))


def test_dora_is_refused_by_the_layerwise_memory_and_guarded_by_the_dense_one() -> None:
    """DoRA divides by the norm of the whole adapted weight, which a step orthogonal to the old inputs still
    changes, and peft forms its adapter weight by calling lora_A on an identity matrix, which a recording would
    take for an old-task input: the layer-wise memory refuses it. The dense memory stores gradients of the whole
    function, normalisation included, and its guarded step is orthogonal to them."""
    model = _lora("gpt2", use_dora=True).eval()
    with pytest.raises(ValueError, match="DoRA"):
        LayerwiseMemory(model)
    trainable = [p for p in model.parameters() if p.requires_grad]
    ids = _ids(torch.Generator().manual_seed(1), 3)
    memory = DenseMemory(trainable, k_per_task=3)
    assert memory.add_task(model, ids, causal_lm_targets(ids)) == 3
    loss = lambda: model(input_ids=ids[:2], labels=ids[:2]).loss  # noqa: E731
    guarded, grads = step_and_restore(model, ForgettingGuard(torch.optim.SGD(trainable, lr=1e-2), memory), loss, seed=2)
    plain, _ = step_and_restore(model, torch.optim.SGD(trainable, lr=1e-2), loss, seed=2)
    assert memory.residual(guarded) <= 1e-12 * memory.residual(plain)
    assert dot(grads, guarded) < 0


# 2. torch.compile ---------------------------------------------------------------------------------------------


def _check_compiled(where: str, backend: str) -> None:
    """Record through a compiled forward (``where``: the memory on the compiled module, or on the original one
    with the compiled call as its forward, compiled and run before the memory's hooks exist), compare with the
    eager memory, and train through the compiled module."""
    torch._dynamo.reset()
    torch.manual_seed(0)
    model = _TokenNet().eval()
    compiled = torch.compile(model, backend=backend)
    old = torch.randint(0, 10, (3, 5), generator=torch.Generator().manual_seed(1))
    if where == "compiled module":
        memory = LayerwiseMemory(compiled, threshold=1.0)
        memory.add_task([old])
    else:
        if where == "compiled and run before the memory":
            compiled(old)
        memory = LayerwiseMemory(model, threshold=1.0)
        memory.add_task([old], forward=lambda _, batch: compiled(batch))
    eager = LayerwiseMemory(_TokenNet().eval(), threshold=1.0)
    eager.model.load_state_dict(model.state_dict())
    eager.add_task([old])
    assert _same_bases(memory, eager) and all(memory._size(i) for i in range(len(memory.layers)))
    model.train()
    with torch.no_grad():
        before = model(old).clone()
    g = torch.Generator().manual_seed(2)
    batches = [torch.randint(0, 20, (4, 5), generator=g) for _ in range(3)]
    opt = ForgettingGuard(torch.optim.AdamW(model.parameters(), lr=0.05), memory)
    losses = _train(model, opt, lambda x: compiled(x).pow(2).mean(), [*batches, batches[0]])
    assert losses[-1] < losses[0]  # the first batch's loss, before and after three steps
    with torch.no_grad():
        assert float((compiled(old) - before).norm()) < 1e-12 and float((model(old) - before).norm()) < 1e-12


@pytest.mark.parametrize("where", ["compiled module", "original module", "compiled and run before the memory"])
def test_a_compiled_model_is_recorded_and_guarded_as_the_eager_one(where: str) -> None:
    """The memory's forward pre-hooks and embedding-row reads run in the compiled forward, also when they are
    added after its first run (Dynamo recompiles): the bases are the eager model's, and guarded steps through the
    compiled module keep the old outputs. The eager backend runs Dynamo's tracing without Inductor's code
    generation (fast)."""
    _check_compiled(where, "eager")


@pytest.mark.parametrize("per_layer", [False, True], ids=["one pass", "a pass per layer"])
def test_a_model_compiled_and_run_before_the_memory_without_an_embedding_is_recorded(per_layer: bool) -> None:
    """Dynamo does not guard on module hooks: a graph compiled before the memory's hooks existed skips them (the
    embedding's row counter of ``_TokenNet`` changes the graph's guards, which hides this). Recording runs the
    forward eagerly, so the bases are the eager model's, bit for bit, in one pass or a pass per layer."""
    torch._dynamo.reset()
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 8), nn.Tanh(), nn.Linear(8, 4)).eval()
    eager = copy.deepcopy(model)
    compiled = torch.compile(model, backend="eager")
    old = [torch.randn(6, 8, generator=torch.Generator().manual_seed(1))]
    with torch.no_grad():
        compiled(old[0])
    memory, reference = LayerwiseMemory(model, threshold=0.99), LayerwiseMemory(eager, threshold=0.99)
    budget = max(factor_bytes(m, True) for m in memory.layers) if per_layer else None
    memory.add_task(old, forward=lambda _, batch: compiled(batch), max_factor_bytes=budget)
    reference.add_task(old)
    assert all(U.shape[1] and torch.equal(U, V) for U, V in zip(memory.bases, reference.bases, strict=True))


@pytest.mark.slow
def test_a_model_compiled_by_inductor_is_recorded_and_guarded_as_the_eager_one() -> None:
    _check_compiled("compiled and run before the memory", "inductor")


# 3. Activation checkpointing ----------------------------------------------------------------------------------


class _Checkpointed(nn.Module):
    """A residual block whose inner layers run under ``torch.utils.checkpoint`` (``reentrant=None``: without)."""

    def __init__(self, reentrant: bool | None) -> None:
        super().__init__()
        self.a, self.b, self.reentrant = nn.Linear(4, 8), nn.Linear(8, 4), reentrant

    def inner(self, x: Tensor) -> Tensor:
        return self.b(torch.tanh(self.a(x)))

    def forward(self, x: Tensor) -> Tensor:
        if self.reentrant is None:
            return x + self.inner(x)
        return x + checkpoint(self.inner, x, use_reentrant=self.reentrant)


def _checkpointed_mlp(reentrant: bool | None) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 4), _Checkpointed(reentrant), nn.Linear(4, 2))


@pytest.mark.filterwarnings("ignore:None of the inputs have requires_grad")  # the reentrant one, under no_grad
@pytest.mark.parametrize("reentrant", [False, True])
def test_activation_checkpointing_records_each_input_once_and_steps_as_without(reentrant: bool) -> None:
    """Recording runs under no_grad, so a checkpointed block runs once; in training its recomputation in the
    backward pass happens after the hooks are gone. The guarded steps are those of the model without it."""
    old = torch.randn(2, 3, generator=torch.Generator().manual_seed(1))
    batches = [torch.randn(6, 3, generator=torch.Generator().manual_seed(2))] * 3
    runs = []
    for setting in (reentrant, None):
        model = _checkpointed_mlp(setting)
        memory = LayerwiseMemory(model, threshold=1.0)
        memory.add_task([old])
        before = model(old).detach().clone()
        opt = ForgettingGuard(torch.optim.AdamW(model.parameters(), lr=0.05), memory)
        losses = _train(model, opt, lambda x, m=model: m(x).pow(2).sum(), batches)
        with torch.no_grad():
            runs.append((memory, [p.detach().clone() for p in model.parameters()], model(old) - before, losses))
    (memory, params, moved, losses), (plain_memory, plain_params, _, _) = runs
    assert _same_bases(memory, plain_memory)
    for p, q in zip(params, plain_params, strict=True):
        torch.testing.assert_close(p, q, rtol=0, atol=1e-12)
    assert float(moved.norm()) < 1e-12 and losses[-1] < losses[0]


def _gpt2(checkpointed: bool) -> nn.Module:
    """A tiny GPT-2 in float64 without dropout (its training-mode forward is deterministic)."""
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    config = transformers.GPT2Config(
        vocab_size=VOCAB, n_positions=16, n_embd=16, n_layer=2, n_head=2, resid_pdrop=0.0, embd_pdrop=0.0,
        attn_pdrop=0.0,
    )  # fmt: skip
    model = transformers.GPT2LMHeadModel(config).double()
    model.set_attn_implementation("eager")  # forward-mode AD: torch's CPU SDPA has no forward derivative
    if checkpointed:  # transformers 5 renamed gradient_checkpointing_enable, which it keeps as a deprecated alias
        getattr(model, "activation_checkpointing_enable", model.gradient_checkpointing_enable)()
        assert any(getattr(m, "gradient_checkpointing", False) for m in model.modules())
    return model


def test_hugging_face_activation_checkpointing_steps_as_without() -> None:
    """HF checkpointing acts in training mode only: the memory is recorded in eval mode as without it, and the
    guarded steps, taken in training mode and checkpointed, are the same to rounding."""
    g = torch.Generator().manual_seed(1)
    old, new = {"input_ids": _ids(g, 1)}, _ids(g, 2)
    steps = []
    for checkpointed in (True, False):
        model = _gpt2(checkpointed)
        memory = LayerwiseMemory(model.eval(), threshold=1.0, freeze_uncovered=True)
        memory.add_task([old], forward=lambda m, batch: m(**batch))
        model.train()
        opt = ForgettingGuard(torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.1), memory)
        steps.append(step_and_restore(model, opt, lambda m=model: m(input_ids=new, labels=new).loss, seed=2))
    (step, grads), (twin_step, _) = steps
    for a, b in zip(step, twin_step, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-14)
    plain_opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.1)
    plain, _ = step_and_restore(model, plain_opt, lambda: model(input_ids=new, labels=new).loss, seed=2)
    model.eval()  # the twin without checkpointing: forward-mode AD does not run through HF's checkpointing
    leak, reference = first_order_change(model, old, step), first_order_change(model, old, plain)
    assert reference > 1e-4 and leak <= 1e-11 * reference and dot(grads, step) < 0


def test_a_dense_memory_over_a_model_whose_hook_calls_requires_grad_says_what_to_do() -> None:
    """``enable_input_require_grads``, which checkpointing with frozen embeddings needs (PEFT installs it, and
    transformers 5 whenever it checkpoints), hooks a requires_grad_ call on the embeddings' output, in eval mode
    too, which torch.func refuses: said, and with the hook removed the memory records."""
    model = _gpt2(checkpointed=False).eval()
    model.enable_input_require_grads()
    ids = _ids(torch.Generator().manual_seed(1), 2)
    memory = DenseMemory([p for p in model.parameters() if p.requires_grad], k_per_task=2)
    with pytest.raises(RuntimeError, match=r"disable_input_require_grads\(\)"):
        memory.add_task(model, ids, causal_lm_targets(ids))
    assert memory.rank == 0
    model.disable_input_require_grads()
    assert memory.add_task(model, ids, causal_lm_targets(ids)) == 2


def test_a_dense_memory_under_activation_checkpointing_says_what_to_do() -> None:
    """torch.func's per-sample gradients do not run through a checkpointed block: said, not a torch.func
    internal."""
    model = _checkpointed_mlp(reentrant=False)
    memory = DenseMemory(model.parameters(), k_per_task=2)
    with pytest.raises(RuntimeError, match="activation checkpointing"):
        memory.add_task(model, torch.randn(4, 3), torch.randint(2, (4,)))
    assert memory.rank == 0 and memory.n_tasks == 0


# 4. bfloat16 ---------------------------------------------------------------------------------------------------


def _mlp32() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 16), nn.Tanh(), nn.Linear(16, 3)).float()


@pytest.mark.parametrize("record_under_autocast", [False, True])
def test_bfloat16_autocast_in_recording_and_training(record_under_autocast: bool) -> None:
    """Steps under bfloat16 autocast take float32 gradients, and the guard projects them as any other. Recorded
    under autocast, the hidden layers' inputs are bfloat16 values (the Linear before them ran in bfloat16), so
    the float32 model's old outputs are kept to bfloat16's precision (2^-8) rather than float32's."""
    xa = torch.randn(8, 6, dtype=torch.float32, generator=torch.Generator().manual_seed(1))
    batches = [torch.randn(8, 6, dtype=torch.float32, generator=torch.Generator().manual_seed(2))] * 4
    moved, losses = [], []
    for guarded in (True, False):
        model = _mlp32().eval()
        before = model(xa).detach().clone()
        opt = torch.optim.AdamW(model.parameters(), lr=0.05)
        if guarded:
            memory = LayerwiseMemory(model, threshold=1.0)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=record_under_autocast):
                memory.add_task([xa])
            opt = ForgettingGuard(opt, memory)

        def loss(x: Tensor, m: nn.Module = model) -> Tensor:
            with torch.autocast("cpu", dtype=torch.bfloat16):
                return m(x).float().pow(2).mean()

        losses.append(_train(model.train(), opt, loss, batches))
        with torch.no_grad():
            moved.append(float((model.eval()(xa) - before).norm()))
    leak, reference = moved
    assert reference > 0.1 and losses[0][-1] < losses[0][0]
    assert leak <= (2e-2 if record_under_autocast else 1e-5) * reference, f"{leak:.2e} against {reference:.2e}"


def test_a_bfloat16_gpt2_keeps_its_old_outputs_to_bfloat16_rounding() -> None:
    """A model cast to bfloat16, embeddings and HF Conv1D included: the memory keeps float32 bases, the step's
    coordinates along them are the weights' rounding (``eps |w|``), and the new task's loss goes down."""
    transformers = pytest.importorskip("transformers")
    g = torch.Generator().manual_seed(1)
    old, new = _ids(g, 2), _ids(g, 4)
    results = {}
    for kind in ("guarded", "plain"):
        torch.manual_seed(0)
        config = transformers.GPT2Config(vocab_size=VOCAB, n_positions=16, n_embd=16, n_layer=1, n_head=2)
        model = transformers.GPT2LMHeadModel(config).to(torch.bfloat16).eval()
        memory = LayerwiseMemory(model, threshold=1.0, freeze_uncovered=True)
        memory.add_task([old])
        assert all(U.dtype == torch.float32 for U in memory.bases if U.ndim == 2)
        params = [p for p in model.parameters() if p.requires_grad]
        w0 = [p.detach().double() for p in params]
        with torch.no_grad():
            before = model(old).logits.double()
        opt = torch.optim.AdamW(params, lr=1e-2)
        opt = ForgettingGuard(opt, memory) if kind == "guarded" else opt
        losses = _train(model, opt, lambda x, m=model: m(x, labels=x).loss, [new] * 5)
        step = [p.detach().double() - w for p, w in zip(params, w0, strict=True)]
        rounding = 2.0**-8 * sum(float(p.detach().double().pow(2).sum()) for p in params) ** 0.5
        with torch.no_grad():
            moved = float((model(old).logits.double() - before).norm())
        results[kind] = (memory.residual(step), rounding, moved, losses)
    (residual, rounding, moved, losses), (plain_residual, _, plain_moved, _) = results.values()
    assert plain_residual > 10 * rounding and residual <= rounding
    assert moved <= 1e-2 * plain_moved and losses[-1] < losses[0]


# 5. Gradient accumulation, and the model's mode at recording time ---------------------------------------------


_ACCUMULATING = {
    "update": lambda params, memory: ForgettingGuard(torch.optim.AdamW(params, lr=0.05), memory),
    "update, reused coefficients": lambda params, memory: ForgettingGuard(
        torch.optim.AdamW(params, lr=0.05), memory, reuse_coefficients=True
    ),
    "gradient": lambda params, memory: ForgettingGuard(torch.optim.SGD(params, lr=0.1), memory, project="gradient"),
    "hybrid": lambda params, memory: HybridAdamW(params, lr=0.05, memory=memory),
}


@pytest.mark.parametrize("kind", sorted(_ACCUMULATING))
def test_gradient_accumulation_takes_the_full_batch_step(kind: str) -> None:
    """Four micro-batches, each loss divided by four and back-propagated, then one step: the full batch's step,
    the old outputs kept."""
    old = torch.randint(0, 10, (3, 5), generator=torch.Generator().manual_seed(1))
    g = torch.Generator().manual_seed(2)
    batches = [torch.randint(0, 20, (8, 5), generator=g) for _ in range(2)]
    finals = []
    for micro in (4, 1):
        torch.manual_seed(0)
        model = _TokenNet().eval()
        memory = LayerwiseMemory(model, threshold=1.0)
        memory.add_task([old])
        before = model(old).detach().clone()
        opt = _ACCUMULATING[kind](list(model.parameters()), memory)
        for x in batches:
            opt.zero_grad()
            for part in x.chunk(micro):
                (model(part).pow(2).mean() / micro).backward()
            opt.step()
        with torch.no_grad():
            assert float((model(old) - before).norm()) < 1e-12
        finals.append([p.detach().clone() for p in model.parameters()])
    for a, b in zip(*finals, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12)


def test_add_task_changes_no_parameter_buffer_mode_or_random_state() -> None:
    """Batch norm and dropout in eval mode: recording reads the running statistics and draws no mask."""
    torch.manual_seed(0)
    layers = [nn.Conv1d(2, 4, 3), nn.BatchNorm1d(4), nn.ReLU(), nn.Dropout(0.5), nn.Flatten(), nn.Linear(24, 3)]
    model = nn.Sequential(*layers)
    model.train()
    model(torch.randn(8, 2, 8))  # running statistics away from their initial values
    model.eval()
    state = {k: (v.clone(), v._version) for k, v in model.state_dict(keep_vars=True).items()}
    x, y = torch.randn(6, 2, 8), torch.randint(3, (6,))
    rng = torch.get_rng_state()
    LayerwiseMemory(model, threshold=0.99).add_task([x])
    DenseMemory(model.parameters(), k_per_task=2).add_task(model, x, y)
    for k, v in model.state_dict(keep_vars=True).items():
        assert torch.equal(v, state[k][0]) and v._version == state[k][1], k
    assert torch.equal(torch.get_rng_state(), rng) and not any(m.training for m in model.modules())


class _FunctionalDropout(nn.Module):
    """A block that draws its mask without an ``nn.Dropout`` layer, as Hugging Face's BART, OPT and LLaMA do."""

    def __init__(self, kind: str, p: float = 0.5) -> None:
        super().__init__()
        self.kind, self.p, self.a, self.b = kind, p, nn.Linear(4, 8), nn.Linear(8, 3)

    def forward(self, x: Tensor) -> Tensor:
        h = torch.tanh(self.a(x))
        if self.kind == "F.dropout":
            h = F.dropout(h, p=self.p, training=self.training)
        elif self.kind == "attention dropout_p":
            q = h.view(h.shape[0], 2, 1, 4)
            h = F.scaled_dot_product_attention(q, q, q, dropout_p=self.p if self.training else 0.0).reshape(h.shape)
        elif self.training:  # drop-path: the whole sample, as timm's DropPath
            keep = h.new_empty(h.shape[0], 1).bernoulli_(1 - self.p)
            h = h * keep / (1 - self.p)
        return self.b(h)


@pytest.mark.parametrize("kind", ["F.dropout", "attention dropout_p", "drop-path"])
def test_recording_through_stochastic_functions_in_training_mode_is_refused(kind: str) -> None:
    """No nn.Dropout layer to see: the memory notices that the old task's forward drew random numbers with the
    model in training mode, and refuses before it changes; in eval mode it records, the same twice."""
    torch.manual_seed(0)
    model = _FunctionalDropout(kind).train()
    x = torch.randn(6, 4)
    memory = LayerwiseMemory(model, threshold=1.0)
    with pytest.raises(ValueError, match="drew random numbers"):
        memory.add_task([x])
    assert memory.n_tasks == 0 and all(U.numel() == 0 for U in memory.bases)
    with pytest.raises(ValueError, match="eval"):
        DenseMemory(model.parameters()).add_task(model, x, torch.randint(3, (6,)))
    model.eval()
    twin = LayerwiseMemory(model, threshold=1.0)
    assert memory.add_task([x]) == twin.add_task([x]) == [5, 6]
    assert all(torch.equal(U, V) for U, V in zip(memory.bases, twin.bases, strict=True))


def test_training_mode_without_randomness_is_recorded() -> None:
    """A dropout of probability 0 (LLaMA's default attention dropout) draws nothing: not refused."""
    torch.manual_seed(0)
    model = _FunctionalDropout("F.dropout", p=0.0).train()
    assert LayerwiseMemory(model, threshold=1.0).add_task([torch.randn(6, 4)]) == [5, 6]


def test_a_hugging_face_bart_from_its_config_is_refused_until_put_in_eval_mode() -> None:
    """A model built from its config is in training mode, and BART draws its dropout functionally: recorded so,
    two recordings of one batch gave two different memories."""
    transformers = pytest.importorskip("transformers")
    config = transformers.BartConfig(
        vocab_size=VOCAB, d_model=16, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2,
        decoder_attention_heads=2, encoder_ffn_dim=32, decoder_ffn_dim=32, max_position_embeddings=16,
    )  # fmt: skip
    torch.manual_seed(0)
    model = transformers.BartForConditionalGeneration(config)
    assert model.training and not any(isinstance(m, nn.Dropout) for m in model.modules())
    g = torch.Generator().manual_seed(1)
    old = {"input_ids": _ids(g, 1), "decoder_input_ids": _ids(g, 1, 4)}
    with pytest.raises(ValueError, match="drew random numbers"):
        LayerwiseMemory(model).add_task([old], forward=lambda m, batch: m(**batch))
    model.eval()
    memories = [LayerwiseMemory(model, threshold=0.97) for _ in range(2)]
    for memory in memories:
        memory.add_task([old], forward=lambda m, batch: m(**batch))
    assert _same_bases(*memories)


@pytest.mark.parametrize("kind", ["layerwise", "dense"])
def test_a_memory_recorded_under_inference_mode_guards_ordinary_steps(kind: str) -> None:
    """``torch.inference_mode()`` is a common way to run an evaluation pass. A memory built and recorded there
    held inference tensors, which have no version counter: the first guarded step failed deep inside. Its stored
    tensors are now ordinary ones, and the steps keep the old outputs."""
    torch.manual_seed(0)
    model = _TokenNet().eval()
    old = torch.randint(0, 10, (3, 5), generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        if kind == "layerwise":
            memory = LayerwiseMemory(model, threshold=1.0)
            memory.add_task([old])
        else:
            memory = DenseMemory(model.parameters(), k_per_task=3)
            memory.add_task(model, old, torch.randint(3, (3,)))
        memory.load_state_dict(memory.state_dict())
    assert not any(t.is_inference() for t in memory.stored_tensors())
    before = model(old).detach().clone()
    opt = ForgettingGuard(torch.optim.AdamW(model.parameters(), lr=0.05), memory, reuse_coefficients=True)
    w0 = [p.detach().clone() for p in model.parameters()]
    batch = torch.randint(0, 20, (4, 5), generator=torch.Generator().manual_seed(2))
    losses = _train(model, opt, lambda x: model(x).pow(2).mean(), [batch] * 4)
    assert losses[-1] < losses[0]
    with torch.no_grad():
        if kind == "layerwise":  # every layer's step is orthogonal to the inputs it saw: exact
            assert float((model(old) - before).norm()) < 1e-12
        else:  # the stored gradients' directions: first order
            step = [p.detach() - w for p, w in zip(model.parameters(), w0, strict=True)]
            assert memory.residual(step) < 1e-12
