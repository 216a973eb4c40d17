"""One cell of the permuted-MNIST comparison: one optimizer, alone or guarded, one seed -> a JSON record with
provenance (one process per cell, so torch is imported once for the grid).

A rate cell trains every learning rate of the ladder. A potential cell (the arm descends ``L_t + R``, R one of
the config's potentials: online EWC or L2-SP) trains every strength of the same ladder around that R's strength,
at the learning rate its arm selected without R (read from the rate cells' summary): the same budget of
settings, on top of that rate. A second-round cell (one more coordinate of the search) trains every learning
rate of the ladder again, with R at the strength its arm selected in the potential cells (read from their
summary)."""

import json
import logging
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from common.records import write_record
from tqdm import tqdm

from kaplinskiy import NonFiniteStepWarning
from permuted_mnist._training import make_tasks, train_sequence


def ladder(center: float, ratio: float, steps: list[int]) -> list[float]:
    """``center * ratio**k`` for ``k`` in ``steps``: the same ladder for every optimizer's rate and strength."""
    return [center * ratio**k for k in steps]


def selected(summary: dict[str, Any], name: str, guard: str, knob: str = "lr") -> float:
    """The setting of ``knob`` (``lr``, or the strength ``lam``) that the arm ``name/guard`` selected in a
    ``summary`` of the rate cells (or of the potential cells)."""
    arm = summary["arms"].get(f"{name}/{guard}")
    if arm is None:
        raise ValueError(f"Invalid summary: it has no arm {name}/{guard} to take its {knob} from")
    return float(arm[f"selected_{knob}"])


def settings(
    problem: dict[str, Any], spec: dict[str, Any], guarded: bool, lr: float | None, lam: float | None = None
) -> list[tuple[float, dict[str, Any]]]:
    """The (learning rate, run problem) pairs of a cell: the rate ladder when ``lr`` is None (with R of
    ``problem["potential"]`` at strength ``lam`` when ``lam`` is given), else the strength ladder at ``lr``."""
    base = {
        "batch_size": problem["batch_size"],
        "epochs": problem["epochs"],
        "guard": guarded,
        "thresholds": problem["memory"]["thresholds"],
        "memory_samples": problem["memory"]["samples"],
    }
    ratio, steps = problem["lr_grid"]["ratio"], problem["lr_grid"]["steps"]
    if lr is None:
        run = base if lam is None else {**base, "potential": {**problem["potential"], "lam": lam}}
        return [(rate, run) for rate in ladder(spec["lr"], ratio, steps)]
    if lam is not None:
        raise ValueError("Invalid settings: a cell tunes the rate (lr None) or the strength (lam None), not both")
    potential = problem["potential"]
    return [(lr, {**base, "potential": {**potential, "lam": lam}}) for lam in ladder(potential["lam"], ratio, steps)]


def main(
    data_path: Path,
    problem: dict[str, Any],
    name: str,
    spec: dict[str, Any],
    guarded: bool,
    seed: int,
    out: Path,
    summary_path: Path | None = None,
    lam_summary_path: Path | None = None,
) -> dict[str, Any]:
    """Train the cell's grid on the seed's tasks and write the record to ``out``: the rate ladder; given the rate
    cells' summary, the strength ladder at the rate the arm selected there; given the potential cells' summary,
    the rate ladder with R at the strength the arm selected there."""
    if summary_path is not None and lam_summary_path is not None:
        raise ValueError("Invalid cell: it tunes the strength (summary) or the rate at a strength (lam summary)")
    data = dict(np.load(data_path))
    split = {k: problem[k] for k in ("n_tasks", "n_train", "n_val", "n_test")}
    tasks = make_tasks(data, seed=seed, **split)
    guard = "guarded" if guarded else "alone"
    lr = None if summary_path is None else selected(json.loads(summary_path.read_text()), name, guard)
    lam = None if lam_summary_path is None else selected(json.loads(lam_summary_path.read_text()), name, guard, "lam")
    runs = []
    desc = f"{name} {guard}{'' if lr is None and lam is None else ' + potential'} seed {seed}"
    for rate, run_problem in tqdm(settings(problem, spec, guarded, lr, lam), desc=desc, leave=False):
        with warnings.catch_warnings():  # a diverging rate's rejected steps are counted, not printed per step
            warnings.simplefilter("ignore", NonFiniteStepWarning)
            run = train_sequence(tasks, spec, rate, run_problem, seed)
        metrics = json.dumps(run["test_metrics"])
        logging.info("lr %.3g, lam %s: test %s, %.1f s", rate, run.get("lam"), metrics, run["seconds"])
        runs.append(run)
    record = {
        "benchmark": "permuted_mnist",
        "optimizer": name,
        "guarded": guarded,
        "seed": seed,
        "tuned": "lam" if lr is not None else "lr" if lam is None else "lr_at_lam",
        "config": {"problem": problem, "optimizer": spec},
        **({} if summary_path is None else {"lr_from": {"summary": str(summary_path), "lr": lr}}),
        **({} if lam_summary_path is None else {"lam_from": {"summary": str(lam_summary_path), "lam": lam}}),
        "runs": runs,
    }
    return write_record(out, record)


if __name__ == "__main__":
    sm = snakemake
    logging.basicConfig(filename=sm.log[0], level=logging.INFO, format="%(asctime)s %(message)s")
    torch.set_num_threads(sm.threads)
    summary, lam_summary = getattr(sm.input, "summary", None), getattr(sm.input, "lam_summary", None)
    main(
        Path(sm.input.data),
        sm.params.problem,
        sm.wildcards.optimizer,
        sm.params.optimizer,
        sm.wildcards.guard == "guarded",
        int(sm.wildcards.seed),
        Path(sm.output[0]),
        None if summary is None else Path(summary),
        None if lam_summary is None else Path(lam_summary),
    )
