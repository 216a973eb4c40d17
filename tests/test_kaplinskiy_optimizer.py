"""The Kaplinskiy optimizer (sec. 5.4): matches the functional step, Phi monotone, eq. (12), torch.optim contract."""

from __future__ import annotations

import copy
import warnings

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from strategies import QuadraticProblem, quadratic_problems
from strategies_optim import EPS64, TaskPair, eq12_tolerance, full_memory, mlp, task_pairs

from kaplinskiy import (
    DenseMemory,
    Kaplinskiy,
    LayerwiseMemory,
    NonFiniteStepWarning,
    orthonormal_basis,
    potential_descent_step,
)


def _phi_closure(opt, w: torch.Tensor, phi):
    def closure():
        opt.zero_grad()
        value = phi(w)
        if torch.is_grad_enabled():
            value.backward()
        return value

    return closure


@settings(max_examples=60)
@given(quadratic_problems(), st.integers(0, 4), st.sampled_from([1e-2, 0.3, 3.0]), st.integers(0, 2**31 - 1))
def test_matches_the_functional_potential_descent_step(problem: QuadraticProblem, k: int, lr: float, seed: int) -> None:
    """Ten steps of the optimizer equal ten calls of ``potential_descent_step`` (the float64 reference), until the
    run has converged: once a trial's predicted change of Phi is within Phi's rounding (at least 100 times what the
    two computations of Phi disagree by), both searches decide on rounding, and the two round differently."""
    n = problem.w0.shape[0]
    gen = torch.Generator().manual_seed(seed)
    basis = orthonormal_basis(torch.randn(n, min(k, n - 1), generator=gen))
    w = problem.w0.clone().requires_grad_(True)
    mem = DenseMemory([w])
    mem.load_state_dict({"basis": basis, "n_tasks": 1, "n_dropped": 0})
    opt = Kaplinskiy([w], lr=lr, memory=mem, max_trials=30)
    ref = problem.w0.clone()
    for _ in range(10):
        opt.step(_phi_closure(opt, w, problem.phi))
        ref, cert = potential_descent_step(ref, problem.phi, basis, eta0=lr, max_trials=30)
        search = cert.search
        # Phi's rounding: the two computations of Phi at (nearly) the same point disagree by it, at least
        disagree = abs(opt.certificate["phi_before"] - search.phi_before)
        rounding = 1e3 * EPS64 * (1 + abs(search.phi_before)) + 100 * disagree
        if search.slope is not None and abs(search.eta * search.slope) < rounding:
            break  # the last trial's predicted change of Phi is within Phi's rounding: its verdict is rounding
        assert opt.certificate["accepted"] == cert.search.accepted
        assert opt.certificate["n_trials"] == cert.search.n_trials
        assert torch.allclose(w.detach(), ref, rtol=1e-10, atol=1e-10)


@settings(max_examples=30)
@given(quadratic_problems(), st.sampled_from([1e-3, 0.5, 50.0]))
def test_phi_never_increases_across_accepted_steps(problem: QuadraticProblem, lr: float) -> None:
    w = problem.w0.clone().requires_grad_(True)
    opt = Kaplinskiy([w], lr=lr, max_trials=10)
    closure = _phi_closure(opt, w, problem.phi)
    taken = 0
    for _ in range(15):
        before = float(problem.phi(w.detach()))
        w_before = w.detach().clone()
        opt.step(closure)
        cert = opt.certificate
        if cert is None or cert["step"] == taken:  # skipped: a zero gradient (converged to the last bit)
            assert not w.grad.any() and torch.equal(w.detach(), w_before)
            continue
        taken = cert["step"]
        after = float(problem.phi(w.detach()))
        assert cert["phi_before"] == before and cert["forward_passes"] == 1 + cert["n_trials"]
        if cert["accepted"]:
            assert after <= before + 1e-4 * cert["t"] * cert["slope"] and after == cert["phi_after"]
        else:
            assert torch.equal(w.detach(), w_before)


