"""The one-pass gradient check behind every step's rejection of non-finite or zero gradients."""

from __future__ import annotations

import math

import torch
from hypothesis import given
from hypothesis import strategies as st

from kaplinskiy._tensor_lists import _peaks_by_aminmax, _peaks_fused, max_abs

_ENTRIES = st.one_of(
    st.floats(-1e30, 1e30, allow_nan=False), st.sampled_from([0.0, -0.0, math.inf, -math.inf, math.nan])
)


@given(st.lists(st.tuples(st.lists(_ENTRIES, max_size=5), st.sampled_from([torch.float32, torch.float64])), max_size=5))
def test_max_abs_is_the_largest_magnitude_with_nan_propagated(spec) -> None:
    tensors = [torch.tensor(values, dtype=dtype) for values, dtype in spec]
    peaks = max_abs(tensors)
    expected = [max((abs(v) for v in values), key=lambda a: (math.isnan(a), a)) for values, _ in spec if values]
    assert peaks.dtype == torch.float32 and peaks.shape == (len(expected),)
    for got, want in zip(peaks.tolist(), expected, strict=True):
        assert (math.isnan(got) and math.isnan(want)) or got == torch.tensor(want, dtype=torch.float32).item()
    nonempty = [t for t in tensors if t.numel()]
    if nonempty:  # the CUDA path (fused) and the CPU path (aminmax) agree, NaN included
        fused, looped = torch.stack(_peaks_fused(nonempty)), torch.stack(_peaks_by_aminmax(nonempty))
        assert torch.equal(fused.isnan(), looped.isnan())
        assert torch.equal(fused.nan_to_num(0.0), looped.nan_to_num(0.0))
