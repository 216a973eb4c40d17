"""Two CPU processes (torch.distributed, gloo, DistributedDataParallel): the guarded update equals the
single-process update on the full batch, because the projection acts on the all-reduced gradient."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from two_processes import run_on_two_processes

from kaplinskiy import DenseMemory, ForgettingGuard, LayerwiseMemory, sample_loss

STEPS = 3


def _problem():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 3))
    gen = torch.Generator().manual_seed(1)
    xa, ya = torch.randn(5, 4, generator=gen), torch.randint(3, (5,), generator=gen)
    xb, yb = torch.randn(8, 4, generator=gen), torch.randint(3, (8,), generator=gen)
    return model, xa, ya, xb, yb


def _guard(model: nn.Module, kind: str, xa, ya, params) -> ForgettingGuard:
    if kind == "dense":
        mem = DenseMemory(list(params), k_per_task=8)
        mem.add_task(model, xa, ya, sample_loss)
    else:
        mem = LayerwiseMemory(model, threshold=0.95)
        mem.add_task([xa])
    return ForgettingGuard(torch.optim.AdamW(params, lr=0.05, weight_decay=0.1), mem)


def _train(kind: str, rank: int = 0, world: int = 1) -> list[torch.Tensor]:
    torch.set_default_dtype(torch.float64)
    model, xa, ya, xb, yb = _problem()
    net = nn.parallel.DistributedDataParallel(model) if world > 1 else model
    guard = _guard(model, kind, xa, ya, list(model.parameters()))
    shard = slice(rank * len(yb) // world, (rank + 1) * len(yb) // world)
    for _ in range(STEPS):
        guard.zero_grad()
        nn.functional.cross_entropy(net(xb[shard]), yb[shard]).backward()
        guard.step()
    return [p.detach().clone() for p in model.parameters()]


KINDS = ("dense", "layerwise")


def _record(rank: int, world: int) -> dict[str, list[torch.Tensor]]:
    return {kind: _train(kind, rank, world) for kind in KINDS}


@pytest.mark.slow
def test_two_process_guarded_update_equals_single_process(tmp_path) -> None:
    """Dense and layer-wise memories, ForgettingGuard(AdamW), three steps on half a batch per rank."""
    records = run_on_two_processes(_record, str(tmp_path / "params"))
    for kind, rank in [(k, r) for k in KINDS for r in range(2)]:
        single, got = _train(kind), records[rank][kind]
        assert all(torch.allclose(a, b, rtol=1e-12, atol=1e-13) for a, b in zip(single, got, strict=True))
