"""One cell of the KP benchmark: one test function, one dimension, one arm, every start -> a JSON record.

Start s draws x0 uniformly from the function's box with ``torch.Generator().manual_seed(s)``, so every
arm starts from the same points; the arm's own randomness comes from the seed ``SEED_OFFSET + s``.
Each start records the cost (in function-evaluation units) at which the gap ``best f - f*`` first fell
below each tolerance of a ladder, the final gap, and a thinned trace of the gap against the cost.
"""

import json
import logging
import math
import time
from pathlib import Path
from typing import Any

import torch
from common.provenance import provenance

from kaplinskiy.kaplinskii_propoi import OBJECTIVES
from kp_benchmark._arms import run_arm

SEED_OFFSET = 1_000_003
LADDER = tuple(10.0**-k for k in range(0, 9))  # 1, 1e-1, ..., 1e-8


def start_point(box: tuple[float, float], n: int, s: int) -> torch.Tensor:
    """The s-th start of a cell: uniform in ``box^n`` from a generator seeded with s (shared by all arms)."""
    lo, hi = box
    return lo + (hi - lo) * torch.rand(n, generator=torch.Generator().manual_seed(s), dtype=torch.float64)


def cost_to_reach(trace: list[tuple[float, float]], f_star: float, tol: float) -> float | None:
    """The first cost at which ``best f - f* <= tol`` (``None``: never within the budget)."""
    for c, v in trace:
        if v - f_star <= tol:
            return c
    return None


def thin(trace: list[tuple[float, float]], f_star: float, per_decade: int = 4) -> list[list[float]]:
    """Keep the improvements that lower log10(gap) by at least 1/per_decade (and the last one)."""
    kept: list[list[float]] = []
    last = math.inf
    for c, v in trace:
        level = math.log10(max(v - f_star, 1e-300))
        if level <= last - 1.0 / per_decade:
            kept.append([c, v - f_star])
            last = level
    if trace and (not kept or kept[-1][0] != trace[-1][0]):
        kept.append([trace[-1][0], trace[-1][1] - f_star])
    return kept


def run_cell(function: str, dim: int, arm: dict[str, Any], cfg: dict[str, Any]) -> dict[str, Any]:
    """Every start of one cell; ``cfg`` holds starts, budget_per_dim, gradient_cost_per_dim, sigma0_frac, tol."""
    o = OBJECTIVES[function]
    if not o.supports(dim):
        raise ValueError(f"Invalid dim: {function} is not defined in dimension {dim}")
    budget = cfg["budget_per_dim"] * (dim + 1)
    gradient_cost = cfg["gradient_cost_per_dim"] * dim
    sigma0 = cfg["sigma0_frac"] * (o.box[1] - o.box[0])
    f_target = o.f_star + min(LADDER) if cfg["stop_at_target"] else None
    starts = []
    for s in range(cfg["starts"]):
        x0 = start_point(o.box, dim, s)
        t0 = time.perf_counter()
        result, trace = run_arm(
            arm["method"], o.f, x0, seed=SEED_OFFSET + s, box=o.box, budget=budget, gradient_cost=gradient_cost,
            f_target=f_target, sigma0=sigma0, params=arm.get("params", {}),
        )  # fmt: skip
        final = trace[-1][1] if trace else math.inf
        starts.append(
            {
                "start": s,
                "final_gap": final - o.f_star,
                "cost_to": {f"{tol:.0e}": cost_to_reach(trace, o.f_star, tol) for tol in LADDER},
                "n_evals": result.n_evals,
                "n_grads": result.n_grads,
                "stop": result.stop,
                "seconds": time.perf_counter() - t0,
                "trace": thin(trace, o.f_star),
            }
        )
    return {
        "benchmark": "kp_benchmark",
        "function": function,
        "dim": dim,
        "f_star": o.f_star,
        "multimodal": o.multimodal,
        "budget": budget,
        "gradient_cost": gradient_cost,
        "arm": arm,
        "starts": starts,
    }


if __name__ == "__main__":
    sm = snakemake
    logging.basicConfig(filename=sm.log[0], level=logging.INFO, format="%(asctime)s %(message)s")
    torch.set_num_threads(sm.threads)
    torch.set_default_dtype(torch.float64)
    w = sm.wildcards
    record = run_cell(w.function, int(w.dim), dict(sm.params.arm), dict(sm.params.cell))
    record |= {"arm_name": w.arm, "provenance": provenance()}
    Path(sm.output[0]).parent.mkdir(parents=True, exist_ok=True)
    Path(sm.output[0]).write_text(json.dumps(record, indent=1) + "\n")
    solved = sum(s["cost_to"]["1e-06"] is not None for s in record["starts"])
    logging.info("%s d%s %s: %d/%d starts to 1e-6", w.function, w.dim, w.arm, solved, len(record["starts"]))
