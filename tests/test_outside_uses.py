"""Uses of a covered weight outside a call of its module (:mod:`kaplinskiy.memory.layerwise.outside_uses`). ``F.linear``
on a Linear layer's weight (its ``forward`` called around its hooks, or the functional form) has its input recorded
there. Other uses (a matmul on ``weight.t()``, a head written as ``h @ embedding.weight.T``) are named in an
:class:`UnrecordedUseWarning`, and the warning is not idle: through such a head a guarded step moves the old outputs,
while the same model with its head as a module sharing the weight keeps them. (pyproject's pytest settings
make this warning an error in every other test: no false alarms there.)"""

from __future__ import annotations

import itertools
import warnings
from collections.abc import Callable

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch import Tensor, nn
from torch.nn import functional as F  # noqa: N812 (the torch idiom)

from kaplinskiy import ForgettingGuard, LayerwiseMemory, UnrecordedUseWarning
from kaplinskiy.memory.layerwise.recording import factor_bytes, recording_passes


class _Language(nn.Module):
    """Token embedding, a hidden layer, and a head tied to the embedding: as an ``nn.Linear`` sharing its weight
    (``module``), or written out as ``h @ embedding.weight.T`` (``functional``) or ``F.linear(h, embedding.weight)``
    (``linear``, as torchtune's ``TiedLinear`` computes it)."""

    def __init__(self, head: str) -> None:
        super().__init__()
        self.embed, self.hidden = nn.Embedding(20, 8), nn.Linear(8, 8)
        self.form = head
        self.head = nn.Linear(8, 20, bias=False) if head == "module" else None
        if self.head is not None:
            self.head.weight = self.embed.weight
        # ``linear bias``: the head adds a bias of its own (BERT's masked-language head does)
        self.head_bias = nn.Parameter(0.1 * torch.randn(20)) if head == "linear bias" else None

    def forward(self, tokens: Tensor) -> Tensor:
        h = torch.tanh(self.hidden(self.embed(tokens)))
        if self.head is not None:
            return self.head(h)
        if self.form == "functional":
            return h @ self.embed.weight.T
        return F.linear(h, self.embed.weight, self.head_bias)


def _guarded_change(head: str, heads: bool = False) -> float:
    """How far three guarded SGD steps on new tokens move the old tokens' logits (threshold 1, everything
    uncovered frozen: the promise is that they do not move); ``heads``: the embedding is given a head."""
    torch.manual_seed(0)
    model = _Language(head).eval()
    old, new = torch.randint(0, 5, (3, 4)), torch.randint(5, 20, (3, 4))
    memory = LayerwiseMemory(model, threshold=1.0, freeze_uncovered=True, heads=[model.embed] if heads else ())
    memory.add_task([old])
    before, weight = model(old).detach().clone(), model.embed.weight.detach().clone()
    opt = ForgettingGuard(torch.optim.SGD(model.parameters(), lr=0.5), memory)
    for _ in range(3):
        opt.zero_grad()
        model(new).logsumexp(-1).mean().backward()
        opt.step()
    assert (model.embed.weight - weight).abs().max() > 1e-2  # the new task trains the embedding (and head)
    with torch.no_grad():
        return float((model(old) - before).abs().max())


def test_a_head_written_out_on_the_embedding_weight_is_named_and_does_leak() -> None:
    with pytest.warns(UnrecordedUseWarning, match=r"'embed' \(by T\)"):
        leaked = _guarded_change("functional")
    assert leaked > 1e-3  # the rows no lookup read are free to move, and the head reads every row
    assert _guarded_change("module") < 1e-12  # the same head as a module sharing the weight: recorded, kept


@pytest.mark.parametrize("form", ["functional", "linear"])
def test_an_embedding_given_a_head_records_the_head_s_inputs_and_keeps_the_old_logits(form: str) -> None:
    """``heads=[embedding]``: the products outside any module are the inputs of its head (no warning; pyproject
    makes one an error), whose basis keeps the old logits as the module head does."""
    assert _guarded_change(form, heads=True) < 1e-12
    model = _Language(form)
    memory = LayerwiseMemory(model, heads=[model.embed])
    assert [type(m).__name__ for m in memory.layers] == ["Embedding", "EmbeddingHead", "Linear"]
    assert memory.layers[1].weight is model.embed.weight and memory.layers[1].bias is None


