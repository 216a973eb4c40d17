"""Aggregate the potential cells of permuted MNIST for one R (each arm descends ``L_t + R`` at the rate it
selected without R): per arm and strength, the metrics over seeds; the strength each arm selects, by the rule
that selects the rates (the highest validation ACC averaged over the seeds); seed by seed, the potential's
effect on each test metric against the same arm without it (the rate cells' summary) at the same rate; and what
the text compares: per guard, where R raised or lowered the test ACC and each arm's rank by test ACC, and the
counts behind the text's claims."""

import logging
from pathlib import Path
from typing import Any

from common.statistics import rank_among
from common.summary_io import read_json, write_summary

from permuted_mnist._compare import direction, mean_test_acc, paired_effect
from permuted_mnist._grid import GUARDS, arm_key, grid_rows, select


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
        cells.setdefault(arm_key(rec), []).append(rec)
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
            "effect": paired_effect(test, without["test"]),
        }
    return {"potential": potential, "arms": arms}


def claim_counts(summary: dict[str, Any], base: dict[str, Any]) -> dict[str, int]:
    """The counts behind the text's three qualitative claims: the optimizers whose guarded arm without R (``base``)
    beats its unguarded arm with R, of those that ran alone; the optimizers whose guarded arm selects a smaller
    strength than its unguarded one, of those that ran both; the arms whose LA R lowers, of all."""
    arms = summary["arms"]
    names = [a["optimizer"] for a in arms.values() if a["guard"] == "alone"]
    wins = [
        n
        for n in names
        if f"{n}/guarded" in base["arms"]
        and mean_test_acc(base["arms"][f"{n}/guarded"]) > mean_test_acc(arms[f"{n}/alone"])
    ]
    paired = [n for n in names if f"{n}/guarded" in arms]
    smaller = [n for n in paired if arms[f"{n}/guarded"]["selected_lam"] < arms[f"{n}/alone"]["selected_lam"]]
    return {
        "guard_wins": len(wins),
        "compared": len(names),
        "smaller_lam": len(smaller),
        "paired": len(paired),
        "lower_la": sum(a["effect"]["la"]["mean"] < 0 for a in arms.values()),
        "arms": len(arms),
    }


def comparisons(summary: dict[str, Any], base: dict[str, Any]) -> dict[str, Any]:
    """What the text compares, from a :func:`summarise` summary and the rate cells' summary ``base``: per guard,
    where R raised or lowered the test ACC (arm keys) and each arm's rank among the arms with that guard (1 + how
    many have a higher mean test ACC); and the claims' counts."""
    arms = summary["arms"]
    by_guard = {g: {k: a for k, a in arms.items() if a["guard"] == g} for g in GUARDS}
    return {
        "direction": {g: direction({k: a["effect"] for k, a in peers.items()}) for g, peers in by_guard.items()},
        "rank_in_guard": {
            k: rank_among(mean_test_acc(a), [mean_test_acc(p) for p in by_guard[a["guard"]].values()])
            for k, a in arms.items()
        },
        "claim_counts": claim_counts(summary, base),
    }


def main(
    paths: list[Path], base_path: Path, labels: dict[str, str], potential: dict[str, Any], out: Path
) -> dict[str, Any]:
    """Read the potential cells of R ``potential`` and the rate cells' summary, summarise, write ``out``."""
    base = read_json(base_path)
    body = summarise([read_json(p) for p in paths], base, labels, potential)
    return write_summary(out, "permuted_mnist_potential", paths, body | comparisons(body, base), base=base_path)


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
