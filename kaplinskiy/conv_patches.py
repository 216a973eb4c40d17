"""A convolution's inputs as rows: the patches of its (padded) input that each output position reads, ordered as
the entries of a row of its weight, in 1, 2 or 3 spatial dimensions.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from torch import Tensor, nn
from torch.nn import functional as F  # noqa: N812 (the torch idiom)

__all__ = ["CONVOLUTIONS", "Convolution", "conv_patches", "patch_rows"]

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
