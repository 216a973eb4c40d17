"""The optimizers inside an ordinary mixed-precision loop: ``GradScaler`` unscales the gradients before the
guard projects them and skips a step with an infinite gradient; LR schedulers see the steps (no warning that the
scheduler stepped first); and a line search refuses a base optimizer that maximizes."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

from kaplinskiy import DenseMemory, ForgettingGuard, HybridAdamW, Kaplinskiy, LayerwiseMemory


def _case() -> tuple[nn.Module, LayerwiseMemory]:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 3)).float()
    memory = LayerwiseMemory(model, threshold=0.9)
    model.eval()
    memory.add_task([torch.randn(16, 4, dtype=torch.float32)])
    model.train()
    return model, memory


_MAKERS = {
    "guard": lambda m, mem: ForgettingGuard(torch.optim.AdamW(m.parameters(), lr=0.01), mem),
    "guard_fused_base": lambda m, mem: ForgettingGuard(torch.optim.AdamW(m.parameters(), lr=0.01, fused=True), mem),
    "hybrid": lambda m, mem: HybridAdamW(m.parameters(), lr=0.01, memory=mem),
}


def _train(kind: str, *, amp: bool, inf_at: int | None = None) -> tuple[list[torch.Tensor], float, int]:
    """Four steps of ``scale(loss).backward(); unscale_; step; update`` with a StepLR; a gradient made infinite
    at step ``inf_at`` (after ``backward``)."""
    model, memory = _case()
    opt = _MAKERS[kind](model, memory)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**12, enabled=amp)
    torch.manual_seed(1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # neither the guard's non-finite warning nor the scheduler's order one
        for i in range(4):
            x = torch.randn(8, 4, dtype=torch.float32)
            opt.zero_grad()
            scaler.scale(model(x).pow(2).mean()).backward()
            if i == inf_at:
                model[0].weight.grad[0, 0] = float("inf")
            scaler.unscale_(opt)
            scaler.step(opt)
            scaler.update()
            if i != inf_at:  # the scheduler follows the steps taken (as in a loop that checks the scale)
                sched.step()
    return [p.detach().clone() for p in model.parameters()], scaler.get_scale() if amp else 0.0, sched.last_epoch


@pytest.mark.parametrize("kind", sorted(_MAKERS))
def test_a_grad_scaler_gives_the_unscaled_step(kind: str) -> None:
    plain, _, _ = _train(kind, amp=False)
    scaled, scale, _ = _train(kind, amp=True)
    assert scale == 2.0**12
    for a, b in zip(plain, scaled, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)


@pytest.mark.parametrize("kind", sorted(_MAKERS))
def test_a_grad_scaler_skips_an_infinite_step_before_the_guard_sees_it(kind: str) -> None:
    params, scale, steps = _train(kind, amp=True, inf_at=1)
    assert scale == 2.0**11 and steps == 3
    assert all(torch.isfinite(p).all() for p in params)


def test_a_line_search_refuses_a_base_optimizer_that_maximizes() -> None:
    """Armijo accepts decreases of Phi: over an ascent step it rejected every step, silently."""
    model = nn.Linear(3, 1).float()
    memory = DenseMemory(model.parameters(), k_per_task=1)
    memory.add_directions(torch.randn(memory.numel, 1, dtype=torch.float32))
    with pytest.raises(ValueError, match="Invalid armijo: the base optimizer maximizes"):
        ForgettingGuard(torch.optim.SGD(model.parameters(), lr=0.1, maximize=True), memory, armijo=True)
    guard = ForgettingGuard(torch.optim.SGD(model.parameters(), lr=0.1), memory, armijo=True)
    guard.param_groups[0]["maximize"] = True
    with pytest.raises(ValueError, match="Invalid armijo"):
        guard.step(lambda: torch.zeros(()))
    ForgettingGuard(torch.optim.SGD(model.parameters(), lr=0.1, maximize=True), memory)  # without Armijo: fine


@pytest.mark.parametrize("make", [HybridAdamW, Kaplinskiy])
def test_group_metadata_is_kept_and_a_typo_or_foreign_hyperparameter_refused(make: type) -> None:
    """A group's name or timm's ``lr_scale`` is metadata torch.optim keeps; a near miss of a hyperparameter, or
    another optimizer's, would be silently ignored, so it is refused with a hint."""
    model, _ = _case()
    opt = make([{"params": model[0].parameters(), "name": "encoder", "lr_scale": 0.5}], lr=0.1)
    assert opt.param_groups[0]["name"] == "encoder" and opt.param_groups[0]["lr_scale"] == 0.5
    with pytest.raises(ValueError, match=r"Invalid param group key: projct \(did you mean project\?\)"):
        make([{"params": model[0].parameters(), "projct": False}])
    with pytest.raises(ValueError, match="Invalid param group key: nesterov"):
        make([{"params": model[0].parameters(), "nesterov": True}])
