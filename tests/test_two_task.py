"""The walking-skeleton benchmark behaves as sec. 4 of the note predicts, and its records are honest."""

from __future__ import annotations

import json

import pytest
import torch
from two_task._problem import make_task, memory_basis, run_phase_b
from two_task.run_two_task import main

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


def test_exact_fisher_ewc_is_the_old_tasks_own_loss_in_phi() -> None:
    """On least squares, eq. (6) with F = H_A equals ``L_A(w) - L_A(w_A*)``: the EWC arm's potential."""
    from two_task._problem import ewc_exact_penalty

    task_a, _ = tasks()
    w_a = task_a.minimiser()
    w = w_a + torch.randn(w_a.shape, generator=torch.Generator().manual_seed(1), dtype=w_a.dtype)
    penalty = ewc_exact_penalty(w, w_a, task_a.hessian(), 2.0)
    torch.testing.assert_close(penalty, 2.0 * (task_a.loss(w) - task_a.loss(w_a)), rtol=1e-9, atol=1e-12)
    run = run_phase_b(*tasks(), project=False, l2sp=0.0, armijo=False, ewc=1.0, **COMMON)
    free = run_phase_b(*tasks(), project=False, l2sp=0.0, armijo=False, **COMMON)
    assert run["summary"]["forgetting"] < free["summary"]["forgetting"]


def _record(arm: str, seed: int, lb: list[float], la: list[float]) -> dict:
    return {
        "arm": arm,
        "seed": seed,
        "config": {"problem": {"steps": len(lb) - 1}, "arm": {"project": False, "l2sp": 0.0, "armijo": False}},
        "provenance": {"git_commit": "abc", "git_dirty": True},
        "start": {"L_A": la[0], "L_B": lb[0]},
        "trace": {"L_A": la[1:], "L_B": lb[1:], "eta": [0.5] * (len(lb) - 1)},
        "summary": {
            "forgetting": la[-1] - la[0],
            "learning": lb[0] - lb[-1],
            "L_A_end": la[-1],
            "L_B_end": lb[-1],
            "L_B_start": lb[0],
            "L_B_optimum": 0.0,
            "phi_evaluations": len(lb) - 1,
            "phi_monotone": True,
            "n_rejected": 0,
            "max_abs_old_task_slope": 0.0,
        },
    }


def test_forgetting_is_also_read_at_the_reference_arms_final_learning() -> None:
    """A fast learner is compared where its L_B first reaches the slow reference's final L_B (linear between
    steps), not at the end of training; an arm that never learns that much has no matched value."""
    from two_task.aggregate_two_task import aggregate

    records = [
        _record("fast", 0, [4.0, 2.0, 0.0], [0.0, 1.0, 3.0]),
        _record("slow", 0, [4.0, 3.5, 3.0], [0.0, 0.1, 0.2]),
        _record("stuck", 0, [4.0, 3.9, 3.8], [0.0, 0.0, 0.0]),
    ]
    summary = aggregate(records, ["fast", "slow", "stuck"], reference="slow")
    fast = summary["arms"]["fast"]
    assert fast["stats"]["forgetting"]["mean"] == 3.0
    assert fast["stats"]["matched_forgetting"]["mean"] == pytest.approx(0.5)  # L_B = 3 halfway to step 1
    assert summary["arms"]["slow"]["stats"]["matched_forgetting"]["mean"] == pytest.approx(0.2)
    assert summary["arms"]["stuck"]["stats"]["matched_forgetting"] is None
    assert summary["sources"] == ["abc (uncommitted changes)"]
    with pytest.raises(ValueError, match="ran seeds"):
        aggregate([*records, _record("slow", 1, [4.0, 3.0, 2.9], [0.0, 0.1, 0.2])], ["fast", "slow"], reference="slow")


def test_the_armijo_sentence_says_when_the_test_never_acted() -> None:
    from paper.paper_numbers import armijo_sentence
    from two_task.aggregate_two_task import armijo_use

    data = {"config": {"armijo": True}, "n_rejected": 0, "per_seed": {"eta": [[0.5], [0.5]]}}
    summary = {"problem": {"lr": 0.5}, "arms": {"potential": data}}
    assert armijo_sentence({"armijo": armijo_use(summary["arms"], 0.5)}).startswith("The Armijo test never acted")
    data["per_seed"]["eta"] = [[0.25, 0.5], [0.5]]
    assert "shortened" in armijo_sentence({"armijo": armijo_use(summary["arms"], 0.5)})
    assert armijo_sentence({"armijo": armijo_use({}, 0.5)}) == "No arm uses the Armijo test."


