"""``nn.MultiheadAttention``'s two projections as covered layers: its packed input projection, which it reads as a
weight without calling a layer (:class:`AttentionInProjection`), and the inputs of both, taken from the
attention's own arguments (the query, key and value; the heads' outputs, computed again for ``out_proj``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F  # noqa: N812 (the torch idiom)

__all__ = ["AttentionInProjection", "attention_recorder", "packed_attentions"]


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
