"""The arms of the KP benchmark: a registry from a method name to a runner with one signature.

``run(method, f, x0, *, seed, lower, upper, max_evals, f_target, sigma0, params) -> OptimizeResult``.
The library's methods (``kaplinskiy.kaplinskii_propoi``) are called directly; scipy's Nelder-Mead, CMA-ES (``cma``)
and torch's Adam and SGD are wrapped here so that every arm evaluates f through one
``CountedObjective`` and is charged the same way. Gradient arms are charged per ``value_and_grad``:
one evaluation and one gradient; ``cost()`` converts that to function-evaluation units.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import Tensor

from kaplinskiy.kaplinskii_propoi import (
    CountedObjective,
    DescentOptions,
    MinpyDefects,
    OptimizeResult,
    PotentialDefects,
    minimize_beam,
    minimize_gradient_hybrid,
    minimize_nm_nonlocal,
    minimize_nm_stochastic,
    minimize_one_sample,
    minimize_potential_nonlocal,
    minimize_second_order,
)

Runner = Callable[..., OptimizeResult]


class _Stop(Exception):
    """Raised inside an external optimiser's objective when the budget or the target is reached."""


def _descent(fn: Callable[..., OptimizeResult]) -> Runner:
    def run(f, x0, *, generator, lower, upper, max_evals, f_target, sigma0, params):
        p = dict(params)
        opts = DescentOptions(sigma0=sigma0, max_evals=max_evals, f_target=f_target, **p.pop("descent", {}))
        return fn(f, x0, generator=generator, lower=lower, upper=upper, options=opts, **p)

    return run


def _nm(fn: Callable[..., OptimizeResult]) -> Runner:
    def run(f, x0, *, generator, lower, upper, max_evals, f_target, sigma0, params):
        p = dict(params)
        defects = MinpyDefects(**p.pop("defects", {}))
        kw = {"tol": 0.0, "max_iters": 10**9} | p
        return fn(
            f, x0, generator=generator, lower=lower, upper=upper, max_evals=max_evals, f_target=f_target,
            defects=defects, **kw,
        )  # fmt: skip

    return run


def _potential(f, x0, *, generator, lower, upper, max_evals, f_target, sigma0, params):
    p = dict(params)
    defects = PotentialDefects(**p.pop("defects", {}))
    kw = {"max_epochs": 10**9} | p
    return minimize_potential_nonlocal(
        f, x0, generator=generator, lower=lower, upper=upper, max_evals=max_evals, f_target=f_target,
        defects=defects, **kw,
    )  # fmt: skip


def _torch_optim(opt_class: type[torch.optim.Optimizer]) -> Runner:
    """Adam or SGD with analytic gradients, projected onto the box after each step."""

    def run(f, x0, *, generator, lower, upper, max_evals, f_target, sigma0, params):
        x = x0.detach().clone().requires_grad_(True)
        opt = opt_class([x], **params)
        lo, hi = torch.full_like(x0, lower), torch.full_like(x0, upper)
        steps, f_x = 0, math.inf
        while f.n_evals < max_evals and not (f_target is not None and f.best_f <= f_target):
            fx, g = f.value_and_grad(x.detach())
            f_x = float(fx)
            if not math.isfinite(f_x):
                break
            x.grad = g
            opt.step()
            with torch.no_grad():
                x.copy_(torch.clamp(x, lo, hi))
            steps += 1
        stop = "f_target" if f_target is not None and f.best_f <= f_target else "max_evals"
        return OptimizeResult.from_counter(f, x.detach(), f_x, steps, steps, stop)

    return run


def _external(f: CountedObjective, max_evals: int, f_target: float | None) -> Callable[[np.ndarray], float]:
    """A numpy objective for scipy/cma that counts through ``f`` and stops the optimiser at the budget."""

    def fun(z: np.ndarray) -> float:
        if f.n_evals >= max_evals or (f_target is not None and f.best_f <= f_target):
            raise _Stop
        return float(f(torch.as_tensor(np.asarray(z, dtype=np.float64))))

    return fun


