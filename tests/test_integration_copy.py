"""Copying and pickling an optimizer in a training loop: ``copy.deepcopy(opt)`` and ``torch.save(opt)`` give an
optimizer over the copied parameters that steps on its own, as a ``torch.optim`` optimizer's copy does, also
after an LR scheduler has wrapped its ``step``."""

from __future__ import annotations

import copy
import io
import pickle

import pytest
import torch
from torch import nn

from kaplinskiy import DenseMemory, ForgettingGuard, HybridAdamW, Kaplinskiy, LayerwiseMemory


def _model_and_memory(kind: str) -> tuple[nn.Module, object]:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2)).float()
    if kind == "layerwise":
        memory = LayerwiseMemory(model, threshold=0.9)
        model.eval()
        memory.add_task([torch.randn(8, 3, dtype=torch.float32)])
        model.train()
    else:
        memory = DenseMemory(model.parameters(), k_per_task=2)
        memory.add_directions(torch.randn(memory.numel, 2, dtype=torch.float32))
    return model, memory


_MAKERS = {
    "guard": lambda m, mem: ForgettingGuard(torch.optim.AdamW(m.parameters(), lr=0.1), mem),
    "hybrid": lambda m, mem: HybridAdamW(m.parameters(), lr=0.1, memory=mem),
    "kaplinskiy": lambda m, mem: Kaplinskiy(m.parameters(), lr=0.1, memory=mem),
}


def _step(opt: torch.optim.Optimizer) -> None:
    """One step on every parameter the optimizer holds, with a closure (Kaplinskiy needs one)."""
    params = [p for g in opt.param_groups for p in g["params"]]

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = sum((p * p).sum() for p in params)
        if torch.is_grad_enabled():
            loss.backward()
        return loss

    opt.step(closure)


@pytest.mark.parametrize("kind", ["guard", "hybrid", "kaplinskiy"])
@pytest.mark.parametrize("memory_kind", ["dense", "layerwise"])
def test_a_deep_copy_steps_its_own_parameters_and_leaves_the_original_alone(kind: str, memory_kind: str) -> None:
    model, memory = _model_and_memory(memory_kind)
    opt = _MAKERS[kind](model, memory)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    _step(opt)
    sched.step()
    before = [p.detach().clone() for p in model.parameters()]
    twin = copy.deepcopy(opt)
    copied = [p for g in twin.param_groups for p in g["params"]]
    assert all(c is not p for c, p in zip(copied, model.parameters(), strict=True))
    _step(twin)
    for p, b in zip(model.parameters(), before, strict=True):
        assert torch.equal(p, b)  # the copy moved its own parameters, not the model's
    assert any(not torch.equal(c, b) for c, b in zip(copied, before, strict=True))
    _step(opt)  # the original still steps, and its scheduler still sees it
    assert any(not torch.equal(p, b) for p, b in zip(model.parameters(), before, strict=True))


@pytest.mark.parametrize("kind", ["guard", "hybrid", "kaplinskiy"])
def test_a_pickled_optimizer_loads_and_steps_after_a_scheduler_wrapped_it(kind: str) -> None:
    model, memory = _model_and_memory("dense")
    opt = _MAKERS[kind](model, memory)
    torch.optim.lr_scheduler.LambdaLR(opt, lambda epoch: 0.5**epoch)
    opt.register_step_post_hook(lambda *args: None)  # a local function: hooks are not pickled, as in torch.optim
    _step(opt)
    buffer = io.BytesIO()
    torch.save(opt, buffer)
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=False)
    _step(loaded)
    assert pickle.loads(pickle.dumps(opt)).state_dict().keys() == opt.state_dict().keys()
