"""HybridAdamW: AdamW when the flags are off, eq. (12) when projected, Phi monotone when Armijo-guarded."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from strategies_optim import TaskPair, eq12_tolerance, full_memory, mlp, task_pairs

from kaplinskiy import ElasticAnchor, HybridAdamW, LayerwiseMemory, NonFiniteStepWarning


def _case(seed: int = 0) -> TaskPair:
    torch.manual_seed(seed)
    return TaskPair(
        mlp(3, 5, 3, True), torch.randn(6, 3), torch.randint(3, (6,)), torch.randn(8, 3), torch.randint(3, (8,))
    )


def _groups(model, lrs=(1e-2, 3e-3), wds=(0.1, 0.0)):
    return [
        {"params": model[0].parameters(), "lr": lrs[0], "weight_decay": wds[0]},
        {"params": model[2].parameters(), "lr": lrs[1], "weight_decay": wds[1], "betas": (0.8, 0.99)},
    ]


def _closure(case: TaskPair, opt, anchor: ElasticAnchor | None = None):
    def closure():
        opt.zero_grad()
        phi = case.loss_b() + (anchor.penalty() if anchor is not None else 0.0)
        if torch.is_grad_enabled():
            phi.backward()
        return phi

    return closure


@pytest.mark.parametrize("with_anchor", [False, True])
def test_flags_off_is_torch_adamw_step_for_step(with_anchor: bool) -> None:
    """AdamW on Phi = L_B + R (the potential as an auxiliary loss, sec. 2.5) equals torch.optim.AdamW on it."""
    case, ref_case = _case(), _case()
    ours = HybridAdamW(_groups(case.model))
    ref = torch.optim.AdamW(_groups(ref_case.model), foreach=False)
    anchors = [ElasticAnchor(c.model.parameters(), lam=0.5, fisher="identity") for c in (case, ref_case)]
    with torch.no_grad():
        for c in (case, ref_case):
            for p in c.model.parameters():
                p.add_(0.3)
    for _ in range(25):
        ours.step(_closure(case, ours, anchors[0] if with_anchor else None))
        ref.step(_closure(ref_case, ref, anchors[1] if with_anchor else None))
    for a, b in zip(case.model.parameters(), ref_case.model.parameters(), strict=True):
        assert torch.allclose(a, b, rtol=1e-12, atol=1e-13)


@settings(max_examples=40)
@given(task_pairs(), st.sampled_from(["dense", "layerwise"]), st.integers(0, 3))
def test_projected_adamw_update_is_orthogonal_to_grad_LA(case: TaskPair, kind: str, warm: int) -> None:
    """Eq. (12) for the projected Adam update (weight decay included), after ``warm`` unprojected steps."""
    opt = HybridAdamW(case.model.parameters(), lr=0.05, weight_decay=0.1)
    for _ in range(warm):
        opt.step(_closure(case, opt))
    mem = full_memory(kind, case)
    projected = HybridAdamW(case.model.parameters(), lr=0.05, weight_decay=0.1, memory=mem)
    projected.load_state_dict({**opt.state_dict(), "param_groups": projected.state_dict()["param_groups"]})
    ga = case.grad_a()
    w0 = [p.detach().clone() for p in case.model.parameters()]
    projected.step(_closure(case, projected))
    d = [p.detach() - w for p, w in zip(case.model.parameters(), w0, strict=True)]
    n = sum(p.numel() for p in w0)
    num = abs(sum(float((a * b).sum()) for a, b in zip(ga, d, strict=True)))
    scale = math.sqrt(sum(float(a.pow(2).sum()) for a in ga)) * 0.05 * (math.sqrt(n) + 1)
    assert num <= eq12_tolerance(n) * scale


@settings(max_examples=15)
@given(st.integers(0, 1000), st.sampled_from([1e-3, 0.1, 1.0]))
def test_armijo_guarded_adamw_never_increases_phi(seed: int, lr: float) -> None:
    case = _case(seed)
    opt = HybridAdamW(_groups(case.model, lrs=(lr, lr)), armijo=True)
    closure = _closure(case, opt)
    for _ in range(10):
        with torch.no_grad():
            before = float(closure())
        w0 = [p.detach().clone() for p in case.model.parameters()]
        opt.step(closure)
        cert = opt.certificate
        with torch.no_grad():
            after = float(closure())
        if cert["accepted"]:
            assert after <= before + opt.c * cert["t"] * cert["slope"] and after == cert["phi_after"]
        else:
            assert all(torch.equal(a, b) for a, b in zip(w0, case.model.parameters(), strict=True))


@pytest.mark.parametrize("armijo", [False, True])
def test_state_dict_round_trip_and_scheduler(armijo: bool) -> None:
    case = _case()
    mem = LayerwiseMemory(case.model, threshold=0.9)
    mem.add_task([case.xa])
    opt = HybridAdamW(_groups(case.model), memory=mem, armijo=armijo)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda t: 1.0 / (1 + t))
    for _ in range(3):
        opt.step(_closure(case, opt))
        sched.step()
    saved = copy.deepcopy((case.model.state_dict(), opt.state_dict(), sched.state_dict()))
    for _ in range(3):
        opt.step(_closure(case, opt))
        sched.step()
    expected = [p.detach().clone() for p in case.model.parameters()]
    case2 = _case(seed=5)
    case2.model.load_state_dict(saved[0])
    opt2 = HybridAdamW(_groups(case2.model, lrs=(1.0, 1.0)), memory=LayerwiseMemory(case2.model), armijo=armijo)
    opt2.memory.load_state_dict(mem.state_dict())
    sched2 = torch.optim.lr_scheduler.LambdaLR(opt2, lambda t: 1.0 / (1 + t))  # before loading: it sets the lr
    opt2.load_state_dict(saved[1])
    sched2.load_state_dict(saved[2])
    case2 = TaskPair(case2.model, case.xa, case.ya, case.xb, case.yb)
    for _ in range(3):
        opt2.step(_closure(case2, opt2))
        sched2.step()
    assert all(torch.equal(a, b) for a, b in zip(expected, case2.model.parameters(), strict=True))
    assert opt.param_groups[0]["lr"] == opt2.param_groups[0]["lr"] == pytest.approx(1e-2 / 7)


def test_non_finite_and_zero_gradients_change_nothing() -> None:
    case = _case()
    opt = HybridAdamW(_groups(case.model))
    opt.step(_closure(case, opt))
    before = copy.deepcopy((opt.state_dict(), [p.detach().clone() for p in case.model.parameters()]))
    closure = _closure(case, opt)
    closure()
    case.model[0].weight.grad[0, 0] = float("inf")
    with pytest.warns(NonFiniteStepWarning):
        opt.step()
    for p in case.model.parameters():
        p.grad = torch.zeros_like(p)
    opt.step()
    after = (opt.state_dict(), [p.detach().clone() for p in case.model.parameters()])
    assert all(torch.equal(a, b) for a, b in zip(before[1], after[1], strict=True))
    for k, v in before[0]["state"].items():
        assert all(torch.equal(v[name], after[0]["state"][k][name]) for name in v)
    assert after[0]["hybrid"].pop("skipped") == 2  # the rejected step and the zero one, counted
    assert before[0]["hybrid"] == after[0]["hybrid"]


def test_bad_arguments_are_named() -> None:
    model = _case().model
    for kw, name in [
        ({"lr": -1.0}, "lr"),
        ({"betas": (1.0, 0.9)}, "beta1"),
        ({"betas": (0.9, -0.1)}, "beta2"),
        ({"eps": -1.0}, "eps"),
        ({"weight_decay": -1.0}, "weight_decay"),
        ({"c": 2.0}, "c"),
    ]:
        with pytest.raises(ValueError, match=f"Invalid {name}"):
            HybridAdamW(model.parameters(), **kw)
    with pytest.raises(ValueError, match="Invalid param group key: nesterov"):
        HybridAdamW([{"params": model.parameters(), "nesterov": True}])
    with pytest.raises(RuntimeError, match="closure"):
        HybridAdamW(model.parameters(), armijo=True).step()


def test_certificate_holds_grad_LA_dot_d_of_the_update() -> None:
    """old_task_closure puts grad L_A . d in the certificate; d is the update actually applied."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 2))
    xa, ya, xb, yb = torch.randn(5, 3), torch.randint(2, (5,)), torch.randn(6, 3), torch.randint(2, (6,))
    opt = HybridAdamW(model.parameters(), lr=1e-2)
    params = list(model.parameters())
    ga = torch.autograd.grad(torch.nn.functional.cross_entropy(model(xa), ya), params)
    w0 = [p.detach().clone() for p in params]
    opt.zero_grad()
    torch.nn.functional.cross_entropy(model(xb), yb).backward()
    opt.step(old_task_closure=lambda: torch.nn.functional.cross_entropy(model(xa), ya).backward())
    measured = sum(float((a * (p.detach() - w)).sum()) for a, p, w in zip(ga, params, w0, strict=True))
    assert opt.certificate["old_task_slope"] == pytest.approx(measured, rel=1e-9)
    assert abs(measured) > 1e-8
