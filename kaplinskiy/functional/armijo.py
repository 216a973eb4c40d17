"""Armijo acceptance on the potential (eq:armijo): a backtracking line search that reports what it did."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass

__all__ = ["ArmijoResult", "armijo_backtrack", "armijo_condition", "check_armijo_args"]


@dataclass(frozen=True)
class ArmijoResult:
    """What one backtracking search did.

    ``eta`` is the accepted step (0.0 when nothing was accepted); ``phi_after`` is Phi at the accepted
    point (equal to ``phi_before`` when nothing was accepted); ``slope`` is ``grad Phi . d``;
    ``n_trials`` counts the evaluations of Phi; ``accepted`` says whether eq:armijo held at some trial.
    """

    eta: float
    phi_before: float
    phi_after: float
    slope: float
    n_trials: int
    accepted: bool

    def as_dict(self) -> dict[str, float | int | bool]:
        """The result as plain Python values, for a JSON record."""
        return asdict(self)


def armijo_condition(phi_new: float, phi0: float, eta: float, slope: float, c: float) -> bool:
    """Armijo's test (eq:armijo): ``Phi(w + eta d) <= Phi(w) + c eta grad Phi . d``.

    A non-finite ``phi_new`` never satisfies it: an overflow is a rejected trial, not a step.
    """
    return math.isfinite(phi_new) and phi_new <= phi0 + c * eta * slope


def check_armijo_args(c: float, shrink: float, max_trials: int) -> None:
    """Raise ``ValueError`` naming the first bad Armijo setting: 0 < c < 1, 0 < shrink < 1, max_trials >= 1."""
    if not 0.0 < c < 1.0:
        raise ValueError(f"Invalid c: {c}")
    if not 0.0 < shrink < 1.0:
        raise ValueError(f"Invalid shrink: {shrink}")
    if max_trials < 1:
        raise ValueError(f"Invalid max_trials: {max_trials}")


def armijo_backtrack(
    phi_at: Callable[[float], float],
    phi0: float,
    slope: float,
    eta0: float,
    *,
    c: float = 1e-4,
    shrink: float = 0.5,
    max_trials: int = 30,
) -> ArmijoResult:
    """Backtrack ``eta = eta0, shrink*eta0, ...`` until eq:armijo holds or ``max_trials`` are spent (eq:armijo).

    ``phi_at(eta)`` evaluates Phi(w + eta d); ``slope = grad Phi(w) . d`` must be negative (a descent
    direction, eq:projected_descent). A direction with ``slope >= 0`` (for instance ``d = 0`` after projection) is
    not searched: the result has ``accepted=False`` and ``n_trials=0``. Every accepted step therefore
    decreases Phi by at least ``c * eta * |slope| > 0``, after at most eq:armijo_trials trials for an
    L-smooth Phi, at a step no smaller than eq:eta_max allows.
    """
    if not eta0 > 0.0:
        raise ValueError(f"Invalid eta0: {eta0}")
    check_armijo_args(c, shrink, max_trials)
    if not math.isfinite(phi0):
        raise ValueError(f"Invalid phi0: {phi0} (the potential at the current point must be finite)")
    if not (math.isfinite(slope) and slope < 0.0):
        return ArmijoResult(0.0, phi0, phi0, slope, 0, False)
    eta = eta0
    for trial in range(1, max_trials + 1):
        phi_new = float(phi_at(eta))
        if armijo_condition(phi_new, phi0, eta, slope, c):
            return ArmijoResult(eta, phi0, phi_new, slope, trial, True)
        eta *= shrink
    return ArmijoResult(0.0, phi0, phi0, slope, max_trials, False)
