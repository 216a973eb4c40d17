"""The walking-skeleton benchmark behaves as sec. 4 of the note predicts, and its records are honest."""

from __future__ import annotations

import json

import pytest
import torch
from run_two_task import main
from two_task import make_task, memory_basis, run_phase_b

PROBLEM = {
    "dim": 8,
    "n_samples": 40,
    "condition": 50.0,
    "noise": 0.1,
    "steps": 15,
    "lr": 0.5,
    "memory_k": 3,
    "armijo": {"c": 1e-4, "shrink": 0.5, "max_trials": 30},
}
COMMON = {"steps": 15, "lr": 0.5, "memory_k": 3, "armijo_c": 1e-4, "armijo_shrink": 0.5, "armijo_max_trials": 30}


def tasks(seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    return make_task(8, 40, 50.0, 0.1, gen), make_task(8, 40, 50.0, 0.1, gen)


def test_plain_descent_on_b_forgets_a() -> None:
    a, b = tasks()
    s = run_phase_b(a, b, project=False, l2sp=0.0, armijo=False, **COMMON)["summary"]
    assert s["forgetting"] > 0 and s["learning"] > 0


@pytest.mark.parametrize("seed", range(5))
def test_potential_arm_is_monotone_and_forgets_less_than_gd(seed: int) -> None:
    a, b = tasks(seed)
    gd = run_phase_b(a, b, project=False, l2sp=0.0, armijo=False, **COMMON)["summary"]
    pot = run_phase_b(a, b, project=True, l2sp=0.1, armijo=True, **COMMON)["summary"]
    assert pot["phi_monotone"]
    assert pot["forgetting"] < gd["forgetting"]


def test_memory_holds_the_top_curvature_directions() -> None:
    a, _ = tasks()
    Q = memory_basis(a, 3)
    _evals, evecs = torch.linalg.eigh(a.hessian())
    top = evecs[:, -3:]
    assert torch.allclose(Q.T @ Q, torch.eye(3), atol=1e-12)
    assert torch.allclose(Q @ Q.T, top @ top.T, atol=1e-10)  # the same subspace


def test_projection_keeps_the_first_step_out_of_the_memory() -> None:
    a, b = tasks()
    res = run_phase_b(a, b, project=True, l2sp=0.0, armijo=False, **(COMMON | {"steps": 1}))
    # At w_A*, grad L_A = 0 (up to least-squares round-off), so the first step has no first-order forgetting.
    assert abs(res["trace"]["old_task_slope"][0]) < 1e-10


def test_record_has_provenance_config_and_traces(tmp_path) -> None:
    arm = {"project": True, "l2sp": 0.1, "armijo": True}
    out = tmp_path / "rec.json"
    main(PROBLEM, arm, "potential", 3, out)
    rec = json.loads(out.read_text())
    assert rec["arm"] == "potential" and rec["seed"] == 3 and rec["config"]["arm"] == arm
    assert {"git_commit", "torch", "python", "created_utc"} <= set(rec["provenance"])
    assert len(rec["trace"]["L_A"]) == PROBLEM["steps"]
    again = tmp_path / "again.json"
    main(PROBLEM, arm, "potential", 3, again)
    # Deterministic for a seed up to BLAS round-off (MKL's results depend on memory alignment).
    for key, values in json.loads(again.read_text())["trace"].items():
        assert values == pytest.approx(rec["trace"][key], rel=1e-9, abs=1e-12), key
