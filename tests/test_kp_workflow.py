"""The KP benchmark's workflow scripts: profiles, cost accounting of every arm, aggregation, tables, numbers,
and a dry run of the rules on the smoke config."""

from __future__ import annotations

import itertools
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from kp_benchmark._arms import ARMS, GRADIENT_METHODS, run_arm
from kp_benchmark._profiles import data_profile, median_cost, performance_profile, shared_problems
from kp_benchmark.aggregate_kp import aggregate, reported
from kp_benchmark.numbers_kp import key, kp_numbers
from kp_benchmark.run_kp_cell import cost_to_reach, run_cell, start_point, thin
from kp_benchmark.tab_kp_benchmark import benchmark_table, defects_table

from kaplinskiy.kaplinskii_propoi import OBJECTIVES

ROOT = Path(__file__).resolve().parents[1]
EXTERNAL = {"scipy_nm": "scipy", "cma_es": "cma"}


def test_median_cost_counts_failures_as_infinite() -> None:
    assert median_cost([10.0, None, 30.0]) == 30.0
    assert median_cost([10.0, None, None]) == math.inf


def test_data_profile_on_a_small_example() -> None:
    """Costs 3 (n = 2) and 22 (n = 10) in units of n + 1 are 1 and 2; one problem is unsolved."""
    d = data_profile([3.0, 22.0, None], [2, 10, 2], [0.5, 1.0, 2.0, 1e9])
    assert d == [0.0, 1 / 3, 2 / 3, 2 / 3]


def test_performance_profile_ratios() -> None:
    rho = performance_profile({"a": [1.0, 4.0, None], "b": [2.0, 2.0, None]}, [1.0, 2.0, 100.0])
    assert rho == {"a": [1 / 3, 2 / 3, 2 / 3], "b": [1 / 3, 2 / 3, 2 / 3]}
    with pytest.raises(ValueError, match="Invalid costs_by_arm"):
        performance_profile({"a": [1.0], "b": [1.0, 2.0]}, [1.0])


def test_shared_problems_keeps_the_intersection_in_one_order() -> None:
    a = [{"function": "f", "dim": 2, "start": s, "x": s} for s in (2, 0, 1)]
    b = [{"function": "f", "dim": 2, "start": s, "x": 10 + s} for s in (1, 2)]
    shared = shared_problems({"a": a, "b": b, "c": []}, ["a", "b", "c"])
    assert [p["x"] for p in shared["a"]] == [1, 2] and [p["x"] for p in shared["b"]] == [11, 12]
    assert "c" not in shared


def test_starts_are_shared_and_in_the_box() -> None:
    box = OBJECTIVES["booth"].box
    a, b = start_point(box, 2, 3), start_point(box, 2, 3)
    assert torch.equal(a, b) and not torch.equal(a, start_point(box, 2, 4))
    assert bool(((a >= box[0]) & (a <= box[1])).all())


def test_cost_to_reach_and_thin() -> None:
    trace = [(1.0, 10.0), (5.0, 1.0), (6.0, 0.9), (9.0, 1e-7)]
    assert cost_to_reach(trace, 0.0, 1e-6) == 9.0 and cost_to_reach(trace, 0.0, 1e-9) is None
    kept = thin(trace, 0.0)
    assert [c for c, _ in kept] == [1.0, 5.0, 9.0]


@pytest.mark.parametrize("method", sorted(ARMS))
def test_every_arm_is_charged_within_its_budget(method: str) -> None:
    if method in EXTERNAL:
        pytest.importorskip(EXTERNAL[method])
    o = OBJECTIVES["sphere"]
    x0 = start_point(o.box, 2, 0)
    params = {"n_samples": 2} if method == "kp_hybrid" else {"lr": 0.1} if method in ("adam", "sgd") else {}
    result, trace = run_arm(
        method, o.f, x0, seed=1, box=o.box, budget=120.0, gradient_cost=2.0, f_target=None, sigma0=1.0, params=params
    )
    assert trace and all(c <= 120.0 for c, _ in trace)
    assert all(b[1] < a[1] for a, b in itertools.pairwise(trace))
    assert (result.n_grads > 0) == (method in GRADIENT_METHODS)
    assert result.n_evals + 2.0 * result.n_grads <= 120.0 + 3.0 * 6  # at most one overshooting iteration
    assert trace[-1][1] <= float(o.f(x0))


def test_unknown_method_is_an_error() -> None:
    with pytest.raises(ValueError, match="Invalid method"):
        run_arm("newton", OBJECTIVES["sphere"].f, torch.zeros(2), seed=0, box=(-1.0, 1.0), budget=10.0,
                gradient_cost=0.0, f_target=None, sigma0=0.1, params={})  # fmt: skip


CELL = {"starts": 2, "budget_per_dim": 60, "gradient_cost_per_dim": 1.0, "sigma0_frac": 0.1, "stop_at_target": True}


