"""Aggregate the two-task runs: per arm, the mean/min/max curves and the summary over seeds.

Forgetting at the end of a fixed number of steps compares arms that learned task B to different depths.
Each arm's forgetting is therefore also read at matched learning: along its own trace, where its L_B first
falls to the reference arm's final L_B on the same seed (``matched_forgetting``; an arm that never gets there
has no value for that seed).
"""

import json
import statistics
from pathlib import Path
from typing import Any

SUMMARY_KEYS = ("forgetting", "learning", "L_A_end", "L_B_end", "L_B_start", "L_B_optimum", "phi_evaluations")


def _band(rows: list[list[float]]) -> dict[str, list[float]]:
    cols = list(zip(*rows, strict=True))
    return {"mean": [statistics.fmean(c) for c in cols], "min": [min(c) for c in cols], "max": [max(c) for c in cols]}


def forgetting_at(record: dict[str, Any], target: float) -> float | None:
    """``L_A - L_A(w_A*)`` where the run's L_B first falls to ``target`` (linear between steps), or None."""
    lb = [record["start"]["L_B"], *record["trace"]["L_B"]]
    la = [record["start"]["L_A"], *record["trace"]["L_A"]]
    for i, value in enumerate(lb):
        if value <= target:
            if i == 0:
                return 0.0
            t = (lb[i - 1] - target) / (lb[i - 1] - value)
            return la[i - 1] + t * (la[i] - la[i - 1]) - la[0]
    return None


def _stats(values: list[float]) -> dict[str, float]:
    return {"mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0}


def aggregate(records: list[dict[str, Any]], arms: list[str], reference: str) -> dict[str, Any]:
    """Group ``records`` by arm (in the order of ``arms``) and reduce over seeds; ``reference``: the arm whose
    final L_B sets the matched-learning point. Every arm must have run the same seeds on one problem."""
    out: dict[str, Any] = {"arms": {}}
    by_arm = {arm: sorted((r for r in records if r["arm"] == arm), key=lambda r: r["seed"]) for arm in arms}
    seeds = [r["seed"] for r in by_arm.get(reference, [])]
    if reference not in by_arm or not seeds:
        raise ValueError(f"Invalid records: no run of the reference arm {reference!r}")
    if len({json.dumps(r["config"]["problem"], sort_keys=True) for r in records}) != 1:
        raise ValueError("Invalid records: the runs were made on different problem configs")
    targets = {r["seed"]: r["summary"]["L_B_end"] for r in by_arm[reference]}
    for arm in arms:
        recs = by_arm[arm]
        if not recs:
            raise ValueError(f"Invalid records: no run of arm {arm!r}")
        if [r["seed"] for r in recs] != seeds:
            raise ValueError(f"Invalid records: arm {arm!r} ran seeds {[r['seed'] for r in recs]}, not {seeds}")
        curves = {key: _band([[r["start"][key], *r["trace"][key]] for r in recs]) for key in ("L_A", "L_B")}
        stats = {key: _stats([r["summary"][key] for r in recs]) for key in SUMMARY_KEYS}
        matched = [forgetting_at(r, targets[r["seed"]]) for r in recs]
        reached = [m for m in matched if m is not None]
        stats["matched_forgetting"] = _stats(reached) | {"n_reached": len(reached)} if reached else None
        out["arms"][arm] = {
            "seeds": [r["seed"] for r in recs],
            "per_seed": {
                "forgetting": [r["summary"]["forgetting"] for r in recs],
                "L_B_end": [r["summary"]["L_B_end"] for r in recs],
                "matched_forgetting": matched,
                "eta": [sorted(set(r["trace"]["eta"])) for r in recs],
            },
            "config": recs[0]["config"]["arm"],
            "curves": curves,
            "stats": stats,
            "all_phi_monotone": all(r["summary"]["phi_monotone"] for r in recs),
            "n_rejected": sum(r["summary"]["n_rejected"] for r in recs),
            "max_abs_old_task_slope": max(r["summary"]["max_abs_old_task_slope"] for r in recs),
        }
    out["problem"] = records[0]["config"]["problem"]
    out["reference"] = reference
    out["sources"] = sorted({_source(r["provenance"]) for r in records})
    return out


def _source(prov: dict[str, Any]) -> str:
    """A run's code: its commit, marked when the tree had uncommitted changes."""
    return (prov.get("git_commit") or "unknown") + (" (uncommitted changes)" if prov.get("git_dirty") else "")


if __name__ == "__main__":
    sm = snakemake
    recs = [json.loads(Path(p).read_text()) for p in sm.input]
    summary = aggregate(recs, list(sm.params.arms), sm.params.reference)
    Path(sm.output[0]).write_text(json.dumps(summary, indent=1) + "\n")
