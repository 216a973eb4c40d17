"""Properties of the sampled KP methods: monotone accepted steps, non-finite values rejected, bounds,
budget and determinism. One test body covers every method through a table of callables."""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from strategies_kp import Quadratic, beam_settings, quadratics

from kaplinskiy.kaplinskii_propoi.beam import minimize_beam, minimize_one_sample
from kaplinskiy.kaplinskii_propoi.counting import CountedObjective, OptimizeResult
from kaplinskiy.kaplinskii_propoi.descent import DescentOptions, contract_step
from kaplinskiy.kaplinskii_propoi.gradient_hybrid import minimize_gradient_hybrid
from kaplinskiy.kaplinskii_propoi.second_order import minimize_second_order

Runner = Callable[..., OptimizeResult]
METHODS: dict[str, Runner] = {
    "beam": minimize_beam,
    "one_sample": minimize_one_sample,
    "second_order_memory": minimize_second_order,
    "second_order_sample": lambda *a, **k: minimize_second_order(*a, coefficients="sample", **k),
    "hybrid": minimize_gradient_hybrid,
    "hybrid_zeroth": lambda *a, **k: minimize_gradient_hybrid(*a, mix=0.0, **k),
}
BUDGET = 120


def _run(name: str, f: Callable, x0: torch.Tensor, seed: int, extra: dict | None = None, **kw) -> tuple:
    path: list[tuple[torch.Tensor, float]] = []
    r = METHODS[name](
        f,
        x0,
        generator=torch.Generator().manual_seed(seed),
        options=DescentOptions(max_evals=BUDGET, sigma0=0.5),
        callback=lambda m, fm: path.append((m.clone(), fm)),
        **(extra or {}),
        **kw,
    )
    return r, path


def _beam_extra(settings_: dict, n: int) -> dict:
    extra = dict(settings_)
    extra["lam"] = extra.pop("lam_frac") * n
    return extra


@settings(max_examples=25)
@given(st.sampled_from(sorted(METHODS)), quadratics(max_n=4), st.integers(0, 2**31 - 1), beam_settings())
def test_accepted_steps_never_increase_f(name: str, q: Quadratic, seed: int, opts: dict) -> None:
    """Monotone acceptance: f(m_k) never rises, the result's f_m is f at its m, the budget holds."""
    n = q.b.shape[0]
    x0 = q.minimiser() + 3.0
    extra = _beam_extra(opts, n) if name == "beam" else None
    counter = CountedObjective(q)
    r, path = _run(name, counter, x0, seed, extra)
    values = [float(q(x0))] + [fm for _, fm in path]
    assert all(b <= a for a, b in itertools.pairwise(values))
    assert r.f_m == pytest.approx(float(q(r.m)), rel=1e-12, abs=1e-12)
    assert r.f <= r.f_m and r.n_evals == counter.n_evals <= BUDGET


