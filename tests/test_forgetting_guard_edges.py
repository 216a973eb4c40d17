"""ForgettingGuard and its memories at the edges a training loop reaches: frozen parameters, missing gradients,
a failing line search, tiny steps and bfloat16 weights (where the projection's rounding matters), a rollback
over a pending deferred verdict."""

from __future__ import annotations

import copy
import warnings
from collections.abc import Callable, Iterator

import pytest
import torch
from test_deferred_check import _backward, _case, _guard
from torch import nn

from kaplinskiy import (
    DenseMemory,
    ForgettingGuard,
    GradientModeWarning,
    HybridAdamW,
    Kaplinskiy,
    LayerwiseMemory,
    NonFiniteStepWarning,
)


def test_a_frozen_bias_leaves_its_layer_covered_by_the_weight_alone() -> None:
    """With the bias frozen, the layer's inputs carry no 1: a guarded step keeps the old inputs' outputs."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 5), nn.Tanh(), nn.Linear(5, 3))
    model[0].bias.requires_grad_(False)
    memory = LayerwiseMemory(model, threshold=0.999)
    xa = torch.randn(3, 4)
    memory.add_task([xa])
    assert memory.bases[0].shape[0] == 4 and memory.bases[1].shape[0] == 6
    guard = ForgettingGuard(torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.5), memory)
    before = model[0](xa).detach()
    model(torch.randn(8, 4)).pow(2).sum().backward()
    guard.step()
    torch.testing.assert_close(model[0](xa), before, rtol=0, atol=1e-5)


def test_a_parameter_frozen_after_the_memory_was_built_is_refused() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 3))
    memory = DenseMemory(model.parameters())
    memory.add_directions(torch.randn(memory.numel, 1))
    guard = ForgettingGuard(torch.optim.SGD(model.parameters(), lr=0.1), memory)
    model[0].bias.requires_grad_(False)
    model(torch.randn(2, 4)).sum().backward()
    with pytest.raises(ValueError, match=r"parameters \[1\] were frozen"):
        guard.step()


def test_gradient_mode_leaves_a_missing_gradient_missing() -> None:
    """A parameter without a gradient stays without one where the projection gives it none (here: an empty
    memory), so the base optimizer skips it as it would unguarded (SGD's momentum would move it)."""
    runs = []
    for guarded in (True, False):
        torch.manual_seed(0)
        heads = nn.ModuleList([nn.Linear(3, 2), nn.Linear(3, 2)])
        base = torch.optim.SGD(heads.parameters(), lr=0.1, momentum=0.9)
        opt = ForgettingGuard(base, DenseMemory(heads.parameters()), project="gradient") if guarded else base
        for head in (0, 0, 1, 1):
            opt.zero_grad()
            heads[head](torch.randn(4, 3)).pow(2).sum().backward()
            opt.step()
        assert heads[0].weight.grad is None
        runs.append([p.detach().clone() for p in heads.parameters()])
    assert all(torch.equal(p, q) for p, q in zip(*runs, strict=True))


def test_a_failing_line_search_leaves_the_parameters_where_they_were() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 2))
    memory = DenseMemory(model.parameters())
    memory.add_directions(torch.randn(memory.numel, 1))
    guard = ForgettingGuard(torch.optim.SGD(model.parameters(), lr=0.1), memory, armijo=True, check_finite=False)
    before = [p.detach().clone() for p in model.parameters()]

    def closure() -> torch.Tensor:
        loss = model(torch.randn(2, 3)).sum()
        if torch.is_grad_enabled():
            loss.backward()
        return loss * float("inf")

    with pytest.raises(ValueError, match="phi0"):
        guard.step(closure)
    assert all(torch.equal(p, q) for p, q in zip(model.parameters(), before, strict=True))


