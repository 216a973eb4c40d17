"""Aggregate the KP benchmark cells: per cell and arm, successes, median costs and final gaps; per arm,
every problem's cost to each tolerance (for the profiles)."""

import json
import statistics
from pathlib import Path
from typing import Any

from kp_profiles import median_cost


def tol_key(tol: float) -> str:
    """The key of a tolerance in the records' ``cost_to`` ladders (``1e-06``)."""
    return f"{tol:.0e}"


def aggregate(
    records: list[dict[str, Any]], functions: list[str], arms: list[str], tol: float, tol_multimodal: float
) -> dict[str, Any]:
    """Group the records by (function, dim), in the order of ``functions`` then dim, and by arm (order of ``arms``)."""
    keys = (tol_key(tol), tol_key(tol_multimodal))
    cells: dict[tuple[str, int], dict[str, Any]] = {}
    problems: dict[str, list[dict[str, Any]]] = {arm: [] for arm in arms}
    order = {name: i for i, name in enumerate(functions)}
    unknown = {r["arm_name"] for r in records} - set(arms)
    if unknown:
        raise ValueError(f"Invalid records: arms {sorted(unknown)} are not among {arms}")
    for rec in sorted(
        records, key=lambda r: (order.get(r["function"], len(order)), r["dim"], arms.index(r["arm_name"]))
    ):
        arm = rec["arm_name"]
        cell = cells.setdefault(
            (rec["function"], rec["dim"]),
            {
                "function": rec["function"],
                "dim": rec["dim"],
                "multimodal": rec["multimodal"],
                "budget": rec["budget"],
                "starts": len(rec["starts"]),
                "arms": {},
            },
        )
        starts = rec["starts"]
        cell["arms"][arm] = {
            "solved": {k: sum(s["cost_to"][k] is not None for s in starts) for k in keys},
            "median_cost": {k: median_cost([s["cost_to"][k] for s in starts]) for k in keys},
            "median_final_gap": statistics.median(s["final_gap"] for s in starts),
            "seconds": sum(s["seconds"] for s in starts),
        }
        problems[arm] += [
            {
                "function": rec["function"],
                "dim": rec["dim"],
                "start": s["start"],
                "cost_to": s["cost_to"],
                "final_gap": s["final_gap"],
            }
            for s in starts
        ]
    overall = {
        arm: {
            "problems": len(ps),
            "solved": {k: sum(p["cost_to"][k] is not None for p in ps) for k in keys},
        }
        for arm, ps in problems.items()
    }
    return {
        "arms": arms,
        "tol": keys[0],
        "tol_multimodal": keys[1],
        "cells": list(cells.values()),
        "overall": overall,
        "problems": problems,
        "sources": sorted({r["provenance"]["git_commit"] or "unknown" for r in records}),
    }


if __name__ == "__main__":
    sm = snakemake
    recs = [json.loads(Path(p).read_text()) for p in sm.input.records]
    summary = aggregate(recs, list(sm.params.functions), list(sm.params.arms), sm.params.tol, sm.params.tol_multimodal)
    Path(sm.output[0]).write_text(json.dumps(summary, indent=1, allow_nan=True) + "\n")
