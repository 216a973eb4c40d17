"""minpy's documented algorithms (sec:kp_benchmark): each defect flag does what the audit says."""

from __future__ import annotations

import pytest
import torch

from kaplinskiy.kaplinskii_propoi.minpy_nm import MinpyDefects, minimize_nm_nonlocal, minimize_nm_stochastic
from kaplinskiy.kaplinskii_propoi.minpy_potential import (
    PotentialDefects,
    minimize_potential_nonlocal,
    potential_force,
    softmax_weights,
)
from kaplinskiy.kaplinskii_propoi.objectives import ackley, sphere

NM = {"stochastic": minimize_nm_stochastic, "nonlocal": minimize_nm_nonlocal}
X0 = torch.tensor([2.0, -1.0], dtype=torch.float64)


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_softmax_weights_favour_low_values_and_sum_to_one() -> None:
    w = softmax_weights(torch.tensor([3.0, 0.0, 1.0]), 2.0)
    assert float(w.sum()) == pytest.approx(1.0) and int(w.argmax()) == 1 and bool((w > 0).all())


@pytest.mark.parametrize("kernel", ["inv_power", "inv_multiquadric", "gaussian"])
def test_documented_sign_is_repulsive_and_the_fix_attracts(kernel: str) -> None:
    """A particle at (1, 0) next to the best at (0, 0) is pushed to +x (the audit's finding (a)).

    Negated (the fix), it is pulled to -x.
    """
    u = torch.tensor([[0.0, 0.0], [1.0, 0.0]])
    w = softmax_weights(torch.tensor([0.0, 5.0]), 1.0)
    push = potential_force(u, w, 1.0, kernel, 2.0, repulsive=True)
    pull = potential_force(u, w, 1.0, kernel, 2.0, repulsive=False)
    assert float(push[1, 0]) > 0 > float(pull[1, 0])
    assert torch.allclose(push, -pull)


def test_population_of_one_has_no_force_and_costs_two_evaluations_per_epoch() -> None:
    """K = 1 (the demos): F = 0, and each epoch is one wasted re-evaluation plus one random draw around the best."""
    assert torch.equal(potential_force(X0.unsqueeze(0), torch.ones(1), 1.0, "inv_power", 2.0, True), torch.zeros(1, 2))
    r = minimize_potential_nonlocal(ackley, X0, generator=_gen(), max_epochs=50)
    assert r.n_evals == 1 + 2 * 50 and r.n_iters == 50


def test_fixing_both_potential_defects_uses_a_population() -> None:
    r = minimize_potential_nonlocal(
        sphere, X0, generator=_gen(), n_particles=20, max_epochs=10, defects=PotentialDefects(False, False)
    )
    assert r.n_evals == 20 + 10 * (20 + 4)
    assert r.f < float(sphere(X0))


def test_nm_stop_rule_at_zero_never_fires_when_min_f_is_not_zero() -> None:
    """With c stuck at 0 the rule is ||f||_2 < tol: on f = 5 it never fires; the specified rule stops at once."""

    def flat(x: torch.Tensor) -> torch.Tensor:
        return torch.full(x.shape[:-1], 5.0)

    for fn in NM.values():
        ok = fn(flat, X0, generator=_gen(), max_iters=20)
        bad = fn(flat, X0, generator=_gen(), max_iters=20, defects=MinpyDefects(stop_at_zero=True))
        assert ok.stop == "tolerance" and ok.n_iters == 0
        assert bad.stop == "max_iters" and bad.n_iters == 20


@pytest.mark.parametrize("name", sorted(NM))
def test_nm_fixed_seed_ignores_the_generator(name: str) -> None:
    runs = [
        NM[name](sphere, X0, generator=_gen(s), max_evals=300, defects=MinpyDefects(fixed_seed=True)) for s in (1, 2)
    ]
    assert runs[0].trace == runs[1].trace
    free = [NM[name](sphere, X0, generator=_gen(s), max_evals=300) for s in (1, 2)]
    assert free[0].trace != free[1].trace


@pytest.mark.parametrize("name", sorted(NM))
def test_nm_increasing_step_stalls_where_contraction_converges(name: str) -> None:
    """The "+0.1" adjustment can never shorten the step: the centre stalls far above the contracted run."""
    kw = {"generator": _gen(), "max_evals": 1500, "tol": 0.0, "max_iters": 10**5}
    good = NM[name](sphere, X0, **kw)
    bad = NM[name](sphere, X0, **kw, defects=MinpyDefects(increasing_step=True))
    assert good.f_m < 1e-6 < bad.f_m


def test_nm_stochastic_stale_values_stop_moving_the_vertices() -> None:
    """Stale values: no vertex re-evaluation (cost per iteration <= the trials) and no convergence."""
    kw = {"generator": _gen(), "max_evals": 1500, "tol": 0.0, "max_iters": 10**5}
    fresh = minimize_nm_stochastic(sphere, X0, **kw)
    stale = minimize_nm_stochastic(sphere, X0, **kw, defects=MinpyDefects(stale_values=True))
    K = 30
    assert stale.n_evals - (K + 1) <= 10 * stale.n_iters
    assert fresh.n_evals - (K + 1) >= K * fresh.n_iters
    assert fresh.f < 1e-6 < stale.f


def test_nm_drop_worst_changes_the_step() -> None:
    kw = {"generator": _gen(), "max_evals": 200}
    a = minimize_nm_nonlocal(sphere, X0, **kw)
    b = minimize_nm_nonlocal(sphere, X0, **kw, defects=MinpyDefects(drop_worst=True))
    assert a.trace != b.trace


@pytest.mark.parametrize("name", sorted(NM))
def test_nm_respects_bounds_and_budget(name: str) -> None:
    from kaplinskiy.kaplinskii_propoi.counting import CountedObjective

    lo, hi = torch.tensor([1.5, -1.5]), torch.tensor([2.5, -0.5])
    counter = CountedObjective(sphere, lower=lo, upper=hi)
    r = NM[name](counter, X0, generator=_gen(), max_evals=400, lower=lo, upper=hi)
    assert r.n_evals <= 400 and bool(((r.m >= lo) & (r.m <= hi)).all())


@pytest.mark.parametrize("name", sorted(NM))
def test_the_evaluation_budget_is_kept(name: str) -> None:
    """Whatever ``max_evals`` (above the first K + 1 evaluations), no run makes more: the moving-vertex variant
    stops its step trials early enough to evaluate its vertices again."""
    for budget in range(40, 260, 13):
        r = NM[name](ackley, X0, generator=_gen(), max_evals=budget, tol=0.0)
        assert r.n_evals <= budget
