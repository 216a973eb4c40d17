"""Transposed convolutions under the layer-wise memory (:mod:`kaplinskiy.memory.layerwise.inputs`): the output is
the weight's rows times the transposed patches the memory records, so a guarded step keeps the old outputs, in
1, 2 and 3 dimensions, with stride, padding (cropping too), output padding, dilation, groups, and an
``output_size`` given at the call."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from conv_products import output_from_patches
from hypothesis import assume, given
from hypothesis import strategies as st
from torch import Tensor, nn

from kaplinskiy import ForgettingGuard, LayerwiseMemory
from kaplinskiy.memory.layerwise.inputs import (
    input_width,
    layer_representations,
    output_padding,
    set_weight_rows_,
    weight_rows,
)

_LAYERS = {  # name -> (the layer, an old input's spatial size)
    "1d grouped": (lambda: nn.ConvTranspose1d(8, 6, 3, stride=2, padding=1, output_padding=1, groups=2), (2,)),
    "2d dilated": (lambda: nn.ConvTranspose2d(6, 3, (3, 2), stride=(2, 1), padding=(1, 0), dilation=(1, 2)), (1, 2)),
    "2d cropped": (lambda: nn.ConvTranspose2d(6, 2, 3, padding=(3, 2), bias=False), (5, 4)),
    "3d": (lambda: nn.ConvTranspose3d(6, 2, (2, 3, 2), stride=(1, 2, 2), output_padding=(0, 1, 1)), (1, 1, 2)),
    "2d one output channel": (lambda: nn.ConvTranspose2d(4, 1, 3, stride=2), (1, 1)),  # its rows view the weight
}


@pytest.mark.parametrize("name", sorted(_LAYERS))
def test_a_transposed_convolution_is_its_weight_rows_times_its_transposed_patches(name: str) -> None:
    """Output channel ``o`` at position ``q`` is ``weight_rows(W)[o]`` times the patch of position ``q`` (each
    group's patches with that group's rows), plus the bias; the rows are written back exactly."""
    make, size = _LAYERS[name]
    conv = make()
    x = torch.randn(2, conv.in_channels, *[s + 3 for s in size])
    y = conv(x)
    assert layer_representations(conv, x, with_bias=False).shape[1] == input_width(conv, has_bias=False)
    product = output_from_patches(conv, x, weight_rows(conv.weight, conv.groups), y.shape)
    torch.testing.assert_close(product, y, rtol=0, atol=1e-12)
    w = torch.zeros_like(conv.weight)
    set_weight_rows_(w, weight_rows(conv.weight, conv.groups), conv.groups)
    assert torch.equal(w, conv.weight)


def test_an_output_size_given_at_the_call_sets_the_output_padding() -> None:
    conv = nn.ConvTranspose2d(2, 3, 3, stride=2, padding=1)
    x = torch.randn(1, 2, 4, 4)
    y = conv(x, output_size=[8, 8])
    padding = output_padding(conv, (x,), {"output_size": [8, 8]})
    assert padding == [1, 1] and output_padding(conv, (x,), {}) == [0, 0]
    patches = layer_representations(conv, x, with_bias=False, output_padding=padding)
    product = (patches @ weight_rows(conv.weight, 1).T).reshape(1, 8, 8, 3).permute(0, 3, 1, 2)
    torch.testing.assert_close(product + conv.bias.view(1, -1, 1, 1), y, rtol=0, atol=1e-12)


@pytest.mark.parametrize("name", sorted(_LAYERS))
def test_guarded_steps_keep_a_transposed_convolution_s_old_outputs(name: str) -> None:
    """Threshold 1: the basis is a proper subspace of the patches' space (so the test can fail), and three
    guarded AdamW steps on new inputs leave the old outputs where they were."""
    make, size = _LAYERS[name]
    conv = make()
    old = torch.randn(1, conv.in_channels, *size)
    memory = LayerwiseMemory(conv, threshold=1.0)
    memory.add_task([old])
    assert 0 < memory.bases[0].shape[1] < memory.bases[0].shape[0]
    assert _moved(conv, memory, old, lambda m, x: m(x)) < 1e-12


def test_a_call_with_output_size_is_recorded_with_its_output_padding() -> None:
    """``conv(x, output_size=...)`` pads the output by one more row and column than the module's own output
    padding: recorded with it, the guard keeps those outputs too."""
    conv = nn.ConvTranspose2d(8, 2, 3, stride=2, padding=1)
    old = torch.randn(1, 8, 1, 2)

    def call(m: nn.Module, x: Tensor) -> Tensor:
        return m(x, output_size=[2, 4])

    memory = LayerwiseMemory(conv, threshold=1.0)
    memory.add_task([old], forward=call)
    assert 0 < memory.bases[0].shape[1] < memory.bases[0].shape[0]
    assert _moved(conv, memory, old, call) < 1e-12


def _moved(conv: nn.Module, memory: LayerwiseMemory, old: Tensor, call: Callable[[nn.Module, Tensor], Tensor]) -> float:
    """How far three guarded AdamW steps on random new inputs move ``call(conv, old)``."""
    before = call(conv, old).detach().clone()
    opt = ForgettingGuard(torch.optim.AdamW(conv.parameters(), lr=0.1), memory)
    for _ in range(3):
        opt.zero_grad()
        call(conv, torch.randn_like(old)).square().sum().backward()
        opt.step()
    with torch.no_grad():
        return float((call(conv, old) - before).abs().max())


@st.composite
def _geometries(draw: st.DrawFn) -> tuple[nn.Module, tuple[int, ...]]:
    """A transposed convolution of random geometry (1 or 2 spatial dimensions) and an input size it accepts."""
    spatial = draw(st.integers(1, 2))
    groups = draw(st.integers(1, 2))
    c_in, c_out = groups * draw(st.integers(1, 3)), groups * draw(st.integers(1, 3))
    kernel, stride, dilation = ([draw(st.integers(1, 3)) for _ in range(spatial)] for _ in range(3))
    padding = [draw(st.integers(0, d * (k - 1) + 1)) for k, d in zip(kernel, dilation, strict=True)]
    extra = [draw(st.integers(0, max(s, d) - 1)) for s, d in zip(stride, dilation, strict=True)]
    size = tuple(draw(st.integers(1, 4)) for _ in range(spatial))
    out = [
        (n - 1) * s - 2 * p + d * (k - 1) + e + 1
        for n, s, p, d, k, e in zip(size, stride, padding, dilation, kernel, extra, strict=True)
    ]
    assume(all(o > 0 for o in out))
    layer = (nn.ConvTranspose1d, nn.ConvTranspose2d)[spatial - 1]
    conv = layer(c_in, c_out, kernel, stride, padding, extra, groups, draw(st.booleans()), dilation)
    return conv, size


@given(geometry=_geometries(), seed=st.integers(0, 2**16))
def test_any_transposed_convolution_is_its_weight_rows_times_its_patches(
    geometry: tuple[nn.Module, tuple[int, ...]], seed: int
) -> None:
    conv, size = geometry
    torch.manual_seed(seed)
    x = torch.randn(2, conv.in_channels, *size)
    y = conv(x)
    product = output_from_patches(conv, x, weight_rows(conv.weight, conv.groups), y.shape)
    torch.testing.assert_close(product, y, rtol=0, atol=1e-12)
