"""Recording the old task's inputs of a model's covered layers (GPM's representation matrices): forward pre-hooks
join each layer's inputs into a float64 triangular factor, an embedding's reads of its rows are counted, and what
was recorded is checked (no random draws in training mode, every input finite) before any basis grows. Under a
budget of bytes, the layers are recorded in passes of consecutive ones (:func:`recording_passes`).

A layer's recorded inputs are a running triangular factor ``R`` (``R^T R = sum_s x_s x_s^T``), joined by a QR of
``[R; rows]``: the statistics GPM's update reads (eq:energy_basis). Rows wait in a buffer until a quarter of the
width has come, and then join in one QR. Without the buffer, each small batch of ``b`` inputs of a ``d``-wide layer
costs a QR of ``(d + b) x d`` rows, which costs about as much as one of ``d`` new rows: recording from batches of 8
inputs ran many times slower than from large batches. With it, each QR joins at least ``d / 4`` rows, for at most
a quarter more memory held than ``R`` alone (:func:`pending_limit`). A batch of ``d / 4`` rows or more joins at
once, as it did without the buffer. An attention's input projection holds one per block of rows (query, key,
value), one for all three in self-attention.
"""

from __future__ import annotations

import contextlib
import itertools
import weakref
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.nn import functional as F  # noqa: N812 (the torch idiom)

from ..._tensor_lists import is_dtensor
from ...functional.memory_update import stacked_factor
from ...regularizers.per_sample import check_eval_mode
from ..base import progress_bar
from .coverage import (
    AttentionInProjection,
    EmbeddingHead,
    attention_recorder,
    layer_names,
    packed_attentions,
    reshard_after_forward,
)
from .inputs import CONVOLUTIONS, TRANSPOSED_CONVOLUTIONS, RowReads, input_width, layer_representations
from .inputs import output_padding as transposed_output_padding
from .outside_uses import OutsideUses, parameter_owners

__all__ = ["InputFactor", "RecordedInputs", "factor_bytes", "pending_limit", "record_layer_inputs", "recording_passes"]