def test_the_texts_judgements_are_checked_and_marked_when_they_fail() -> None:
    """ "A trade-off, not a free lunch" and "forgetting at the end flatters it" hold for a method that forgets less
    but learns less than its baseline; swapped, the text marks them."""
    from paper.paper_numbers import two_task_numbers
    from two_task.aggregate_two_task import aggregate, comparisons

    records = [
        _record("fast", 0, [4.0, 2.0, 0.5], [0.0, 1.0, 3.0]),
        _record("slow", 0, [4.0, 3.5, 3.0], [0.0, 0.1, 0.2]),
    ]
    summary = aggregate(records, ["fast", "slow"], reference="slow")
    summary["problem"] |= {"dim": 2, "n_samples": 4, "lr": 0.5, "memory_k": 1, "condition": 10.0}
    for arm in summary["arms"].values():
        arm["config"] |= {"l2sp": 0.0}

    def value(lines: list[str], name: str) -> str:
        line = next(line for line in lines if line.startswith(f"\\newcommand{{\\{name}}}"))
        return line.split("}{", 1)[1].rsplit("} %", 1)[0]

    holds = two_task_numbers(summary | comparisons(summary, {"baseline": "fast", "method": "slow"}), "summary.json")
    assert value(holds, "ClaimTradeOff") == "" and value(holds, "ClaimEndFlatters") == ""
    fails = two_task_numbers(summary | comparisons(summary, {"baseline": "slow", "method": "fast"}), "summary.json")
    assert "not supported" in value(fails, "ClaimTradeOff")
    assert "not supported" in value(fails, "ClaimFirstOrderLeak")  # the records' slopes are all 0


def test_task_a_s_minimiser_has_the_same_bits_whatever_the_buffers_alignment() -> None:
    """The same seed gives the same w_A* to the last bit in processes whose allocations start at different offsets
    (MKL's default least-squares driver did not: a rerun of the benchmark then moved a chaotic arm's numbers)."""
    import subprocess
    import sys
    from pathlib import Path

    scripts = Path(__file__).resolve().parents[1] / "workflow" / "scripts"
    code = (
        "import sys, torch; torch.set_num_threads(1); junk = torch.empty(int(sys.argv[1]), dtype=torch.uint8); "
        "from two_task._problem import make_task; "
        "print(repr(make_task(20, 200, 100.0, 0.1, torch.Generator().manual_seed(0)).minimiser().tolist()))"
    )
    outputs = {
        subprocess.run(
            [sys.executable, "-c", code, str(offset)], cwd=scripts, capture_output=True, text=True, check=True
        ).stdout
        for offset in (1, 8, 24)
    }
    assert len(outputs) == 1


def _matched_summary(per_seed: dict[str, list[float | None]]) -> dict:
    def mean(values: list[float | None]) -> float | None:
        reached = [v for v in values if v is not None]
        return sum(reached) / len(reached) if reached else None

    return {
        "arms": {
            arm: {
                "stats": {"matched_forgetting": None if mean(v) is None else {"mean": mean(v)}},
                "per_seed": {"matched_forgetting": v},
            }
            for arm, v in per_seed.items()
        }
    }


def test_the_paired_interval_is_student_t_on_the_differences() -> None:
    from common.statistics import paired_interval

    mean, low, high = paired_interval([1.0, 2.0, 3.0])
    half = 4.302652729911275 / 3**0.5  # t_{0.975, 2} * sd 1 / sqrt 3
    assert (mean, low, high) == pytest.approx((2.0, 2.0 - half, 2.0 + half))
    assert paired_interval([0.5])[0] == 0.5 and all(v != v for v in paired_interval([0.5])[1:])  # nan bounds


def test_the_best_arm_at_matched_learning_is_named_only_where_seeds_separate_it() -> None:
    """A lead within the seeds' spread is reported as no single best arm; a lead on every seed is not; an arm that
    never reached matched learning is left out, and one seed separates nothing."""
    from paper.paper_numbers import matched_best_abstract, matched_best_sentence
    from two_task.aggregate_two_task import matched_best

    def compared(summary: dict, method: str = "b") -> dict:
        return summary | {"matched_best": matched_best(summary["arms"]), "headline": {"method": method}}

    clear = _matched_summary({"a": [0.10, 0.20, 0.30], "b": [0.50, 0.61, 0.70], "never": [None, None, None]})
    assert matched_best(clear["arms"]) == {"arm": "a", "tied": [], "level": 0.95}
    assert "below every other arm" in matched_best_sentence(compared(clear), {"a": "Arm A"})
    assert "lower than every other arm" in matched_best_abstract(compared(clear), {})
    close = _matched_summary({"a": [0.10, 0.50, 0.30], "b": [0.20, 0.40, 0.35], "c": [0.9, 1.0, 1.1]})
    assert matched_best(close["arms"])["tied"] == ["b"]  # b is lower on one seed of three: the interval includes 0
    sentence = matched_best_sentence(compared(close), {"a": "Arm A", "b": "Arm B"})
    assert "not separated from Arm B" in sentence and "no single best arm" in sentence
    assert matched_best_abstract(compared(close), {}).endswith("one other arm, the full method among them")
    assert matched_best(_matched_summary({"a": [0.1], "b": [0.9]})["arms"])["tied"] == ["b"]
