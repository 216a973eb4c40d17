"""In-text numbers of the KP benchmark section as LaTeX macros (paper/generated/numbers_kp.tex).

Macro names are letters only: ``KpSolved<Function><Dim><Arm>`` spells the dimension and the arm
name in words (``KpSolvedSphereTwoKpBeam``).
"""

import json
import math
from pathlib import Path
from typing import Any

from common.latex_format import claim_mark, fmt, macro
from common.paths import repository_path

DIGITS = ("Zero", "One", "Two", "Three", "Four", "Five", "Six", "Seven", "Eight", "Nine")


def key(name: str | int) -> str:
    """A config name or a number as a letters-only fragment: ``kp_beam`` -> ``KpBeam``, 10 -> ``OneZero``."""
    camel = "".join(part[:1].upper() + part[1:] for part in str(name).split("_"))
    return "".join(DIGITS[int(ch)] if ch.isdigit() else ch for ch in camel)


def gradient_cost_tex(per_dim: float) -> str:
    """The charge for one gradient in math mode: ``n`` for 1, ``0.5\\,n`` otherwise."""
    return "n" if per_dim == 1 else rf"{per_dim:g}\,n"


def _count(value: float) -> str:
    return "--" if not math.isfinite(value) else f"{value:.0f}"


def claim_macros(summary: dict[str, Any], source: str) -> list[str]:
    """``\\KpClaim<Name>`` per claim the aggregation checked: empty when it holds, a visible mark when it does not,
    a note when it was not evaluated; ``\\KpClaimsSentence`` counts them; and the thresholds the text quotes."""
    results = summary["claims"]
    lines = [macro(f"KpClaim{name}", claim_mark(v), source) for name, v in results.items()]
    held = sum(v is True for v in results.values())
    failed = sum(v is False for v in results.values())
    skipped = sum(v is None for v in results.values())
    sentence = f"{held} of the {len(results)} hold on these results"
    if failed:
        sentence += f"; {failed} do not, and are marked where they stand"
    if skipped:
        sentence += f"; {skipped} could not be checked, since this config did not run what they need (marked n/a)"
    lines.append(macro("KpClaimsSentence", sentence, source))
    thresholds = summary["claim_thresholds"]
    lines.append(macro("KpCompetitiveCost", f"{thresholds['competitive_cost']:g}", source))
    lines.append(macro("KpMinpyFraction", f"{thresholds['minpy_fraction']:g}", source))
    return lines


def kp_numbers(summary: dict[str, Any], params: dict[str, Any], source: str) -> list[str]:
    """Set-up, the target, overall successes per arm, successes and median costs per cell and arm, and the
    section's qualitative claims (checked by the aggregation: :mod:`kp_benchmark._claims`)."""
    cell_cfg, tol, loose = params["cell"], summary["tol"], summary["tol_multimodal"]
    target = summary["target"]
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
    lines.append(macro("KpDefectProblems", str(summary["defects"]["problems"]), source))
    for arm, data in summary["defects"]["arms"].items():
        if data["recorded"]:
            lines += [
                macro(f"KpDefectSolved{key(arm)}", str(data["solved"][tol]), source),
                macro(f"KpDefectSolvedLoose{key(arm)}", str(data["solved"][loose]), source),
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
    return lines + claim_macros(summary, source)


if __name__ == "__main__":
    sm = snakemake
    summary = json.loads(Path(sm.input.summary).read_text())
    params = {k: getattr(sm.params, k) for k in ("minpy_nm_reference_evals", "cell")}
    lines = [f"% Generated by {repository_path(__file__)}; do not edit."]
    lines += kp_numbers(summary, params, sm.input.summary)
    Path(sm.output[0]).write_text("\n".join(lines) + "\n")
