"""Aggregate the potential cells of permuted MNIST for one R (each arm descends ``L_t + R`` at the rate it
selected without R): per arm and strength, the metrics over seeds; the strength each arm selects, by the rule
that selects the rates (the highest validation ACC averaged over the seeds); and, seed by seed, the potential's
effect on each test metric against the same arm without it (the rate cells' summary) at the same rate."""

import logging
from pathlib import Path
from typing import Any

from aggregate_permuted_mnist import METRICS, grid_rows, select, spread
from summary_io import read_json, write_summary


def paired(after: dict[str, Any], before: dict[str, Any]) -> dict[str, Any]:
    """Seed by seed, ``after``'s test metrics minus ``before``'s (both over the same seeds, in the same order)."""
    return {m: spread([a - b for a, b in zip(after[m]["values"], before[m]["values"], strict=True)]) for m in METRICS}


def summarise(
    records: list[dict[str, Any]], base: dict[str, Any], labels: dict[str, str], potential: dict[str, Any]
) -> dict[str, Any]:
    """Every potential arm's summary, with its paired effect against ``base``'s arm of the same name; every record
    must have run the R ``potential`` (its Fisher and decay; the strength is the ladder's centre)."""
    cells: dict[str, list[dict[str, Any]]] = {}
    for rec in records:
        if rec.get("tuned") != "lam":
            raise ValueError(f"Invalid record: {rec['optimizer']} seed {rec['seed']} is not a potential cell")
        if rec["config"]["problem"]["potential"] != potential:
            raise ValueError(
                f"Invalid record: {rec['optimizer']} seed {rec['seed']} ran R {rec['config']['problem']['potential']}, "
                f"not {potential}"
            )
        cells.setdefault(f"{rec['optimizer']}/{'guarded' if rec['guarded'] else 'alone'}", []).append(rec)
    arms = {}
    for key, recs in cells.items():
        recs.sort(key=lambda r: r["seed"])
        without = base["arms"].get(key)
        if without is None:
            raise ValueError(f"{key}: the rate cells' summary has no such arm to compare with")
        lr = without["selected_lr"]
        if any(r["lr_from"]["lr"] != lr for r in recs):
            raise ValueError(f"{key}: a potential cell ran at another rate than its arm selected ({lr})")
        seeds = [r["seed"] for r in recs]
        if seeds != without["seeds"]:
            raise ValueError(f"{key}: the potential cells ran on seeds {seeds}, without it on {without['seeds']}")
        rows = grid_rows(recs, knob="lam")
        best = select(rows)
        test = rows[best]["test"]
        arms[key] = {
            "optimizer": without["optimizer"],
            "guard": without["guard"],
            "label": labels[without["optimizer"]],
            "seeds": seeds,
            "lr": lr,
            "grid": rows,
            "selected": best,
            "selected_lam": rows[best]["lam"],
            "at_edge": best in (0, len(rows) - 1),
            "test": test,
            "test_without": without["test"],
            "effect": paired(test, without["test"]),
        }
    return {"potential": potential, "arms": arms}


def main(
    paths: list[Path], base_path: Path, labels: dict[str, str], potential: dict[str, Any], out: Path
) -> dict[str, Any]:
    """Read the potential cells of R ``potential`` and the rate cells' summary, summarise, write ``out``."""
    body = summarise([read_json(p) for p in paths], read_json(base_path), labels, potential)
    return write_summary(out, "permuted_mnist_potential", paths, body, base=base_path)


if __name__ == "__main__":
    sm = snakemake
    logging.basicConfig(filename=sm.log[0], level=logging.INFO, format="%(asctime)s %(message)s")
    s = main(
        [Path(p) for p in sm.input.cells],
        Path(sm.input.base),
        sm.params.labels,
        dict(sm.params.potential),
        Path(sm.output[0]),
    )
    for arm, data in s["arms"].items():
        logging.info("%s + R: lam %.3g, test ACC %.4f", arm, data["selected_lam"], data["test"]["acc"]["mean"])