def _old_outputs_moved(dtype: torch.dtype, lr: float, how: str) -> float:
    """How far one SGD step moves a Linear layer's outputs on the old inputs, whose span holds much of the
    weights (their coordinates along the memory are large): unguarded, or guarded in place or from a copy."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(256, 128, bias=False)).to(dtype)
    xa = torch.randn(32, 256).to(dtype)
    with torch.no_grad():
        model[0].weight.add_(torch.randn(128, 32).to(dtype) @ xa / 8)
    memory = LayerwiseMemory(model, threshold=1.0)
    memory._backend = "torch"
    memory.add_task([xa])
    w0 = model[0].weight.detach().clone()
    model(torch.randn(16, 256).to(dtype)).float().pow(2).mean().backward()
    base = torch.optim.SGD(model.parameters(), lr=lr)
    opt = base if how == "free" else ForgettingGuard(base, memory, from_copy=how == "copy")
    opt.step()
    return float(((model[0].weight.detach().double() - w0.double()) @ xa.double().T).abs().max())


def test_from_copy_keeps_tiny_float32_steps_off_the_memory() -> None:
    """In float32 with steps of 1e-5 and weights far along the memory, the update formed from a copy keeps the
    old outputs 10x closer than the unguarded step (the in-place difference of coordinates does not: see
    ForgettingGuard's docstring)."""
    free = _old_outputs_moved(torch.float32, 1e-5, "free")
    assert _old_outputs_moved(torch.float32, 1e-5, "copy") < 0.1 * free


def test_bfloat16_weights_are_projected_with_float32_coordinates() -> None:
    """bfloat16 coordinates of the weights would carry an error of ~4e-3 of each row's coordinate into the
    in-place difference, far more than a step's; in float32 the in-place guard does as well as the copy (both
    at the rounding of the bfloat16 weights themselves)."""
    in_place = _old_outputs_moved(torch.bfloat16, 1e-3, "in place")
    assert in_place <= 1.5 * _old_outputs_moved(torch.bfloat16, 1e-3, "copy")


def test_invalid_options_and_parameters_are_named() -> None:
    model = nn.Linear(3, 2)
    memory = DenseMemory(model.parameters())
    base = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(ValueError, match="from_copy"):
        ForgettingGuard(base, memory, project="gradient", from_copy=True)
    with pytest.raises(ValueError, match="from_copy"):
        ForgettingGuard(base, memory, from_copy=True, reuse_coefficients=True)
    with pytest.raises(ValueError, match="listed twice"):
        DenseMemory([model.weight, model.bias, model.weight])


def test_a_rollback_reads_the_guards_pending_verdicts_first() -> None:
    case = _case()
    guard = _guard(case, "layerwise", defer=True)
    _backward(case, guard)
    guard.step()
    checkpoint = copy.deepcopy(guard.state_dict())
    _backward(case, guard, poison=float("nan"))
    guard.step()  # rejected on the device, verdict pending
    with pytest.warns(NonFiniteStepWarning, match="step 2"):
        guard.load_state_dict(checkpoint)
    assert guard.certificate["accepted"] and guard.guard_state == checkpoint["forgetting_guard"]
    _backward(case, guard)
    guard.step()
    assert checkpoint["forgetting_guard"]["step"] == 1  # the caller's dict is not written to


def test_state_dict_hooks_registered_on_the_guard_run() -> None:
    """``register_state_dict_post_hook`` and the load hooks work on the guard as on a torch optimizer."""
    model = nn.Linear(3, 2)
    guard = ForgettingGuard(torch.optim.SGD(model.parameters(), lr=0.1), DenseMemory(model.parameters()))
    calls = []
    guard.register_state_dict_pre_hook(lambda opt: calls.append("pre"))
    guard.register_state_dict_post_hook(lambda opt, sd: {**sd, "tag": 1})
    guard.register_load_state_dict_pre_hook(lambda opt, sd: {k: v for k, v in sd.items() if k != "tag"})
    guard.register_load_state_dict_post_hook(lambda opt: calls.append("loaded"))
    saved = guard.state_dict()
    assert saved["tag"] == 1
    guard.load_state_dict(saved)
    assert calls == ["pre", "loaded"]


def test_hybrid_adamw_refuses_a_memory_parameter_frozen_later() -> None:
    model = nn.Sequential(nn.Linear(4, 3))
    memory = LayerwiseMemory(model)
    opt = HybridAdamW(model.parameters(), memory=memory)
    model[0].bias.requires_grad_(False)
    model(torch.randn(2, 4)).sum().backward()
    with pytest.raises(ValueError, match=r"parameters \[1\] were frozen"):
        opt.step()


def test_a_step_without_a_search_is_certified_whole() -> None:
    """Without Armijo the step is taken whole: t = 1, eta = lr, nothing tried, Phi before it from the closure and
    nothing measured after it; the memory residual when certifying."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 3))
    memory = LayerwiseMemory(model, threshold=0.9)
    memory.add_task([torch.randn(5, 4)])
    guard = ForgettingGuard(torch.optim.SGD(model.parameters(), lr=0.1), memory, certify=True)
    x = torch.randn(6, 4)

    def closure() -> torch.Tensor:
        guard.zero_grad()
        loss = model(x).square().sum()
        loss.backward()
        return loss

    loss = guard.step(closure)
    cert = guard.certificate
    residual = cert.pop("memory_residual")
    assert cert == dict(
        step=1, accepted=True, eta=0.1, t=1.0, phi_before=float(loss), phi_after=None, slope=None, n_trials=0,
        forward_passes=1, step_norm=None, old_task_slope=None,
    )  # fmt: skip
    assert residual is not None and residual < 1e-6


def _unfrozen_after_build() -> tuple[nn.Sequential, LayerwiseMemory, torch.Tensor]:
    """A model whose first layer was frozen when its memory recorded the old task (the inputs returned), and is
    trainable again, with gradients."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 4), nn.Tanh(), nn.Linear(4, 3))
    model[0].requires_grad_(False)
    memory = LayerwiseMemory(model, threshold=1.0)
    old = torch.randn(3, 4)
    memory.add_task([old])
    model[0].requires_grad_(True)
    model(torch.randn(5, 4)).pow(2).sum().backward()
    return model, memory, old


@pytest.mark.parametrize("optimizer", ["guard", "hybrid", "kaplinskiy"])
def test_a_parameter_frozen_when_the_memory_was_built_and_trained_later_is_refused(optimizer: str) -> None:
    """No basis covers it: stepping it would move the old outputs unprojected (a guarded SGD step moved them by
    0.17 before), so each optimizer's step refuses it by name, and leaves the parameters as they were."""
    model, memory, _ = _unfrozen_after_build()
    before = [p.detach().clone() for p in model.parameters()]
    if optimizer == "guard":
        opt = ForgettingGuard(torch.optim.SGD(model.parameters(), lr=0.5), memory)
    elif optimizer == "hybrid":
        opt = HybridAdamW(model.parameters(), memory=memory)
    else:
        opt = Kaplinskiy(model.parameters(), memory=memory)
    closure = (lambda: model(torch.ones(2, 4)).sum()) if optimizer == "kaplinskiy" else None
    with pytest.raises(ValueError, match=r"parameters '0.weight', '0.bias' were frozen when it was built"):
        opt.step(closure)
    assert all(torch.equal(p, q) for p, q in zip(model.parameters(), before, strict=True))


def test_a_parameter_frozen_at_build_that_no_optimizer_steps_is_no_concern() -> None:
    """Trainable again but left out of the optimizer (built over the parameters trainable with the memory), it
    does not move: the guarded step goes on, and keeps the old outputs."""
    model, memory, old = _unfrozen_after_build()
    guard = ForgettingGuard(torch.optim.SGD(model[2].parameters(), lr=0.5), memory)
    before, weight = model(old).detach(), model[2].weight.detach().clone()
    guard.step()
    assert (model[2].weight - weight).abs().max() > 1e-3  # a step was taken
    torch.testing.assert_close(model(old), before, rtol=0, atol=1e-6)


@pytest.mark.parametrize(
    ("base", "warned"),
    [
        (lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9, nesterov=True), False),
        (lambda p: torch.optim.SGD(p, lr=0.1, weight_decay=0.1), True),
        (lambda p: torch.optim.AdamW(p, lr=0.01), True),
    ],
    ids=["SGD-nesterov", "SGD-decay", "AdamW"],
)
def test_gradient_mode_warns_around_a_base_whose_step_is_not_linear_in_the_gradients(
    base: Callable[[Iterator[nn.Parameter]], torch.optim.Optimizer], warned: bool
) -> None:
    """The warning is said exactly where it is true: around SGD with momentum the old outputs stay (eq. 12);
    with weight decay, or around AdamW, three steps move them."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 8), nn.Tanh(), nn.Linear(8, 3))
    memory = LayerwiseMemory(model, threshold=1.0)
    old = torch.randn(4, 8)
    memory.add_task([old])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        guard = ForgettingGuard(base(model.parameters()), memory, project="gradient")
    assert [w.category for w in caught] == ([GradientModeWarning] if warned else [])
    assert not caught or caught[0].filename == __file__  # it points at the caller
    before = model(old).detach()
    for _ in range(3):
        guard.zero_grad()
        model(torch.randn(16, 8)).pow(2).sum().backward()
        guard.step()
    moved = float((model(old) - before).abs().max())
    assert (moved > 1e-3) if warned else (moved < 1e-5)
