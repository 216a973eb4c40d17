"""What every permuted-MNIST aggregation does with its cells' grids: the metrics over seeds at each setting of the
tuned knob, and the setting selected (the highest validation ACC averaged over the seeds)."""

from typing import Any

from common.statistics import spread

METRICS = ("acc", "bwt", "la")
GUARDS = ("alone", "guarded")


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


def arm_key(record: dict[str, Any]) -> str:
    """A cell's arm: ``optimizer/alone`` or ``optimizer/guarded``."""
    return f"{record['optimizer']}/{'guarded' if record['guarded'] else 'alone'}"
