"""Aggregate the permuted-MNIST cells: per arm (optimizer, alone or guarded) and learning rate, the metrics over
seeds; the learning rate each arm selects; and, per optimizer, the guard's effect seed by seed.

Selection is the same for every arm: the learning rate of the grid with the highest validation ACC averaged over
the seeds. The test metrics are reported at that rate (validation and test images are disjoint)."""

import json
import logging
import math
from pathlib import Path
from typing import Any

import numpy as np

METRICS = ("acc", "bwt", "la")
GUARDS = ("alone", "guarded")


def spread(values: list[float]) -> dict[str, Any]:
    """Mean, sample standard deviation (nan for one value), and the values."""
    arr = np.asarray(values, dtype=float)
    sd = float(arr.std(ddof=1)) if len(arr) > 1 else math.nan
    return {"mean": float(arr.mean()), "sd": sd, "values": [float(v) for v in arr]}


def grid_rows(records: list[dict[str, Any]], knob: str = "lr") -> list[dict[str, Any]]:
    """One row per setting of the tuned ``knob`` (the learning rate ``lr``, or the potential's strength ``lam``):
    every metric on validation and test over the seeds (records in seed order)."""
    n_settings = len(records[0]["runs"])
    rows = []
    for i in range(n_settings):
        runs = [r["runs"][i] for r in records]
        for key in {"lr", knob}:
            values = {run[key] for run in runs}
            if len(values) != 1:
                raise ValueError(f"Records disagree on the grid's {key} {i}: {sorted(values)}")
        row = {
            "lr": runs[0]["lr"],
            knob: runs[0][knob],
            "non_finite_losses": sum(run["non_finite_losses"] for run in runs),
            "diverged_runs": sum(run["diverged_at_task"] is not None for run in runs),
        }
        for split in ("val", "test"):
            row[split] = {m: spread([run[f"{split}_metrics"][m] for run in runs]) for m in METRICS}
        rows.append(row)
    return rows


def select(rows: list[dict[str, Any]]) -> int:
    """Index of the setting with the highest mean validation ACC (the first of equals)."""
    return max(range(len(rows)), key=lambda i: (rows[i]["val"]["acc"]["mean"], -i))


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
            m: spread([g - a for a, g in zip(alone["test"][m]["values"], guarded["test"][m]["values"], strict=True)])
            for m in METRICS
        }
    return {"arms": arms, "guard_effect": effects}


def main(paths: list[Path], labels: dict[str, str], out: Path) -> dict[str, Any]:
    """Read the cells, summarise, write ``out``."""
    records = [json.loads(p.read_text()) for p in paths]
    summary = {"benchmark": "permuted_mnist", "sources": [str(p) for p in paths], **summarise(records, labels)}
    out.write_text(json.dumps(summary, indent=1) + "\n")
    return summary


if __name__ == "__main__":
    sm = snakemake
    logging.basicConfig(filename=sm.log[0], level=logging.INFO, format="%(asctime)s %(message)s")
    s = main([Path(p) for p in sm.input], sm.params.labels, Path(sm.output[0]))
    for arm, data in s["arms"].items():
        logging.info("%s: lr %.3g, test ACC %.4f", arm, data["selected_lr"], data["test"]["acc"]["mean"])
