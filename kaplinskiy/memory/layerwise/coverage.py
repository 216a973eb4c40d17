"""Which layers of a model a :class:`~kaplinskiy.LayerwiseMemory` covers, what it refuses (lazy, sparse, DoRA,
sharded other than by output rows) and warns about (trainable matrices left uncovered), and their names; and the
two kinds of covered layer that no module of the model calls.

``nn.MultiheadAttention``'s packed input projection, which it reads as a weight without calling a layer, is an
:class:`AttentionInProjection`; the inputs of both its projections are taken from the attention's own arguments
(the query, key and value; the heads' outputs, computed again for ``out_proj``).

An embedding whose weight is also an output head written as a product outside any module (``F.linear(h, E.weight)``
or ``h @ E.weight.T``: torchtune's ``TiedLinear`` computes it so, and hand-written GPTs do), possibly with a bias of
the head's own (``F.linear(h, E.weight, b)``, as BERT's masked-language head adds one), gets an
:class:`EmbeddingHead`. The head's logits ``E h + b`` move by ``D_E h + d_b`` under a step: a change of every row,
which the rows an embedding protects do not hold. :class:`EmbeddingHead` stands for that head as an ``nn.Linear``
sharing the embedding's weight (and holding the bias), so the head's inputs, recorded where those products are made
(:mod:`~kaplinskiy.memory.layerwise.outside_uses`, with the input of 1 that the bias multiplies where the product
adds it), grow a basis of their own, as for a head tied to the embedding as a module (Hugging Face's ``lm_head``).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F  # noqa: N812 (the torch idiom)

from ..._tensor_lists import any_dtensor, is_dtensor
from ..base import listed
from .inputs import CONVOLUTIONS, TRANSPOSED_CONVOLUTIONS, is_hf_conv1d

__all__ = [
    "AttentionInProjection",
    "EmbeddingHead",
    "HeadSpec",
    "attention_recorder",
    "check_sharded",
    "covered_layers",
    "head_layers",
    "layer_names",
    "packed_attentions",
    "reshard_after_forward",
    "warn_loose_matrices",
]

_ATTENTION_ARGS = (
    "query",
    "key",
    "value",
    "key_padding_mask",
    "need_weights",
    "attn_mask",
    "average_attn_weights",
    "is_causal",
)
"""``nn.MultiheadAttention.forward``'s parameters, in order (its callers may pass any of them by position)."""


def _attention_heads(attention: nn.MultiheadAttention, named: dict[str, Any]) -> Tensor:
    """The heads' concatenated outputs, the input of ``out_proj``, for the arguments ``named`` of a call of
    ``attention``: its own computation (same masks) with ``out_proj`` replaced by the identity, made by
    ``F.multi_head_attention_forward`` directly, so that no module hook (FSDP2's resharding) runs again."""
    q, k, v = named["query"], named["key"], named["value"]
    if q.is_nested:  # self-attention over sequences without their padding (torch's TransformerEncoder fast path)
        lengths = torch.tensor([t.shape[0] for t in q.unbind()], device=q.device)
        padded = q.to_padded_tensor(0.0)
        pad = torch.arange(padded.shape[1], device=q.device) >= lengths[:, None]
        x = padded if attention.batch_first else padded.transpose(0, 1)
        heads = _attention_heads(attention, {**named, "query": x, "key": x, "value": x, "key_padding_mask": pad})
        return heads.transpose(0, 1)[~pad]  # the functional form answers (L, N, E): the rows of real tokens
    if attention.batch_first and q.dim() == 3:  # the functional form takes (L, N, E)
        q, k, v = (t.transpose(0, 1) for t in (q, k, v))
    w = attention.out_proj.weight
    identity = torch.eye(w.shape[1], dtype=w.dtype, device=w.device)
    bias = attention.out_proj.bias
    heads, _ = F.multi_head_attention_forward(
        q,
        k,
        v,
        attention.embed_dim,
        attention.num_heads,
        attention.in_proj_weight,
        attention.in_proj_bias,
        attention.bias_k,
        attention.bias_v,
        attention.add_zero_attn,
        0.0,  # recording is in eval mode: no dropout
        identity,
        None if bias is None else torch.zeros_like(bias),
        training=False,
        key_padding_mask=named.get("key_padding_mask"),
        need_weights=False,
        attn_mask=named.get("attn_mask"),
        is_causal=bool(named.get("is_causal", False)),
    )
    return heads


