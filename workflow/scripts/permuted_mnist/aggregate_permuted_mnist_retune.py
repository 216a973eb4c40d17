"""Aggregate the second coordinate round of permuted MNIST's potential search for one R: each arm trained the
rate ladder again with R at the strength it selected in the potential cells (round 1: the strength ladder at the
rate it selected without R). Per arm: the metrics over seeds at each rate, the rate it now selects (the same rule:
the highest validation ACC averaged over the seeds), how many ladder steps that moves it from round 1's rate, and,
seed by seed, its test metrics against the arm without R (the rate cells) and against round 1. The run at round
1's rate repeats round 1's selected run, so its test ACC must match round 1's bit for bit. Then the counts the
text compares: per guard, the arms that moved to a larger or a smaller rate or kept theirs, and the unguarded
arms with R that still end below the same optimizer guarded without R, in this round and in round 1."""

import logging
from pathlib import Path
from typing import Any

from common.summary_io import read_json, write_summary

from permuted_mnist._compare import mean_test_acc, paired_effect
from permuted_mnist._grid import GUARDS, arm_key, grid_rows, select


def summarise(
    records: list[dict[str, Any]],
    round1: dict[str, Any],
    base: dict[str, Any],
    labels: dict[str, str],
    potential: dict[str, Any],
) -> dict[str, Any]:
    """Every arm's second round, against ``base`` (the rate cells' summary) and ``round1`` (the potential cells'
    summary of the same R, ``potential``)."""
    cells: dict[str, list[dict[str, Any]]] = {}
    for rec in records:
        if rec.get("tuned") != "lr_at_lam":
            raise ValueError(f"Invalid record: {rec['optimizer']} seed {rec['seed']} is not a second-round cell")
        if rec["config"]["problem"]["potential"] != potential:
            raise ValueError(f"Invalid record: {rec['optimizer']} seed {rec['seed']} ran another R than {potential}")
        cells.setdefault(arm_key(rec), []).append(rec)
    arms = {}
    for key, recs in cells.items():
        recs.sort(key=lambda r: r["seed"])
        first, without = round1["arms"].get(key), base["arms"].get(key)
        if first is None or without is None:
            raise ValueError(f"{key}: the summaries have no such arm to compare with")
        if any(r["lam_from"]["lam"] != first["selected_lam"] for r in recs):
            raise ValueError(f"{key}: a second-round cell ran at another strength than round 1 selected")
        seeds = [r["seed"] for r in recs]
        if seeds != first["seeds"]:
            raise ValueError(f"{key}: the second round ran on seeds {seeds}, round 1 on {first['seeds']}")
        rows = grid_rows(recs, knob="lr")
        rates = [row["lr"] for row in rows]
        if first["lr"] not in rates:
            raise ValueError(f"{key}: round 1's rate {first['lr']} is not on the second round's ladder")
        start = rates.index(first["lr"])
        if rows[start]["test"]["acc"]["values"] != first["test"]["acc"]["values"]:
            raise ValueError(f"{key}: the run at round 1's rate and strength does not repeat round 1's")
        best = select(rows)
        test = rows[best]["test"]
        arms[key] = {
            "optimizer": first["optimizer"],
            "guard": first["guard"],
            "label": labels[first["optimizer"]],
            "seeds": seeds,
            "lam": first["selected_lam"],
            "lr_round1": first["lr"],
            "grid": rows,
            "selected": best,
            "selected_lr": rows[best]["lr"],
            "steps": best - start,
            "at_edge": best in (0, len(rows) - 1),
            "test": test,
            "effect": paired_effect(test, without["test"]),
            "gain": paired_effect(test, first["test"]),
        }
    return {"potential": potential, "arms": arms}


def guard_wins(arms: dict[str, dict[str, Any]], base: dict[str, Any]) -> list[str]:
    """The unguarded ``arms`` (with R) that end below the same optimizer guarded without R (``base``)."""
    return [
        key
        for key, a in arms.items()
        if a["guard"] == "alone"
        and f"{a['optimizer']}/guarded" in base["arms"]
        and mean_test_acc(base["arms"][f"{a['optimizer']}/guarded"]) > mean_test_acc(a)
    ]


def comparisons(summary: dict[str, Any], round1: dict[str, Any], base: dict[str, Any]) -> dict[str, Any]:
    """What the text compares, from a :func:`summarise` summary: per guard, how many arms moved up, moved down or
    kept round 1's rate, of how many; and the guard's wins over R (see :func:`guard_wins`), now and in round 1."""
    arms = summary["arms"]
    moves = {}
    for guard in GUARDS:
        steps = [a["steps"] for a in arms.values() if a["guard"] == guard]
        moves[guard] = {
            "larger": sum(s > 0 for s in steps),
            "smaller": sum(s < 0 for s in steps),
            "kept": sum(s == 0 for s in steps),
            "compared": len(steps),
        }
    return {
        "moves": moves,
        "guard_wins": guard_wins(arms, base),
        "guard_wins_round1": len(guard_wins(round1["arms"], base)),
    }


def main(
    paths: list[Path], round1_path: Path, base_path: Path, labels: dict[str, str], potential: dict[str, Any], out: Path
) -> dict[str, Any]:
    """Read the second-round cells and both summaries, summarise, write ``out``."""
    round1, base = read_json(round1_path), read_json(base_path)
    body = summarise([read_json(p) for p in paths], round1, base, labels, potential)
    body |= comparisons(body, round1, base)
    return write_summary(out, "permuted_mnist_retune", paths, body, round1=round1_path, base=base_path)


if __name__ == "__main__":
    sm = snakemake
    logging.basicConfig(filename=sm.log[0], level=logging.INFO, format="%(asctime)s %(message)s")
    s = main(
        [Path(p) for p in sm.input.cells],
        Path(sm.input.round1),
        Path(sm.input.base),
        sm.params.labels,
        dict(sm.params.potential),
        Path(sm.output[0]),
    )
    for arm, data in s["arms"].items():
        logging.info(
            "%s: lr %.3g (%+d steps), test ACC %.4f",
            arm,
            data["selected_lr"],
            data["steps"],
            data["test"]["acc"]["mean"],
        )
