"""Aggregate the two-task runs: per arm, the mean/min/max curves and the summary over seeds; then what the text
compares: the headline pair's ratios, the arm with the least forgetting at matched learning and the arms its lead
is not separated from (paired Student-t intervals over seeds), what the Armijo test did, and which arms' potential
decreased at every step.

Forgetting at the end of a fixed number of steps compares arms that learned task B to different depths.
Each arm's forgetting is therefore also read at matched learning: along its own trace, where its L_B first
falls to the reference arm's final L_B on the same seed (``matched_forgetting``; an arm that never gets there
has no value for that seed).
"""

import json
import statistics
from pathlib import Path
from typing import Any

from common.statistics import mean_std, separated
from common.summary_io import read_json

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
        stats = {key: mean_std([r["summary"][key] for r in recs]) for key in SUMMARY_KEYS}
        matched = [forgetting_at(r, targets[r["seed"]]) for r in recs]
        reached = [m for m in matched if m is not None]
        stats["matched_forgetting"] = mean_std(reached) | {"n_reached": len(reached)} if reached else None
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


def matched_mean(data: dict[str, Any]) -> float | None:
    """An arm's mean forgetting at matched learning (None: it never reached the reference's learning)."""
    stats = data["stats"].get("matched_forgetting")
    return None if stats is None else stats["mean"]


def headline(arms: dict[str, Any], baseline: str, method: str) -> dict[str, Any]:
    """The headline pair: ``method``'s mean forgetting and final L_B over ``baseline``'s, the same ratios seed by
    seed, and the ratio of their forgetting at matched learning (means, and seed by seed where both reached it)."""
    base, mine = arms[baseline], arms[method]
    keys = ("forgetting", "L_B_end")
    base_m, mine_m = matched_mean(base), matched_mean(mine)
    matched_pairs = [
        m / b
        for m, b in zip(mine["per_seed"]["matched_forgetting"], base["per_seed"]["matched_forgetting"], strict=True)
        if m is not None and b
    ]
    return {
        "baseline": baseline,
        "method": method,
        "ratio": {k: mine["stats"][k]["mean"] / base["stats"][k]["mean"] for k in keys},
        "paired_ratios": {
            k: [m / b for m, b in zip(mine["per_seed"][k], base["per_seed"][k], strict=True)] for k in keys
        },
        "matched_ratio": mine_m / base_m if base_m and mine_m is not None else None,
        "matched_paired_ratios": matched_pairs,
    }


def matched_best(arms: dict[str, Any], level: float = 0.95) -> dict[str, Any]:
    """The arm with the least mean forgetting at matched learning, and the arms its lead over is not separated from.

    Each other arm is compared with the best seed by seed (paired differences of matched forgetting, on the seeds
    where both reached matched learning); a lead counts only when the paired ``level`` interval excludes zero, and
    never on fewer than two seeds."""
    per_seed = {
        arm: data["per_seed"]["matched_forgetting"] for arm, data in arms.items() if matched_mean(data) is not None
    }
    best = min(per_seed, key=lambda arm: matched_mean(arms[arm]))
    tied = []
    for arm, values in per_seed.items():
        diffs = [o - b for o, b in zip(values, per_seed[best], strict=True) if o is not None and b is not None]
        if arm != best and not separated(diffs, level):
            tied.append(arm)
    return {"arm": best, "tied": tied, "level": level}


def armijo_use(arms: dict[str, Any], lr: float) -> dict[str, Any]:
    """What the Armijo test did in the arms that use it: how many such arms, the steps it rejected, and whether
    any step was taken shorter than ``lr``."""
    used = [data for data in arms.values() if data["config"]["armijo"]]
    return {
        "arms": len(used),
        "rejected": sum(data["n_rejected"] for data in used),
        "shortened": any(eta != [lr] for data in used for eta in data["per_seed"]["eta"]),
    }


def comparisons(summary: dict[str, Any], headline_pair: dict[str, str]) -> dict[str, Any]:
    """What the text compares, from an :func:`aggregate` summary (``headline_pair``: its baseline and method)."""
    arms = summary["arms"]
    return {
        "headline": headline(arms, headline_pair["baseline"], headline_pair["method"]),
        "matched_best": matched_best(arms),
        "armijo": armijo_use(arms, summary["problem"]["lr"]),
        "phi_monotone_arms": [arm for arm, data in arms.items() if data["all_phi_monotone"]],
    }


def _source(prov: dict[str, Any]) -> str:
    """A run's code: its commit, marked when the tree had uncommitted changes."""
    return (prov.get("git_commit") or "unknown") + (" (uncommitted changes)" if prov.get("git_dirty") else "")


if __name__ == "__main__":
    sm = snakemake
    pair = dict(sm.params.headline)
    summary = aggregate([read_json(Path(p)) for p in sm.input.records], list(sm.params.arms), pair["method"])
    summary |= comparisons(summary, pair)
    Path(sm.output[0]).write_text(json.dumps(summary, indent=1) + "\n")
