"""The issue's target, at test scale: the faithful KP beam reaches f - f* <= 1e-6 on sphere, Booth and
Himmelblau (2-D) from every start, with fewer evaluations than minpy's NM needed on 2-D Ackley (917, for 2e-5)."""

from __future__ import annotations

import pytest
import torch

from kaplinskiy.kaplinskii_propoi.beam import minimize_beam
from kaplinskiy.kaplinskii_propoi.descent import DescentOptions
from kaplinskiy.kaplinskii_propoi.objectives import OBJECTIVES

MINPY_NM_EVALS = 917  # minpy's NM on 2-D Ackley from (0.8, 1.9), as the audit of sec:kp_benchmark counts it
N_STARTS = 10


@pytest.mark.parametrize("name", ["sphere", "booth", "himmelblau"])
def test_beam_reaches_1e6_from_every_start(name: str) -> None:
    o = OBJECTIVES[name]
    lo, hi = o.box
    worst = 0
    for seed in range(N_STARTS):
        gen = torch.Generator().manual_seed(seed)
        x0 = lo + (hi - lo) * torch.rand(2, generator=gen)
        opts = DescentOptions(sigma0=0.1 * (hi - lo), f_target=o.f_star + 1e-6, max_evals=MINPY_NM_EVALS)
        r = minimize_beam(o.f, x0, generator=gen, lower=lo, upper=hi, options=opts)
        evals = r.evals_to_reach(o.f_star + 1e-6)
        assert evals is not None, (seed, r.f, r.stop)
        worst = max(worst, evals)
    assert worst < MINPY_NM_EVALS
