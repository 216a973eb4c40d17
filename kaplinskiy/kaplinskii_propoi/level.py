"""The level c, the perspective set and the stopping statistic of the Kaplinskii-Propoi methods.

The level solves ``E[Phi(f(U) - c)] = 0`` (1993, eq. 7): ``Phi(t) = t`` gives the mean (eq. 30),
``Phi = sign`` the median, and the "record" rule moves c down to each new record. A sample with
``f(u_i) <= c`` is *perspective* (the set Omega_P(c) = {f <= c}, eq. 18; L_k of eq. 31).
Every function ignores non-finite values (an overflow is information about nothing).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

__all__ = [
    "LEVELS",
    "dispersion",
    "mean_level",
    "median_level",
    "perspective_centroid",
    "perspective_set",
    "record_level",
]


def _finite(fu: Tensor) -> Tensor:
    finite = fu[torch.isfinite(fu)]
    if finite.numel() == 0:
        raise ValueError(f"Invalid fu: no finite value among {fu.numel()} samples")
    return finite


def mean_level(fu: Tensor, previous: float | None = None) -> float:
    """``c_k = (1/K) sum_i f(u_k^i)`` (1993, eq. 30): the level of ``Phi(t) = t`` in eq. 7."""
    return float(_finite(fu).mean())


def median_level(fu: Tensor, previous: float | None = None) -> float:
    """The median of the f values: the level of ``Phi = sign`` in eq. 7 (1993), robust to outliers."""
    return float(_finite(fu).median())


def record_level(fu: Tensor, previous: float | None = None) -> float:
    """``c_{k+1} = c_k - chi[f(u_k) - c_k]`` (1993, after eq. 7), read as: c drops to each new record.

    With a batch the new level is ``min(c_k, min_i f(u_k^i))``; the first call (``previous=None``)
    starts from the batch minimum. The printed formula is ambiguous in the scan (sec:kp_benchmark);
    this is its stated intent.
    """
    best = float(_finite(fu).min())
    return best if previous is None or not math.isfinite(previous) else min(previous, best)


LEVELS: dict[str, Callable[[Tensor, float | None], float]] = {
    "mean": mean_level,
    "median": median_level,
    "record": record_level,
}
"""The level rules by name; each takes the batch ``fu`` and the previous level (or ``None``)."""


def perspective_set(fu: Tensor, c: float) -> Tensor:
    """The mask of perspective samples ``L_k = {i : f(u_k^i) <= c_k}`` (1993, eq. 31; Omega_P of eq. 18)."""
    return torch.isfinite(fu) & (fu <= c)


def perspective_centroid(u: Tensor, fu: Tensor, c: float) -> Tensor:
    """``m_k = mean of u_k^i over L_k`` (1993, eq. 31); the best sample when L_k is empty (record level)."""
    mask = perspective_set(fu, c)
    count = int(mask.sum())
    if count == 0:
        return u[int(torch.argmin(torch.where(torch.isfinite(fu), fu, math.inf)))].clone()
    return (mask.unsqueeze(-1).to(u.dtype) * u).sum(0) / count


def dispersion(fu: Tensor, c: float) -> float:
    """``D_k = (1/K) sum_i (f(u_k^i) - c_k)^2`` (1993, stopping rule after eq. 32), over the finite values.

    D_k estimates the derivative of F along the improving direction; the methods stop when
    ``sqrt(D_k)`` falls below their tolerance.
    """
    finite = _finite(fu)
    return float(((finite - c) ** 2).mean())