def _lm_closures(case: TaskPair, opt):
    def closure():
        opt.zero_grad()
        loss = case.loss_b()
        if torch.is_grad_enabled():
            loss.backward()
        return loss

    def old():
        loss = case.loss_a()
        loss.backward()
        return loss

    return closure, old


@settings(max_examples=40)
@given(task_pairs(), st.sampled_from(["dense", "layerwise"]))
def test_certificate_reports_eq12(case: TaskPair, kind: str) -> None:
    """With grad L_A in the memory's span, the certificate's grad L_A . d vanishes and the step was taken."""
    mem = full_memory(kind, case)
    opt = Kaplinskiy(case.model.parameters(), lr=0.5, memory=mem)
    ga_norm = sum(float(g.pow(2).sum()) for g in case.grad_a()) ** 0.5
    opt.step(*_lm_closures(case, opt))
    cert = opt.certificate
    n = sum(p.numel() for p in case.model.parameters())
    d_norm = cert["step_norm"] / cert["t"] if cert["t"] else 0.0
    assert abs(cert["old_task_slope"]) <= eq12_tolerance(n) * ga_norm * (d_norm + 0.5 * n**0.5)
    assert cert["forward_passes"] == 2 + cert["n_trials"]


def _small(lrs=(0.5, 0.1)):
    torch.manual_seed(0)
    case = TaskPair(
        mlp(3, 4, 3, True), torch.randn(5, 3), torch.randint(3, (5,)), torch.randn(6, 3), torch.randint(3, (6,))
    )
    groups = [
        {"params": case.model[0].parameters(), "lr": lrs[0]},
        {"params": case.model[2].parameters(), "lr": lrs[1]},
    ]
    return case, groups


def test_groups_with_different_lr_scale_their_blocks() -> None:
    case, groups = _small()
    opt = Kaplinskiy(groups, armijo=False)
    closure, _ = _lm_closures(case, opt)
    closure()
    expected = [
        p.detach() - lr * p.grad for lr, m in [(0.5, case.model[0]), (0.1, case.model[2])] for p in m.parameters()
    ]
    opt.step(closure)
    assert all(torch.allclose(a, b, rtol=0, atol=1e-15) for a, b in zip(expected, case.model.parameters(), strict=True))
    assert opt.certificate["eta"] == 0.5


def test_different_group_rates_under_a_memory_keep_a_descent_direction() -> None:
    """Memory (1, 1), gradient ~ (1, 0.1), rates 1e-3 and 1e-1: ``-P(Lambda g)`` is an ascent direction here;
    ``-P Lambda P g`` descends (and keeps G_A^T d = 0), so the step is accepted."""
    a, b = (torch.nn.Parameter(torch.zeros(1)) for _ in range(2))
    memory = DenseMemory([a, b])
    memory._backend = "torch"
    memory.add_directions(torch.tensor([[1.0], [1.0]]))
    opt = Kaplinskiy([{"params": [a], "lr": 1e-3}, {"params": [b], "lr": 1e-1}], memory=memory)
    closure = _phi_closure(opt, None, lambda _: a.sum() + 0.1 * b.sum() + 0.01 * (a**2 + b**2).sum())
    opt.step(closure)
    cert = opt.certificate
    assert cert["accepted"] and cert["slope"] < 0 and abs(float((a + b).detach())) < 1e-12


def test_lr_scheduler_moves_the_trial_step() -> None:
    case, groups = _small()
    opt = Kaplinskiy(groups)
    sched = torch.optim.lr_scheduler.ExponentialLR(opt, gamma=0.5)
    closure, _ = _lm_closures(case, opt)
    for _ in range(3):
        opt.step(closure)
        sched.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(0.5 / 8) and opt.certificate["step"] == 3


