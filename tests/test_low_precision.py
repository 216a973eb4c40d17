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


def _step_guarded_and_free(model: nn.Module, memory, dtype: torch.dtype) -> nn.Module:
    """One large SGD step on a random new-task batch: guarded on ``model``, unguarded on a twin (returned)."""
    free = _model(dtype)
    free.load_state_dict(model.state_dict())
    for net, opt in (
        (model, ForgettingGuard(torch.optim.SGD(model.parameters(), lr=LR), memory)),
        (free, torch.optim.SGD(free.parameters(), lr=LR)),
    ):
        opt.zero_grad()
        nn.functional.cross_entropy(net(torch.randn(8, 6, dtype=dtype)).float(), torch.randint(3, (8,))).backward()
        opt.step()
    return free


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_a_guarded_low_precision_step_keeps_the_old_outputs_to_that_precision(dtype) -> None:
    """GPM's guarantee is exact for the first layer's pre-activations (they are linear in its weights): a guarded
    step keeps them to the dtype's rounding, where an unguarded one moves them far beyond it."""
    model = _model(dtype)
    xa = torch.randn(3, 6, dtype=dtype)
    memory = LayerwiseMemory(model, threshold=1.0)
    memory.add_task([xa])
    assert all(U.dtype == torch.float32 for U in memory.bases)
    before = model[0](xa).detach().float()
    free = _step_guarded_and_free(model, memory, dtype)
    moved_free = (free[0](xa).detach().float() - before).abs().max().item()
    moved = (model[0](xa).detach().float() - before).abs().max().item()
    eps = torch.finfo(dtype).eps
    assert moved_free > 20 * eps * before.abs().max().item()  # the unguarded step moves them well beyond rounding
    assert moved <= max(0.05 * moved_free, 8 * eps * before.abs().max().item())


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_a_guarded_low_precision_dense_step_is_orthogonal_to_the_memory_up_to_rounding(dtype) -> None:
    """OGD-GTL's guarantee is first order: the step taken, ``w1 - w0``, is orthogonal to the stored directions
    (eq. 12) up to the rounding of ``w1`` to the dtype, ``||Q^T (w1 - w0)|| <= eps ||w1||``. (The old logits
    themselves move at second order, which a large step makes visible: that is not what OGD promises.)"""
    model = _model(dtype)
    xa, ya = torch.randn(3, 6, dtype=dtype), torch.randint(3, (3,))
    memory = DenseMemory(model.parameters(), k_per_task=3)
    memory.add_task(model, xa, ya)
    assert memory.basis.dtype == torch.float32
    w0 = [p.detach().float().clone() for p in model.parameters()]
    free = _step_guarded_and_free(model, memory, dtype)
    residuals, rounding = [], []
    for net in (model, free):
        w1 = [p.detach().float() for p in net.parameters()]
        residuals.append(memory.residual([a - b for a, b in zip(w1, w0, strict=True)]))
        rounding.append(torch.finfo(dtype).eps * sum(float(t.pow(2).sum()) for t in w1) ** 0.5)
    guarded, free_residual = residuals
    assert free_residual > 5 * rounding[1]  # the unguarded step has a large component along the memory
    assert guarded <= rounding[0]
