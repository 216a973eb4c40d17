"""Aggregate the permuted-MNIST cells: per arm (optimizer, alone or guarded) and learning rate, the metrics over
seeds; the learning rate each arm selects; per optimizer, the guard's effect seed by seed; and what the text
compares: the arms ranked by test ACC (all, and within each guard), where the guard raised or lowered the test
ACC, the factor by which it changed the selected rate, and at how many rates it lowered LA.

Selection is the same for every arm: the learning rate of the grid with the highest validation ACC averaged over
the seeds. The test metrics are reported at that rate (validation and test images are disjoint)."""

import logging
from pathlib import Path
from typing import Any

from common.statistics import paired_differences, spread
from common.summary_io import read_json, write_summary

from permuted_mnist._compare import direction, ranking
from permuted_mnist._grid import METRICS, grid_rows, select


def summarise(records: list[dict[str, Any]], labels: dict[str, str]) -> dict[str, Any]:
    """The summary of every arm, and the guard's paired effect on each test metric per optimizer."""
    cells: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for rec in records:
        cells.setdefault((rec["optimizer"], "guarded" if rec["guarded"] else "alone"), []).append(rec)
    arms = {}
    for (name, guard), recs in cells.items():
        recs.sort(key=lambda r: r["seed"])
        rows = grid_rows(recs)
        best = select(rows)
        arms[f"{name}/{guard}"] = {
            "optimizer": name,
            "guard": guard,
            "label": labels[name],
            "seeds": [r["seed"] for r in recs],
            "grid": rows,
            "selected": best,
            "selected_lr": rows[best]["lr"],
            "at_edge": best in (0, len(rows) - 1),
            "test": rows[best]["test"],
            "basis_sizes": [r["runs"][best]["basis_sizes"] for r in recs if r["runs"][best]["basis_sizes"] is not None],
        }
    effects = {}
    for name in labels:
        alone, guarded = arms.get(f"{name}/alone"), arms.get(f"{name}/guarded")
        if alone is None or guarded is None:
            continue
        if alone["seeds"] != guarded["seeds"]:
            raise ValueError(f"{name}: the alone and guarded arms ran on other seeds")
        effects[name] = {
            m: spread(paired_differences(guarded["test"][m]["values"], alone["test"][m]["values"])) for m in METRICS
        }
    return {"arms": arms, "guard_effect": effects}


def same_rate_la(summary: dict[str, Any]) -> dict[str, int]:
    """Over every optimizer and rate of its grid at which no seed diverged, alone or guarded: in how many of these
    pairs the guarded mean test LA is below the unguarded one, and how many pairs there are."""
    arms, lower, pairs = summary["arms"], 0, 0
    for name in summary["guard_effect"]:
        for alone, guarded in zip(arms[f"{name}/alone"]["grid"], arms[f"{name}/guarded"]["grid"], strict=True):
            if alone["diverged_runs"] or guarded["diverged_runs"]:
                continue
            pairs += 1
            lower += guarded["test"]["la"]["mean"] < alone["test"]["la"]["mean"]
    return {"lower": lower, "pairs": pairs}


def comparisons(summary: dict[str, Any]) -> dict[str, Any]:
    """What the text compares, from a :func:`summarise` summary."""
    arms, effects = summary["arms"], summary["guard_effect"]
    return {
        "ranking": ranking(arms),
        "guard_direction": direction(effects),
        "lr_gain": {n: arms[f"{n}/guarded"]["selected_lr"] / arms[f"{n}/alone"]["selected_lr"] for n in effects},
        "same_rate_la": same_rate_la(summary),
    }


def main(paths: list[Path], labels: dict[str, str], out: Path) -> dict[str, Any]:
    """Read the cells, summarise, write ``out``."""
    body = summarise([read_json(p) for p in paths], labels)
    return write_summary(out, "permuted_mnist", paths, body | comparisons(body))


if __name__ == "__main__":
    sm = snakemake
    logging.basicConfig(filename=sm.log[0], level=logging.INFO, format="%(asctime)s %(message)s")
    s = main([Path(p) for p in sm.input.cells], sm.params.labels, Path(sm.output[0]))
    for arm, data in s["arms"].items():
        logging.info("%s: lr %.3g, test ACC %.4f", arm, data["selected_lr"], data["test"]["acc"]["mean"])
