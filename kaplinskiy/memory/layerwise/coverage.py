"""Which layers of a model a :class:`~kaplinskiy.LayerwiseMemory` covers, what it refuses (lazy, sparse, DoRA,
sharded other than by output rows) and warns about (trainable matrices left uncovered), and their names.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

from torch import Tensor, nn

from .attention_inputs import AttentionInProjection, packed_attentions
from .embedding_heads import EmbeddingHead, HeadSpec, head_layers
from .layer_inputs import CONVOLUTIONS, TRANSPOSED_CONVOLUTIONS, is_hf_conv1d
from .tensor_lists import any_dtensor, is_dtensor

__all__ = [
    "check_sharded",
    "covered_layers",
    "layer_names",
    "listed",
    "reshard_after_forward",
    "warn_loose_matrices",
]


def _is_dora(module: nn.Module) -> bool:
    """A peft LoRA layer with DoRA's magnitude vector (``use_dora=True``)."""
    magnitudes = getattr(module, "lora_magnitude_vector", None)
    return isinstance(magnitudes, nn.ModuleDict) and len(magnitudes) > 0


def _check_supported(module: nn.Module) -> bool:
    covered = (nn.Linear, nn.Embedding, *CONVOLUTIONS, *TRANSPOSED_CONVOLUTIONS)
    return isinstance(module, covered) or is_hf_conv1d(module)


def listed(names: Sequence[str], shown: int = 3) -> str:
    """The first ``shown`` of ``names`` quoted, and how many more: ``'a', 'b', 'c' and 2 more``."""
    more = f" and {len(names) - shown} more" if len(names) > shown else ""
    return ", ".join(map(repr, names[:shown])) + more


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
    """The layers a :class:`LayerwiseMemory` covers: supported layers whose weight is a trainable parameter, and
    after each embedding of ``heads`` its :class:`~kaplinskiy.embedding_heads.EmbeddingHead` (its weight used as
    an output head by a product outside any module, with the head's own bias where the entry gives one; refused as
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
    ``[D_W, d_b] <- [D_W, d_b] (I - U U^T)`` (eq. 11) acts on each row alone, so a rank projects the rows it
    holds and gets the rows of the full projection, with no communication, provided the weight and the bias are
    split into the same rows. An embedding (its protected rows are global indices, read while FSDP2 holds the
    unsharded weight), Hugging Face's ``Conv1D`` and a transposed convolution (dim 0 of their weights is the
    input) are refused.
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
