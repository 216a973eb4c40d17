"""What a covered layer's inputs are, as the rows whose span its weight gradient's rows lie in (GPM's
representation matrix): a Linear's inputs, a convolution's input patches, a transposed convolution's transposed
patches, with an input of 1 for a trainable bias; and, for an embedding, the rows of its weight that a forward reads.

A convolution's patches are those of its (padded) input that each output position reads, ordered as the entries
of a row of its weight, in 1, 2 or 3 spatial dimensions.

A transposed convolution is a layer ``y = M z + b``: output channel ``o`` at output position ``q`` is the row
``M[o] = W[group's inputs, o, :]`` of the weight (stored ``in x out/groups x *kernel``) times the entries of the
input that reach ``q`` (a "transposed patch" ``z_q``, one per input channel and kernel tap, zero where no input
reaches). The weight gradient's rows lie in the span of those patches, so GPM's projection applies to ``M``, which
is a permuted copy of the weight: taken out (:func:`weight_rows`) and written back (:func:`set_weight_rows_`).
The patches are those of an ordinary convolution with the kernel flipped: the input spread out by the stride
(``s - 1`` zeros between entries), padded by ``dilation * (kernel - 1) - padding`` on the left and that plus
``output_padding`` on the right (a negative width crops), read at stride 1 with the layer's dilation.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F  # noqa: N812 (the torch idiom)
from torch.overrides import TorchFunctionMode

__all__ = [
    "CONVOLUTIONS",
    "TRANSPOSED_CONVOLUTIONS",
    "Convolution",
    "RowReads",
    "conv_patches",
    "input_width",
    "is_hf_conv1d",
    "layer_representations",
    "looked_up",
    "output_padding",
    "patch_rows",
    "set_weight_rows_",
    "transposed_patches",
    "weight_rows",
]

CONVOLUTIONS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)  # the convolutions covered: their patches are their inputs
Convolution = nn.Conv1d | nn.Conv2d | nn.Conv3d


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


def conv_patches(module: Convolution, x: Tensor) -> Tensor:
    """The input patches one output position sees, as rows (``N' x in/groups * prod(kernel)``, in the order of
    the weight's ``(in/groups, *kernel)`` entries), for 1, 2 or 3 spatial dimensions."""
    if x.dim() == len(module.kernel_size) + 1:  # an unbatched input
        x = x.unsqueeze(0)
    mode = "constant" if module.padding_mode == "zeros" else module.padding_mode
    x = F.pad(x, _conv_padding(module), mode=mode)
    return patch_rows(x, module.groups, module.kernel_size, module.dilation, module.stride)


def patch_rows(x: Tensor, groups: int, kernel: Sequence[int], dilation: Sequence[int], stride: Sequence[int]) -> Tensor:
    """The patches of a padded, batched input ``x`` (``n x c x *spatial``) that a convolution of this geometry
    reads at each output position, as rows (``n * groups * positions x c/groups * prod(kernel)``, ordered by
    sample, group, then position; each row's entries by channel, then kernel tap).

    Each group's patches are rows of their own, so the basis spans the union of the groups' input spaces: a
    grouped (or depthwise) weight's rows each lie in their group's space, and the projection stays exact.
    """
    spatial = len(kernel)
    n, c = x.shape[:2]
    x = x.reshape(n * groups, c // groups, *x.shape[2:])
    for dim, (k, step, gap) in enumerate(zip(kernel, stride, dilation, strict=True), start=2):
        x = x.unfold(dim, gap * (k - 1) + 1, step)[..., ::gap]  # a view: (..., out_dim, ..., k)
    positions, taps = range(2, 2 + spatial), range(2 + spatial, 2 + 2 * spatial)
    x = x.permute(0, *positions, 1, *taps)  # (n, *out, c/groups, *kernel)
    return x.reshape(-1, math.prod(x.shape[1 + spatial :]))


TRANSPOSED_CONVOLUTIONS = (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)
TransposedConvolution = nn.ConvTranspose1d | nn.ConvTranspose2d | nn.ConvTranspose3d


def output_padding(module: TransposedConvolution, args: tuple[Any, ...], kwargs: dict[str, Any]) -> list[int]:
    """The output padding of a call ``module(input, output_size)``: the module's own, or the one torch computes
    from ``output_size`` where the call passes it."""
    size = args[1] if len(args) > 1 else kwargs.get("output_size")
    spatial = len(module.kernel_size)
    x = args[0]
    # torch's own computation (ConvTranspose*d.forward does the same), with the padding the module was built with
    geometry = (list(module.stride), list(module.padding), list(module.kernel_size), spatial, list(module.dilation))
    return list(module._output_padding(x, size, *geometry))


def transposed_patches(module: TransposedConvolution, x: Tensor, padding_out: list[int]) -> Tensor:
    """The rows ``z_q`` (``N' x in/groups * prod(kernel)``, ordered by sample, group, then output position; each
    row's entries by input channel, then kernel tap as the weight orders them) whose span the rows of
    :func:`weight_rows` of the gradient lie in."""
    spatial = len(module.kernel_size)
    if x.dim() == spatial + 1:  # an unbatched input
        x = x.unsqueeze(0)
    n, c, *size = x.shape
    spread = x.new_zeros(n, c, *[(m - 1) * s + 1 for m, s in zip(size, module.stride, strict=True)])
    spread[(slice(None), slice(None), *[slice(None, None, s) for s in module.stride])] = x
    pads: list[int] = []
    for d in reversed(range(spatial)):
        left = module.dilation[d] * (module.kernel_size[d] - 1) - module.padding[d]
        pads += [left, left + padding_out[d]]
    spread = F.pad(spread, pads)
    rows = patch_rows(spread, module.groups, module.kernel_size, module.dilation, [1] * spatial)
    taps = rows.reshape(-1, c // module.groups, *module.kernel_size)
    return taps.flip(list(range(2, 2 + spatial))).reshape(rows.shape)


def weight_rows(w: Tensor, groups: int) -> Tensor:
    """The weight (``in x out/groups x *kernel``) as ``M`` (``out x in/groups * prod(kernel)``): row ``o`` holds
    what output channel ``o`` reads from its group's input channels. A copy, or a view of the weight where a
    group has one input or one output channel (:func:`set_weight_rows_` then writes each entry onto itself)."""
    c_in, out_per_group = w.shape[:2]
    taps = math.prod(w.shape[2:])
    blocks = w.reshape(groups, c_in // groups, out_per_group, taps).transpose(1, 2)
    return blocks.reshape(groups * out_per_group, (c_in // groups) * taps)


@torch.no_grad()
def set_weight_rows_(w: Tensor, rows: Tensor, groups: int) -> None:
    """Write ``M`` (from :func:`weight_rows`) back into the weight, in place."""
    c_in, out_per_group = w.shape[:2]
    taps = math.prod(w.shape[2:])
    blocks = rows.reshape(groups, out_per_group, c_in // groups, taps).transpose(1, 2)
    w.copy_(blocks.reshape(w.shape))


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
