"""ForgettingGuard around torch optimizers: eq. (12) for every base, delegation, Armijo, rejection, round trip."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from strategies_optim import BASE_OPTIMIZERS, TaskPair, TiedLM, eq12_tolerance, full_memory, mlp, task_pairs
from torch import nn

from kaplinskiy import ForgettingGuard, LayerwiseMemory, NonFiniteStepWarning, l2sp_penalty


def _backward_b(case: TaskPair, opt) -> None:
    opt.zero_grad()
    case.loss_b().backward()


def _check_eq12(case: TaskPair, guard: ForgettingGuard, lr: float) -> None:
    params = list(case.model.parameters())
    ga = case.grad_a()
    _backward_b(case, guard)
    gb_norm = math.sqrt(sum(float(p.grad.pow(2).sum()) for p in params))
    w0 = [p.detach().clone() for p in params]
    guard.step(old_task_closure=lambda: case.loss_a().backward())
    d = [p.detach() - w for p, w in zip(params, w0, strict=True)]
    num = abs(sum(float((a * b).sum()) for a, b in zip(ga, d, strict=True)))
    certified = guard.certificate["old_task_slope"]  # the certificate measures the same eq. (12) residual
    assert abs(abs(certified) - num) <= 1e-9 * (1.0 + num)
    ga_norm = math.sqrt(sum(float(a.pow(2).sum()) for a in ga))
    n = sum(p.numel() for p in params)
    scale = ga_norm * (lr * (math.sqrt(n) + gb_norm) + math.sqrt(sum(float(t.pow(2).sum()) for t in d)))
    assert num <= eq12_tolerance(n) * scale


@pytest.mark.parametrize("base_name", sorted(BASE_OPTIMIZERS))
@settings(max_examples=20)
@given(task_pairs(bias=False), st.sampled_from(["dense", "layerwise"]), st.integers(0, 3))
def test_guarded_update_is_orthogonal_to_grad_LA(base_name: str, case: TaskPair, kind: str, warm: int) -> None:
    """Eq. (12) for project="update" around every base optimizer (AdamW, Muon, SGD+momentum+wd, LionMuon, ...),
    after ``warm`` unguarded steps have filled the base optimizer's state (each optimizer its own examples: drawn
    from one pool, some went undrawn)."""
    lr = 0.05
    base = BASE_OPTIMIZERS[base_name](case.model.parameters(), lr)
    for _ in range(warm):
        _backward_b(case, base)
        base.step()
    guard = ForgettingGuard(base, full_memory(kind, case), project="update", certify=True)
    _check_eq12(case, guard, lr)
    assert guard.certificate["memory_residual"] <= 1e-10


@settings(max_examples=40)
@given(task_pairs(), st.sampled_from(["dense", "layerwise"]))
def test_guarded_gradient_with_plain_sgd_is_orthogonal(case: TaskPair, kind: str) -> None:
    """Eq. (12) for project="gradient" around plain SGD (a linear update), biases included."""
    guard = ForgettingGuard(
        torch.optim.SGD(case.model.parameters(), lr=0.1), full_memory(kind, case), project="gradient"
    )
    _check_eq12(case, guard, 0.1)


def test_guard_around_lion() -> None:
    lion = pytest.importorskip("lion_pytorch")
    torch.manual_seed(3)
    case = TaskPair(
        mlp(3, 4, 3, True), torch.randn(5, 3), torch.randint(3, (5,)), torch.randn(4, 3), torch.randint(3, (4,))
    )
    base = lion.Lion(case.model.parameters(), lr=0.01, weight_decay=0.1)
    _check_eq12(case, ForgettingGuard(base, full_memory("layerwise", case)), 0.01)


def _setup(seed: int = 0, armijo: bool = False, lrs=(0.05, 0.01)):
    torch.manual_seed(seed)
    case = TaskPair(
        mlp(3, 5, 3, True), torch.randn(6, 3), torch.randint(3, (6,)), torch.randn(8, 3), torch.randint(3, (8,))
    )
    first, second = case.model[0], case.model[2]
    base = torch.optim.AdamW(
        [{"params": first.parameters(), "lr": lrs[0]}, {"params": second.parameters(), "lr": lrs[1]}], weight_decay=0.1
    )
    mem = LayerwiseMemory(case.model, threshold=0.95)
    mem.add_task([case.xa])
    return case, ForgettingGuard(base, mem, armijo=armijo, certify=True)


def _closure(case: TaskPair, opt, anchors=None, lam: float = 0.0):
    def closure():
        opt.zero_grad()
        phi = case.loss_b()
        if anchors is not None:
            phi = phi + l2sp_penalty(list(case.model.parameters()), anchors, lam)
        if torch.is_grad_enabled():
            phi.backward()
        return phi

    return closure


def test_wrapper_delegates_groups_state_and_schedulers() -> None:
    case, guard = _setup()
    assert guard.param_groups is guard.base.param_groups and guard.state is guard.base.state
    sched = torch.optim.lr_scheduler.StepLR(guard, step_size=1, gamma=0.5)
    for _ in range(2):
        guard.step(_closure(case, guard))
        sched.step()
    assert guard.base.param_groups[0]["lr"] == pytest.approx(0.05 / 4)
    assert guard.base.param_groups[1]["lr"] == pytest.approx(0.01 / 4)
    assert guard.certificate["step"] == 2 and len(guard.base.state) == 4
    guard.zero_grad()
    assert all(p.grad is None for p in case.model.parameters())
    extra = nn.Parameter(torch.zeros(2))
    guard.add_param_group({"params": [extra], "lr": 1.0})
    assert len(guard.base.param_groups) == 3


@pytest.mark.parametrize("armijo", [False, True])
def test_state_dict_round_trip_gives_bit_identical_continuation(armijo: bool) -> None:
    case, guard = _setup(armijo=armijo)
    for _ in range(3):
        guard.step(_closure(case, guard))
    saved_model = copy.deepcopy(case.model.state_dict())
    saved_opt = copy.deepcopy(guard.state_dict())
    saved_mem = copy.deepcopy(guard.memory.state_dict())
    for _ in range(3):
        guard.step(_closure(case, guard))
    expected = [p.detach().clone() for p in case.model.parameters()]

    case2, guard2 = _setup(seed=1, armijo=armijo)
    case2.model.load_state_dict(saved_model)
    guard2.memory.load_state_dict(saved_mem)
    guard2.load_state_dict(saved_opt)
    case2 = TaskPair(case2.model, case.xa, case.ya, case.xb, case.yb)
    for _ in range(3):
        guard2.step(_closure(case2, guard2))
    assert all(torch.equal(a, b) for a, b in zip(expected, case2.model.parameters(), strict=True))
    assert _same(guard2.certificate, guard.certificate)


def _snapshot(guard: ForgettingGuard, model: nn.Module):
    return copy.deepcopy(guard.state_dict()), [p.detach().clone() for p in model.parameters()]


def _same(a, b) -> bool:
    if isinstance(a, torch.Tensor):
        return torch.equal(a, b)
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return a == b or (isinstance(a, float) and math.isnan(a) and math.isnan(b))


@pytest.mark.parametrize("where", ["loss", "grad"])
def test_non_finite_step_is_rejected_and_changes_nothing(where: str) -> None:
    case, guard = _setup()
    guard.step(_closure(case, guard))
    before, params = _snapshot(guard, case.model)
    guard.zero_grad()
    loss = case.loss_b()
    loss.backward()
    if where == "grad":
        case.model[0].weight.grad[0, 0] = float("nan")
    else:
        loss = torch.tensor(float("inf"))
    with pytest.warns(NonFiniteStepWarning, match="non-finite"):
        guard.step(lambda: loss)
    after, params_after = _snapshot(guard, case.model)
    assert after["forgetting_guard"].pop("skipped") == before["forgetting_guard"].pop("skipped") + 1
    assert _same(before, after) and _same(params, params_after)


def test_zero_gradient_is_a_no_op() -> None:
    case, guard = _setup()
    guard.step(_closure(case, guard))
    before, params = _snapshot(guard, case.model)
    for p in case.model.parameters():
        p.grad = torch.zeros_like(p)
    guard.step()
    after, params_after = _snapshot(guard, case.model)
    assert after["forgetting_guard"].pop("skipped") == before["forgetting_guard"].pop("skipped") + 1
    assert _same(before, after) and _same(params, params_after)


@settings(max_examples=15)
@given(st.integers(0, 2**31 - 1), st.sampled_from([0.0, 1.0]), st.sampled_from([1e-3, 0.3, 3.0]))
def test_armijo_guard_never_increases_phi(seed: int, lam: float, lr: float) -> None:
    """Across accepted steps Phi(w+) <= Phi(w) + c t grad Phi . d; rejected steps leave w exactly where it was."""
    case, guard = _setup(seed=seed % 1000, armijo=True, lrs=(lr, lr))
    anchors = [p.detach().clone() + 0.1 for p in case.model.parameters()]
    closure = _closure(case, guard, anchors, lam)
    for _ in range(6):
        w0 = [p.detach().clone() for p in case.model.parameters()]
        with torch.no_grad():
            phi_before = float(closure())
        guard.step(closure)
        cert = guard.certificate
        with torch.no_grad():
            phi_after = float(closure())
        assert cert["phi_before"] == phi_before and cert["forward_passes"] == 1 + cert["n_trials"]
        if cert["accepted"]:
            assert phi_after <= phi_before + guard.c * cert["t"] * cert["slope"]
            assert phi_after == cert["phi_after"]
        else:
            assert all(torch.equal(a, b) for a, b in zip(w0, case.model.parameters(), strict=True))


def test_armijo_needs_a_closure_and_bad_arguments_are_named() -> None:
    case, guard = _setup(armijo=True)
    with pytest.raises(RuntimeError, match="closure"):
        guard.step()
    mem = guard.memory
    for kw, name in [({"project": "weights"}, "project"), ({"c": 1.0}, "c"), ({"shrink": 0.0}, "shrink")]:
        with pytest.raises(ValueError, match=f"Invalid {name}"):
            ForgettingGuard(guard.base, mem, **kw)
    with pytest.raises(ValueError, match="Invalid memory"):
        ForgettingGuard(torch.optim.SGD(case.model[0].parameters(), lr=0.1), mem)


def test_update_mode_with_tied_weights_takes_the_copy_path() -> None:
    """Tied embedding and head (no linear split): the guarded AdamW update still leaves old rows in place."""
    model = TiedLM()
    ids = torch.tensor([[0, 1, 2]])
    mem = LayerwiseMemory(model, threshold=1.0)
    mem.add_task([ids])
    guard = ForgettingGuard(torch.optim.AdamW(model.parameters(), lr=0.1, weight_decay=0.1), mem, certify=True)
    before = model.tok.weight.detach().clone()
    for _ in range(3):
        guard.zero_grad()
        nn.functional.cross_entropy(model(torch.tensor([[3, 4, 5]]))[0], torch.tensor([4, 5, 6])).backward()
        guard.step()
    assert torch.equal(model.tok.weight.detach()[:3], before[:3]) and guard.certificate["memory_residual"] < 1e-12


@pytest.mark.parametrize("armijo", [False, True])
def test_certificate_measures_grad_LA_dot_d_when_it_is_not_zero(armijo: bool) -> None:
    """With a memory that misses grad L_A (threshold 0.95 keeps part of A's input space free), the certified
    grad L_A . d equals the one measured from the parameters, and is not zero: the certificate can fail."""
    case, guard = _setup(seed=3, armijo=armijo)
    params = list(case.model.parameters())
    ga = case.grad_a()
    w0 = [p.detach().clone() for p in params]
    closure = _closure(case, guard)
    if not armijo:
        closure()
    guard.step(closure if armijo else None, old_task_closure=lambda: case.loss_a().backward())
    measured = sum(float((a * (p.detach() - w)).sum()) for a, p, w in zip(ga, params, w0, strict=True))
    cert = guard.certificate
    assert cert["old_task_slope"] == pytest.approx(measured, rel=1e-9, abs=1e-15)
    assert abs(measured) > 1e-8
    assert cert["forward_passes"] >= 1 + int(armijo)  # the old-task pass (+ the closure under Armijo)


@settings(max_examples=30)
@given(task_pairs(bias=True), st.sampled_from(["dense", "layerwise"]))
def test_guarded_torch_adamw_takes_the_projected_adamw_step_of_hybrid_adamw(case: TaskPair, kind: str) -> None:
    """ForgettingGuard(torch.optim.AdamW, memory) and HybridAdamW(memory) take the same steps (to rounding):
    the guard is the fast way to the Adam-NSCL-style projected AdamW update, with torch's own AdamW kernels."""
    from kaplinskiy import HybridAdamW

    twin = copy.deepcopy(case.model)
    memory = full_memory(kind, case)
    kw = dict(lr=0.05, betas=(0.8, 0.95), eps=1e-8, weight_decay=0.1)
    guard = ForgettingGuard(torch.optim.AdamW(case.model.parameters(), foreach=False, **kw), memory)
    other = TaskPair(twin, case.xa, case.ya, case.xb, case.yb)
    hybrid = HybridAdamW(twin.parameters(), memory=full_memory(kind, other), **kw)
    for _ in range(3):
        for opt, pair in ((guard, case), (hybrid, other)):
            opt.zero_grad()
            pair.loss_b().backward()
            opt.step()
    for a, b in zip(case.model.parameters(), twin.parameters(), strict=True):
        assert torch.allclose(a, b, rtol=1e-10, atol=1e-12)


def _guarded_pair(case: TaskPair, kind: str):
    """Two guards over twin models and twin memories, one reusing the memory coordinates Q^T w."""
    twin = TaskPair(copy.deepcopy(case.model), case.xa, case.ya, case.xb, case.yb)
    guards = []
    for pair, reuse in ((case, False), (twin, True)):
        base = torch.optim.AdamW(pair.model.parameters(), lr=0.05, weight_decay=0.1)
        guards.append(ForgettingGuard(base, full_memory(kind, pair), certify=True, reuse_coefficients=reuse))
    return (case, guards[0]), (twin, guards[1])


def _step_both(pairs) -> None:
    for pair, guard in pairs:
        _backward_b(pair, guard)
        guard.step()
        assert guard.certificate["memory_residual"] <= 1e-10  # eq. (12) on the memory, with or without reuse


def _same_parameters(pairs) -> bool:
    (a, _), (b, _) = pairs
    return all(
        torch.allclose(x, y, rtol=1e-10, atol=1e-12)
        for x, y in zip(a.model.parameters(), b.model.parameters(), strict=True)
    )


@settings(max_examples=30)
@given(task_pairs(), st.sampled_from(["dense", "layerwise"]))
def test_reused_coefficients_give_the_same_steps_with_fewer_passes(case: TaskPair, kind: str) -> None:
    pairs = _guarded_pair(case, kind)
    memory = pairs[1][1].memory
    calls = []
    coefficients, restore = memory.coefficients, memory.restore_
    inside = []  # a restore that computes its coordinates through coefficients() counts once, as a restore

    def count_restore(tensors, ref):
        calls.append("restore")
        inside.append(1)
        try:
            return restore(tensors, ref)
        finally:
            inside.pop()

    def count_coefficients(tensors):
        if not inside:
            calls.append("coefficients")
        return coefficients(tensors)

    memory.coefficients = count_coefficients
    memory.restore_ = count_restore
    for _ in range(4):
        _step_both(pairs)
    assert _same_parameters(pairs)
    # Q^T w once to start; then per step one restore (a read and a write) and the certificate's check
    assert calls.count("coefficients") == 1 + 4 and calls.count("restore") == 4


@pytest.mark.parametrize("kind", ["dense", "layerwise"])
@pytest.mark.parametrize("change", ["parameter", "memory"])
def test_reused_coefficients_are_dropped_when_something_else_moves(kind: str, change: str) -> None:
    """A parameter changed in place between steps, or a memory that grew, makes the guard recompute Q^T w;
    keeping the stale coordinates would project the outside change away and the twins would part."""
    model = mlp(6, 5, 3, bias=True)  # two old samples span part of each layer's input space: room to grow
    case = TaskPair(model, torch.randn(2, 6), torch.randint(3, (2,)), torch.randn(6, 6), torch.randint(3, (6,)))
    pairs = _guarded_pair(case, kind)
    _step_both(pairs)
    for pair, guard in pairs:
        if change == "parameter":
            with torch.no_grad():
                next(pair.model.parameters()).add_(0.3)
        elif kind == "dense":
            guard.memory.add_directions(torch.randn(guard.memory.numel, 2, generator=torch.Generator().manual_seed(1)))
        else:
            assert sum(guard.memory.add_task([torch.randn(2, 6, generator=torch.Generator().manual_seed(1))])) > 0
    _step_both(pairs)
    assert _same_parameters(pairs)
