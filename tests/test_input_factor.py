"""A layer's running input factor (:mod:`kaplinskiy.memory.layerwise.recording`): small batches wait in a buffer of
fewer than a quarter of the width in rows and join in one QR, so ``R^T R`` is still the sum of every input's outer
product; the buffered rows are copies, untouched by a forward that changes its tensors in place later."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch import Tensor, nn

from kaplinskiy import LayerwiseMemory
from kaplinskiy.memory.layerwise.coverage import AttentionInProjection
from kaplinskiy.memory.layerwise.recording import InputFactor, pending_limit, record_layer_inputs


@given(
    width=st.integers(1, 12),
    sizes=st.lists(st.integers(1, 9), min_size=1, max_size=12),
    seed=st.integers(0, 2**16),
)
def test_the_factor_keeps_the_sum_of_outer_products_and_buffers_fewer_rows_than_its_limit(
    width: int, sizes: list[int], seed: int
) -> None:
    """After every join, fewer than ``pending_limit(width)`` rows wait, and the factor is unchanged unless the
    buffer emptied into it; at the end ``R`` is triangular, ``min(n, d) x d``, and ``R^T R = X^T X``."""
    generator = torch.Generator().manual_seed(seed)
    batches = [torch.randn(n, width, generator=generator, dtype=torch.float64) for n in sizes]
    factor = InputFactor()
    for rows in batches:
        joined = factor.joined(rows)
        waiting = sum(p.shape[0] for p in joined.pending)
        assert waiting < pending_limit(width)
        assert (joined.factor is factor.factor) == (waiting > 0)
        factor = joined
    R, X = factor.flushed(), torch.cat(batches)
    assert R.shape == (min(X.shape[0], width), width)
    assert torch.equal(R, R.triu())
    assert torch.allclose(R.T @ R, X.T @ X, rtol=1e-12, atol=1e-12 * float(X.square().sum()))


def test_a_factor_without_input_is_refused() -> None:
    with pytest.raises(ValueError, match="no input was recorded"):
        InputFactor().flushed()


def test_small_batches_join_the_factor_in_one_qr_per_quarter_of_the_width(monkeypatch: pytest.MonkeyPatch) -> None:
    """64 batches of 2 inputs of a 64-wide layer: 8 QRs (one per 16 rows), not one per batch; the factor is that of
    the 128 inputs together."""
    torch.manual_seed(0)
    layer = nn.Linear(64, 3, bias=False).eval()
    batches = [torch.randn(2, 64) for _ in range(64)]
    qr, calls = torch.linalg.qr, []
    monkeypatch.setattr(torch.linalg, "qr", lambda *a, **k: calls.append(a[0].shape) or qr(*a, **k))
    (R,) = record_layer_inputs(layer, [layer], [False], batches).factors
    assert calls == [(16, 64), (32, 64), (48, 64), (64, 64)] + [(80, 64)] * 4  # the factor grows to 64 rows
    X = torch.cat(batches)
    assert torch.allclose(R.T @ R, X.T @ X, atol=1e-10)


class _ClearsItsInput(nn.Module):
    """A forward that zeroes its input in place after the layer has read it."""

    def __init__(self) -> None:
        super().__init__()
        self.layer = nn.Linear(8, 2, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        y = self.layer(x)
        x.zero_()
        return y


def test_buffered_inputs_are_copies_a_later_in_place_change_does_not_reach() -> None:
    torch.manual_seed(0)
    model = _ClearsItsInput().eval()
    batches = [torch.randn(1, 8) for _ in range(3)]
    X = torch.cat(batches)  # a copy, taken before the forward zeroes them
    (R,) = record_layer_inputs(model, [model.layer], [False], batches).factors
    assert torch.allclose(R.T @ R, X.T @ X, atol=1e-12)


def test_an_attention_s_blocks_buffer_small_batches_and_self_attention_joins_them_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Self-attention on 32 sequences of 2 tokens, 64 wide (65 with the bias' input): the input projection's three
    blocks hold one factor, joined by 4 QRs of 16 rows each (not 3 per sequence), and stacked three times."""
    torch.manual_seed(1)
    attention = nn.MultiheadAttention(64, 4, batch_first=True).eval()
    (projection,) = (m for m in LayerwiseMemory(attention).layers if isinstance(m, AttentionInProjection))
    batches = [torch.randn(1, 2, 64) for _ in range(32)]
    qr, calls = torch.linalg.qr, []
    monkeypatch.setattr(torch.linalg, "qr", lambda *a, **k: calls.append(a[0].shape[0]) or qr(*a, **k))
    (R,) = record_layer_inputs(
        attention, [projection], [True], batches, forward=lambda m, x: m(x, x, x, need_weights=False)
    ).factors
    assert calls == [16, 32, 48, 64]
    assert R.shape == (3, 64, 65) and torch.equal(R[0], R[1]) and torch.equal(R[0], R[2])
    X = torch.cat([torch.cat([x[0], torch.ones(2, 1)], dim=1) for x in batches])
    torch.testing.assert_close(R[0].T @ R[0], X.T @ X, rtol=0, atol=1e-10)
