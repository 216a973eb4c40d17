"""Transposed convolutions as layers ``y = M z + b``: output channel ``o`` at output position ``q`` is the row
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
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F  # noqa: N812 (the torch idiom)

from .conv_patches import patch_rows

__all__ = ["TRANSPOSED_CONVOLUTIONS", "output_padding", "set_weight_rows_", "transposed_patches", "weight_rows"]

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
