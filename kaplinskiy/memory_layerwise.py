"""Layer-wise projection memory in the style of GPM (note, eqs. 11-12, one layer at a time).

For a layer ``y = W x + b`` the weight gradient of any loss is ``sum_s delta_s [x_s; 1]^T``: its rows
lie in the span of the layer's (bias-augmented) inputs. If ``U`` is an orthonormal basis of the old
task's input space, projecting ``G <- G - (G U) U^T`` leaves every old input's pre-activation unchanged
to first order and gives ``<grad_W L_A, d_W> = 0`` (eq. 12) for that layer, at the cost of two
``out x in x r`` matmuls instead of ``r`` full-size dot products. ``U`` comes from the SVD of GPM's
representation matrix (the inputs as rows, kept as a triangular factor of their uncentred covariance),
chosen by an energy threshold (GPM, eqs. 8-9). Embedding rows are the one-hot case: the old task's token
rows are frozen.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.nn import functional as F  # noqa: N812 (the torch idiom)
from torch.overrides import TorchFunctionMode

from .layerwise_kernel import MAX_RANK, RowLayer, RowPlan, grouped_kernel_available, kernel_takes, padded_bases
from .memory import ordinary
from .per_sample import check_eval_mode
from .tensor_lists import any_dtensor, is_dtensor, local_shard

_EPS64 = torch.finfo(torch.float64).eps

__all__ = ["AttentionInProjection", "LayerwiseMemory", "energy_basis_update", "energy_basis_update_rows"]


def energy_basis_update(U: Tensor, cov: Tensor, threshold: float, max_new: int | None = None) -> Tensor:
    """GPM's criterion on the covariance ``cov = R R^T`` of the new task's representations ``R``.

    Keep the existing basis ``U`` and add the fewest top eigenvectors of ``(I - U U^T) cov (I - U U^T)``
    such that ``||U U^T R||^2 + ||R_hat_k||^2 >= threshold ||R||^2``; ``threshold = 1`` keeps every
    numerically non-zero direction. Returns the extended orthonormal basis. The covariance resolves directions
    down to ``eps`` of its largest eigenvalue, ``eps`` of the largest singular value squared: from the
    representations themselves, :func:`energy_basis_update_rows` resolves ``eps`` of that singular value.
    """
    d = cov.shape[0]
    total = torch.trace(cov)
    if total <= 0:
        return U
    kept = torch.trace(U.T @ cov @ U) if U.shape[1] else total.new_zeros(())
    P = torch.eye(d, dtype=cov.dtype, device=cov.device) - U @ U.T
    lam, V = torch.linalg.eigh(P @ cov @ P)
    lam, V = lam.flip(0).clamp_min(0), V.flip(1)
    significant = int((lam > d * torch.finfo(cov.dtype).eps * lam[0].clamp_min(total / d)).sum())
    return _extended(U, lam, V, total, kept, significant, threshold, max_new)


def energy_basis_update_rows(
    U: Tensor, rows: Tensor, threshold: float, max_new: int | None = None, resolution: float | None = None
) -> Tensor:
    """:func:`energy_basis_update` from the representations as rows (``m x d``: the inputs, or any ``R`` with
    ``R^T R`` their covariance, such as the triangular factor :class:`LayerwiseMemory` keeps).

    The directions are the right singular vectors of ``rows (I - U U^T)``, their energies the squared singular
    values. An SVD of the rows resolves a direction down to ``d eps`` of the largest singular value (the default
    ``resolution``: singular values below it count as zero), and finds it to an angle of about ``eps`` times the
    condition; the covariance's eigendecomposition squares both (an input spread over singular values 1 and 1e-6
    has a covariance of condition 1e12: its small directions come out with errors of 1e-4).
    """
    d = rows.shape[1]
    total = rows.square().sum()
    if total <= 0:
        return U
    if U.shape[1]:
        coords = rows @ U
        kept, rows = coords.square().sum(), rows - coords @ U.T
    else:
        kept = total.new_zeros(())
    _, sigma, Vh = torch.linalg.svd(rows, full_matrices=False)
    if resolution is None:
        resolution = d * torch.finfo(rows.dtype).eps
    significant = int((sigma > resolution * sigma[0].clamp_min((total / d).sqrt())).sum())
    return _extended(U, sigma.square(), Vh.T, total, kept, significant, threshold, max_new)


def _extended(
    U: Tensor,
    lam: Tensor,
    V: Tensor,
    total: Tensor,
    kept: Tensor,
    significant: int,
    threshold: float,
    max_new: int | None,
) -> Tensor:
    """``U`` and the fewest of the directions ``V`` (energies ``lam``, in decreasing order; the first
    ``significant`` of them numerically non-zero) that bring the kept energy to ``threshold * total`` (GPM, eq. 9;
    with ``threshold = 1``, all the significant ones), at most ``max_new`` of them, orthonormalised against ``U``."""
    d = V.shape[0]
    need = threshold * total - kept
    before = torch.cumsum(lam, 0) - lam
    r = min(significant, int((before < need - d * torch.finfo(lam.dtype).eps * total).sum()))
    if threshold >= 1.0:  # every significant direction, also those whose energy is below the energy sums' rounding
        r = significant
    if max_new is not None:
        r = min(r, max_new)
    if r == 0:
        return U
    N = V[:, :r]
    if U.shape[1]:
        N = N - U @ (U.T @ N)
    N, _ = torch.linalg.qr(N, mode="reduced")
    return torch.cat([U, N], dim=1)


def _progress(items: Iterable[Any], show: bool, desc: str, unit: str) -> Iterable[Any]:
    """``items``, under a tqdm bar when ``show`` (tqdm is an optional dependency)."""
    if not show:
        return items
    try:
        from tqdm.auto import tqdm
    except ImportError as err:
        raise ImportError("progress=True needs tqdm: pip install tqdm") from err
    return tqdm(items, desc=desc, unit=unit)


def _is_hf_conv1d(module: nn.Module) -> bool:
    """Hugging Face's GPT-2 ``Conv1D``: ``y = x W + b`` with ``W`` of shape ``(in, out)``."""
    return type(module).__name__ == "Conv1D" and hasattr(module, "nf")