def attention_recorder(
    attention: nn.MultiheadAttention,
    i_in: int | None,
    i_out: int | None,
    add: Callable[[int, Tensor, Sequence[int]], None],
) -> Callable[..., None]:
    """A forward pre-hook (with kwargs) of ``attention`` that records the inputs of its two projections.

    The input projection's are the query, key and value, each for its block of rows (``add``'s last argument:
    the blocks an input is recorded for; all three when they are one tensor). ``out_proj``'s are the heads'
    concatenated outputs, which the attention computes inside and never hands to a layer: the hook computes them
    again (:func:`_attention_heads`).
    """

    def hook(module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        named = dict(zip(_ATTENTION_ARGS, args, strict=False)) | kwargs
        q, k, v = named["query"], named["key"], named["value"]
        if i_in is not None:
            inputs = (q, k, v)
            for x in {id(t): t for t in inputs}.values():  # each tensor once (self-attention: one for all three)
                add(i_in, x, [block for block, y in enumerate(inputs) if y is x])
        if i_out is not None:
            add(i_out, _attention_heads(attention, named))

    return hook


class AttentionInProjection(nn.Linear):
    """``nn.MultiheadAttention``'s packed input projection, ``[q, k, v] = [x_q, x_k, x_v] W^T + b`` (``W`` of shape
    ``(3E, E)``), as an ``nn.Linear`` that shares the attention's ``in_proj_weight`` and ``in_proj_bias``.

    It is never called (the attention reads its weight directly); :class:`LayerwiseMemory` records its inputs,
    the attention's query, key and value, from the attention's own arguments, each for its block of rows: one
    basis for self-attention, where the three are one input, and one basis per block once they differ
    (cross-attention; see ``layer_bases.grown_block_bases``)."""

    def __init__(self, attention: nn.MultiheadAttention) -> None:
        nn.Module.__init__(self)
        self.in_features, self.out_features = attention.embed_dim, 3 * attention.embed_dim
        self.register_parameter("weight", attention.in_proj_weight)
        self.register_parameter("bias", attention.in_proj_bias)


def packed_attentions(model: nn.Module) -> list[tuple[str, nn.MultiheadAttention]]:
    """The ``nn.MultiheadAttention`` modules with a packed input projection (query, key and value of one size)."""
    return [
        (key, m)
        for key, m in model.named_modules()
        if isinstance(m, nn.MultiheadAttention) and m.in_proj_weight is not None
    ]


class EmbeddingHead(nn.Linear):
    """An embedding's weight (``num_embeddings x embedding_dim``) as the weight of a Linear head, with the head's
    own bias (``num_embeddings`` entries, a parameter of the model) or none. It is never called;
    :class:`~kaplinskiy.LayerwiseMemory` records its inputs where a product takes the weight (or its transpose)
    outside the embedding's call."""

    def __init__(self, embedding: nn.Embedding, bias: nn.Parameter | None = None) -> None:
        nn.Module.__init__(self)
        self.in_features, self.out_features = embedding.embedding_dim, embedding.num_embeddings
        self.register_parameter("weight", embedding.weight)
        self.register_parameter("bias", bias)


HeadSpec = nn.Module | tuple[nn.Module, Tensor]  # an embedding, or an embedding and its head's own bias


def head_layers(model: nn.Module, heads: Sequence[HeadSpec], tied: Sequence[nn.Module]) -> dict[int, EmbeddingHead]:
    """A head per entry of ``heads`` (an embedding, or a pair of an embedding and its head's bias), by the
    embedding's ``id``. Refused, naming it: an entry that is not an ``nn.Embedding`` of ``model``, one whose weight
    is frozen, one whose weight a covered layer of ``tied`` already holds (a module head tied to it, whose calls
    record its inputs), and a bias that is no parameter of ``model`` with one entry per embedding row."""
    names = {id(m): key for key, m in model.named_modules()}
    parameters = {id(p) for p in model.parameters()}
    out = {}
    for entry in heads:
        m, bias = entry if isinstance(entry, tuple) else (entry, None)
        if not isinstance(m, nn.Embedding) or id(m) not in names:
            raise ValueError(f"Invalid heads: {type(m).__name__} is not an nn.Embedding of the model")
        name = names[id(m)]
        if bias is not None and (id(bias) not in parameters or tuple(bias.shape) != (m.num_embeddings,)):
            raise ValueError(
                f"Invalid heads: the bias given for the head of {name!r} must be a parameter of the model with "
                f"{m.num_embeddings} entries (one per row of the embedding), not a tensor of shape {tuple(bias.shape)}"
            )
        if not m.weight.requires_grad:
            raise ValueError(f"Invalid heads: the embedding {name!r} is frozen; only a trained one needs a head")
        holder = next((layer for layer in tied if layer.weight is m.weight and layer is not m), None)
        if holder is not None:
            raise ValueError(
                f"Invalid heads: the embedding {name!r} shares its weight with the covered layer "
                f"{names.get(id(holder), type(holder).__name__)!r}, whose calls record the head's inputs already"
            )
        out[id(m)] = EmbeddingHead(m, bias)
    return out


def _is_dora(module: nn.Module) -> bool:
    """A peft LoRA layer with DoRA's magnitude vector (``use_dora=True``)."""
    magnitudes = getattr(module, "lora_magnitude_vector", None)
    return isinstance(magnitudes, nn.ModuleDict) and len(magnitudes) > 0


def _check_supported(module: nn.Module) -> bool:
    covered = (nn.Linear, nn.Embedding, *CONVOLUTIONS, *TRANSPOSED_CONVOLUTIONS)
    return isinstance(module, covered) or is_hf_conv1d(module)


def layer_names(model: nn.Module, layers: Sequence[nn.Module]) -> dict[int, str]:
    """Each covered layer's name in ``model`` by ``id`` (an attention's input projection: ``<attention>.in_proj``;
    an embedding's head: ``<embedding>.head``)."""
    names = {id(m): key for key, m in model.named_modules()}
    for key, attention in packed_attentions(model):
        for m in layers:
            if isinstance(m, AttentionInProjection) and m.weight is attention.in_proj_weight:
                names[id(m)] = f"{key}.in_proj" if key else "in_proj"
    embeddings = {id(m.weight): key for key, m in model.named_modules() if isinstance(m, nn.Embedding)}
    for m in layers:
        if isinstance(m, EmbeddingHead):
            key = embeddings[id(m.weight)]
            names[id(m)] = f"{key}.head" if key else "head"
    return names


def covered_layers(model: nn.Module, heads: Sequence[HeadSpec] = ()) -> list[nn.Module]:
    """The layers a :class:`LayerwiseMemory` covers: supported layers whose weight is a trainable parameter, and after
    each embedding of ``heads`` its :class:`~kaplinskiy.memory.layerwise.coverage.EmbeddingHead` (its weight used as an
    output head by a product outside any module, with the head's own bias where the entry gives one; refused as
    :func:`head_layers` says).

    Refused with a clear error: an uninitialised lazy layer, a trainable ``sparse=True`` embedding (its
    sparse gradient is not projected), and a trainable DoRA adapter (peft's ``use_dora=True``: its output is
    divided by the norm of the whole adapted weight, which a step orthogonal to the old inputs still changes, and
    peft forms that weight by calling ``lora_A`` on an identity matrix, which a recording would take for an old
    input; a :class:`~kaplinskiy.DenseMemory` covers it). An ``nn.MultiheadAttention`` with a packed input
    projection is covered by two layers: its ``in_proj_weight`` as an :class:`AttentionInProjection` and its
    ``out_proj``, whose inputs are recorded from the attention's arguments (it reads both weights without calling
    a layer, so no hook of theirs fires). Left uncovered: the projections of an attention whose key and value
    have other sizes than the query (``kdim``, ``vdim``), and, with a warning, a weight computed from other
    parameters (``weight_norm``, ``spectral_norm``, any parametrization): projecting its gradient would not
    constrain them.
    """
    packed = {id(m): m for _, m in packed_attentions(model)}
    unseen = {id(m.out_proj) for m in model.modules() if isinstance(m, nn.MultiheadAttention) and id(m) not in packed}
    trainable = {id(p) for p in model.parameters() if p.requires_grad}
    layers, computed = [], []
    for key, m in model.named_modules():
        name = f"layer {key!r}" if key else "the model"
        if id(m) in packed and id(m.in_proj_weight) in trainable:
            layers.append(AttentionInProjection(m))
        if _is_dora(m) and any(p.requires_grad for p in m.parameters()):
            raise ValueError(
                f"Invalid model: {name} is a DoRA adapter (peft's use_dora=True): it divides by the norm of the whole "
                "adapted weight, which a step orthogonal to the old inputs still changes, and peft calls its lora_A "
                "on an identity matrix, which would be recorded as an old input; use DenseMemory, or LoRA without DoRA"
            )
        if not _check_supported(m) or id(m) in unseen:
            continue
        if isinstance(m.weight, nn.parameter.UninitializedParameter):
            raise ValueError(f"Invalid model: {name} is a lazy layer not yet initialised; run one forward pass first")
        if id(m.weight) not in trainable:
            if m.weight.requires_grad:
                computed.append(name)
            continue
        if isinstance(m, nn.Embedding) and m.sparse:
            raise ValueError(
                f"Invalid model: {name}, an embedding, has sparse=True; its sparse gradient is not "
                "projected: build it with sparse=False, or freeze it"
            )
        layers.append(m)
    if heads:
        made = head_layers(model, heads, layers)
        if not set(made) <= {id(m) for m in layers}:
            raise ValueError(
                "Invalid heads: an embedding of heads is not covered (its weight is computed by a parametrization)"
            )
        layers = [h for m in layers for h in ((m, made[id(m)]) if id(m) in made else (m,))]
    if computed:
        warnings.warn(
            f"LayerwiseMemory: the weights of {', '.join(computed)} are computed from other parameters "
            "(weight_norm, spectral_norm or another parametrization); they count as uncovered",
            stacklevel=3,
        )
    return layers


def check_sharded(name: str, module: nn.Module, w: Tensor, b: Tensor | None) -> None:
    """Refuse a covered layer sharded in a way its projection cannot follow.

    FSDP2's ``fully_shard`` makes the weight and bias DTensors split along dim 0, the output rows. The projection
    ``[D_W, d_b] <- [D_W, d_b] (I - U U^T)`` (eq:layerwise_projection) acts on each row alone, so a rank projects the
    rows it holds and gets the rows of the full projection, with no communication, provided the weight and the bias are
    split into the same rows. An embedding (its protected rows are global indices, read while FSDP2 holds the unsharded
    weight), Hugging Face's ``Conv1D`` and a transposed convolution (dim 0 of their weights is the input) are refused.
    """
    if not (is_dtensor(w) or is_dtensor(b)):
        return
    if isinstance(module, (nn.Embedding, *TRANSPOSED_CONVOLUTIONS)) or is_hf_conv1d(module):
        kind = "an embedding" if isinstance(module, nn.Embedding) else f"a {type(module).__name__} (dim 0 is its input)"
        raise ValueError(
            f"Invalid model: {name} is {kind} whose weight is a DTensor (FSDP2's fully_shard or distribute_tensor), "
            "which LayerwiseMemory does not project; freeze it, or train with DistributedDataParallel"
        )
    rows = all(p.is_replicate() or p.is_shard(0) for p in w.placements) if is_dtensor(w) else False
    if b is not None:
        rows = rows and is_dtensor(b) and b.device_mesh == w.device_mesh and b.placements == w.placements
    if not rows:
        raise ValueError(
            f"Invalid model: {name}'s weight is a DTensor split other than along its output rows (dim 0), or split "
            "differently from its bias; LayerwiseMemory projects row by row, so it takes FSDP2's default "
            "fully_shard (Shard(0)) and replication; use those, or DistributedDataParallel"
        )


def reshard_after_forward(model: nn.Module, params: Sequence[Tensor]) -> None:
    """Leave a model sharded by FSDP2's ``fully_shard`` sharded again after a forward without backward: FSDP2 keeps
    the root module's parameters gathered then, and ``model.parameters()`` would hand out full tensors whose
    storage the next step frees (an optimizer built on them reads freed memory)."""
    if any_dtensor(params):
        from torch.distributed.fsdp import FSDPModule

        for m in model.modules():
            if isinstance(m, FSDPModule):
                m.reshard()


def warn_loose_matrices(model: nn.Module, uncovered: Sequence[Tensor]) -> None:
    """Warn about trainable weights of two or more dimensions that no covered layer owns: unlike a LayerNorm's
    scale or a bias, they are usually a layer's weights (an ``nn.Bilinear``, a LoRA embedding adapter, the
    separate projections of an ``nn.MultiheadAttention`` with other key and value sizes), and left free they
    carry old-task outputs away unguarded."""
    names = {id(p): key for key, p in model.named_parameters()}
    loose = [names[id(p)] for p in uncovered if p.ndim >= 2]
    if loose:
        shown = listed(loose)
        warnings.warn(
            f"LayerwiseMemory: {len(loose)} trainable weight tensors belong to no covered layer and move freely, so "
            f"the old outputs are not protected through them: {shown}. Pass freeze_uncovered=True to hold them, "
            "use DenseMemory, or leave them out of training (an nn.MultiheadAttention with kdim or vdim other than "
            "embed_dim keeps separate projections, which are not covered)",
            stacklevel=3,
        )
