"""The statistics the aggregation steps compute over seeds: spreads, paired differences and their Student-t
intervals, and ranks by a score. Number and table scripts format what these wrote; they compute none of it."""

import math
import statistics
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import numpy as np
from scipy import stats

T = TypeVar("T")


def mean_std(values: Sequence[float]) -> dict[str, float]:
    """Mean and sample standard deviation (0 for one value), as Python's ``statistics`` computes them."""
    return {"mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0}


def spread(values: Sequence[float]) -> dict[str, Any]:
    """Mean, sample standard deviation (nan for one value), and the values, as NumPy computes them."""
    arr = np.asarray(values, dtype=float)
    sd = float(arr.std(ddof=1)) if len(arr) > 1 else math.nan
    return {"mean": float(arr.mean()), "sd": sd, "values": [float(v) for v in arr]}


def paired_differences(after: Sequence[float], before: Sequence[float]) -> list[float]:
    """Seed by seed, ``after - before`` (both over the same seeds, in the same order)."""
    return [a - b for a, b in zip(after, before, strict=True)]


def paired_interval(differences: Sequence[float], level: float = 0.95) -> tuple[float, float, float]:
    """Mean of paired per-seed differences and its Student-t interval; (mean, nan, nan) below two seeds."""
    n = len(differences)
    mean = sum(differences) / n
    if n < 2:
        return mean, math.nan, math.nan
    half = stats.t.ppf(0.5 + level / 2, n - 1) * stats.tstd(differences) / math.sqrt(n)
    return mean, mean - half, mean + half


def separated(differences: Sequence[float], level: float = 0.95) -> bool:
    """Whether the paired ``level`` interval of ``differences`` lies above zero (a nan bound, one seed, does not)."""
    return bool(differences) and paired_interval(differences, level)[1] > 0


def ordered_by(items: Sequence[T], score: Callable[[T], float]) -> list[T]:
    """``items`` from the highest ``score`` down; equal scores keep their order."""
    return sorted(items, key=lambda item: -score(item))


def rank_among(value: float, values: Sequence[float]) -> int:
    """1 + how many of ``values`` exceed ``value`` (equal values share a rank)."""
    return 1 + sum(v > value for v in values)