def _conv_padding(module: nn.Conv1d | nn.Conv2d) -> list[int]:
    """The ``F.pad`` widths (last dimension first) that the convolution applies to its input.

    ``padding="same"`` pads ``dilation * (kernel - 1)`` in all, the extra one on the right, as torch does.
    """
    pads: list[int] = []
    for d in reversed(range(len(module.kernel_size))):
        if module.padding == "valid":
            pads += [0, 0]
        elif module.padding == "same":
            total = module.dilation[d] * (module.kernel_size[d] - 1)
            pads += [total // 2, total - total // 2]
        else:
            pads += [module.padding[d], module.padding[d]]
    return pads


def _conv_patches(module: nn.Conv1d | nn.Conv2d, x: Tensor) -> Tensor:
    """The input patches one output position sees, as rows (``N' x in/groups * prod(kernel)``).

    Each group's patches are rows of their own, so the basis spans the union of the groups' input spaces: a
    grouped (or depthwise) weight's rows each lie in their group's space, and the projection stays exact.
    """
    if x.dim() == len(module.kernel_size) + 1:  # an unbatched input
        x = x.unsqueeze(0)
    mode = "constant" if module.padding_mode == "zeros" else module.padding_mode
    x = F.pad(x, _conv_padding(module), mode=mode)
    kernel, dilation, stride = module.kernel_size, module.dilation, module.stride
    if isinstance(module, nn.Conv1d):  # as a Conv2d of height one
        x, kernel, dilation, stride = x.unsqueeze(2), (1, *kernel), (1, *dilation), (1, *stride)
    n, c = x.shape[:2]
    x = x.reshape(n * module.groups, c // module.groups, *x.shape[2:])
    rows = F.unfold(x, kernel, dilation, 0, stride).transpose(1, 2)
    return rows.reshape(-1, rows.shape[-1])


def _representations(module: nn.Module, x: Tensor, with_bias: bool) -> Tensor:
    """The rows ``x_s`` (``N x in_eff``) whose span the layer's weight gradient rows live in, with an input of 1
    appended where the layer has a trainable bias."""
    if isinstance(module, (nn.Conv1d, nn.Conv2d)):
        rows = _conv_patches(module, x)
    elif x.is_nested:  # sequences without their padding (torch's TransformerEncoder hands its layers these)
        rows = torch.cat([t.reshape(-1, t.shape[-1]) for t in x.unbind()])
    else:  # nn.Linear or Hugging Face's Conv1D
        rows = x.reshape(-1, x.shape[-1])
    if with_bias:
        rows = torch.cat([rows, rows.new_ones(rows.shape[0], 1)], dim=1)
    return rows


class _RowReads(TorchFunctionMode):
    """Counts, per embedding weight, how often the forward reads each of its rows (float64, ``num_embeddings``).

    A read is ``F.embedding`` (or ``torch.embedding``) on the weight, an index into it or ``index_select`` along
    its rows, wherever it is made. A forward pre-hook cannot tell: an ``nn.Embedding`` subclass may take other
    inputs than the rows it reads (OPT's and BART's learned positions take the attention mask or the token ids
    and read positions offset by 2) or index its weight without ``F.embedding`` (Whisper's decoder positions).
    An index that cannot be read as rows counts every row (all are then protected).
    """

    def __init__(self, weights: Sequence[Tensor]) -> None:
        super().__init__()
        self._weights = {id(w): w for w in weights}
        self.counts: dict[int, Tensor] = {}

    def __torch_function__(
        self, func: Callable[..., Any], types: Any, args: Sequence[Any] = (), kwargs: dict[str, Any] | None = None
    ) -> Any:
        kwargs = kwargs or {}
        weight = _looked_up(func, args, kwargs)
        if weight is not None and self._weights.get(id(weight)) is weight:
            rows, n = _rows_read(func, args, kwargs), weight.shape[0]
            if rows is None:
                count = torch.ones(n, dtype=torch.float64, device=weight.device)
            else:
                count = torch.bincount(rows.reshape(-1).long(), minlength=n).to(weight.device, torch.float64)
            before = self.counts.get(id(weight))
            self.counts[id(weight)] = count if before is None else before + count.to(before.device)
        return func(*args, **kwargs)


def _looked_up(func: Callable[..., Any], args: Sequence[Any], kwargs: dict[str, Any]) -> Any:
    """The tensor whose rows ``func`` would read: ``F.embedding``'s weight, or what is indexed, else None."""
    if func is F.embedding:
        return args[1] if len(args) > 1 else kwargs.get("weight")
    if func in (torch.embedding, Tensor.__getitem__, Tensor.index_select, torch.index_select) and args:
        return args[0]
    return None


def _rows_read(func: Callable[..., Any], args: Sequence[Any], kwargs: dict[str, Any]) -> Tensor | None:
    """The row indices of the weight that ``func(*args, **kwargs)`` reads (any shape); None for all rows."""
    weight = _looked_up(func, args, kwargs)
    if func is F.embedding:
        return args[0] if args else kwargs["input"]
    if func is torch.embedding:
        return args[1] if len(args) > 1 else kwargs["indices"]
    if func is not Tensor.__getitem__:  # index_select(weight, dim, index)
        dim = args[1] if len(args) > 1 else kwargs.get("dim")
        index = args[2] if len(args) > 2 else kwargs.get("index")
        return index if isinstance(dim, int) and dim in (0, -weight.dim()) else None
    index = args[1]
    first = index[0] if isinstance(index, tuple) and index else index
    if isinstance(first, Tensor) and first.dtype == torch.bool and first.dim() > 1:
        first = first.flatten(1).any(1)
    try:
        return torch.arange(weight.shape[0], device=weight.device)[first]
    except (IndexError, TypeError, RuntimeError):  # an index that is not one of rows: count them all
        return None


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


def _attention_recorder(
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


def _random_states(model: nn.Module) -> list[Tensor]:
    """The states of the generators a forward of ``model`` draws from: the CPU's, and that of each CUDA device
    holding one of its tensors. A forward that drew a random number (a dropout mask) has moved one of them."""
    devices = {t.device for t in itertools.chain(model.parameters(), model.buffers()) if t.device.type == "cuda"}
    return [torch.get_rng_state(), *(torch.cuda.get_rng_state(d) for d in sorted(devices, key=str))]


def _is_dora(module: nn.Module) -> bool:
    """A peft LoRA layer with DoRA's magnitude vector (``use_dora=True``)."""
    magnitudes = getattr(module, "lora_magnitude_vector", None)
    return isinstance(magnitudes, nn.ModuleDict) and len(magnitudes) > 0


def _check_supported(module: nn.Module) -> bool:
    return isinstance(module, (nn.Linear, nn.Embedding, nn.Conv1d, nn.Conv2d)) or _is_hf_conv1d(module)


class AttentionInProjection(nn.Linear):
    """``nn.MultiheadAttention``'s packed input projection, ``[q, k, v] = [x_q, x_k, x_v] W^T + b`` (``W`` of shape
    ``(3E, E)``), as an ``nn.Linear`` that shares the attention's ``in_proj_weight`` and ``in_proj_bias``.

    It is never called (the attention reads its weight directly); :class:`LayerwiseMemory` records its inputs,
    the attention's query, key and value, from the attention's own arguments, each for its block of rows: one
    basis for self-attention, where the three are one input, and one basis per block once they differ
    (cross-attention; see ``LayerwiseMemory._grow_blocks``)."""

    def __init__(self, attention: nn.MultiheadAttention) -> None:
        nn.Module.__init__(self)
        self.in_features, self.out_features = attention.embed_dim, 3 * attention.embed_dim
        self.register_parameter("weight", attention.in_proj_weight)
        self.register_parameter("bias", attention.in_proj_bias)


def _packed_attentions(model: nn.Module) -> list[tuple[str, nn.MultiheadAttention]]:
    """The ``nn.MultiheadAttention`` modules with a packed input projection (query, key and value of one size)."""
    return [
        (key, m)
        for key, m in model.named_modules()
        if isinstance(m, nn.MultiheadAttention) and m.in_proj_weight is not None
    ]


def layer_names(model: nn.Module, layers: Sequence[nn.Module]) -> dict[int, str]:
    """Each covered layer's name in ``model`` by ``id`` (an attention's input projection: ``<attention>.in_proj``)."""
    names = {id(m): key for key, m in model.named_modules()}
    for key, attention in _packed_attentions(model):
        for m in layers:
            if isinstance(m, AttentionInProjection) and m.weight is attention.in_proj_weight:
                names[id(m)] = f"{key}.in_proj" if key else "in_proj"
    return names


def covered_layers(model: nn.Module) -> list[nn.Module]:
    """The layers a :class:`LayerwiseMemory` covers: supported layers whose weight is a trainable parameter.

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
    packed = {id(m): m for _, m in _packed_attentions(model)}
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
    if computed:
        warnings.warn(
            f"LayerwiseMemory: the weights of {', '.join(computed)} are computed from other parameters "
            "(weight_norm, spectral_norm or another parametrization); they count as uncovered",
            stacklevel=3,
        )
    return layers


def _check_sharded(name: str, module: nn.Module, w: Tensor, b: Tensor | None) -> None:
    """Refuse a covered layer sharded in a way its projection cannot follow.

    FSDP2's ``fully_shard`` makes the weight and bias DTensors split along dim 0, the output rows. The projection
    ``[D_W, d_b] <- [D_W, d_b] (I - U U^T)`` (eq. 11) acts on each row alone, so a rank projects the rows it
    holds and gets the rows of the full projection, with no communication, provided the weight and the bias are
    split into the same rows. An embedding (its protected rows are global indices, read while FSDP2 holds the
    unsharded weight) and Hugging Face's ``Conv1D`` (its dim 0 is the input) are refused.
    """
    if not (is_dtensor(w) or is_dtensor(b)):
        return
    if isinstance(module, nn.Embedding) or _is_hf_conv1d(module):
        kind = "an embedding" if isinstance(module, nn.Embedding) else "a Hugging Face Conv1D (dim 0 is its input)"
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


def _reshard(model: nn.Module, params: Sequence[Tensor]) -> None:
    """Leave a model sharded by FSDP2's ``fully_shard`` sharded again after a forward without backward: FSDP2 keeps
    the root module's parameters gathered then, and ``model.parameters()`` would hand out full tensors whose
    storage the next step frees (an optimizer built on them reads freed memory)."""
    if any_dtensor(params):
        from torch.distributed.fsdp import FSDPModule

        for m in model.modules():
            if isinstance(m, FSDPModule):
                m.reshard()


def _warn_loose_matrices(model: nn.Module, uncovered: Sequence[Tensor]) -> None:
    """Warn about trainable weights of two or more dimensions that no covered layer owns: unlike a LayerNorm's
    scale or a bias, they are usually a layer's weights (a Conv3d, a LoRA embedding adapter, the separate
    projections of an ``nn.MultiheadAttention`` with other key and value sizes), and left free they carry
    old-task outputs away unguarded."""
    names = {id(p): key for key, p in model.named_parameters()}
    loose = [names[id(p)] for p in uncovered if p.ndim >= 2]
    if loose:
        shown = ", ".join(repr(n) for n in loose[:3]) + (f" and {len(loose) - 3} more" if len(loose) > 3 else "")
        warnings.warn(
            f"LayerwiseMemory: {len(loose)} trainable weight tensors belong to no covered layer and move freely, so "
            f"the old outputs are not protected through them: {shown}. Pass freeze_uncovered=True to hold them, "
            "use DenseMemory, or leave them out of training (an nn.MultiheadAttention with kdim or vdim other than "
            "embed_dim keeps separate projections, which are not covered)",
            stacklevel=3,
        )


class LayerwiseMemory:
    """Per-layer bases of old-task input spaces, for Linear, Conv1d/Conv2d, Embedding, HF Conv1D and
    ``nn.MultiheadAttention`` layers (its input projection and ``out_proj``: :func:`covered_layers`).

    Args:
        model: the network; every supported submodule with a trainable weight is covered.
        threshold: GPM's energy threshold in (0, 1], one float or one per covered layer. With 1, every direction
            of the inputs is kept down to ``d eps`` of the largest singular value for float64 inputs, and down to
            ``sqrt(d eps)`` (float64's ``eps``) for inputs of lower precision, whose rounding fills every direction.
        max_new_per_task: most basis vectors one task adds to one layer (the budget ``k``).
        max_per_layer: most basis vectors (protected rows, for an embedding) a layer holds over all tasks
            (each block of a cross-attention's input projection, for its basis); a task that would go beyond it
            adds only its most energetic directions up to the cap.
        freeze_uncovered: zero the gradient of parameters no covered layer owns (LayerNorm, a raw
            ``nn.Parameter``), so eq. (12) holds for the whole model; otherwise they are left free, with a
            warning when some of them have two or more dimensions (a layer's weights, not a scale or a bias).
        backend: ``"auto"`` projects all Linear/Conv layers in one grouped Triton launch on CUDA when Triton is
            installed (:mod:`kaplinskiy.layerwise_kernel`), else layer by layer with BLAS; ``"torch"`` always
            uses BLAS; ``"triton"`` requires the grouped kernel. Both compute the same projection (the kernel
            keeps coefficients in float32). Layers the kernel does not take go by BLAS in either: embeddings, a
            weight shared by two layers, a basis above ``MAX_RANK`` vectors, a cross-attention's input projection
            (a basis per block of rows), weights of another dtype or device than the first parameter's or in
            float64, a bias of another dtype than its weight's.

    Convolutions are covered with any padding, padding mode, stride, dilation and groups (a grouped layer's
    groups share one basis of the union of their input spaces), batched or not; Conv3d and transposed
    convolutions count as uncovered, and so, with a warning, do weights computed by a parametrization
    (:func:`covered_layers`). An embedding protects the rows of its weight that the old task's forward reads
    (``F.embedding`` or an index, wherever made), not the argument its module is called with: OPT's, BART's and
    Whisper's learned positions read other rows than that argument. One called without such a read is refused.
    The padding row (``padding_idx``) is not protected, since it gets no gradient; but decoupled weight decay
    (AdamW) still shrinks it, so the outputs at positions holding the pad token move: harmless where attention
    masks them out, a leak where the pad token is an ordinary input of the old task (leave ``padding_idx`` unset
    then: the row is protected like any other). Apart from that row, with ``threshold=1`` and ``freeze_uncovered``
    the outputs on the recorded inputs do not move at any order: each covered layer's step is orthogonal to the
    inputs it saw, and every other parameter (LayerNorm, a raw ``nn.Parameter`` such as a CLS token) is frozen.
    Under data parallelism, build the memory from the same old-task batches on every rank, or load one rank's
    ``state_dict()`` everywhere: the projection then commutes with the gradient all-reduce. Under FSDP2's
    ``fully_shard`` (weights split along their output rows; on a 2-D mesh, HSDP's replicas of shards), call
    ``add_task`` on every rank, with each rank's own old-task batches or the same ones: the input covariances are
    summed over the ranks (every dim of the mesh), so every rank holds the same basis and projects the rows it
    holds (:func:`_check_sharded` says which shardings are refused).
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        threshold: float | Sequence[float] = 0.97,
        max_new_per_task: int | None = None,
        max_per_layer: int | None = None,
        freeze_uncovered: bool = False,
        backend: str = "auto",
    ) -> None:
        if backend not in ("auto", "torch", "triton"):
            raise ValueError(f"Invalid backend: {backend}")
        self.backend = backend
        self.model = model
        self.layers = covered_layers(model)
        if not self.layers:
            raise ValueError("Invalid model: it has no Linear, Conv or Embedding layer with a trainable weight")
        thresholds = [threshold] * len(self.layers) if isinstance(threshold, (int, float)) else list(threshold)
        if len(thresholds) != len(self.layers):
            raise ValueError(f"Invalid threshold: {len(thresholds)} values for {len(self.layers)} layers")
        for t in thresholds:
            if not 0.0 < t <= 1.0:
                raise ValueError(f"Invalid threshold: {t}")
        if max_new_per_task is not None and max_new_per_task < 1:
            raise ValueError(f"Invalid max_new_per_task: {max_new_per_task}")
        if max_per_layer is not None and max_per_layer < 1:
            raise ValueError(f"Invalid max_per_layer: {max_per_layer}")
        self.thresholds, self.max_new_per_task, self.freeze_uncovered = thresholds, max_new_per_task, freeze_uncovered
        self.max_per_layer = max_per_layer
        names = layer_names(model, self.layers)
        for m in self.layers:
            _check_sharded(f"layer {names[id(m)]!r}", m, m.weight, getattr(m, "bias", None))
        self.params = [p for p in model.parameters() if p.requires_grad]
        self._sharded = any_dtensor(self.params)  # FSDP2: the step's tensors are DTensors, projected by their shards
        index = {id(p): i for i, p in enumerate(self.params)}
        self._slots = [
            (index[id(m.weight)], index.get(id(m.bias)) if getattr(m, "bias", None) is not None else None)
            for m in self.layers
        ]
        slots = [i for pair in self._slots for i in pair if i is not None]
        owned = set(slots)
        self.linear_split = len(owned) == len(slots)  # no parameter shared by two covered layers
        self._shared = {i for i in owned if slots.count(i) > 1}
        right = [w for (w, _), m in zip(self._slots, self.layers, strict=True) if not isinstance(m, nn.Embedding)]
        if len(set(right)) != len(right):  # their projectors act on the same side: they do not commute
            raise ValueError(
                "Invalid model: two Linear/Conv layers share one weight; reuse one module instead (its inputs "
                "from every call then share one basis)"
            )
        self._uncovered = [i for i in range(len(self.params)) if i not in owned]
        if not freeze_uncovered:
            _warn_loose_matrices(model, [self.params[i] for i in self._uncovered])
        self.bases: list[Tensor] = []
        for m, (_, bias_slot) in zip(self.layers, self._slots, strict=True):
            w = m.weight
            if isinstance(m, nn.Embedding):
                self.bases.append(ordinary(torch.zeros(0, dtype=torch.long, device=w.device)))
            else:  # a frozen bias is a constant: only a trainable one adds the input of 1
                d_in = (w.shape[0] if _is_hf_conv1d(m) else math.prod(w.shape[1:])) + (bias_slot is not None)
                basis_dtype = torch.promote_types(w.dtype, torch.float32)  # eigh and orthonormality need >= fp32
                self.bases.append(ordinary(torch.zeros(d_in, 0, dtype=basis_dtype, device=w.device)))
        self._factor_cache: dict[int, _BasisFactors] = {}
        self._plan: RowPlan | None = None
        self._plan_layers: frozenset[int] = frozenset()
        self._plan_key: tuple[Any, ...] | None = None
        self._fused_views: tuple[RowPlan, list[tuple[Tensor, Tensor | None]], list[int]] | None = None
        self._plan_bases: list[Tensor] = []
        self.n_tasks = 0

    @torch.no_grad()
    def add_task(
        self,
        batches: Iterable[Any],
        forward: Callable[[nn.Module, Any], Any] | None = None,
        *,
        progress: bool = False,
    ) -> list[int]:
        """Record each layer's inputs on the old task's ``batches`` and grow the bases (GPM's memory update).

        ``forward(model, batch)`` runs the model (default ``model(batch)``); only the inputs matter. A model in
        training mode with dropout or batch norm is refused (masked inputs are not the ones to protect, and
        batch norm would update its statistics): call ``model.eval()`` first. So is a forward that draws random
        numbers while a layer is in training mode (dropout without an ``nn.Dropout`` layer, as Hugging Face's
        BART, OPT and LLaMA draw it, or drop-path), noticed by the random generators' states; the memory is then
        left as it was. Under ``torch.autocast`` the inputs recorded are those the autocast forward computes
        (bfloat16 values after a bfloat16 layer), so the guard keeps the old outputs to that precision: record
        without autocast where the full-precision outputs are the ones to keep.
        A model compiled by ``torch.compile`` is recorded as the eager one (the hooks fire in the compiled
        forward), and so is one with activation checkpointing (recording runs under ``no_grad``: nothing is
        recomputed).
        Recording holds, per covered layer, a ``d_in x d_in`` float64 factor of its inputs on the weight's device
        (three for an attention's input projection), and each batch costs a QR of ``d_in`` plus the batch's rows.
        ``progress=True`` shows tqdm bars over the batches and over the layers' SVDs.
        Returns the number of basis vectors (or protected rows) each layer gained.
        """
        check_eval_mode(self.model)
        training = any(m.training for m in self.model.modules())
        states = _random_states(self.model) if training else None
        stats: list[Tensor | None] = [None] * len(self.layers)
        embeddings = [i for i, m in enumerate(self.layers) if isinstance(m, nn.Embedding)]
        called: set[int] = set()
        coarse: set[int] = set()  # layers that recorded an input of less than float64 precision

        def add(i: int, x: Tensor, blocks: Sequence[int] = ()) -> None:
            """Layer ``i``'s input ``x`` joins its statistics: a triangular ``d x d`` factor ``R`` of the inputs
            so far (``R^T R = sum_s x_s x_s^T``), the ``R`` of a QR of ``[R; rows]``, in float64. The factor keeps
            what the covariance would lose: directions below ``eps`` of the largest one squared
            (:func:`energy_basis_update_rows`). An attention's input projection keeps one per block of rows
            (query, key, value), and ``x`` joins those of ``blocks``."""
            if x.dtype != torch.float64:
                coarse.add(i)
            rows = _representations(self.layers[i], x.detach(), self._slots[i][1] is not None).to(torch.float64)
            d = rows.shape[1]
            if isinstance(self.layers[i], AttentionInProjection):
                old = stats[i] if stats[i] is not None else rows.new_zeros(3, d, d)
                new = old.clone()
                for b in blocks:  # blocks whose factors are one (self-attention) share one QR, and stay one
                    same = next((c for c in blocks if c < b and torch.equal(old[c], old[b])), None)
                    new[b] = new[same] if same is not None else _stacked_factor([old[b], rows])
                stats[i] = new
                return
            stats[i] = _stacked_factor([rows] if stats[i] is None else [stats[i], rows])

        def recorder(i: int, module: nn.Module) -> Callable[..., None]:
            def hook(_: nn.Module, args: tuple[Any, ...]) -> None:
                if isinstance(module, nn.Embedding):  # its rows are counted where they are read (_RowReads)
                    called.add(i)
                    return
                add(i, args[0])

            return hook

        attentions = self._attention_layers()
        model_forward = forward or (lambda model, batch: model(batch))
        from_attention = {i for _, pair in attentions for i in pair if i is not None}
        handles = [
            m.register_forward_pre_hook(recorder(i, m)) for i, m in enumerate(self.layers) if i not in from_attention
        ]
        handles += [
            attention.register_forward_pre_hook(_attention_recorder(attention, i_in, i_out, add), with_kwargs=True)
            for attention, (i_in, i_out) in attentions
        ]
        reads = _RowReads([self.layers[i].weight for i in embeddings])
        try:
            with reads if embeddings else contextlib.nullcontext():
                for batch in _progress(batches, progress, "LayerwiseMemory: old-task batches", "batch"):
                    model_forward(self.model, batch)
        finally:
            for h in handles:
                h.remove()
            _reshard(self.model, self.params)
        if states is not None and not all(map(torch.equal, states, _random_states(self.model))):
            raise ValueError(
                "Invalid model: the old task's forward drew random numbers with the model in training mode (dropout "
                "without an nn.Dropout layer, as in Hugging Face's BART, OPT or LLaMA, or drop-path), so the "
                "recorded inputs would be masked at random; call model.eval() first"
            )
        self._sum_over_ranks(stats)
        names = layer_names(self.model, self.layers)
        for i in embeddings:
            stats[i] = reads.counts.get(id(self.layers[i].weight))
            if i in called and stats[i] is None:
                raise ValueError(
                    f"Invalid model: the embedding {names[id(self.layers[i])]!r} was called but read no row of "
                    "its weight by F.embedding or indexing, so the rows to protect are unknown; freeze it or "
                    "compute its output from a lookup of its weight"
                )
        bad = [names[id(self.layers[i])] for i, s in enumerate(stats) if s is not None and not bool(s.isfinite().all())]
        if bad:  # before any basis grows: the memory is left as it was
            raise ValueError(
                f"Invalid inputs: the old task's inputs of {', '.join(map(repr, bad))} hold NaN or infinite values "
                "(an overflow in the forward, or a corrupt batch); the memory is left as it was"
            )
        gained = []
        layers = _progress(list(zip(self.layers, stats, strict=True)), progress, "LayerwiseMemory: bases", "layer")
        for i, (m, s) in enumerate(layers):
            before = self._size(i)
            # float64 inputs are resolved down to d eps of the largest singular value; others carry rounding in
            # every direction: below sqrt(d eps) of it (a float64 covariance's resolution) a direction is dropped
            resolution = math.sqrt(self.bases[i].shape[-2] * _EPS64) if i in coarse else None  # (never embeddings)
            if s is not None and s.ndim == 3:  # an attention's input projection
                self.bases[i] = ordinary(self._grow_blocks(i, s, resolution))
            elif s is not None:
                grown = self._grow(m, self.bases[i], s, self.thresholds[i], self._room(i), resolution)
                self.bases[i] = ordinary(grown)
            gained.append(self._size(i) - before)
        self.n_tasks += 1
        return gained

    def _attention_layers(self) -> list[tuple[nn.MultiheadAttention, tuple[int | None, int | None]]]:
        """Each packed attention with the indices of its covered input projection and ``out_proj`` (None: not
        covered), whose inputs its recorder takes from the attention's arguments."""
        index = {id(m): i for i, m in enumerate(self.layers)}
        shims = {id(m.weight): i for i, m in enumerate(self.layers) if isinstance(m, AttentionInProjection)}
        out = []
        for _, attention in _packed_attentions(self.model):
            pair = (shims.get(id(attention.in_proj_weight)), index.get(id(attention.out_proj)))
            if pair != (None, None):
                out.append((attention, pair))
        return out

    def _sum_over_ranks(self, stats: list[Tensor | None]) -> None:
        """Join, over the ranks that share a sharded layer, the input factors each recorded (a QR of them stacked:
        the sum of their covariances), so that every rank grows the same basis: that of the old-task inputs of all
        ranks (the same basis when every rank recorded the same batches: the energy threshold is relative). Each
        rank projects its own rows with it."""
        for i, m in enumerate(self.layers):
            w = m.weight
            if not is_dtensor(w):
                continue
            d_in = self.bases[i].shape[-2]
            shape = (3, d_in, d_in) if isinstance(m, AttentionInProjection) else (d_in, d_in)
            s = stats[i] if stats[i] is not None else torch.zeros(shape, dtype=torch.float64, device=w.device)
            for dim in range(w.device_mesh.ndim):
                group = w.device_mesh.get_group(dim)
                parts = [torch.empty_like(s) for _ in range(dist.get_world_size(group))]
                dist.all_gather(parts, s.contiguous(), group=group)
                if s.ndim == 3:
                    s = torch.stack([_stacked_factor([p[b] for p in parts]) for b in range(3)])
                else:
                    s = _stacked_factor(parts)
            stats[i] = s

    def _size(self, i: int) -> int:
        """Layer ``i``'s basis vectors (protected rows, for an embedding; the largest block's, for an attention's
        input projection with a basis per block)."""
        return self.bases[i].numel() if self.bases[i].ndim == 1 else self.bases[i].shape[-1]

    def _room(self, i: int, size: int | None = None) -> int | None:
        """How many vectors layer ``i`` (holding ``size`` of them, default its own) may still gain from one task:
        the per-task and the total budget."""
        caps = [c for c in (self.max_new_per_task,) if c is not None]
        if self.max_per_layer is not None:
            caps.append(max(self.max_per_layer - (self._size(i) if size is None else size), 0))
        return min(caps) if caps else None

    def _grow_blocks(self, i: int, s: Tensor, resolution: float | None) -> Tensor:
        """Layer ``i``'s basis, an attention's input projection, grown from its three blocks' input factors ``s``
        (query, key, value). While the three are one input (self-attention) it stays one basis ``(in_eff, r)`` of
        that input; once they differ (cross-attention), each block of rows gets a basis of its own input, and the
        layer holds them stacked, ``(3, in_eff, r)``, zero columns padding a block of fewer vectors (an earlier
        common basis is every block's). A basis of their union would constrain each block's rows by the other
        blocks' inputs too."""
        U, threshold = self.bases[i], self.thresholds[i]
        if U.ndim == 2 and torch.equal(s[0], s[1]) and torch.equal(s[0], s[2]):
            return energy_basis_update_rows(U.to(s.dtype), s[0], threshold, self._room(i), resolution).to(U.dtype)
        blocks = _unstacked(U) if U.ndim == 3 else [U] * 3
        grown = [
            energy_basis_update_rows(V.to(s.dtype), s[b], threshold, self._room(i, V.shape[1]), resolution).to(U.dtype)
            for b, V in enumerate(blocks)
        ]
        return _stacked(grown)

    def _grow(
        self, module: nn.Module, U: Tensor, s: Tensor, threshold: float, room: int | None, resolution: float | None
    ) -> Tensor:
        if isinstance(module, nn.Embedding):
            if module.padding_idx is not None:  # the pad row gets no gradient: nothing to protect
                s = s.clone()
                s[module.padding_idx] = 0
            counts = s.clone()
            counts[U] = 0  # rows already protected carry their energy already
            total, kept = s.sum(), s[U].sum()
            order = torch.argsort(counts, descending=True)
            before = torch.cumsum(counts[order], 0) - counts[order]
            r = int(((before < threshold * total - kept) & (counts[order] > 0)).sum())
            if room is not None:
                r = min(r, room)
            return torch.cat([U, order[:r].to(U)])
        return energy_basis_update_rows(U.to(s.dtype), s, threshold, room, resolution).to(U.dtype)

    def _views(self, tensors: Sequence[Tensor], i: int) -> tuple[Tensor, Tensor | None]:
        """Layer ``i``'s weight and bias among ``tensors``; of a sharded layer, the rows this rank holds."""
        wi, bi = self._slots[i]
        if not self._sharded:
            return tensors[wi], (tensors[bi] if bi is not None else None)
        return local_shard(tensors[wi]), (local_shard(tensors[bi]) if bi is not None else None)

    def _factors(self, i: int) -> _BasisFactors | _BlockFactors:
        """Layer ``i``'s basis split into weight rows and bias row; views, rebuilt only when the basis is replaced."""
        cached = self._factor_cache.get(i)
        U = self.bases[i]
        if cached is None or cached.basis is not U or cached.version != U._version:  # replaced, or edited in place
            has_bias = self._slots[i][1] is not None
            if U.ndim == 3:
                cached = _BlockFactors.of(U, has_bias, self._row_blocks(i))
            else:
                cached = _BasisFactors.of(U, has_bias)
            self._factor_cache[i] = cached
        return cached

    def _row_blocks(self, i: int) -> tuple[tuple[int, int, int], ...]:
        """An attention input projection's blocks (0: query, 1: key, 2: value) among the rows this rank holds, as
        ``(block, first, end)`` local row ranges: all three whole on one process, those a shard meets under FSDP2."""
        w = self.params[self._slots[i][0]]
        rows, offset = w.shape[0], 0
        if is_dtensor(w):
            from torch.distributed.tensor._utils import compute_local_shape_and_global_offset

            local, global_offset = compute_local_shape_and_global_offset(w.shape, w.device_mesh, w.placements)
            rows, offset = local[0], global_offset[0]
        size = w.shape[0] // 3
        ranges = [(b, max(b * size, offset) - offset, min((b + 1) * size, offset + rows) - offset) for b in range(3)]
        return tuple((b, first, end) for b, first, end in ranges if first < end)

    def _grouped(self, tensors: Sequence[Tensor]) -> tuple[RowPlan | None, frozenset[int]]:
        """The grouped kernel's plan for these tensors and the layers it takes (none on the BLAS path).

        The plan is kept while the tensors (addresses, strides) and the bases are the same objects, so a
        training step pays a key of a few microseconds, not a rebuild."""
        if self._sharded:
            tensors = [local_shard(t) for t in tensors]
        usable = grouped_kernel_available(tensors[0].device, interpreted=self.backend == "triton")
        if self.backend == "torch" or not usable:
            if self.backend == "triton":
                raise RuntimeError("backend='triton' needs Triton and CUDA tensors (or TRITON_INTERPRET=1)")
            return None, frozenset()
        layout = (tuple(map(Tensor.size, tensors)), tuple(map(Tensor.stride, tensors)))
        bases = tuple((id(U), U._version) for U in self.bases)  # a basis edited in place is a new basis
        key = (tuple(map(Tensor.data_ptr, tensors)), layout, bases)
        if self._plan_key != key:
            chosen, layers = [], []
            device, dtype = tensors[0].device, tensors[0].dtype
            for i, m in enumerate(self.layers):
                w, b = self._views(tensors, i)
                if isinstance(m, nn.Embedding) or not 0 < self._size(i) <= MAX_RANK:
                    continue
                if self.bases[i].ndim == 3:  # a basis per block of rows (cross-attention): by BLAS
                    continue
                if not kernel_takes(w, b, device, dtype):  # float64, another device, a bias of its own dtype
                    continue
                if self._slots[i][0] in self._shared:  # one launch must not write one tensor from two layers
                    continue
                if w.ndim > 2 and not w.is_contiguous():  # no matrix view (channels_last convolutions)
                    continue
                chosen.append(i)
                f = self._factors(i)
                layers.append(RowLayer(w, b, f.padded_basis, f.transposed_basis, _is_hf_conv1d(m), f.basis.shape[1]))
            self._plan = RowPlan(layers, layout=self._plan) if layers else None
            self._plan_layers = frozenset(chosen)
            self._plan_key, self._plan_bases = key, list(self.bases)  # the bases stay alive: ids stay unique
        return self._plan, self._plan_layers

    def fused_layers(self) -> tuple[RowPlan | None, list[tuple[Tensor, Tensor | None]], list[int]]:
        """What a fused optimizer step (``HybridAdamW(fused=True)``) projects: the grouped kernel's plan over the
        parameters themselves, in its order each of its layers' ``(weight, bias)`` parameters, and the indices of
        the other layers with a basis (embeddings, a weight shared by two layers, a basis above ``MAX_RANK``; every
        layer without Triton or CUDA), for :meth:`outside_coefficients` and :meth:`restore_outside_`."""
        plan, grouped = self._grouped(self.params)
        if plan is not None and self._fused_views is not None and self._fused_views[0] is plan:
            return self._fused_views  # the same plan: the same layers (a step need not list them again)
        views = (plan, [self._views(self.params, i) for i in sorted(grouped)], self._outside(grouped))
        if plan is not None:
            self._fused_views = views
        return views

    @torch.no_grad()
    def outside_coefficients(self, layers: Sequence[int]) -> dict[int, Tensor]:
        """The coordinates (protected rows, for an embedding) of the parameters on each of ``layers`` (layers the
        grouped kernel does not take, from :meth:`fused_layers`) by the per-layer path, by layer index: taken
        before a fused step, set back by :meth:`restore_outside_` after it. An embedding tied to heads with a bias
        keeps, beside its rows, those heads' bias entries of the same rows (the rows of ``[W, b]``)."""
        out = {}
        for i in layers:
            C = self._layer_coefficients(self.params, i)
            heads = self._tied_heads(i) if isinstance(self.layers[i], nn.Embedding) else []
            entries = [self.params[self._slots[j][1]][self.bases[i], None].to(C.dtype) for j in heads]
            out[i] = torch.cat([C, *entries], dim=1) if entries else C
        return out

    @torch.no_grad()
    def restore_outside_(self, reference: dict[int, Tensor], skip: Tensor | None = None) -> None:
        """``restore_`` on the layers of ``reference`` (from :meth:`outside_coefficients`), in place on the
        parameters; nothing moves where the device flag ``skip`` is 1. Heads go before embeddings, which then
        set back the whole of their rows (a tied head's bias entries among them), as :meth:`project_` does."""
        embedding = [isinstance(self.layers[i], nn.Embedding) for i in range(len(self.layers))]
        for i in sorted(reference, key=lambda i: embedding[i]):
            C = reference[i]
            heads = self._tied_heads(i) if embedding[i] else []
            if heads:
                dim = self.params[self._slots[i][0]].shape[1]
                for k, j in enumerate(heads):  # a skipped step left them unchanged: setting them is exact
                    b = self.params[self._slots[j][1]]
                    b.index_copy_(0, self.bases[i], C[:, dim + k].to(b.dtype))
                C = C[:, :dim]
            self._restore_layer_(self.params, i, C, compute=True, skip=skip)

    def _outside(self, grouped: frozenset[int]) -> list[int]:
        return [i for i in range(len(self.layers)) if self._size(i) and i not in grouped]

    def frozen_params(self) -> list[Tensor]:
        """The parameters no covered layer owns when ``freeze_uncovered`` (their steps are projected to zero)."""
        return [self.params[j] for j in self._uncovered] if self.freeze_uncovered else []

    @torch.no_grad()
    def coefficients(self, tensors: Sequence[Tensor]) -> list[Tensor]:
        """Per covered layer ``[D_W, d_b] U`` (the protected rows for an embedding), then, when frozen, the
        uncovered tensors themselves. Linear in ``D``; :meth:`subtract_` removes exactly this part."""
        plan, grouped = self._grouped(tensors)
        from_kernel = iter(plan.split(plan.run(compute=True, store=True))) if plan is not None else iter(())
        out = []
        for i in range(len(self.layers)):
            out.append(next(from_kernel) if i in grouped else self._layer_coefficients(tensors, i))
        if self.freeze_uncovered:
            out.extend(local_shard(tensors[j]).clone() for j in self._uncovered)
        return out

    @torch.no_grad()
    def subtract_(self, tensors: Sequence[Tensor], coefficients: Sequence[Tensor]) -> None:
        """``G <- G - C U^T`` per layer (bias folded in as an input of 1), in place.

        Valid as one half of the projection only when ``linear_split`` (no weight shared by two layers).
        """
        self._apply_(tensors, coefficients, compute=False)

    @torch.no_grad()
    def restore_(self, tensors: Sequence[Tensor], reference: Sequence[Tensor], skip: Tensor | None = None) -> None:
        """``D <- D - (coefficients(D) - C_ref) U^T``: move ``D`` along the memory until its coordinates are
        ``C_ref`` again (an embedding's protected rows are set back). With ``C_ref = coefficients(w0)`` taken
        before a step, this projects the step ``w1 - w0`` (eq. 11) with no copy of ``w0``. Where the device flag
        ``skip`` is 1 (a step the base optimizer skipped), nothing moves.

        Valid only when ``linear_split`` (no weight shared by two layers).
        """
        self._apply_(tensors, reference, compute=True, skip=skip)

    def _apply_(
        self, tensors: Sequence[Tensor], reference: Sequence[Tensor], *, compute: bool, skip: Tensor | None = None
    ) -> None:
        """``D <- D - (C(D) - ref) U^T`` when ``compute``, else ``D <- D - ref U^T``: one layer at a time, or
        every layer the grouped kernel takes in one launch."""
        plan, grouped = self._grouped(tensors)
        if plan is not None:
            flat = plan.flatten([reference[i] for i in sorted(grouped)])
            plan.run(compute=compute, reference=flat, apply=True, skip=skip)
        for i in self._outside(grouped):
            self._restore_layer_(tensors, i, reference[i], compute=compute, skip=skip)
        if self.freeze_uncovered:
            for j, C in zip(self._uncovered, reference[len(self.layers) :], strict=True):
                if compute:
                    local_shard(tensors[j]).copy_(C)
                else:
                    local_shard(tensors[j]).sub_(C)

    def _layer_coefficients(self, tensors: Sequence[Tensor], i: int) -> Tensor:
        """Layer ``i``'s ``[D_W, d_b] U`` by the per-layer path (its protected rows, for an embedding)."""
        w, b = self._views(tensors, i)
        if isinstance(self.layers[i], nn.Embedding):
            return w[self.bases[i]]
        return self._factors(i).coefficients(w, b, transposed=_is_hf_conv1d(self.layers[i]))

    def _restore_layer_(
        self, tensors: Sequence[Tensor], i: int, reference: Tensor, *, compute: bool, skip: Tensor | None
    ) -> None:
        """Layer ``i`` by the per-layer path: ``D <- D - (C(D) - ref) U^T`` when ``compute``, else
        ``D <- D - ref U^T`` (an embedding's protected rows set to, or reduced by, ``ref``)."""
        w, b = self._views(tensors, i)
        if isinstance(self.layers[i], nn.Embedding):  # a skipped step left the rows unchanged: setting them is exact
            if compute:
                w.index_copy_(0, self.bases[i], reference.to(w.dtype))
            else:
                w.index_put_((self.bases[i],), -reference, accumulate=True)
            return
        factors, transposed = self._factors(i), _is_hf_conv1d(self.layers[i])
        C = reference
        if compute:
            C = factors.coefficients(w, b, transposed=transposed) - C.to(factors.dtype)
        if skip is not None:
            C = C * (1 - skip.to(C))
        factors.subtract_(w, b, C, transposed=transposed)

    @torch.no_grad()
    def project_(self, tensors: Sequence[Tensor]) -> None:
        """Eq. (11) per layer, in place: ``G <- G - (G U) U^T``; embedding rows of old tokens are zeroed.

        A weight shared by an embedding and an LM head ends in the intersection of both complements: the head's
        projector acts on the rows ``[D_W, d_b]`` one at a time, the embedding's zeroes the old tokens' rows, so
        the head goes first, and the embedding then zeroes the whole of those rows, the head's bias entries
        among them (``D U = 0`` allows no other value of a row whose weight part is zero).
        (The grouped kernel takes only the layers whose weights are their own.)
        """
        plan, grouped = self._grouped(tensors)
        if plan is not None:
            plan.run(compute=True, apply=True)
        embeddings = []
        for i, m in enumerate(self.layers):
            if self._size(i) == 0 or i in grouped:
                continue
            if isinstance(m, nn.Embedding):
                embeddings.append(i)
                continue
            w, b = self._views(tensors, i)
            factors, transposed = self._factors(i), _is_hf_conv1d(m)
            factors.subtract_(w, b, factors.coefficients(w, b, transposed=transposed), transposed=transposed)
        for i in embeddings:
            rows = self.bases[i]
            self._views(tensors, i)[0].index_fill_(0, rows, 0)
            for j in self._tied_heads(i):
                tensors[self._slots[j][1]].index_fill_(0, rows, 0)
        if self.freeze_uncovered:
            for j in self._uncovered:
                local_shard(tensors[j]).zero_()

    def _tied_heads(self, i: int) -> list[int]:
        """The layers with a basis and a trainable bias that share embedding ``i``'s weight (their bias is in
        the basis: every input carries the 1)."""
        w_i = self._slots[i][0]
        return [j for j, (w, b) in enumerate(self._slots) if j != i and w == w_i and b is not None and self._size(j)]

    def stored_tensors(self) -> list[Tensor]:
        """The per-layer bases; :meth:`add_task` and :meth:`load_state_dict` replace them."""
        return list(self.bases)

    def residual(self, tensors: Sequence[Tensor]) -> float:
        """The norm of all per-layer coefficients ``D U``: 0 when ``D`` is orthogonal to every layer's memory."""
        total = sum(
            (c.double().pow(2).sum() for c in self.coefficients(tensors)), start=torch.zeros((), dtype=torch.float64)
        )
        return float(total.sqrt())

    def state_dict(self) -> dict[str, Any]:
        """The per-layer bases and the task counter."""
        return {"bases": [U.clone() for U in self.bases], "n_tasks": self.n_tasks}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore bases saved by :meth:`state_dict` for the same model."""
        bases = state["bases"]
        if len(bases) != len(self.bases):
            raise ValueError(f"Invalid state: {len(bases)} bases for {len(self.bases)} layers")
        for i, (old, new) in enumerate(zip(self.bases, bases, strict=True)):
            blocks = isinstance(self.layers[i], AttentionInProjection)  # one basis, or one per block
            if old.ndim == 1:
                fits, like = new.ndim == 1, "(rows,)"
            else:
                d_in = old.shape[-2]
                fits = (new.ndim == 2 or (blocks and new.ndim == 3 and new.shape[0] == 3)) and new.shape[-2] == d_in
                like = f"({d_in}, r)" + (f" or (3, {d_in}, r)" if blocks else "")
            if not fits:
                raise ValueError(f"Invalid state: layer {i}'s basis of shape {tuple(new.shape)} does not fit {like}")
            size = new.numel() if new.ndim == 1 else new.shape[-1]
            if self.max_per_layer is not None and size > self.max_per_layer:
                raise ValueError(f"Invalid state: layer {i} holds {size} vectors, above max_per_layer")
        self.bases = [
            ordinary(new.to(old.device, old.dtype).clone()) for old, new in zip(self.bases, bases, strict=True)
        ]
        self.n_tasks = int(state["n_tasks"])


@dataclass(frozen=True)
class _BasisFactors:
    """A layer's basis ``U`` (``in_eff x r``) as the views the per-layer products use: ``U_w`` (weight rows, and
    its transpose) and ``u_b`` (the bias row, the input of 1), so a projection is a few BLAS calls per layer.

    The products run in the basis' precision (at least float32) whatever the weights' dtype: a bfloat16
    coefficient of a weight row carries an error of ~4e-3 of that row's coordinate, far more than a small
    step's, and ``restore_`` subtracts two of them. Weights in bfloat16 or float16 are rounded once, after
    ``D - C U^T`` is formed in float32."""

    basis: Tensor
    version: int  # the basis' version counter when these views were made (an in-place edit changes it)
    U_w: Tensor
    U_w_T: Tensor
    u_b: Tensor | None
    padded_basis: Tensor  # float32, rows padded with zeros to a multiple of 4: what the grouped kernel reads
    transposed_basis: Tensor  # U^T, float32, row-major, rows padded likewise

    @property
    def dtype(self) -> torch.dtype:
        """The products' dtype, the basis'."""
        return self.U_w.dtype

    @classmethod
    def of(cls, U: Tensor, has_bias: bool) -> _BasisFactors:
        """Views of ``U``."""
        d_w = U.shape[0] - int(has_bias)
        return cls(U, U._version, U[:d_w], U[:d_w].T, U[d_w] if has_bias else None, *padded_bases(U))

    def coefficients(self, w: Tensor, b: Tensor | None, *, transposed: bool) -> Tensor:
        """``C = D_W U_w + d_b u_b^T`` (``out x r``); ``transposed`` for HF Conv1D, whose ``W`` is ``(in, out)``."""
        w = w.to(self.U_w.dtype)
        b = b.to(self.U_w.dtype) if b is not None else None
        if transposed:
            C = torch.mm(self.U_w_T, w)  # (r, out)
            return C.addr_(self.u_b, b) if b is not None else C
        C = torch.mm(_as_matrix(w), self.U_w)
        return C.addr_(b, self.u_b) if b is not None else C

    def subtract_(self, w: Tensor, b: Tensor | None, C: Tensor, *, transposed: bool) -> None:
        """``D_W <- D_W - C U_w^T`` and ``d_b <- d_b - C u_b``, in place (in the basis' precision, rounded once
        into tensors of a lower one)."""
        dtype = self.U_w.dtype
        C = C.to(dtype)
        if w.dtype != dtype:
            high = w.to(dtype)
            self._subtract_(high, C, transposed)
            w.copy_(high)
        else:
            self._subtract_(w, C, transposed)
        if b is not None:
            db = (C.T if transposed else C) @ self.u_b
            if b.dtype == dtype:
                b.sub_(db)
            else:
                b.copy_(b.to(dtype) - db)

    def _subtract_(self, w: Tensor, C: Tensor, transposed: bool) -> None:
        if transposed:
            w.addmm_(self.U_w, C, alpha=-1)
        elif w.ndim == 2 or w.is_contiguous():
            _as_matrix(w).addmm_(C, self.U_w_T, alpha=-1)
        else:  # a convolution weight in another memory format (channels_last): no matrix view of it exists
            w.sub_(torch.mm(C, self.U_w_T).view(w.shape))


@dataclass(frozen=True)
class _BlockFactors:
    """An attention input projection's bases, one per block of rows (query, key, value: ``U`` of shape
    ``(3, in_eff, r)``), as one :class:`_BasisFactors` per block, applied to the local row ranges each block
    covers (``segments``: ``(block, first, end)``)."""

    basis: Tensor
    version: int
    blocks: tuple[_BasisFactors, ...]
    segments: tuple[tuple[int, int, int], ...]

    @property
    def dtype(self) -> torch.dtype:
        """The products' dtype, the basis'."""
        return self.basis.dtype

    @classmethod
    def of(cls, U: Tensor, has_bias: bool, segments: tuple[tuple[int, int, int], ...]) -> _BlockFactors:
        """Views of ``U``'s blocks (their zero columns, padding, give zero coefficients)."""
        return cls(U, U._version, tuple(_BasisFactors.of(V, has_bias) for V in U), segments)

    def coefficients(self, w: Tensor, b: Tensor | None, *, transposed: bool) -> Tensor:
        """``C = D_W U_w + d_b u_b^T`` row by row, each row with its block's basis (``out x r``)."""
        if not self.segments:  # a shard holding no row
            return self.basis.new_zeros(0, self.basis.shape[-1])
        return torch.cat(
            [
                self.blocks[k].coefficients(w[lo:hi], None if b is None else b[lo:hi], transposed=transposed)
                for k, lo, hi in self.segments
            ]
        )

    def subtract_(self, w: Tensor, b: Tensor | None, C: Tensor, *, transposed: bool) -> None:
        """``D_W <- D_W - C U_w^T`` and ``d_b <- d_b - C u_b``, each row with its block's basis, in place."""
        for k, lo, hi in self.segments:
            self.blocks[k].subtract_(w[lo:hi], None if b is None else b[lo:hi], C[lo:hi], transposed=transposed)


def _stacked_factor(parts: Sequence[Tensor]) -> Tensor:
    """The triangular ``R`` (``d x d``, zero rows below the rank) of a QR of the rows ``parts`` stacked, so that
    ``R^T R`` is the sum of the parts' ``P^T P``: a running factor joins new inputs, or the ranks' factors join."""
    A = torch.cat(list(parts))
    R = torch.linalg.qr(A, mode="r")[1]
    d = A.shape[1]
    return F.pad(R, (0, 0, 0, d - R.shape[0])) if R.shape[0] < d else R


def _unstacked(U: Tensor) -> list[Tensor]:
    """The blocks' bases of a stacked ``(3, in_eff, r)`` basis, without the zero columns that pad them."""
    ranks = (U.norm(dim=1) > 0).sum(dim=1).tolist()
    return [V[:, :r] for V, r in zip(U, ranks, strict=True)]


def _stacked(bases: Sequence[Tensor]) -> Tensor:
    """Bases ``(in_eff, r_b)`` stacked as ``(3, in_eff, max r_b)``, zero columns padding the narrower ones."""
    width = max(V.shape[1] for V in bases)
    return torch.stack([F.pad(V, (0, width - V.shape[1])) for V in bases])


def _as_matrix(w: Tensor) -> Tensor:
    """A weight as ``out x in_eff`` (a view for Linear and contiguous Conv weights)."""
    return w if w.ndim == 2 else w.reshape(w.shape[0], -1)