def pending_limit(width: int) -> int:
    """How many rows of ``width`` entries make a buffer join its factor: a quarter of the width (at least one)."""
    return max(1, width // 4)


@dataclass(frozen=True)
class InputFactor:
    """A running factor ``R`` (None before any input) and the rows that wait to join it (``pending``), so that
    ``R^T R + sum_p P^T P`` is the sum of the inputs' outer products. Immutable: :meth:`joined` returns the next
    one, so layers that read one tensor can hold one object."""

    factor: Tensor | None = None
    pending: tuple[Tensor, ...] = ()

    def joined(self, rows: Tensor) -> InputFactor:
        """This factor with ``rows`` (``n x d``, float64) added: buffered (a copy), or joined by one QR with the
        buffered ones once they reach :func:`pending_limit` of ``d``."""
        pending = (*self.pending, rows)
        if sum(p.shape[0] for p in pending) < pending_limit(rows.shape[1]):
            # a copy: the rows may be the forward's own tensor, which it may change in place later
            return InputFactor(self.factor, (*self.pending, rows.clone()))
        return InputFactor(InputFactor(self.factor, pending).flushed())

    def flushed(self) -> Tensor:
        """The triangular ``R`` of every row so far (``min(n, d) x d``), the buffered ones joined."""
        if not self.pending:
            if self.factor is None:
                raise ValueError("InputFactor: no input was recorded")
            return self.factor
        return stacked_factor(self.pending if self.factor is None else (self.factor, *self.pending))


@dataclass(frozen=True)
class RecordedInputs:
    """What :func:`record_layer_inputs` took, per covered layer (None where a layer saw no input).

    ``factors``: a triangular ``R`` (``min(n, in_eff) x in_eff`` for ``n`` inputs, float64) with
    ``R^T R = sum_s x_s x_s^T`` over the layer's representations; three of them stacked, ``(3, h, in_eff)`` with
    zero rows padding the shorter ones, for an attention's input projection (query, key, value); for an
    embedding, how often each row was read (float64, ``num_embeddings``). Linear layers that read the same
    tensors hold one factor object. ``coarse``: the layers that recorded an input of less than float64
    precision. ``n_batches``: how many batches the forward ran on."""

    factors: list[Tensor | None]
    coarse: frozenset[int]
    n_batches: int = 0


def random_states(model: nn.Module) -> list[Tensor]:
    """The states of the generators a forward of ``model`` draws from: the CPU's, and that of each CUDA device
    holding one of its tensors. A forward that drew a random number (a dropout mask) has moved one of them."""
    devices = {t.device for t in itertools.chain(model.parameters(), model.buffers()) if t.device.type == "cuda"}
    return [torch.get_rng_state(), *(torch.cuda.get_rng_state(d) for d in sorted(devices, key=str))]


def attention_layers(
    model: nn.Module, layers: Sequence[nn.Module]
) -> list[tuple[nn.MultiheadAttention, tuple[int | None, int | None]]]:
    """Each packed attention with the indices among ``layers`` of its covered input projection and ``out_proj``
    (None: not covered), whose inputs its recorder takes from the attention's arguments."""
    index = {id(m): i for i, m in enumerate(layers)}
    shims = {id(m.weight): i for i, m in enumerate(layers) if isinstance(m, AttentionInProjection)}
    out = []
    for _, attention in packed_attentions(model):
        pair = (shims.get(id(attention.in_proj_weight)), index.get(id(attention.out_proj)))
        if pair != (None, None):
            out.append((attention, pair))
    return out


@torch.no_grad()
def record_layer_inputs(
    model: nn.Module,
    layers: Sequence[nn.Module],
    biased: Sequence[bool],
    batches: Iterable[Any],
    forward: Callable[[nn.Module, Any], Any] | None = None,
    *,
    progress: bool = False,
    description: str = "LayerwiseMemory: old-task batches",
) -> RecordedInputs:
    """Run ``forward(model, batch)`` (default ``model(batch)``) on every batch and record the inputs of ``layers``
    (``biased``: whether each has a trainable bias, which adds an input of 1), as :class:`RecordedInputs`.

    Refused, with nothing recorded: a model in training mode with dropout or batch norm, a forward that draws
    random numbers while a layer is in training mode (noticed by the random generators' states), an embedding
    called without a read of its rows, and non-finite inputs (named by layer). Under FSDP2, the factors of the
    ranks that share a sharded layer are joined, so every rank holds those of all ranks' inputs.
    A product with a Linear layer's weight outside the layer's call (``F.linear``, ``x @ W.T``, ``addmm``) has its
    input recorded (with the input of 1 that the layer's bias multiplies only where it adds that bias); any other
    use of a covered weight or trainable bias outside a call of its module is named in an
    :class:`~kaplinskiy.memory.layerwise.outside_uses.UnrecordedUseWarning`: its inputs there are not recorded.
    """
    check_eval_mode(model)
    training = any(m.training for m in model.modules())
    states = random_states(model) if training else None
    stats: list[Any] = [None] * len(layers)  # per layer: an InputFactor (three: an attention's), counts, or None
    embeddings = [i for i, m in enumerate(layers) if isinstance(m, nn.Embedding)]
    called: set[int] = set()
    coarse: set[int] = set()  # layers that recorded an input of less than float64 precision
    made: dict[tuple[int, bool, bool], tuple[weakref.ref[Tensor], int, Tensor | None, Tensor]] = {}

    def add(
        i: int,
        x: Tensor,
        blocks: Sequence[int] = (),
        *,
        bias_added: bool = True,
        output_padding: Sequence[int] | None = None,
    ) -> None:
        """Layer ``i``'s input ``x`` joins its statistics: a triangular factor ``R`` (at most ``d x d``) of the
        inputs so far (``R^T R = sum_s x_s x_s^T``), the ``R`` of a QR of ``[R; rows]``, in float64, the rows of
        small batches buffered until a quarter of the width has come (:class:`InputFactor`). The factor keeps
        what the covariance would lose: directions below ``eps`` of the largest one squared
        (:func:`~kaplinskiy.functional.memory_update.energy_basis_update_rows`). An attention's input projection keeps
        one per block of rows (query, key, value), and ``x`` joins those of ``blocks``. ``bias_added``: whether the
        layer's bias is added to the product of ``x`` (not where ``F.linear`` takes the weight without it): the input of
        1 that the bias multiplies is then 0. ``output_padding``: a transposed convolution's, in that call.

        Linear layers that read one tensor (a transformer's separate query, key and value projections, or its
        gate and up projections) and held one factor before get one factor after, made once: the same
        object, so they hold it once (``made``: per input tensor, unchanged since, the factor it turned into
        which)."""
        if x.dtype != torch.float64:
            coarse.add(i)
        sharable = not isinstance(layers[i], (*CONVOLUTIONS, *TRANSPOSED_CONVOLUTIONS, AttentionInProjection))
        version = _version(x) if sharable else None
        key = (id(x), biased[i], bias_added)
        seen = made.get(key) if version is not None else None
        if seen is not None and seen[0]() is x and seen[1] == version and seen[2] is stats[i]:
            stats[i] = seen[3]
            return
        representations = layer_representations(
            layers[i], x.detach(), biased[i], bias_added=bias_added, output_padding=output_padding
        )
        rows = representations.to(torch.float64)
        if isinstance(layers[i], AttentionInProjection):
            old = stats[i] if stats[i] is not None else (InputFactor(),) * 3
            new = list(old)
            for b in blocks:  # blocks that hold one factor (self-attention) join the rows once, and stay one
                same = next((c for c in blocks if c < b and old[c] is old[b]), None)
                new[b] = new[same] if same is not None else old[b].joined(rows)
            stats[i] = tuple(new)
            return
        before = stats[i]
        stats[i] = (before if before is not None else InputFactor()).joined(rows)
        if version is not None:
            made[key] = (weakref.ref(x), version, before, stats[i])

    def recorder(i: int, module: nn.Module) -> Callable[..., None]:
        def hook(_: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
            if isinstance(module, nn.Embedding):  # its rows are counted where they are read (RowReads)
                called.add(i)
                return
            x = args[0] if args else next(iter(kwargs.values()))  # its input, passed by position or by name
            if isinstance(module, TRANSPOSED_CONVOLUTIONS):  # its output_size, if given, sets its output padding
                add(i, x, output_padding=transposed_output_padding(module, (x, *args[1:]), kwargs))
                return
            add(i, x)

        return hook

    attentions = attention_layers(model, layers)
    model_forward = forward or (lambda model, batch: model(batch))
    from_attention = {i for _, pair in attentions for i in pair if i is not None}
    handles = [
        m.register_forward_pre_hook(recorder(i, m), with_kwargs=True)
        for i, m in enumerate(layers)
        if i not in from_attention
    ]
    handles += [
        attention.register_forward_pre_hook(attention_recorder(attention, i_in, i_out, add), with_kwargs=True)
        for attention, (i_in, i_out) in attentions
    ]
    reads = RowReads([layers[i].weight for i in embeddings])
    names = layer_names(model, layers)
    biases = [m.bias if b else None for m, b in zip(layers, biased, strict=True)]
    linear = {
        id(m.weight): (lambda x, bias_added, i=i: add(i, x, bias_added=bias_added), biases[i])
        for i, m in enumerate(layers)
        if isinstance(m, nn.Linear) and not isinstance(m, AttentionInProjection)
    }
    owners = parameter_owners(model, layers, names, biases)
    outside = OutsideUses(owners, {id(layers[i].weight) for i in embeddings}, linear)
    handles += outside.hooks()
    try:
        # a compiled forward runs eagerly: Dynamo does not guard on module hooks, so a graph compiled before the
        # hooks (or with another pass's) would skip them, and what they do is bookkeeping it should not trace.
        # The modes (uses outside the modules' calls, and an embedding's rows read) turn off fused paths such as
        # nn.MultiheadAttention's fast path: every recording runs under them, so that passes see the same inputs
        with reads if embeddings else contextlib.nullcontext(), outside, torch.compiler.set_stance("force_eager"):
            n_batches = 0
            for batch in progress_bar(batches, progress, description, "batch"):
                model_forward(model, batch)
                n_batches += 1
    finally:
        for h in handles:
            h.remove()
        reshard_after_forward(model, [p for p in model.parameters() if p.requires_grad])
    if states is not None and not all(map(torch.equal, states, random_states(model))):
        raise ValueError(
            "Invalid model: the old task's forward drew random numbers with the model in training mode (dropout "
            "without an nn.Dropout layer, as in Hugging Face's BART, OPT or LLaMA, or drop-path), so the "
            "recorded inputs would be masked at random; call model.eval() first"
        )
    outside.warn()
    _flush(stats)
    _join_over_ranks(layers, biased, stats)
    for i in embeddings:
        stats[i] = reads.counts.get(id(layers[i].weight))
        if i in called and stats[i] is None:
            raise ValueError(
                f"Invalid model: the embedding {names[id(layers[i])]!r} was called but read no row of "
                "its weight by F.embedding or indexing, so the rows to protect are unknown; freeze it or "
                "compute its output from a lookup of its weight"
            )
    bad = [names[id(layers[i])] for i, s in enumerate(stats) if s is not None and not bool(s.isfinite().all())]
    if bad:
        raise ValueError(
            f"Invalid inputs: the old task's inputs of {', '.join(map(repr, bad))} hold NaN or infinite values "
            "(an overflow in the forward, or a corrupt batch); the memory is left as it was"
        )
    return RecordedInputs(stats, frozenset(coarse), n_batches)


def factor_bytes(module: nn.Module, has_bias: bool) -> int:
    """Bytes of what recording holds for ``module`` (:class:`RecordedInputs`) at most, in float64: an
    ``in_eff x in_eff`` factor and the rows waiting to join it (fewer than :func:`pending_limit`), three of each
    for an attention's input projection, a count per row for an embedding."""
    if isinstance(module, nn.Embedding):
        return module.num_embeddings * 8
    d = input_width(module, has_bias)
    blocks = 3 if isinstance(module, AttentionInProjection) else 1
    return blocks * (d + pending_limit(d) - 1) * d * 8


def recording_passes(
    model: nn.Module, layers: Sequence[nn.Module], biased: Sequence[bool], max_bytes: int | None
) -> list[list[int]]:
    """The covered layers split into runs of consecutive ones whose recording holds at most ``max_bytes``
    together (:func:`factor_bytes`, counting a factor that layers reading one tensor share once per layer); one
    run of all when ``max_bytes`` is None. An embedding and its :class:`EmbeddingHead` go in one run (a product
    on the weight outside the embedding's call is the head's input, and a use to warn about where the head is
    not recorded). Refused: a layer (or such a pair) that alone holds more."""
    if max_bytes is None:
        return [list(range(len(layers)))]
    if max_bytes < 1:
        raise ValueError(f"Invalid max_factor_bytes: {max_bytes}")
    units: list[list[int]] = []  # layers recorded together: one, or an embedding and its head
    for i, m in enumerate(layers):
        if isinstance(m, EmbeddingHead) and units:
            units[-1].append(i)
        else:
            units.append([i])
    passes: list[list[int]] = []
    held = 0
    for unit in units:
        size = sum(factor_bytes(layers[i], biased[i]) for i in unit)
        if size > max_bytes:
            what = f"layer {layer_names(model, layers)[id(layers[unit[0]])]!r}" + (" with its head" if unit[1:] else "")
            raise ValueError(
                f"Invalid max_factor_bytes: {max_bytes}, below the {size} bytes that recording {what} holds on its own"
            )
        if not passes or held + size > max_bytes:
            passes.append([])
            held = 0
        passes[-1].extend(unit)
        held += size
    return passes


def _flush(stats: list[Any]) -> None:
    """Each layer's :class:`InputFactor` as its triangular factor, the buffered rows joined; layers or blocks that
    held one object (they read the same tensors) hold one tensor. An attention's input projection's three
    factors (query, key, value) stacked, zero rows padding the shorter ones to the longest."""
    flushed: dict[int, Tensor] = {}

    def one(factor: InputFactor) -> Tensor:
        if id(factor) not in flushed:
            flushed[id(factor)] = factor.flushed()
        return flushed[id(factor)]

    for i, s in enumerate(stats):
        if isinstance(s, InputFactor):
            stats[i] = one(s)
        elif isinstance(s, tuple):
            blocks = [one(f) for f in s]
            height = max(f.shape[0] for f in blocks)
            stats[i] = torch.stack([F.pad(f, (0, 0, 0, height - f.shape[0])) for f in blocks])


def _join_over_ranks(layers: Sequence[nn.Module], biased: Sequence[bool], stats: list[Tensor | None]) -> None:
    """Join, over the ranks that share a sharded layer, the input factors each recorded (a QR of them stacked:
    the sum of their covariances), so that every rank grows the same basis: that of the old-task inputs of all
    ranks (the same basis when every rank recorded the same batches: the energy threshold is relative). Each
    rank projects its own rows with it."""
    for i, m in enumerate(layers):
        w = m.weight
        if not is_dtensor(w):
            continue
        d_in = input_width(m, biased[i])
        shape = (3, d_in, d_in) if isinstance(m, AttentionInProjection) else (d_in, d_in)
        s = stats[i] if stats[i] is not None else torch.zeros(shape, dtype=torch.float64, device=w.device)
        s = F.pad(s, (0, 0, 0, d_in - s.shape[-2]))  # a short factor made square: every rank sends one shape
        for dim in range(w.device_mesh.ndim):
            group = w.device_mesh.get_group(dim)
            parts = [torch.empty_like(s) for _ in range(dist.get_world_size(group))]
            dist.all_gather(parts, s.contiguous(), group=group)
            if s.ndim == 3:
                s = torch.stack([stacked_factor([p[b] for p in parts], square=True) for b in range(3)])
            else:
                s = stacked_factor(parts)
        stats[i] = s


def _version(x: Tensor) -> int | None:
    """``x``'s version counter (it counts in-place changes), or None for a tensor that keeps none (made under
    ``torch.inference_mode``)."""
    try:
        return x._version
    except RuntimeError:
        return None
