"""Aggregate the two-task runs: per arm, the mean/min/max curves and the summary over seeds."""

import json
import statistics
from pathlib import Path
from typing import Any

SUMMARY_KEYS = ("forgetting", "learning", "L_A_end", "L_B_end", "L_B_start", "L_B_optimum", "phi_evaluations")


def _band(rows: list[list[float]]) -> dict[str, list[float]]:
    cols = list(zip(*rows, strict=True))
    return {"mean": [statistics.fmean(c) for c in cols], "min": [min(c) for c in cols], "max": [max(c) for c in cols]}


def aggregate(records: list[dict[str, Any]], arms: list[str]) -> dict[str, Any]:
    """Group ``records`` by arm (in the order of ``arms``) and reduce over seeds."""
    out: dict[str, Any] = {"arms": {}}
    for arm in arms:
        recs = sorted((r for r in records if r["arm"] == arm), key=lambda r: r["seed"])
        if not recs:
            raise ValueError(f"Invalid records: no run of arm {arm!r}")
        curves = {key: _band([[r["start"][key], *r["trace"][key]] for r in recs]) for key in ("L_A", "L_B")}
        stats = {
            key: {
                "mean": statistics.fmean(v := [r["summary"][key] for r in recs]),
                "std": statistics.stdev(v) if len(v) > 1 else 0.0,
            }
            for key in SUMMARY_KEYS
        }
        out["arms"][arm] = {
            "seeds": [r["seed"] for r in recs],
            "config": recs[0]["config"]["arm"],
            "curves": curves,
            "stats": stats,
            "all_phi_monotone": all(r["summary"]["phi_monotone"] for r in recs),
            "n_rejected": sum(r["summary"]["n_rejected"] for r in recs),
            "max_abs_old_task_slope": max(r["summary"]["max_abs_old_task_slope"] for r in recs),
        }
    out["problem"] = records[0]["config"]["problem"]
    out["sources"] = sorted({r["provenance"]["git_commit"] or "unknown" for r in records})
    return out


if __name__ == "__main__":
    sm = snakemake
    recs = [json.loads(Path(p).read_text()) for p in sm.input]
    Path(sm.output[0]).write_text(json.dumps(aggregate(recs, list(sm.params.arms)), indent=1) + "\n")
