"""One run of the two-task benchmark: one arm, one seed -> a JSON record with provenance."""

import json
import logging
from pathlib import Path
from typing import Any

import torch
from common.records import write_record

from two_task._problem import make_task, run_phase_b


def main(problem: dict[str, Any], arm: dict[str, Any], arm_name: str, seed: int, out: Path) -> dict[str, Any]:
    """Build tasks A and B from ``seed``, train B with ``arm``, write the record to ``out``."""
    gen = torch.Generator().manual_seed(seed)
    dims = (problem["dim"], problem["n_samples"], problem["condition"], problem["noise"])
    task_a, task_b = make_task(*dims, gen), make_task(*dims, gen)
    result = run_phase_b(
        task_a,
        task_b,
        steps=problem["steps"],
        lr=problem["lr"],
        memory_k=problem["memory_k"],
        armijo_c=problem["armijo"]["c"],
        armijo_shrink=problem["armijo"]["shrink"],
        armijo_max_trials=problem["armijo"]["max_trials"],
        **arm,
    )
    record = {"benchmark": "two_task", "arm": arm_name, "seed": seed, "config": {"problem": problem, "arm": arm}}
    return write_record(out, {**record, **result})


if __name__ == "__main__":
    sm = snakemake
    logging.basicConfig(filename=sm.log[0], level=logging.INFO, format="%(asctime)s %(message)s")
    torch.set_num_threads(sm.threads)
    rec = main(sm.params.problem, sm.params.arm, sm.wildcards.arm, int(sm.wildcards.seed), Path(sm.output[0]))
    logging.info("arm %s seed %s: %s", sm.wildcards.arm, sm.wildcards.seed, json.dumps(rec["summary"]))
