"""The recent optimizers (kaplinskiy.optimizers) under FSDP2, guarded by a layer-wise memory: two CPU processes whose
weights are DTensors split by rows end where one process ends. Newton-Schulz, the spectral soft sign and the
temperature fits each take a whole matrix (or a whole group's values), gathered on every rank
(kaplinskiy/_tensor_lists.py); without that, SoftSignum's fit and SoftMuon's soft sign failed on shards."""

from __future__ import annotations

import pytest
import torch
from test_fsdp import _problem, _shard
from torch import nn
from two_processes import run_on_two_processes

from kaplinskiy import ForgettingGuard, LayerwiseMemory
from kaplinskiy.optimizers import LionMuon, SoftMuon, SoftSignum, muon_param_groups

KINDS = ("lion_muon", "soft_muon", "soft_signum")


def _base(kind: str, model: nn.Module) -> torch.optim.Optimizer:
    """Each optimizer passes its phases in three steps; Newton-Schulz in float64, since the ranks' gradients are
    summed in another order than one process sums them, and bfloat16 would round those last bits apart."""
    if kind == "lion_muon":
        return LionMuon(muon_param_groups(model, lr=0.05), lr=0.05, ns_dtype=torch.float64)
    if kind == "soft_muon":
        groups = muon_param_groups(model, lr=0.05)
        return SoftMuon(groups, lr=0.05, sign_steps=1, transition_steps=2, ns_dtype=torch.float64)
    return SoftSignum(model.parameters(), lr=0.05, momentum=0.9, sign_steps=1, transition_steps=2)


def _train(kind: str, rank: int = 0, world: int = 1) -> list[torch.Tensor]:
    """The parameters after three guarded steps, gathered from the shards; each rank takes its part of the batch
    and of the old task."""
    torch.set_default_dtype(torch.float64)
    model, xa, xb, yb = _problem("mlp")
    if world > 1:
        _shard(model, world)
    memory = LayerwiseMemory(model, threshold=0.95)
    memory.add_task([xa[rank * len(xa) // world : (rank + 1) * len(xa) // world]])
    opt = ForgettingGuard(_base(kind, model), memory)
    batch = slice(rank * len(yb) // world, (rank + 1) * len(yb) // world)
    for _ in range(3):
        opt.zero_grad()
        nn.functional.cross_entropy(model(xb[batch]), yb[batch]).backward()
        opt.step()
    return [(p.full_tensor() if world > 1 else p).detach().clone() for p in model.parameters()]


def _record(rank: int, world: int) -> dict[str, list[torch.Tensor]]:
    return {kind: _train(kind, rank, world) for kind in KINDS}


@pytest.fixture(scope="module")
def sharded_runs(tmp_path_factory) -> list[dict[str, list[torch.Tensor]]]:
    return run_on_two_processes(_record, str(tmp_path_factory.mktemp("fsdp_recent") / "record"))


@pytest.mark.slow
@pytest.mark.parametrize("kind", KINDS)
def test_sharded_run_equals_single_process(sharded_runs, kind: str) -> None:
    single = _train(kind)
    for record in sharded_runs:
        for a, b in zip(record[kind], single, strict=True):
            assert torch.allclose(a, b, rtol=0, atol=1e-12)
