"""A convolution's recorded inputs (:mod:`kaplinskiy.memory.layerwise.inputs`): its patches, each ordered as a row of
its weight, so that the weight's rows times the patches, plus the bias, are the convolution's output, in 1, 2 and 3
dimensions, for any stride, padding, padding mode, dilation and groups."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from conv_products import output_from_patches
from hypothesis import assume, given
from hypothesis import strategies as st
from torch import nn


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel")
@pytest.mark.parametrize(
    "make",
    [
        lambda: nn.Conv1d(4, 6, 3, padding=2, dilation=2, stride=2, groups=2, padding_mode="circular"),
        lambda: nn.Conv2d(6, 4, (3, 2), padding="same", groups=2, padding_mode="reflect"),
        lambda: nn.Conv2d(2, 3, 3, padding=(1, 2), stride=(2, 1), dilation=(1, 2), padding_mode="replicate"),
        lambda: nn.Conv3d(4, 6, (2, 3, 2), padding=(1, 0, 1), dilation=(2, 1, 1), stride=(1, 2, 1), groups=2),
        lambda: nn.Conv3d(2, 2, 3, padding=1, padding_mode="circular"),
    ],
    ids=["conv1d", "conv2d grouped", "conv2d strided", "conv3d", "conv3d circular"],
)
def test_a_convolution_is_its_patches_times_its_weight_matrix(make: Callable[[], nn.Module]) -> None:
    """The rows recorded for a convolution are the patches its weight multiplies: each group's patches times that
    group's rows of the weight (as an ``out x in/groups * prod(kernel)`` matrix), plus the bias, give the
    convolution's output at every position."""
    conv = make()
    x = torch.randn(2, conv.in_channels, *(7, 6, 5)[: conv.weight.ndim - 2])
    y = conv(x)
    product = output_from_patches(conv, x, conv.weight.reshape(conv.out_channels, -1), y.shape)
    torch.testing.assert_close(product, y, rtol=0, atol=1e-12)


@st.composite
def _convolutions(draw: st.DrawFn) -> tuple[nn.Module, tuple[int, ...]]:
    """A convolution of random geometry (1, 2 or 3 spatial dimensions) and an input size it accepts."""
    spatial = draw(st.integers(1, 3))
    groups = draw(st.integers(1, 2))
    c_in, c_out = groups * draw(st.integers(1, 2)), groups * draw(st.integers(1, 2))
    kernel, stride, dilation = ([draw(st.integers(1, 3)) for _ in range(spatial)] for _ in range(3))
    mode = draw(st.sampled_from(["zeros", "reflect", "replicate", "circular"]))
    size = tuple(draw(st.integers(2, 5)) for _ in range(spatial))
    padding = [draw(st.integers(0, n - 1)) for n in size]  # reflect and circular need less than the input
    assume(all(n + 2 * p >= d * (k - 1) + 1 for n, p, d, k in zip(size, padding, dilation, kernel, strict=True)))
    layer = (nn.Conv1d, nn.Conv2d, nn.Conv3d)[spatial - 1]
    conv = layer(c_in, c_out, kernel, stride, padding, dilation, groups, draw(st.booleans()), mode)
    return conv, size


@given(convolution=_convolutions(), seed=st.integers(0, 2**16))
def test_any_convolution_is_its_patches_times_its_weight_matrix(
    convolution: tuple[nn.Module, tuple[int, ...]], seed: int
) -> None:
    conv, size = convolution
    torch.manual_seed(seed)
    x = torch.randn(2, conv.in_channels, *size)
    y = conv(x)
    product = output_from_patches(conv, x, conv.weight.reshape(conv.out_channels, -1), y.shape)
    torch.testing.assert_close(product, y, rtol=0, atol=1e-12)
