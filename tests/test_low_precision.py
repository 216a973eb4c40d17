"""bfloat16 and float16 models: the memories keep float32 bases, and a guarded step protects the old task to the
weights' own precision."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from kaplinskiy import DenseMemory, ForgettingGuard, LayerwiseMemory

LR = 4.0  # a large step: unguarded, it moves the old outputs far beyond the dtype's rounding


def _model(dtype: torch.dtype) -> nn.Module:
    return nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 3)).to(dtype)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("kind", ["layerwise", "dense"])
def test_a_guarded_low_precision_step_keeps_the_old_outputs_to_that_precision(dtype, kind) -> None:
    model = _model(dtype)
    xa, ya = torch.randn(3, 6, dtype=dtype), torch.randint(3, (3,))
    if kind == "layerwise":
        memory = LayerwiseMemory(model, threshold=1.0)
        memory.add_task([xa])
        assert all(U.dtype == torch.float32 for U in memory.bases)
        probe = model[0]  # GPM keeps each covered layer's old pre-activations
    else:
        memory = DenseMemory(model.parameters(), k_per_task=3)
        memory.add_task(model, xa, ya)  # OGD-GTL: the old samples' true-class logits stay put to first order
        assert memory.basis.dtype == torch.float32
        probe = model
    free, guarded = _model(dtype), model
    free.load_state_dict(model.state_dict())
    before = probe(xa).detach().float()
    free_probe = free[0] if kind == "layerwise" else free
    for net, opt in (
        (guarded, ForgettingGuard(torch.optim.SGD(guarded.parameters(), lr=LR), memory)),
        (free, torch.optim.SGD(free.parameters(), lr=LR)),
    ):
        opt.zero_grad()
        nn.functional.cross_entropy(net(torch.randn(8, 6, dtype=dtype)).float(), torch.randint(3, (8,))).backward()
        opt.step()
    moved_free = (free_probe(xa).detach().float() - before).abs().max().item()
    moved = probe(xa).detach().float() - before
    if kind == "dense":
        moved = moved.gather(1, ya[:, None])
    eps = torch.finfo(dtype).eps
    assert moved_free > 30 * eps * before.abs().max().item()  # the unguarded step moves them well beyond rounding
    assert moved.abs().max().item() <= max(0.05 * moved_free, 8 * eps * before.abs().max().item())
