"""One step of potential descent on a flat parameter vector (sec:method):

    d = -P_perp(G_A) grad Phi(w)              (eq:projected, with Phi of eq:potential)
    w+ = w + eta d,  eta by Armijo on Phi     (eq:armijo)

This is the functional core that the torch optimizers wrap; it is also what the walking-skeleton
experiment calls directly.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from .armijo import ArmijoResult, armijo_backtrack
from .projection import projected_direction

__all__ = ["StepCertificate", "potential_descent_step"]


@dataclass(frozen=True)
class StepCertificate:
    """The evidence for one step: the Armijo search and the first-order forgetting ``grad L_A . d``.

    ``old_task_slope`` is ``grad L_A(w) . d`` (eq:orthogonal asks for 0), or ``None`` when no old-task
    gradient was given. ``step_norm`` is ``||w+ - w||``.
    """

    search: ArmijoResult
    old_task_slope: float | None
    step_norm: float

    def as_dict(self) -> dict[str, float | int | bool | None]:
        """Flat plain values, for a JSON record."""
        return {**self.search.as_dict(), "old_task_slope": self.old_task_slope, "step_norm": self.step_norm}


def potential_descent_step(
    w: Tensor,
    phi: Callable[[Tensor], Tensor],
    basis: Tensor,
    *,
    eta0: float,
    armijo: bool = True,
    grad_old: Tensor | None = None,
    c: float = 1e-4,
    shrink: float = 0.5,
    max_trials: int = 30,
) -> tuple[Tensor, StepCertificate]:
    """Take one projected (and, if ``armijo``, Armijo-accepted) step on Phi from the flat vector ``w`` (eq:projected).

    ``phi(w)`` returns the scalar potential and must be differentiable in ``w``; ``basis`` is an
    orthonormal ``(n, r)`` basis of span(G_A) (``r = 0`` means no projection). Without ``armijo`` the
    step is the fixed ``eta0`` (plain projected gradient descent) and is always taken, so Phi may rise.
    A rejected search returns ``w`` unchanged (a new tensor equal to it).
    """
    if w.ndim != 1:
        raise ValueError(f"Invalid w: expected a flat 1-D parameter vector, got shape {tuple(w.shape)}")
    w0 = w.detach()
    with torch.enable_grad():
        wg = w0.clone().requires_grad_(True)
        phi0_t = phi(wg)
        (grad,) = torch.autograd.grad(phi0_t, wg)
    phi0 = float(phi0_t.detach())
    d = projected_direction(grad, basis)
    slope = float(grad @ d)
    with torch.no_grad():
        if armijo:
            search = armijo_backtrack(
                lambda eta: float(phi(w0 + eta * d)), phi0, slope, eta0, c=c, shrink=shrink, max_trials=max_trials
            )
        else:
            phi_new = float(phi(w0 + eta0 * d))
            search = ArmijoResult(eta0, phi0, phi_new, slope, 1, True)
        w_new = w0 + search.eta * d
    old_slope = None if grad_old is None else float(grad_old @ d)
    return w_new, StepCertificate(search, old_slope, float(search.eta * d.norm()))
