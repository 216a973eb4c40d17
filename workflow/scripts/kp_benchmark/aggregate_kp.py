"""Aggregate the KP benchmark cells: per cell and arm, successes, median costs and final gaps; per arm,
every problem's cost to each tolerance (for the profiles); and what the section reports of them: the target's
counts, the defect arms' successes on the problems they all ran, and the section's claims checked."""

import json
import math
import statistics
from pathlib import Path
from typing import Any

from common.summary_io import read_json

from kp_benchmark._claims import COMPETITIVE_COST, MINPY_FRACTION, verdicts
from kp_benchmark._profiles import median_cost, shared_problems


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


def target(summary: dict[str, Any], arm: str, functions: list[str]) -> dict[str, Any]:
    """The issue's target: how many 2-D starts of ``functions`` ``arm`` ran and solved to the strict tolerance,
    and the greatest and median cost of those it solved (inf: none)."""
    tol = summary["tol"]
    costs = [p["cost_to"][tol] for p in summary["problems"][arm] if p["function"] in functions and p["dim"] == 2]
    solved = [c for c in costs if c is not None]
    return {
        "arm": arm,
        "runs": len(costs),
        "solved": len(solved),
        "max": max(solved) if solved else math.inf,
        "median": statistics.median(solved) if solved else math.inf,
    }


def defects(summary: dict[str, Any], arms: list[str]) -> dict[str, Any]:
    """minpy's variants on the problems every one of ``arms`` ran: their number, and per arm that ran (in the
    order of ``arms``) the problems solved to each tolerance and the median final gap (nan without problems);
    ``recorded``: whether the arm has records at all."""
    arms = [a for a in arms if a in summary["arms"]]
    tol, loose = summary["tol"], summary["tol_multimodal"]
    shared = shared_problems(summary["problems"], arms)
    out = {}
    for arm in arms:
        ps = shared.get(arm, [])
        out[arm] = {
            "recorded": arm in shared,
            "problems": len(ps),
            "solved": {t: sum(p["cost_to"][t] is not None for p in ps) for t in (tol, loose)},
            "median_final_gap": statistics.median(p["final_gap"] for p in ps) if ps else math.nan,
        }
    return {"problems": len(next(iter(shared.values()), [])), "arms": out}


def reported(summary: dict[str, Any], headline_arm: str, target_functions: list[str], defect_arms: list[str]) -> dict:
    """What the section reports beyond the cells: the target, the defects, the claims' verdicts (True, False, or
    None where the config did not run what a claim needs) and the thresholds the claims use."""
    return {
        "target": target(summary, headline_arm, target_functions),
        "defects": defects(summary, defect_arms),
        "claims": verdicts(summary),
        "claim_thresholds": {"competitive_cost": COMPETITIVE_COST, "minpy_fraction": MINPY_FRACTION},
    }


if __name__ == "__main__":
    sm = snakemake
    recs = [read_json(Path(p)) for p in sm.input.records]
    summary = aggregate(recs, list(sm.params.functions), list(sm.params.arms), sm.params.tol, sm.params.tol_multimodal)
    summary |= reported(summary, sm.params.headline_arm, list(sm.params.target_functions), list(sm.params.defect_arms))
    Path(sm.output[0]).write_text(json.dumps(summary, indent=1, allow_nan=True) + "\n")