@pytest.fixture(scope="module")
def summary() -> dict:
    arms = {"kp_beam": {"method": "kp_beam"}, "minpy_potential_shipped": {"method": "minpy_potential"}}
    records = []
    for function, dim in (("sphere", 2), ("himmelblau", 2)):
        for name, arm in arms.items():
            rec = run_cell(function, dim, arm, CELL)
            records.append(rec | {"arm_name": name, "provenance": {"git_commit": "abc"}})
    out = aggregate(records, ["sphere", "himmelblau"], list(arms), 1e-6, 1e-3)
    return out | reported(out, "kp_beam", ["sphere"], ["minpy_potential_shipped", "not_run"])


def test_aggregate_orders_cells_and_counts_problems(summary: dict) -> None:
    assert [(c["function"], c["dim"]) for c in summary["cells"]] == [("sphere", 2), ("himmelblau", 2)]
    assert summary["overall"]["kp_beam"]["problems"] == 4
    for cell in summary["cells"]:
        for data in cell["arms"].values():
            assert data["solved"]["1e-06"] <= data["solved"]["1e-03"] <= cell["starts"]


def test_tables_have_as_many_cells_as_columns(summary: dict) -> None:
    labels = {"kp_beam": "KP beam"}
    for text in (
        benchmark_table(summary, ["kp_beam", "minpy_potential_shipped", "absent"], labels),
        defects_table(summary, labels),
    ):
        spec = text.splitlines()[0].split("}{")[1].rstrip("}").replace(" ", "")
        rows = [line for line in text.splitlines() if line.endswith(r"\\")]
        assert rows and all(line.count("&") == len(spec) - 1 for line in rows)


def test_numbers_are_letter_only_macros(summary: dict) -> None:
    lines = kp_numbers(summary, {"minpy_nm_reference_evals": 917, "cell": CELL}, "summary.json")
    names = [line.split("{", 2)[1].rstrip("}").lstrip("\\") for line in lines]
    assert len(names) == len(set(names)) and all(n.isalpha() for n in names)
    assert key("kp_beam") == "KpBeam" and key(100) == "OneZeroZero"
    assert any(line.startswith(r"\newcommand{\KpTargetRuns}{2}") for line in lines)


def test_the_aggregation_counts_the_target_and_the_defects_on_the_problems_every_defect_arm_ran(summary: dict) -> None:
    """The target counts the headline arm's 2-D starts of the target functions; the defects' counts are over the
    problems the defect arms share, and a defect arm the config did not run is left out."""
    assert summary["target"]["arm"] == "kp_beam" and summary["target"]["runs"] == 2
    assert summary["target"]["solved"] <= 2
    defects = summary["defects"]
    assert list(defects["arms"]) == ["minpy_potential_shipped"] and defects["problems"] == 4
    assert defects["arms"]["minpy_potential_shipped"]["solved"]["1e-06"] <= 4
    assert set(summary["claims"]) and summary["claim_thresholds"] == {"competitive_cost": 2.0, "minpy_fraction": 0.5}


def test_the_configs_function_domains_are_the_librarys() -> None:
    """The DAG plans the KP cells from config kp_benchmark.domains without importing the library: each function's
    domain there must be the one kaplinskiy.kaplinskii_propoi.OBJECTIVES defines (fixed dimensions, or the least
    dimension)."""
    import yaml

    domains = yaml.safe_load((ROOT / "workflow" / "config" / "config.yaml").read_text())["kp_benchmark"]["domains"]
    library = {
        name: {"dims": list(o.dims)} if o.dims is not None else {"min_dim": o.min_dim} for name, o in OBJECTIVES.items()
    }
    assert domains == library


@pytest.mark.slow
def test_rules_dry_run_on_the_smoke_config(tmp_path: Path) -> None:
    """The rules plan every stage of the benchmark (a Snakefile that includes common.smk and kp_benchmark.smk)."""
    snakefile = tmp_path / "Snakefile"
    rules = ROOT / "workflow" / "rules"
    snakefile.write_text(
        f'configfile: "{ROOT}/workflow/config/config.yaml"\n'
        f'include: "{rules}/common.smk"\n'
        f'include: "{rules}/kp_benchmark.smk"\n'
        "rule all:\n    input: PAPER_INPUTS\n"
    )
    bindir = str(Path(sys.executable).parent)
    env = os.environ | {"PATH": bindir + os.pathsep + os.environ.get("PATH", "")}
    cmd = [os.path.join(bindir, "snakemake"), "-n", "--forceall", "-s", str(snakefile), "-d", str(ROOT)]
    cmd += ["--configfile", "workflow/config/smoke.yaml"]
    res = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    for rule in ("kp_cell", "kp_aggregate", "fig_kp_profiles", "tab_kp_benchmark", "numbers_kp"):
        assert rule in res.stdout, f"rule {rule} is not planned"
