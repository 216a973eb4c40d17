"""kaplinskiy.optimizers's optimizers on a GPU take the steps they take on the CPU (float32, Newton-Schulz in float32
so that both devices round alike up to summation order), guarded too. Skipped without CUDA; the GPU run's test
stage runs it (workflow/scripts/step_time_gpu_run.sh)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from kaplinskiy import ForgettingGuard, LayerwiseMemory
from kaplinskiy.optimizers import LionMuon, SoftMuon, SoftSignum, muon_param_groups

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")

OPTIMIZERS = {
    "LionMuon": lambda m: LionMuon(muon_param_groups(m, lr=1e-2), lr=1e-2, ns_dtype=torch.float32),
    "SoftMuon": lambda m: SoftMuon(
        muon_param_groups(m, lr=1e-2), lr=1e-2, sign_steps=1, transition_steps=2, ns_dtype=torch.float32
    ),
    "SoftSignum": lambda m: SoftSignum(m.parameters(), lr=1e-2, momentum=0.9, sign_steps=1, transition_steps=2),
}


def _run(name: str, device: str, guarded: bool) -> list[torch.Tensor]:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Embedding(11, 8), nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 11)).float().to(device)
    g = torch.Generator().manual_seed(1)
    old, new = torch.randint(11, (6,), generator=g).to(device), torch.randint(11, (8,), generator=g).to(device)
    opt = OPTIMIZERS[name](model)
    if guarded:
        memory = LayerwiseMemory(model, threshold=0.99)
        memory.add_task([old])
        opt = ForgettingGuard(opt, memory)
    for _ in range(4):
        opt.zero_grad()
        nn.functional.cross_entropy(model(new), new.roll(1)).backward()
        opt.step()
    return [p.detach().cpu() for p in model.parameters()]


@pytest.mark.parametrize("guarded", [False, True])
@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_a_gpu_takes_the_cpu_steps(name: str, guarded: bool) -> None:
    torch.set_default_dtype(torch.float32)
    for a, b in zip(_run(name, "cuda", guarded), _run(name, "cpu", guarded), strict=True):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-5)
