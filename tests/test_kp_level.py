"""Levels (1993, eqs. 7, 30), the perspective set (eq. 31) and the stopping statistic D_k."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given
from strategies_kp import SampleSet, sample_sets

from kaplinskiy.kaplinskii_propoi.level import (
    LEVELS,
    dispersion,
    mean_level,
    median_level,
    perspective_centroid,
    perspective_set,
    record_level,
)


def test_levels_on_a_known_batch() -> None:
    fu = torch.tensor([3.0, 1.0, 2.0, 10.0])
    assert mean_level(fu) == 4.0
    assert median_level(fu) == 2.0  # torch's lower median
    assert record_level(fu) == 1.0
    assert record_level(fu, 0.5) == 0.5
    assert record_level(fu, 1.5) == 1.0


@given(sample_sets(allow_nonfinite=True))
def test_levels_ignore_nonfinite_values(s: SampleSet) -> None:
    finite = s.fu[torch.isfinite(s.fu)]
    for name, level in LEVELS.items():
        c = level(s.fu, None)
        assert math.isfinite(c), name
        assert float(finite.min()) <= c <= float(finite.max()), name
    assert mean_level(s.fu) == pytest.approx(float(finite.mean()))


def test_level_of_only_nonfinite_values_is_an_error() -> None:
    with pytest.raises(ValueError, match="Invalid fu"):
        mean_level(torch.tensor([math.nan, math.inf]))


@given(sample_sets(allow_nonfinite=True))
def test_perspective_set_and_centroid(s: SampleSet) -> None:
    """L_k = {f <= c}: every finite value at or below c, nothing non-finite; the centroid lies in their hull."""
    mask = perspective_set(s.fu, s.c)
    assert torch.equal(mask, torch.isfinite(s.fu) & (s.fu <= s.c))
    centre = perspective_centroid(s.u, s.fu, s.c)
    chosen = s.u[mask] if bool(mask.any()) else s.u[torch.isfinite(s.fu)]
    assert bool((centre >= chosen.min(0).values - 1e-9).all()) and bool((centre <= chosen.max(0).values + 1e-9).all())


def test_perspective_centroid_falls_back_to_the_best_sample() -> None:
    u = torch.tensor([[0.0, 0.0], [1.0, 1.0], [2.0, 2.0]])
    fu = torch.tensor([5.0, 3.0, math.nan])
    assert torch.equal(perspective_centroid(u, fu, 1.0), u[1])


@given(sample_sets(allow_nonfinite=True))
def test_dispersion_is_the_mean_square_deviation(s: SampleSet) -> None:
    finite = s.fu[torch.isfinite(s.fu)]
    d = dispersion(s.fu, s.c)
    assert d >= 0.0
    assert d == pytest.approx(float(((finite - s.c) ** 2).mean()), rel=1e-12)
    assert dispersion(torch.full((4,), 2.5), 2.5) == 0.0