def _holey(q: Quadratic, x0: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
    """q, except nan on a slab through the minimiser and -inf/+inf on two others: the hole is where q is lowest."""

    def f(x: torch.Tensor) -> torch.Tensor:
        v = q(x)
        t = (x - x0).sum(-1)
        v = torch.where((t > -2.0) & (t < -1.0), torch.nan, v)
        v = torch.where(t < -4.0, -torch.inf, v)
        return torch.where((t > 0.5) & (t < 0.7), torch.inf, v)

    return f


@settings(max_examples=25)
@given(st.sampled_from(sorted(METHODS)), quadratics(max_n=4), st.integers(0, 2**31 - 1))
def test_nonfinite_values_are_never_accepted(name: str, q: Quadratic, seed: int) -> None:
    n = q.b.shape[0]
    x0 = q.minimiser() + 3.0 / math.sqrt(n)
    f = _holey(q, x0)
    r, path = _run(name, f, x0, seed)
    assert all(math.isfinite(fm) and math.isfinite(float(f(m))) for m, fm in path)
    assert math.isfinite(r.f) and math.isfinite(r.f_m)


@settings(max_examples=25)
@given(st.sampled_from(sorted(METHODS)), quadratics(max_n=4), st.integers(0, 2**31 - 1))
def test_bounds_are_respected(name: str, q: Quadratic, seed: int) -> None:
    """The counter raises on any point outside the box; the minimiser lies outside it, so the methods push."""
    centre = q.minimiser() + 2.0
    lo, hi = centre - 1.0, centre + 1.0
    counter = CountedObjective(q, lower=lo, upper=hi)
    r, path = _run(name, counter, centre + 0.5, seed, lower=lo, upper=hi)
    assert all(bool(((m >= lo) & (m <= hi)).all()) for m, _ in path)
    assert bool(((r.x >= lo) & (r.x <= hi)).all())


@pytest.mark.parametrize("name", sorted(METHODS))
def test_deterministic_for_a_seed_and_global_rng_untouched(name: str) -> None:
    q = Quadratic(torch.diag(torch.tensor([1.0, 4.0, 9.0])), torch.tensor([1.0, 0.0, -1.0]), 0.0)
    x0 = torch.tensor([2.0, 2.0, 2.0])
    state = torch.get_rng_state()
    a, _ = _run(name, q, x0, 11)
    b, _ = _run(name, q, x0, 11)
    c, _ = _run(name, q, x0, 12)
    assert torch.equal(torch.get_rng_state(), state)
    assert a.trace == b.trace and torch.equal(a.m, b.m)
    assert a.trace != c.trace


def test_nonfinite_start_is_an_error() -> None:
    with pytest.raises(ValueError, match="Invalid x0"):
        minimize_beam(lambda x: torch.full(x.shape[:-1], math.nan), torch.zeros(2))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"level": "mode"}, "Invalid level"),
        ({"sampling": "sobol"}, "Invalid sampling"),
        ({"center": "best"}, "Invalid center"),
        ({"lam": 3.0}, "Invalid lam"),
        ({"n_samples": 0}, "Invalid n_samples"),
    ],
)
def test_beam_rejects_bad_options(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        minimize_beam(lambda x: (x * x).sum(-1), torch.zeros(2), **kwargs)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"sigma0": 0.0}, "Invalid sigma0"), ({"shrink": 1.0}, "Invalid shrink"), ({"max_evals": 0}, "Invalid max_evals")],
)
def test_descent_options_validate(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        DescentOptions(**kwargs)


def test_tolerance_stopping_rule_fires_on_a_flat_function() -> None:
    """D_k = 0 on a constant function: the rule on sqrt(D_k) stops at the first iteration."""
    r = minimize_beam(
        lambda x: torch.zeros(x.shape[:-1]),
        torch.zeros(3),
        generator=torch.Generator().manual_seed(0),
        options=DescentOptions(tol=1e-12),
    )
    assert r.stop == "tolerance" and r.n_iters == 1 and r.n_evals == 1 + 4


class _RawValues:
    """A counter stand-in that returns the objective's raw values (no mapping of nan/-inf to +inf)."""

    def __init__(self, values: list[float]) -> None:
        self.values, self.n_evals = values, 0

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        self.n_evals += 1
        return torch.tensor(self.values[self.n_evals - 1])


def test_contract_step_rejects_nonfinite_values_itself() -> None:
    """Even without the counter's mapping, nan and -inf are rejected trials; the first finite value below wins."""
    raw = _RawValues([math.nan, -math.inf, math.inf, 5.0, 0.5])
    trial = contract_step(raw, torch.zeros(1), torch.ones(1), 1.0, 1.0, shrink=0.5, max_trials=5)
    assert trial.accepted and trial.n_trials == 5 and trial.f == 0.5
    assert trial.x.tolist() == [1.0 * 0.5**4]
    none = contract_step(
        _RawValues([math.nan, -math.inf]), torch.zeros(1), torch.ones(1), 1.0, 1.0, shrink=0.5, max_trials=2
    )
    assert not none.accepted and torch.equal(none.x, torch.zeros(1))
