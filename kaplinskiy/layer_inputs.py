"""What a covered layer's inputs are, as the rows whose span its weight gradient's rows lie in (GPM's
representation matrix): a Linear's inputs, a convolution's input patches, with an input of 1 for a trainable
bias; and, for an embedding, the rows of its weight that a forward reads.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F  # noqa: N812 (the torch idiom)
from torch.overrides import TorchFunctionMode

__all__ = ["CONVOLUTIONS", "RowReads", "input_width", "is_hf_conv1d", "layer_representations", "looked_up"]

CONVOLUTIONS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)  # the convolutions covered: their patches are their inputs
Convolution = nn.Conv1d | nn.Conv2d | nn.Conv3d


def is_hf_conv1d(module: nn.Module) -> bool:
    """Hugging Face's GPT-2 ``Conv1D``: ``y = x W + b`` with ``W`` of shape ``(in, out)``."""
    return type(module).__name__ == "Conv1D" and hasattr(module, "nf")


def input_width(module: nn.Module, has_bias: bool) -> int:
    """``in_eff``: the width of the layer's representations, its inputs (a convolution's patches) plus the input
    of 1 of a trainable bias (a frozen bias is a constant and adds none)."""
    w = module.weight
    return (w.shape[0] if is_hf_conv1d(module) else math.prod(w.shape[1:])) + int(has_bias)


def _conv_padding(module: Convolution) -> list[int]:
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


def _conv_patches(module: Convolution, x: Tensor) -> Tensor:
    """The input patches one output position sees, as rows (``N' x in/groups * prod(kernel)``, in the order of
    the weight's ``(in/groups, *kernel)`` entries), for 1, 2 or 3 spatial dimensions.

    Each group's patches are rows of their own, so the basis spans the union of the groups' input spaces: a
    grouped (or depthwise) weight's rows each lie in their group's space, and the projection stays exact.
    """
    spatial = len(module.kernel_size)
    if x.dim() == spatial + 1:  # an unbatched input
        x = x.unsqueeze(0)
    mode = "constant" if module.padding_mode == "zeros" else module.padding_mode
    x = F.pad(x, _conv_padding(module), mode=mode)
    n, c = x.shape[:2]
    x = x.reshape(n * module.groups, c // module.groups, *x.shape[2:])
    geometry = zip(module.kernel_size, module.dilation, module.stride, strict=True)
    for dim, (k, dilation, stride) in enumerate(geometry, start=2):
        x = x.unfold(dim, dilation * (k - 1) + 1, stride)[..., ::dilation]  # a view: (..., out_dim, ..., k)
    positions, taps = range(2, 2 + spatial), range(2 + spatial, 2 + 2 * spatial)
    x = x.permute(0, *positions, 1, *taps)  # (n, *out, in/groups, *kernel)
    return x.reshape(-1, math.prod(x.shape[1 + spatial :]))


def layer_representations(module: nn.Module, x: Tensor, with_bias: bool, *, bias_added: bool = True) -> Tensor:
    """The rows ``x_s`` (``N x in_eff``) whose span the layer's weight gradient rows live in, with an input of 1
    appended where the layer has a trainable bias (of 0 where the bias is not added: ``F.linear`` on the layer's
    weight without it)."""
    if isinstance(module, CONVOLUTIONS):
        rows = _conv_patches(module, x)
    elif x.is_nested:  # sequences without their padding (torch's TransformerEncoder hands its layers these)
        rows = torch.cat([t.reshape(-1, t.shape[-1]) for t in x.unbind()])
    else:  # nn.Linear or Hugging Face's Conv1D
        rows = x.reshape(-1, x.shape[-1])
    if with_bias:
        rows = torch.cat([rows, rows.new_full((rows.shape[0], 1), float(bias_added))], dim=1)
    return rows


class RowReads(TorchFunctionMode):
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
        weight = looked_up(func, args, kwargs)
        if weight is not None and self._weights.get(id(weight)) is weight:
            rows, n = _rows_read(func, args, kwargs), weight.shape[0]
            if rows is None:
                count = torch.ones(n, dtype=torch.float64, device=weight.device)
            else:
                count = torch.bincount(rows.reshape(-1).long(), minlength=n).to(weight.device, torch.float64)
            before = self.counts.get(id(weight))
            self.counts[id(weight)] = count if before is None else before + count.to(before.device)
        return func(*args, **kwargs)


def looked_up(func: Callable[..., Any], args: Sequence[Any], kwargs: dict[str, Any]) -> Any:
    """The tensor whose rows ``func`` would read: ``F.embedding``'s weight, or what is indexed, else None."""
    if func is F.embedding:
        return args[1] if len(args) > 1 else kwargs.get("weight")
    if func in (torch.embedding, Tensor.__getitem__, Tensor.index_select, torch.index_select) and args:
        return args[0]
    return None


def _rows_read(func: Callable[..., Any], args: Sequence[Any], kwargs: dict[str, Any]) -> Tensor | None:
    """The row indices of the weight that ``func(*args, **kwargs)`` reads (any shape); None for all rows."""
    weight = looked_up(func, args, kwargs)
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
