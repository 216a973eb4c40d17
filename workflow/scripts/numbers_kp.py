"""In-text numbers of the KP benchmark section as LaTeX macros (paper/generated/numbers_kp.tex).

Macro names are letters only: ``KpSolved<Function><Dim><Arm>`` spells the dimension and the arm
name in words (``KpSolvedSphereTwoKpBeam``).
"""

import json
import math
import statistics
from pathlib import Path
from typing import Any

from kp_profiles import shared_problems
from latex_format import fmt

DIGITS = ("Zero", "One", "Two", "Three", "Four", "Five", "Six", "Seven", "Eight", "Nine")


def macro(name: str, value: str, source: str) -> str:
    """``\\newcommand{\\name}{value}`` with a comment naming the source file."""
    if not name.isalpha():
        raise ValueError(f"Invalid macro name: {name!r} (letters only)")
    return f"\\newcommand{{\\{name}}}{{{value}}} % from {source}"


def key(name: str | int) -> str:
    """A config name or a number as a letters-only fragment: ``kp_beam`` -> ``KpBeam``, 10 -> ``OneZero``."""
    camel = "".join(part[:1].upper() + part[1:] for part in str(name).split("_"))
    return "".join(DIGITS[int(ch)] if ch.isdigit() else ch for ch in camel)


def gradient_cost_tex(per_dim: float) -> str:
    """The charge for one gradient in math mode: ``n`` for 1, ``0.5\\,n`` otherwise."""
    return "n" if per_dim == 1 else rf"{per_dim:g}\,n"


def _count(value: float) -> str:
    return "--" if not math.isfinite(value) else f"{value:.0f}"


def target_numbers(summary: dict[str, Any], arm: str, functions: list[str], tol: str) -> dict[str, Any]:
    """The issue's target: every 2-D start of ``functions`` solved to ``tol`` by ``arm``, and at what cost."""
    costs = [p["cost_to"][tol] for p in summary["problems"][arm] if p["function"] in functions and p["dim"] == 2]
    solved = [c for c in costs if c is not None]
    return {
        "runs": len(costs),
        "solved": len(solved),
        "max": max(solved) if solved else math.inf,
        "median": statistics.median(solved) if solved else math.inf,
    }


def kp_numbers(summary: dict[str, Any], params: dict[str, Any], source: str) -> list[str]:
    """Set-up, the target, overall successes per arm, and successes and median costs per cell and arm."""
    cell_cfg, tol, loose = params["cell"], summary["tol"], summary["tol_multimodal"]
    target = target_numbers(summary, params["headline_arm"], params["target_functions"], tol)
    met = target["runs"] > 0 and target["solved"] == target["runs"]
    met = met and target["max"] < params["minpy_nm_reference_evals"]
    lines = [
        macro("KpStarts", str(cell_cfg["starts"]), source),
        macro("KpBudgetPerDim", str(cell_cfg["budget_per_dim"]), source),
        macro("KpGradientCostPerDim", f"{cell_cfg['gradient_cost_per_dim']:g}", source),
        macro("KpGradientCost", gradient_cost_tex(cell_cfg["gradient_cost_per_dim"]), source),
        macro("KpSigmaFrac", f"{cell_cfg['sigma0_frac']:g}", source),
        macro("KpTol", f"10^{{{int(tol.split('e')[1])}}}", source),
        macro("KpTolLoose", f"10^{{{int(loose.split('e')[1])}}}", source),
        macro("KpTargetRuns", str(target["runs"]), source),
        macro("KpTargetSolved", str(target["solved"]), source),
        macro("KpTargetMaxEvals", _count(target["max"]), source),
        macro("KpTargetMedianEvals", _count(target["median"]), source),
        macro("KpTargetMet", "meets" if met else "does not meet", source),
        macro("KpMinpyNMEvals", str(params["minpy_nm_reference_evals"]), source),
        macro("KpCells", str(len(summary["cells"])), source),
    ]
    for arm, over in summary["overall"].items():
        lines += [
            macro(f"KpProblems{key(arm)}", str(over["problems"]), source),
            macro(f"KpSolved{key(arm)}", str(over["solved"][tol]), source),
            macro(f"KpSolvedLoose{key(arm)}", str(over["solved"][loose]), source),
        ]
    shared = shared_problems(summary["problems"], params["defect_arms"])
    lines.append(macro("KpDefectProblems", str(len(next(iter(shared.values()), []))), source))
    for arm, ps in shared.items():
        lines += [
            macro(f"KpDefectSolved{key(arm)}", str(sum(p["cost_to"][tol] is not None for p in ps)), source),
            macro(f"KpDefectSolvedLoose{key(arm)}", str(sum(p["cost_to"][loose] is not None for p in ps)), source),
        ]
    for cell in summary["cells"]:
        where = key(cell["function"]) + key(cell["dim"])
        for arm, data in cell["arms"].items():
            lines += [
                macro(f"KpSolved{where}{key(arm)}", str(data["solved"][tol]), source),
                macro(f"KpSolvedLoose{where}{key(arm)}", str(data["solved"][loose]), source),
                macro(f"KpCost{where}{key(arm)}", _count(data["median_cost"][tol]), source),
                macro(f"KpGap{where}{key(arm)}", f"${fmt(data['median_final_gap'], 2)}$", source),
            ]
    return lines


if __name__ == "__main__":
    sm = snakemake
    summary = json.loads(Path(sm.input[0]).read_text())
    names = ("headline_arm", "target_functions", "minpy_nm_reference_evals", "cell", "defect_arms")
    params = {k: getattr(sm.params, k) for k in names}
    lines = ["% Generated by workflow/scripts/numbers_kp.py; do not edit."]
    lines += kp_numbers(summary, params, sm.input[0])
    Path(sm.output[0]).write_text("\n".join(lines) + "\n")
