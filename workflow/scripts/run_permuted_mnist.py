"""One cell of the permuted-MNIST comparison: one optimizer, alone or guarded, one seed, every learning rate of
the grid -> a JSON record with provenance (one process per cell, so torch is imported once for the grid)."""

import json
import logging
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from permuted_mnist import make_tasks, train_sequence
from records import write_record
from tqdm import tqdm

from kaplinskiy import NonFiniteStepWarning


def lr_grid(center: float, ratio: float, steps: list[int]) -> list[float]:
    """The learning rates ``center * ratio**k`` for ``k`` in ``steps`` (the same ladder for every optimizer)."""
    return [center * ratio**k for k in steps]


def main(
    data_path: Path, problem: dict[str, Any], name: str, spec: dict[str, Any], guarded: bool, seed: int, out: Path
) -> dict[str, Any]:
    """Train the grid of learning rates on the seed's tasks and write the record to ``out``."""
    data = dict(np.load(data_path))
    split = {k: problem[k] for k in ("n_tasks", "n_train", "n_val", "n_test")}
    tasks = make_tasks(data, seed=seed, **split)
    run_problem = {
        "batch_size": problem["batch_size"],
        "epochs": problem["epochs"],
        "guard": guarded,
        "thresholds": problem["memory"]["thresholds"],
        "memory_samples": problem["memory"]["samples"],
    }
    runs = []
    grid = lr_grid(spec["lr"], problem["lr_grid"]["ratio"], problem["lr_grid"]["steps"])
    for lr in tqdm(grid, desc=f"{name} {'guarded' if guarded else 'alone'} seed {seed}", leave=False):
        with warnings.catch_warnings():  # a diverging rate's rejected steps are counted, not printed per step
            warnings.simplefilter("ignore", NonFiniteStepWarning)
            run = train_sequence(tasks, spec, lr, run_problem, seed)
        logging.info("lr %.3g: test %s, %.1f s", lr, json.dumps(run["test_metrics"]), run["seconds"])
        runs.append(run)
    record = {
        "benchmark": "permuted_mnist",
        "optimizer": name,
        "guarded": guarded,
        "seed": seed,
        "config": {"problem": problem, "optimizer": spec},
        "runs": runs,
    }
    return write_record(out, record)


if __name__ == "__main__":
    sm = snakemake
    logging.basicConfig(filename=sm.log[0], level=logging.INFO, format="%(asctime)s %(message)s")
    torch.set_num_threads(sm.threads)
    main(
        Path(sm.input.data),
        sm.params.problem,
        sm.wildcards.optimizer,
        sm.params.optimizer,
        sm.wildcards.guard == "guarded",
        int(sm.wildcards.seed),
        Path(sm.output[0]),
    )