def _scipy_nm(f, x0, *, generator, lower, upper, max_evals, f_target, sigma0, params):
    from scipy.optimize import minimize

    fun = _external(f, max_evals, f_target)
    n = x0.shape[-1]
    bounds = [(lower, upper)] * n
    opts = {"maxfev": max_evals, "maxiter": 10**9, "xatol": 0.0, "fatol": 0.0} | dict(params)
    nit, stop = 0, "max_evals"
    try:
        res = minimize(fun, x0.numpy(), method="Nelder-Mead", bounds=bounds, options=opts)
        nit, stop = int(res.nit), "tolerance"
    except _Stop:
        stop = "f_target" if f_target is not None and f.best_f <= f_target else "max_evals"
    x = f.best_x if f.best_x is not None else x0
    return OptimizeResult.from_counter(f, x, f.best_f, nit, nit, stop)


def _cma_es(f, x0, *, generator, lower, upper, max_evals, f_target, sigma0, params):
    """CMA-ES through ask/tell; each population is evaluated as one batch (and charged per point)."""
    import cma

    seed = int(torch.randint(1, 2**31 - 1, (1,), generator=generator))
    opts = {"bounds": [lower, upper], "maxfevals": max_evals, "seed": seed, "verbose": -9} | dict(params)
    es = cma.CMAEvolutionStrategy(x0.numpy(), sigma0, opts)
    stop = "tolerance"
    while not es.stop():
        if f_target is not None and f.best_f <= f_target:
            stop = "f_target"
            break
        xs = es.ask()
        if f.n_evals + len(xs) > max_evals:
            stop = "max_evals"
            break
        values = f(torch.as_tensor(np.asarray(xs, dtype=np.float64)))
        es.tell(xs, values.tolist())
    x = f.best_x if f.best_x is not None else x0
    return OptimizeResult.from_counter(f, x, f.best_f, es.countiter, es.countiter, stop)


ARMS: dict[str, Runner] = {
    "kp_beam": _descent(minimize_beam),
    "kp_one_sample": _descent(minimize_one_sample),
    "kp_second_order": _descent(minimize_second_order),
    "kp_hybrid": _descent(minimize_gradient_hybrid),
    "minpy_nm_stochastic": _nm(minimize_nm_stochastic),
    "minpy_nm_nonlocal": _nm(minimize_nm_nonlocal),
    "minpy_potential": _potential,
    "adam": _torch_optim(torch.optim.Adam),
    "sgd": _torch_optim(torch.optim.SGD),
    "scipy_nm": _scipy_nm,
    "cma_es": _cma_es,
}
"""Method name (the ``method`` of an arm in the config) -> runner."""

GRADIENT_METHODS = frozenset({"kp_hybrid", "adam", "sgd"})
"""Methods that call ``value_and_grad`` (their evaluation budget is shrunk to pay for the gradients)."""


def cost(n_evals: int, n_grads: int, gradient_cost: float) -> float:
    """Function-evaluation units: each gradient costs ``gradient_cost`` evaluations on top of its value."""
    return n_evals + gradient_cost * n_grads


def run_arm(
    method: str,
    f: Callable[[Tensor], Tensor],
    x0: Tensor,
    *,
    seed: int,
    box: tuple[float, float],
    budget: float,
    gradient_cost: float,
    f_target: float | None,
    sigma0: float,
    params: dict[str, Any],
) -> tuple[OptimizeResult, list[tuple[float, float]]]:
    """Run one arm from ``x0`` within ``budget`` evaluation units; return the result and its cost trace.

    The trace is ``(cost, best f)`` at each improvement, cut at the budget, so a gradient arm that
    overshoots inside its last iteration is not credited for it.
    """
    if method not in ARMS:
        raise ValueError(f"Invalid method: {method}")
    lower, upper = box
    counter = CountedObjective(f, lower=torch.full_like(x0, lower), upper=torch.full_like(x0, upper))
    per_eval = 1.0 + (gradient_cost if method in GRADIENT_METHODS else 0.0)
    max_evals = max(2, int(budget // per_eval))
    result = ARMS[method](
        counter, x0, generator=torch.Generator().manual_seed(seed), lower=lower, upper=upper,
        max_evals=max_evals, f_target=f_target, sigma0=sigma0, params=params,
    )  # fmt: skip
    trace = [(cost(p.n_evals, p.n_grads, gradient_cost), p.best_f) for p in result.trace]
    return result, [(c, v) for c, v in trace if c <= budget]