def _moved_by_a_head_with_its_own_bias(heads: str) -> tuple[float, float]:
    """How far three guarded SGD steps on new tokens move the old tokens' logits, and the head's own bias, where the
    head is ``F.linear(h, E.weight, b)``; ``heads``: ``pair`` gives the embedding with that bias, ``embedding``
    the embedding alone (the bias then trains as any parameter no layer covers: freely)."""
    torch.manual_seed(0)
    model = _Language("linear bias").eval()
    old, new = torch.randint(0, 5, (3, 4)), torch.randint(5, 20, (3, 4))
    spec = [(model.embed, model.head_bias)] if heads == "pair" else [model.embed]
    memory = LayerwiseMemory(model, threshold=1.0, heads=spec)
    assert memory.layers[1].bias is (model.head_bias if heads == "pair" else None)
    memory.add_task([old])
    before, bias = model(old).detach().clone(), model.head_bias.detach().clone()
    opt = ForgettingGuard(torch.optim.SGD(model.parameters(), lr=0.5), memory)
    for _ in range(3):
        opt.zero_grad()
        model(new).logsumexp(-1).mean().backward()
        opt.step()
    with torch.no_grad():
        return float((model(old) - before).abs().max()), float((model.head_bias - bias).abs().max())


def test_a_head_with_its_own_bias_given_as_a_pair_keeps_the_old_logits_and_trains_the_bias() -> None:
    """``heads=[(embedding, bias)]``: the head's basis holds its inputs with the input of 1 its bias multiplies, so
    the bias learns the new task only along what the old logits do not see; given the embedding alone, the bias
    is uncovered and its step moves every old logit."""
    logits, bias = _moved_by_a_head_with_its_own_bias("pair")
    assert logits < 1e-12 and bias > 1e-3
    logits, bias = _moved_by_a_head_with_its_own_bias("embedding")
    assert logits > 1e-3 and bias > 1e-3


def test_a_head_bias_that_is_no_parameter_of_the_model_or_of_another_size_is_refused() -> None:
    model = _Language("linear bias")
    with pytest.raises(ValueError, match=r"bias given for the head of 'embed' must be a parameter of the model"):
        LayerwiseMemory(model, heads=[(model.embed, nn.Parameter(torch.zeros(20)))])
    with pytest.raises(ValueError, match=r"with 20 entries .* not a tensor of shape \(8,\)"):
        LayerwiseMemory(model, heads=[(model.embed, model.hidden.bias)])


def test_heads_that_are_no_trained_embedding_of_the_model_or_have_a_module_head_are_refused() -> None:
    model = _Language("functional")
    with pytest.raises(ValueError, match=r"Linear is not an nn\.Embedding of the model"):
        LayerwiseMemory(model, heads=[model.hidden])
    with pytest.raises(ValueError, match=r"not an nn\.Embedding of the model"):
        LayerwiseMemory(model, heads=[nn.Embedding(20, 8)])
    tied = _Language("module")
    with pytest.raises(ValueError, match="'embed' shares its weight with the covered layer 'head'"):
        LayerwiseMemory(tied, heads=[tied.embed])
    model.embed.requires_grad_(False)
    with pytest.raises(ValueError, match="'embed' is frozen"):
        LayerwiseMemory(model, heads=[model.embed])


def test_an_embedding_and_its_head_are_recorded_in_one_pass_and_grow_the_bases_of_one_pass() -> None:
    """With a budget that gives each layer a pass of its own, the embedding and its head still share one (in
    another, the product on the weight would be an unrecorded use: an error here); a budget below the pair's
    bytes is refused."""
    torch.manual_seed(0)
    tokens = [torch.randint(0, 12, (3, 4)) for _ in range(2)]
    model = _Language("functional").eval()
    one = LayerwiseMemory(model, heads=[model.embed])
    one.add_task(tokens)
    memory = LayerwiseMemory(model, heads=[model.embed])
    biased = [b is not None for _, b in memory._slots]
    sizes = [factor_bytes(m, b) for m, b in zip(memory.layers, biased, strict=True)]
    budget = sizes[0] + sizes[1]
    assert max(sizes) < budget < sum(sizes)
    assert recording_passes(model, memory.layers, biased, budget) == [[0, 1], [2]]
    memory.add_task(tokens, max_factor_bytes=budget)
    assert all(torch.equal(U, V) for U, V in zip(memory.bases, one.bases, strict=True))
    with pytest.raises(ValueError, match=r"recording layer 'embed' with its head holds on its own"):
        memory.add_task(tokens, max_factor_bytes=budget - 1)


