"""The finite check made on the device (``defer_check``): the same steps as the host check, a rejected step
leaves parameters and optimizer state bit-identical, and its warning arrives with its verdict."""

from __future__ import annotations

import copy
import warnings

import pytest
import torch
from strategies_optim import TaskPair, full_memory, mlp

from kaplinskiy import ForgettingGuard, GradientModeWarning, NonFiniteStepWarning

DEVICES = ["cpu", *(["cuda"] if torch.cuda.is_available() else [])]  # the CUDA path copies verdicts asynchronously


def _case(seed: int = 0, device: str = "cpu") -> TaskPair:
    torch.manual_seed(seed)
    model = mlp(4, 5, 3, bias=True).to(device)
    data = [torch.randn(2, 4), torch.randint(3, (2,)), torch.randn(6, 4), torch.randint(3, (6,))]
    return TaskPair(model, *(t.to(device) for t in data))


def _guard(case: TaskPair, kind: str, defer: bool, reuse: bool = False) -> ForgettingGuard:
    base = torch.optim.AdamW(case.model.parameters(), lr=0.05, weight_decay=0.1, fused=True)
    return ForgettingGuard(base, full_memory(kind, case), defer_check=defer, reuse_coefficients=reuse)


def _backward(case: TaskPair, guard: ForgettingGuard, poison: float | None = None) -> None:
    guard.zero_grad()
    case.loss_b().backward()
    if poison is not None:
        next(case.model.parameters()).grad.view(-1)[0] = poison


def _snapshot(case: TaskPair, guard: ForgettingGuard):
    return [p.detach().clone() for p in case.model.parameters()], copy.deepcopy(guard.base.state_dict()["state"])


def _identical(a, b) -> bool:
    (pa, sa), (pb, sb) = a, b
    same_params = all(torch.equal(x, y) for x, y in zip(pa, pb, strict=True))
    same_state = sa.keys() == sb.keys() and all(
        torch.equal(sa[i][k], sb[i][k]) for i in sa for k in sa[i] if isinstance(sa[i][k], torch.Tensor)
    )
    return same_params and same_state


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("kind", ["layerwise", "dense"])
@pytest.mark.parametrize("reuse", [False, True])
def test_deferred_and_host_checks_take_the_same_steps(kind: str, reuse: bool, device: str) -> None:
    host_case = _case(device=device)
    dev_case = TaskPair(copy.deepcopy(host_case.model), host_case.xa, host_case.ya, host_case.xb, host_case.yb)
    guards = [_guard(host_case, kind, False, reuse), _guard(dev_case, kind, True, reuse)]
    for _ in range(4):
        for case, guard in zip((host_case, dev_case), guards, strict=True):
            _backward(case, guard)
            guard.step()
    for a, b in zip(host_case.model.parameters(), dev_case.model.parameters(), strict=True):
        assert torch.equal(a, b)
    assert guards[1].certificate["accepted"] and guards[1].guard_state["skipped"] == 0
    assert not hasattr(guards[1].base, "found_inf")  # the flag does not outlive the step


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("kind", ["layerwise", "dense"])
@pytest.mark.parametrize("poison", [float("nan"), float("inf"), 0.0])
def test_a_rejected_step_changes_nothing_and_warns_when_its_verdict_arrives(
    kind: str, poison: float, device: str
) -> None:
    case = _case(device=device)
    guard = _guard(case, kind, True, reuse=True)
    _backward(case, guard)
    guard.step()  # a normal step first: optimizer state exists and Q^T w is kept
    before = _snapshot(case, guard)
    if poison == 0.0:  # an all-zero gradient: skipped silently
        guard.zero_grad()
        for p in case.model.parameters():
            p.grad = torch.zeros_like(p)
    else:
        _backward(case, guard, poison)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        guard.step()
        assert _identical(before, _snapshot(case, guard))
        cert = guard.certificate  # reading it waits for the verdict
    nonfinite = [w for w in caught if issubclass(w.category, NonFiniteStepWarning)]
    assert len(nonfinite) == (0 if poison == 0.0 else 1)
    assert cert["step"] == 2 and not cert["accepted"] and cert["eta"] == 0.0
    assert guard.guard_state["skipped"] == 1
    _backward(case, guard)  # and training goes on from where it was
    guard.step()
    assert guard.certificate["accepted"] and not _identical(before, _snapshot(case, guard))


@pytest.mark.parametrize("as_float", [False, True])
def test_a_non_finite_loss_from_the_closure_is_rejected_too(as_float: bool) -> None:
    case = _case()
    guard = _guard(case, "layerwise", True)
    _backward(case, guard)
    guard.step()  # (a skipped first step would create AdamW's zero state, as it does under a GradScaler)
    before = _snapshot(case, guard)

    def closure():
        guard.zero_grad()
        loss = case.loss_b()
        loss.backward()
        return float("inf") if as_float else loss * float("inf")

    with pytest.warns(NonFiniteStepWarning):
        guard.step(closure)
        assert not guard.certificate["accepted"]  # reading it waits for the verdict
    assert _identical(before, _snapshot(case, guard))


def test_defer_check_needs_a_base_that_takes_found_inf_and_a_plain_update() -> None:
    case = _case()
    memory = full_memory("layerwise", case)
    params = list(case.model.parameters())
    with pytest.raises(ValueError, match="found_inf"):
        ForgettingGuard(torch.optim.AdamW(params, foreach=True), memory, defer_check=True)
    fused = torch.optim.AdamW(params, fused=True)
    for kwargs in ({"armijo": True}, {"project": "gradient"}, {"check_finite": False}):
        with pytest.raises(ValueError, match="defer_check"), warnings.catch_warnings():
            warnings.simplefilter("ignore", GradientModeWarning)  # gradient mode around AdamW: said, and refused
            ForgettingGuard(fused, memory, defer_check=True, **kwargs)
    assert not ForgettingGuard(fused, memory).defer_check  # opt-in
