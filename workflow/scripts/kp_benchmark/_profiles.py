"""Data and performance profiles (More & Wild 2009; Dolan & More 2002) and robust medians, as pure functions.

A *problem* is one (function, dimension, start); ``cost`` is the cost at which an arm first met the
convergence test ``best f - f* <= tol`` on it (``None``: not within the budget).
  * data profile: ``d_s(kappa)`` = fraction of problems that arm s solved within ``kappa (n + 1)``
    evaluations, i.e. within kappa simplex gradients;
  * performance profile: ``rho_s(tau)`` = fraction of problems on which arm s's cost is within a
    factor tau of the cheapest arm's cost on that problem (problems no arm solved are left out of
    none: they count as unsolved for every arm).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence


def median_cost(costs: Sequence[float | None]) -> float:
    """The median over all starts with failures as +inf (so it is finite only if most starts succeed)."""
    if not costs:
        raise ValueError("Invalid costs: empty")
    return statistics.median([math.inf if c is None else c for c in costs])


def data_profile(costs: Sequence[float | None], dims: Sequence[int], kappas: Sequence[float]) -> list[float]:
    """``d(kappa)`` for each kappa: the fraction of problems solved within ``kappa (n_p + 1)`` evaluations."""
    if len(costs) != len(dims):
        raise ValueError(f"Invalid dims: {len(dims)} for {len(costs)} problems")
    if not costs:
        return [0.0 for _ in kappas]
    units = [math.inf if c is None else c / (n + 1) for c, n in zip(costs, dims, strict=True)]
    return [sum(u <= k for u in units) / len(units) for k in kappas]


def performance_profile(
    costs_by_arm: dict[str, Sequence[float | None]], taus: Sequence[float]
) -> dict[str, list[float]]:
    """``rho_s(tau)`` for each arm over the problems (all arms' lists index the same problems)."""
    lengths = {len(v) for v in costs_by_arm.values()}
    if len(lengths) > 1:
        raise ValueError(f"Invalid costs_by_arm: problem counts differ {sorted(lengths)}")
    n_problems = lengths.pop() if lengths else 0
    best = [min((c[p] for c in costs_by_arm.values() if c[p] is not None), default=None) for p in range(n_problems)]
    out = {}
    for arm, costs in costs_by_arm.items():
        ratios = [math.inf if c is None or b is None else c / max(b, 1e-300) for c, b in zip(costs, best, strict=True)]
        out[arm] = [sum(r <= t for r in ratios) / max(n_problems, 1) for t in taus]
    return out


def shared_problems(problems: dict[str, list[dict]], arms: Sequence[str]) -> dict[str, list[dict]]:
    """Each arm's records of the problems that every arm in ``arms`` ran, in one (function, dim, start) order.

    ``problems`` maps an arm to its list of problem records (with keys function, dim, start), as in the
    benchmark summary; arms with no records are dropped from the result.
    """
    tables = {a: {(p["function"], p["dim"], p["start"]): p for p in problems[a]} for a in arms if problems.get(a)}
    keys = sorted(set.intersection(*(set(t) for t in tables.values()))) if tables else []
    return {a: [t[k] for k in keys] for a, t in tables.items()}
