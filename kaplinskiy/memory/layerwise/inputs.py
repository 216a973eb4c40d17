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

from .conv_patches import CONVOLUTIONS, conv_patches
from .transposed_convolutions import TRANSPOSED_CONVOLUTIONS, transposed_patches

__all__ = ["CONVOLUTIONS", "TRANSPOSED_CONVOLUTIONS", "RowReads", "input_width", "is_hf_conv1d"]
__all__ += ["layer_representations", "looked_up"]


def is_hf_conv1d(module: nn.Module) -> bool:
    """Hugging Face's GPT-2 ``Conv1D``: ``y = x W + b`` with ``W`` of shape ``(in, out)``."""
    return type(module).__name__ == "Conv1D" and hasattr(module, "nf")


def input_width(module: nn.Module, has_bias: bool) -> int:
    """``in_eff``: the width of the layer's representations, its inputs (a convolution's patches) plus the input
    of 1 of a trainable bias (a frozen bias is a constant and adds none)."""
    w = module.weight
    if is_hf_conv1d(module):
        width = w.shape[0]
    elif isinstance(module, TRANSPOSED_CONVOLUTIONS):  # its weight is in x out/groups x *kernel
        width = w.shape[0] // module.groups * math.prod(w.shape[2:])
    else:
        width = math.prod(w.shape[1:])
    return width + int(has_bias)


def layer_representations(
    module: nn.Module,
    x: Tensor,
    with_bias: bool,
    *,
    bias_added: bool = True,
    output_padding: Sequence[int] | None = None,
) -> Tensor:
    """The rows ``x_s`` (``N x in_eff``) whose span the layer's weight gradient rows live in, with an input of 1
    appended where the layer has a trainable bias (of 0 where the bias is not added: ``F.linear`` on the layer's
    weight without it). ``output_padding``: that of a transposed convolution's call (default: the module's)."""
    if isinstance(module, CONVOLUTIONS):
        rows = conv_patches(module, x)
    elif isinstance(module, TRANSPOSED_CONVOLUTIONS):
        rows = transposed_patches(module, x, list(output_padding or module.output_padding))
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