def test_state_dict_round_trip_gives_bit_identical_continuation() -> None:
    case, groups = _small()
    mem = LayerwiseMemory(case.model, threshold=0.9)
    mem.add_task([case.xa])
    opt = Kaplinskiy(groups, memory=mem)
    closure, _ = _lm_closures(case, opt)
    for _ in range(3):
        opt.step(closure)
    saved = copy.deepcopy((case.model.state_dict(), opt.state_dict(), mem.state_dict()))
    for _ in range(3):
        opt.step(closure)
    expected = [p.detach().clone() for p in case.model.parameters()]

    case2, groups2 = _small(lrs=(9.0, 9.0))
    case2.model.load_state_dict(saved[0])
    mem2 = LayerwiseMemory(case2.model)
    mem2.load_state_dict(saved[2])
    opt2 = Kaplinskiy(groups2, memory=mem2)
    opt2.load_state_dict(saved[1])
    case2 = TaskPair(case2.model, case.xa, case.ya, case.xb, case.yb)
    closure2, _ = _lm_closures(case2, opt2)
    for _ in range(3):
        opt2.step(closure2)
    assert all(torch.equal(a, b) for a, b in zip(expected, case2.model.parameters(), strict=True))
    assert opt2.certificate == opt.certificate


def test_non_finite_and_zero_gradients_change_nothing() -> None:
    case, groups = _small()
    opt = Kaplinskiy(groups)
    closure, _ = _lm_closures(case, opt)
    opt.step(closure)
    before = copy.deepcopy((opt.state_dict(), [p.detach().clone() for p in case.model.parameters()]))

    def nan_closure():
        out = closure()
        case.model[2].bias.grad[0] = float("nan")
        return out

    with pytest.warns(NonFiniteStepWarning):
        opt.step(nan_closure)
    with pytest.warns(NonFiniteStepWarning):
        opt.step(lambda: torch.tensor(float("nan")))

    def zero_closure():
        out = closure()
        for p in case.model.parameters():
            p.grad.zero_()
        return out

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        opt.step(zero_closure)
    after = (opt.state_dict(), [p.detach().clone() for p in case.model.parameters()])
    assert after[0] == before[0] and all(torch.equal(a, b) for a, b in zip(before[1], after[1], strict=True))


def test_contract_errors_are_clear() -> None:
    case, groups = _small()
    opt = Kaplinskiy(groups)
    with pytest.raises(RuntimeError, match="needs a closure"):
        opt.step()

    def careless():
        opt.zero_grad()
        loss = case.loss_b()
        loss.backward()
        return loss

    with pytest.raises(RuntimeError, match="is_grad_enabled"):
        opt.step(careless)
    for kw, name in [
        ({"lr": -1.0}, "lr"),
        ({"c": 0.0}, "c"),
        ({"shrink": 1.0}, "shrink"),
        ({"max_trials": 0}, "max_trials"),
    ]:
        with pytest.raises(ValueError, match=f"Invalid {name}"):
            Kaplinskiy(case.model.parameters(), **kw)
    with pytest.raises(ValueError, match="Invalid param group key: momentum"):
        Kaplinskiy([{"params": case.model.parameters(), "momentum": 0.9}])
    mem = LayerwiseMemory(case.model)
    with pytest.raises(ValueError, match="Invalid memory"):
        Kaplinskiy(
            [{"params": case.model[0].parameters()}, {"params": case.model[2].parameters(), "project": False}],
            memory=mem,
        )
    split = Kaplinskiy([{"params": case.model[0].parameters()}, {"params": case.model[2].parameters(), "c": 0.1}])
    with pytest.raises(ValueError, match="c is one for the whole optimizer"):
        split.step(_lm_closures(case, split)[0])
    guarded = Kaplinskiy(case.model.parameters(), memory=mem)
    case.model[0].bias.requires_grad_(False)
    with pytest.raises(ValueError, match="were frozen"):
        guarded.step(_lm_closures(case, guarded)[0])
