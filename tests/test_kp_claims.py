"""The KP section's qualitative claims are tests on the results: each one can fail, a claim whose cells were
not run is not evaluated, and a failed claim is marked in the text."""

from __future__ import annotations

from kp_benchmark._claims import (
    CLAIMS,
    COMPETITIVE_COST,
    MINPY_FRACTION,
    no_potential_variant_solves_rosenbrock,
    verdicts,
)
from kp_benchmark.numbers_kp import claim_macros

TOL = "1e-06"


def cell(function: str, dim: int, **solved: int) -> dict:
    arms = {arm: {"solved": {TOL: n}, "median_cost": {TOL: 100.0 if n else None}} for arm, n in solved.items()}
    return {"function": function, "dim": dim, "arms": arms}


def summary(*cells: dict) -> dict:
    arms = {arm for c in cells for arm in c["arms"]}
    overall = {
        arm: {"solved": {TOL: sum(c["arms"].get(arm, {"solved": {TOL: 0}})["solved"][TOL] for c in cells)}}
        for arm in arms
    }
    return {"tol": TOL, "cells": list(cells), "overall": overall, "problems": {}}


def test_the_rosenbrock_claim_fails_when_a_potential_variant_solves_a_start() -> None:
    none = summary(cell("rosenbrock", 2, kp_beam=0, cma_es=5), cell("rosenbrock", 10, kp_beam=0, cma_es=1))
    one = summary(cell("rosenbrock", 2, kp_beam=0, cma_es=5), cell("rosenbrock", 10, kp_beam=1, cma_es=1))
    assert no_potential_variant_solves_rosenbrock(none) is True
    assert no_potential_variant_solves_rosenbrock(one) is False


def test_a_claim_whose_cells_were_not_run_is_not_evaluated_and_a_failed_one_is_marked() -> None:
    s = summary(cell("rosenbrock", 2, kp_beam=3))
    results = verdicts(s)
    assert set(results) == set(CLAIMS)
    assert results["Rosenbrock"] is False and results["Hybrid"] is None
    thresholds = {"competitive_cost": COMPETITIVE_COST, "minpy_fraction": MINPY_FRACTION}
    lines = claim_macros({"claims": results, "claim_thresholds": thresholds}, "summary.json")
    assert any(line.startswith(r"\newcommand{\KpClaimRosenbrock}{\textbf{[not supported") for line in lines)
    assert any(line.startswith(r"\newcommand{\KpClaimHybrid}{\textsuperscript{(n/a)}}") for line in lines)
    sentence = next(line for line in lines if line.startswith(r"\newcommand{\KpClaimsSentence}"))
    assert f"0 of the {len(CLAIMS)} hold" in sentence and "1 do not" in sentence