class _Around(nn.Module):
    def __init__(self, use: Callable[[nn.Module, Tensor], Tensor]) -> None:
        super().__init__()
        self.first, self.second = nn.Linear(4, 4), nn.Linear(4, 2)
        self.use = use

    def forward(self, x: Tensor) -> Tensor:
        return self.use(self, torch.tanh(self.first(x)))


def _called(m: nn.Module, h: Tensor) -> Tensor:
    return m.second(h)


def _moved_by_guarded_steps(model: nn.Module, memory: LayerwiseMemory, old: Tensor, lr: float) -> float:
    """How far three guarded SGD steps on random new inputs (a square loss) move the model's outputs on ``old``."""
    before = model(old).detach().clone()
    opt = ForgettingGuard(torch.optim.SGD(model.parameters(), lr=lr), memory)
    gen = torch.Generator().manual_seed(2)
    for _ in range(3):
        opt.zero_grad()
        model(torch.randn(5, old.shape[-1], generator=gen)).square().sum().backward()
        opt.step()
    with torch.no_grad():
        return float((model(old) - before).abs().max())


@pytest.mark.parametrize(
    "use",
    [
        lambda m, h: m.second.forward(h),
        lambda m, h: F.linear(input=h, weight=m.second.weight, bias=m.second.bias),
        lambda m, h: torch.addmm(m.second.bias, h, m.second.weight.T),
    ],
    ids=["forward called directly", "F.linear", "addmm on its transpose"],
)
def test_a_linear_weight_used_by_a_product_outside_its_call_has_that_input_recorded(
    use: Callable[[nn.Module, Tensor], Tensor],
) -> None:
    """``F.linear`` on a Linear layer's weight outside the layer's call (its ``forward`` called around the hooks,
    or the functional form), or ``addmm`` on its transpose: the input is recorded there, so the bases are those of
    the layer called as a module (bit for bit), no warning is given, and guarded steps keep the old outputs."""
    torch.manual_seed(0)
    model, reference = _Around(use).eval(), _Around(_called).eval()
    reference.load_state_dict(model.state_dict())
    old = [torch.randn(5, 4, generator=torch.Generator().manual_seed(1))]
    memory = LayerwiseMemory(model, threshold=1.0, freeze_uncovered=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        memory.add_task(old)
    expected = LayerwiseMemory(reference, threshold=1.0, freeze_uncovered=True)
    expected.add_task(old)
    assert all(U.shape[1] and torch.equal(U, V) for U, V in zip(memory.bases, expected.bases, strict=True))
    assert _moved_by_guarded_steps(model, memory, old[0], lr=0.5) < 1e-12


@pytest.mark.parametrize(
    "use",
    [
        lambda m, h: m.second(h) + F.linear(2 * h + 1, m.second.weight),
        lambda m, h: m.second(h) + F.linear(2 * h + 1, m.second.weight, torch.ones(2)),
        lambda m, h: m.second(h) + (2 * h + 1) @ m.second.weight.t(),
        lambda m, h: m.second(h) + torch.matmul(2 * h + 1, m.second.weight.mT),
        lambda m, h: m.second(h) + torch.mm(2 * h + 1, m.second.weight.transpose(0, 1)),
        lambda m, h: m.second(h) + torch.addmm(torch.ones(2), 2 * h + 1, m.second.weight.T),
    ],
    ids=["without a bias", "with another bias", "@ its transpose", "matmul", "mm", "addmm with another bias"],
)
def test_a_product_without_the_layer_s_bias_records_its_input_with_no_input_of_1(
    use: Callable[[nn.Module, Tensor], Tensor],
) -> None:
    """``F.linear(x, layer.weight)`` (or ``x @ layer.weight.T``) computes ``W x``, which a step moves by ``D_W x``
    and not ``D_W x + d_b``: its input is recorded as ``[x; 0]``, and guarded steps keep the old outputs. (Recorded
    as ``[x; 1]``, as a call of the layer adds its bias, three steps moved them by 0.04 and 0.06: ``D_W x + d_b = 0``
    leaves ``D_W x`` free.)"""
    torch.manual_seed(0)
    model = _Around(use).eval()
    old = torch.randn(3, 4, generator=torch.Generator().manual_seed(1))
    memory = LayerwiseMemory(model, threshold=1.0, freeze_uncovered=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        memory.add_task([old])
    h = torch.tanh(model.first(old)).detach()
    without = torch.cat([2 * h + 1, torch.zeros(3, 1)], dim=1)  # the representations F.linear's use adds
    U = memory.bases[1]
    assert float((without - without @ U @ U.T).abs().max()) < 1e-12
    assert _moved_by_guarded_steps(model, memory, old, lr=0.05) < 1e-12


def test_a_layer_s_bias_used_outside_its_call_is_named() -> None:
    memory = LayerwiseMemory(_Around(lambda m, h: m.second(h) + m.second.bias).eval())
    with pytest.warns(UnrecordedUseWarning, match=r"weights or biases of 'second' \(by add\)"):
        memory.add_task([torch.randn(5, 4)])


@pytest.mark.parametrize(
    ("use", "op"),
    [
        (lambda m, h: m.second(h) + torch.einsum("bi,oi->bo", h, m.second.weight), "einsum"),
        (lambda m, h: m.second(h) + (m.second.weight.t() @ m.second.weight).sum(), "matmul"),
        (lambda m, h: m.second(h) + h @ m.second.weight.t().contiguous(), "contiguous"),
        (lambda m, h: m.second(h) + F.linear(h[:, :2], m.second.weight.T).sum(), "linear"),
        (lambda m, h: m.second(h) + torch.addmm(m.second.bias, h, m.second.weight.T, alpha=2), "addmm"),
        (lambda m, h: h @ m.second.weight.t() + m.second.bias, "add"),
    ],
    ids=["einsum", "its transpose times it", "a copy of its transpose", "F.linear on its transpose", "scaled", "bias"],
)
def test_another_use_of_a_weight_outside_its_module_call_is_named(
    use: Callable[[nn.Module, Tensor], Tensor], op: str
) -> None:
    memory = LayerwiseMemory(_Around(use).eval())
    with pytest.warns(UnrecordedUseWarning, match=rf"'second' \(by {op}\)") as caught:
        memory.add_task([torch.randn(5, 4)])
    assert len(caught) == 1 and "'first'" not in str(caught[0].message)


def test_reading_a_weight_s_shape_or_dtype_or_making_tensors_like_it_is_no_use() -> None:
    def use(m: nn.Module, h: Tensor) -> Tensor:
        w = m.second.weight
        assert w.shape[0] == 2 and w.dtype == h.dtype and w.requires_grad
        return m.second(h) + w.new_zeros(1) + torch.zeros_like(w).sum()  # new tensors shaped like it: no use

    memory = LayerwiseMemory(_Around(use).eval())
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        memory.add_task([torch.randn(5, 4)])


def test_an_f_linear_input_is_recorded_after_another_outside_use_was_named() -> None:
    """A weight first used by an einsum (named), then by ``F.linear`` (recorded): the warning does not stop the
    recording, so the layer's basis is that of the layer called as a module."""

    def use(m: nn.Module, h: Tensor) -> Tensor:
        return 0 * torch.einsum("bi,oi->", h, m.second.weight) + F.linear(h, m.second.weight, m.second.bias)

    torch.manual_seed(0)
    model, reference = _Around(use).eval(), _Around(_called).eval()
    reference.load_state_dict(model.state_dict())
    old = [torch.randn(5, 4, generator=torch.Generator().manual_seed(1))]
    memory, expected = LayerwiseMemory(model, threshold=1.0), LayerwiseMemory(reference, threshold=1.0)
    with pytest.warns(UnrecordedUseWarning, match=r"'second' \(by einsum\)"):
        memory.add_task(old)
    expected.add_task(old)
    assert all(U.shape[1] and torch.equal(U, V) for U, V in zip(memory.bases, expected.bases, strict=True))


_FORMS: dict[str, Callable[[nn.Linear, Tensor], Tensor]] = {
    "module": lambda layer, x: layer(x),
    "forward": lambda layer, x: layer.forward(x),
    "F.linear": lambda layer, x: F.linear(x, layer.weight, layer.bias),
    "F.linear without the bias": lambda layer, x: F.linear(x, layer.weight),
    "@ its transpose": lambda layer, x: x @ layer.weight.T,
    "matmul": lambda layer, x: torch.matmul(x, layer.weight.t()),
    "addmm": lambda layer, x: (
        torch.addmm(layer.bias, x, layer.weight.mT) if layer.bias is not None else torch.mm(x, layer.weight.mT)
    ),
}


class _Uses(nn.Module):
    """An MLP whose layers are each applied in one form, some a second time to another input in another form."""

    def __init__(self, widths: list[int], biases: list[bool], forms: list[tuple[str, str | None]]) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            nn.Linear(a, b, bias=bias) for (a, b), bias in zip(itertools.pairwise(widths), biases, strict=True)
        )
        self.forms = forms

    def forward(self, x: Tensor) -> Tensor:
        for layer, (form, again) in zip(self.layers, self.forms, strict=True):
            y = _FORMS[form](layer, x)
            if again is not None:
                y = y + 0.5 * _FORMS[again](layer, 2 * x + 1)
            x = torch.tanh(y)
        return x


@given(
    widths=st.lists(st.integers(1, 6), min_size=2, max_size=4),
    data=st.data(),
    seed=st.integers(0, 2**16),
)
def test_a_guarded_step_keeps_the_old_outputs_through_every_recorded_form_of_a_product(
    widths: list[int], data: st.DataObject, seed: int
) -> None:
    """Random MLPs whose layers are applied as modules or as products with their weights outside their calls
    (``forward`` called directly, ``F.linear`` with or without the bias, ``x @ W.T``, ``matmul``, ``addmm``), some
    twice: recording names no use, and with ``threshold=1`` guarded steps keep the old outputs."""
    n = len(widths) - 1
    biases = data.draw(st.lists(st.booleans(), min_size=n, max_size=n))
    names = sorted(_FORMS)
    forms = data.draw(
        st.lists(st.tuples(st.sampled_from(names), st.none() | st.sampled_from(names)), min_size=n, max_size=n)
    )
    torch.manual_seed(seed)
    model = _Uses(widths, biases, forms).eval()
    gen = torch.Generator().manual_seed(seed)
    old = torch.randn(2, widths[0], generator=gen)
    memory = LayerwiseMemory(model, threshold=1.0, freeze_uncovered=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        memory.add_task([old])
    assert _moved_by_guarded_steps(model, memory, old, lr=0.05) < 1e-12


_HEAD_FORMS: dict[str, Callable[[Tensor, Tensor], Tensor]] = {
    "@ .T": lambda h, w: h @ w.T,
    "F.linear": lambda h, w: F.linear(h, w),
    "matmul .t()": lambda h, w: torch.matmul(h, w.t()),
}


class _HeadOnEmbedding(nn.Module):
    """An embedding, an optional hidden layer, and the embedding's weight as the head in ``form``."""

    def __init__(self, vocab: int, width: int, hidden: bool, form: str) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, width)
        self.hidden = nn.Linear(width, width) if hidden else None
        self.form = form

    def forward(self, tokens: Tensor) -> Tensor:
        h = self.embed(tokens)
        if self.hidden is not None:
            h = torch.tanh(self.hidden(h))
        return _HEAD_FORMS[self.form](h, self.embed.weight)


@given(
    vocab=st.integers(2, 12),
    width=st.integers(1, 6),
    hidden=st.booleans(),
    form=st.sampled_from(sorted(_HEAD_FORMS)),
    adamw=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_an_embedding_s_head_keeps_the_old_logits_under_guarded_steps(
    vocab: int, width: int, hidden: bool, form: str, adamw: bool, seed: int
) -> None:
    """Random vocabularies and widths, a head in each recorded form, guarded SGD or AdamW steps on any tokens:
    with ``heads=[embedding]`` and ``threshold=1`` the old tokens' logits do not move, and recording names no use."""
    torch.manual_seed(seed)
    model = _HeadOnEmbedding(vocab, width, hidden, form).eval()
    gen = torch.Generator().manual_seed(seed)
    old, new = (torch.randint(0, vocab, (2, 3), generator=gen) for _ in range(2))
    memory = LayerwiseMemory(model, threshold=1.0, freeze_uncovered=True, heads=[model.embed])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        memory.add_task([old])
    before = model(old).detach().clone()
    base = torch.optim.AdamW(model.parameters(), lr=0.05) if adamw else torch.optim.SGD(model.parameters(), lr=0.2)
    opt = ForgettingGuard(base, memory)
    for _ in range(3):
        opt.zero_grad()
        model(new).logsumexp(-1).sum().backward()
        opt.step()
    with torch.no_grad():
        assert float((model(old) - before).abs().max()) < 1e-12
