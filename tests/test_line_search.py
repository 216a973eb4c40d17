"""Armijo acceptance (eq. 13): the inequality holds at every accepted step and failures are reported."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kaplinskiy import armijo_backtrack, armijo_condition

finite = st.floats(-1e6, 1e6, allow_nan=False)


@given(
    a=st.floats(1e-3, 1e3),
    slope=st.floats(-1e3, -1e-6),
    eta0=st.floats(1e-4, 1e2),
    c=st.floats(1e-4, 0.9),
    shrink=st.floats(0.1, 0.9),
    max_trials=st.integers(1, 60),
)
def test_accepted_step_satisfies_eq13_on_a_parabola(a, slope, eta0, c, shrink, max_trials) -> None:
    """phi(eta) = slope*eta + a*eta^2/2: accepted eta obeys eq. (13); trials never exceed the cap."""
    res = armijo_backtrack(
        lambda t: slope * t + 0.5 * a * t * t, 0.0, slope, eta0, c=c, shrink=shrink, max_trials=max_trials
    )
    assert 1 <= res.n_trials <= max_trials
    if res.accepted:
        assert res.phi_after <= res.phi_before + c * res.eta * slope
        assert res.phi_after < res.phi_before
        assert res.eta <= eta0
    else:
        assert res.eta == 0.0 and res.phi_after == res.phi_before and res.n_trials == max_trials


@given(eta0=st.floats(1e-3, 10.0), c=st.floats(1e-4, 0.5), shrink=st.floats(0.1, 0.9))
def test_backtracking_terminates_for_a_smooth_function(eta0, c, shrink) -> None:
    """For an L-smooth phi any eta <= 2(1-c)/L is accepted, so enough trials always succeed."""
    L, slope = 4.0, -2.0
    res = armijo_backtrack(lambda t: slope * t + 0.5 * L * t * t, 0.0, slope, eta0, c=c, shrink=shrink, max_trials=200)
    assert res.accepted
    assert res.eta >= min(eta0, shrink * 2 * (1 - c) / L) * (1 - 1e-12)


@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_non_finite_potential_is_a_rejected_trial_never_a_step(bad: float) -> None:
    calls: list[float] = []

    def phi_at(t: float) -> float:
        calls.append(t)
        return bad if t > 0.1 else -t  # finite (and decreasing) only for small steps

    res = armijo_backtrack(phi_at, 0.0, -1.0, 1.0, shrink=0.5, max_trials=10)
    assert res.accepted and res.eta <= 0.1 and math.isfinite(res.phi_after)
    assert len(calls) == res.n_trials == 5
    always_bad = armijo_backtrack(lambda t: bad, 0.0, -1.0, 1.0, max_trials=7)
    assert not always_bad.accepted and always_bad.eta == 0.0 and always_bad.n_trials == 7
    assert not armijo_condition(bad, 0.0, 1.0, -1.0, 1e-4)


@given(slope=st.one_of(st.floats(0.0, 1e3), st.just(math.nan)))
def test_ascent_or_flat_direction_is_not_searched(slope) -> None:
    res = armijo_backtrack(lambda t: pytest.fail("phi must not be evaluated"), 1.0, slope, 1.0)
    assert not res.accepted and res.n_trials == 0 and res.eta == 0.0 and res.phi_after == 1.0


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"eta0": -1.0}, "eta0"),
        ({"eta0": 0.0}, "eta0"),
        ({"c": 1.0}, "c"),
        ({"shrink": 1.5}, "shrink"),
        ({"max_trials": 0}, "max_trials"),
        ({"phi0": math.nan}, "phi0"),
    ],
)
def test_bad_arguments_name_the_argument(kwargs, name) -> None:
    args = {"phi0": 0.0, "slope": -1.0, "eta0": 1.0} | kwargs
    with pytest.raises(ValueError, match=f"Invalid {name}"):
        armijo_backtrack(lambda t: 0.0, **args)
