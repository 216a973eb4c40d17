"""Accepting or rejecting a step on a list of parameters (eq:armijo) and the step certificate.

Three outcomes, each reported: a non-finite loss or gradient rejects the step before anything is touched
(a :class:`NonFiniteStepWarning` is raised, parameters and optimizer state stay bit-identical); an Armijo
search on Phi accepts a fraction ``t`` of the proposed step ``d`` or restores the parameters exactly; and
the :class:`Certificate` records what happened, as plain numbers for a log. Trial points are evaluated with the
user's closure under ``torch.no_grad()`` (the closure convention: :mod:`kaplinskiy.optim`).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields

import torch
from torch import Tensor

from .._kernels.gradient_check import GradientCheck, gradient_verdict
from .._tensor_lists import assign_
from ..functional.armijo import ArmijoResult, armijo_backtrack

__all__ = [
    "Certificate",
    "NonFiniteStepWarning",
    "armijo_on_params",
    "evaluate_closure",
    "skip_for_verdict",
    "skip_step",
]


class NonFiniteStepWarning(RuntimeWarning):
    """A step was rejected because the loss or a gradient was NaN or infinite."""


@dataclass(frozen=True)
class Certificate:
    """The evidence for one optimizer step: its Armijo search (eq:armijo) and orthogonality (eq:orthogonal).

    ``eta`` is the accepted learning rate of the first parameter group (``t * lr``, 0 when rejected),
    ``t`` the accepted fraction of the proposed step, ``slope`` is ``grad Phi . d`` for the proposed
    step ``d``, ``forward_passes`` counts closure evaluations, ``memory_residual`` is ``||Q^T d||``
    against the projection memory and ``old_task_slope`` is
    ``grad L_A . d`` when an old-task closure was given. ``None`` marks what a step did not measure
    (a step taken without a line search has no ``phi_after`` or ``slope``).
    """

    step: int
    accepted: bool
    eta: float
    t: float
    phi_before: float | None
    phi_after: float | None
    slope: float | None
    n_trials: int
    forward_passes: int
    step_norm: float | None
    memory_residual: float | None = None
    old_task_slope: float | None = None

    @classmethod
    def from_search(
        cls, step: int, search: ArmijoResult, lr: float, forward_passes: int, **extra: float | None
    ) -> Certificate:
        """Build from an :class:`ArmijoResult` whose ``eta`` is the accepted fraction ``t``."""
        return cls(
            step=step,
            accepted=search.accepted,
            eta=search.eta * lr,
            t=search.eta,
            phi_before=search.phi_before,
            phi_after=search.phi_after,
            slope=search.slope,
            n_trials=search.n_trials,
            forward_passes=forward_passes,
            **extra,
        )

    def as_dict(self) -> dict[str, float | int | bool | None]:
        """Plain Python values, for a JSON record or ``state_dict`` (no deep copy: the fields are scalars)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


def skip_step(
    loss: Tensor | float | None,
    grads: Sequence[Tensor],
    who: str,
    *,
    skip_zero: bool = True,
    check: GradientCheck | None = None,
) -> bool:
    """Whether to skip the step before anything is touched, from one pass over the gradients.

    A NaN or infinite ``loss`` or gradient skips it with a :class:`NonFiniteStepWarning`; with ``skip_zero``
    an all-zero gradient skips it silently (nothing to learn, so parameters and state stay as they are).
    ``check``: an optimizer's :class:`~kaplinskiy._kernels.gradient_check.GradientCheck` (one grouped launch on CUDA).
    """
    verdict = check(None, grads) if check is not None else gradient_verdict(None, grads)
    return skip_for_verdict(loss, verdict, who, skip_zero=skip_zero, stacklevel=4)


def skip_for_verdict(
    loss: Tensor | float | None, verdict: Tensor, who: str, *, skip_zero: bool = True, stacklevel: int = 3
) -> bool:
    """:func:`skip_step`'s decision from the gradients' verdict ``[non-finite, all zero]`` issued earlier (its
    one host synchronisation is here: the host can prepare the step while the device reduces)."""
    bad, zero = verdict.tolist()
    bad_loss = loss is not None and not math.isfinite(float(loss))
    if bad_loss or bad:
        what = "loss" if bad_loss else "gradient"
        warnings.warn(
            f"{who}: non-finite {what}; step rejected, parameters and state unchanged",
            NonFiniteStepWarning,
            stacklevel=stacklevel,
        )
        return True
    return skip_zero and bool(zero)


def old_task_gradient(params: Sequence[Tensor], old_task_closure: Callable[[], Tensor | float]) -> list[Tensor]:
    """``grad L_A`` at the current parameters, from a closure that calls ``backward()`` on the old-task loss.

    The parameters' own ``.grad`` (the new task's) is put back afterwards, so the caller's step is unchanged;
    a parameter the old loss does not reach gets a zero gradient. One forward and backward pass.
    """
    saved = [p.grad for p in params]
    for p in params:
        p.grad = None
    try:
        with torch.enable_grad():
            old_task_closure()
        return [torch.zeros_like(p) if p.grad is None else p.grad for p in params]
    finally:
        for p, g in zip(params, saved, strict=True):
            p.grad = g


def evaluate_closure(closure: Callable[[], Tensor | float]) -> float:
    """Phi at the current parameters, forward only (the closure runs under ``torch.no_grad()``)."""
    try:
        with torch.no_grad():
            return float(closure())
    except RuntimeError as err:
        if "does not require grad" in str(err):
            raise RuntimeError(
                "The closure called backward() during a line-search trial; guard it with "
                "`if torch.is_grad_enabled(): loss.backward()` (see kaplinskiy.optim)"
            ) from err
        raise


def armijo_on_params(
    params: Sequence[Tensor],
    origin: Sequence[Tensor],
    direction: Sequence[Tensor],
    closure: Callable[[], Tensor | float],
    phi0: float,
    slope: float,
    *,
    c: float,
    shrink: float,
    max_trials: int,
) -> ArmijoResult:
    """Armijo's test by backtracking on ``w = origin + t * direction``, ``t = 1, shrink, ...`` (eq:armijo).

    ``slope`` is ``grad Phi(origin) . direction``. On return the parameters hold the accepted point,
    or exactly ``origin`` when the search failed (or was not started because ``slope >= 0``), or raised (a
    non-finite ``phi0``, a closure that fails).
    """

    def phi_at(t: float) -> float:
        assign_(params, origin, t, direction)
        return evaluate_closure(closure)

    try:
        result = armijo_backtrack(phi_at, phi0, slope, 1.0, c=c, shrink=shrink, max_trials=max_trials)
    except BaseException:
        assign_(params, origin, 0.0, direction)
        raise
    assign_(params, origin, result.eta, direction)
    return result
