"""A (transposed) convolution's output computed from what the layer-wise memory records: each group's patches
times that group's rows of the weight matrix, plus the bias (shared by the convolution tests)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from kaplinskiy.memory.layerwise.inputs import layer_representations


def output_from_patches(conv: nn.Module, x: Tensor, weight_matrix: Tensor, shape: torch.Size) -> Tensor:
    """``conv``'s output on ``x`` (of ``shape``) as its recorded patches times ``weight_matrix`` (``out x in_eff``,
    the rows of its weight), plus its bias."""
    patches = layer_representations(conv, x, with_bias=False)
    n, groups, positions = x.shape[0], conv.groups, shape[2:].numel()
    rows = weight_matrix.reshape(groups, conv.out_channels // groups, -1)
    product = torch.einsum("ngpk,gok->ngop", patches.reshape(n, groups, positions, -1), rows).reshape(shape)
    return product + (conv.bias.view(1, -1, *[1] * (len(shape) - 2)) if conv.bias is not None else 0)
