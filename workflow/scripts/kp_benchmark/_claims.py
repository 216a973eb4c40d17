"""The qualitative claims of the KP benchmark section, checked against the results.

The section's numbers are macros, but some of its words are judgements ("no potential variant solved
Rosenbrock", "Nelder--Mead is cheaper in two dimensions"). Each such judgement is one function here that reads
the summary and says whether it holds (``None`` when the config did not run what it needs, as the smoke config
does not). The aggregation writes each verdict to the summary; numbers_kp.py writes one macro per claim, which the
text places after the sentence it checks.
"""

import math
from collections.abc import Callable
from typing import Any

Summary = dict[str, Any]

# The zeroth-order potential variants: what the section calls "the potential method" (the hybrid takes gradients)
POTENTIAL = ("kp_beam", "kp_beam_lam0", "kp_radial", "kp_one_sample", "kp_second_order")
MINPY = (
    "minpy_nm_stochastic",
    "minpy_nm_stochastic_shipped",
    "minpy_nm_stochastic_stale",
    "minpy_nm_nonlocal",
    "minpy_nm_nonlocal_increasing",
    "minpy_nm_nonlocal_stop_at_zero",
    "minpy_potential_shipped",
    "minpy_potential_population",
    "minpy_potential_fixed",
)
SMOOTH_2D = ("sphere", "booth", "himmelblau")
COMPETITIVE_COST = 2.0  # "competitive": as many starts solved, at most this times the median cost
MINPY_FRACTION = 0.5  # "not close": every minpy variant solves at most this fraction of the beam's problems


class NotRun(LookupError):
    """The config did not run a cell or arm the claim needs."""


def _cell(s: Summary, function: str, dim: int, arm: str) -> dict[str, Any]:
    for cell in s["cells"]:
        if cell["function"] == function and cell["dim"] == dim and arm in cell["arms"]:
            return cell["arms"][arm]
    raise NotRun(f"{function} d{dim} {arm}")


def _solved(s: Summary, function: str, dim: int, arm: str, tol: str | None = None) -> int:
    return _cell(s, function, dim, arm)["solved"][tol or s["tol"]]


def _cost(s: Summary, function: str, dim: int, arm: str) -> float:
    cost = _cell(s, function, dim, arm)["median_cost"][s["tol"]]
    return math.inf if cost is None else cost


def _overall(s: Summary, arm: str) -> int:
    if arm not in s["overall"]:
        raise NotRun(arm)
    return s["overall"][arm]["solved"][s["tol"]]


def _dims(s: Summary, function: str) -> list[int]:
    dims = sorted({c["dim"] for c in s["cells"] if c["function"] == function})
    if not dims:
        raise NotRun(function)
    return dims


def competitive_on_smooth(s: Summary) -> bool:
    """Up to ten dimensions on smooth near-isotropic problems (the 2-D sphere, Booth, Himmelblau and the 10-D
    sphere), a beam variant solves as many starts as CMA-ES at most twice its median cost."""
    cells = [(f, 2) for f in SMOOTH_2D] + [("sphere", 10)]

    def close(f: str, n: int, arm: str) -> bool:
        return _solved(s, f, n, arm) >= _solved(s, f, n, "cma_es") and _cost(s, f, n, arm) <= COMPETITIVE_COST * _cost(
            s, f, n, "cma_es"
        )

    return all(close(f, n, "kp_beam") or close(f, n, "kp_beam_lam0") for f, n in cells)


def several_times_cma_on_sphere_100(s: Summary) -> bool:
    """On the 100-D sphere both beam variants need at least twice CMA-ES's median evaluations."""
    return all(
        _cost(s, "sphere", 100, arm) >= 2 * _cost(s, "sphere", 100, "cma_es") for arm in ("kp_beam", "kp_beam_lam0")
    )


def cma_cheaper_on_ackley_100(s: Summary) -> bool:
    """On the 100-D Ackley function CMA-ES solves at a lower median cost than the beam with lambda = 0."""
    return _cost(s, "ackley", 100, "cma_es") < _cost(s, "ackley", 100, "kp_beam_lam0")


def newton_kernel_only_loose_on_ackley_100(s: Summary) -> bool:
    """The printed kernel (lambda = n) solves no 100-D Ackley start to the tight tolerance."""
    return _solved(s, "ackley", 100, "kp_beam") == 0


def lam0_is_the_best_potential_variant(s: Summary) -> bool:
    """Over all problems the beam with lambda = 0 solves the most among the potential variants, more than the
    printed kernel."""
    ran = [a for a in POTENTIAL if a in s["overall"]]
    best = max(_overall(s, a) for a in ran)
    return _overall(s, "kp_beam_lam0") == best and best > _overall(s, "kp_beam")


def no_potential_variant_solves_rosenbrock(s: Summary) -> bool:
    """No potential variant solves a Rosenbrock start, in any dimension."""
    ran = [a for a in POTENTIAL if a in s["overall"]]
    return all(_solved(s, "rosenbrock", n, a) == 0 for n in _dims(s, "rosenbrock") for a in ran)


def second_order_no_better(s: Summary) -> bool:
    """The second-order variant solves no more problems than the first-order beam."""
    return _overall(s, "kp_second_order") <= _overall(s, "kp_beam")


def rastrigin_defeats_all_beyond_2d(s: Summary) -> bool:
    """Beyond two dimensions no arm solves a Rastrigin start."""
    dims = [n for n in _dims(s, "rastrigin") if n > 2]
    return bool(dims) and all(
        data["solved"][s["tol"]] == 0
        for c in s["cells"]
        if c["function"] == "rastrigin" and c["dim"] in dims
        for data in c["arms"].values()
    )


def nelder_mead_cheaper_in_2d(s: Summary) -> bool:
    """In two dimensions Nelder--Mead's median cost is below the beam's on the smooth problems."""
    return all(_cost(s, f, 2, "scipy_nm") < _cost(s, f, 2, "kp_beam") for f in SMOOTH_2D)


def hybrid_fails_on_sphere_100(s: Summary) -> bool:
    """The hybrid solves no start of the 100-D sphere."""
    return _solved(s, "sphere", 100, "kp_hybrid") == 0


def minpy_potential_mostly_2d(s: Summary) -> bool:
    """Most problems with n <= 10 that minpy's shipped potential method solves are two-dimensional."""
    if "minpy_potential_shipped" not in s["problems"]:
        raise NotRun("minpy_potential_shipped")
    problems = [p for p in s["problems"]["minpy_potential_shipped"] if p["dim"] <= 10]
    solved = [p for p in problems if p["cost_to"][s["tol"]] is not None]
    return 2 * sum(p["dim"] == 2 for p in solved) > len(solved)


def minpy_not_close_to_the_beam(s: Summary) -> bool:
    """Every minpy variant solves at most ``MINPY_FRACTION`` of the problems the re-implemented beam method solves."""
    ran = [a for a in MINPY if a in s["overall"]]
    if not ran:
        raise NotRun("minpy")
    return all(_overall(s, a) <= MINPY_FRACTION * _overall(s, "kp_beam") for a in ran)


CLAIMS: dict[str, Callable[[Summary], bool]] = {
    "Competitive": competitive_on_smooth,
    "SphereHundred": several_times_cma_on_sphere_100,
    "AckleyHundredCost": cma_cheaper_on_ackley_100,
    "AckleyHundredNewton": newton_kernel_only_loose_on_ackley_100,
    "LamZeroBest": lam0_is_the_best_potential_variant,
    "Rosenbrock": no_potential_variant_solves_rosenbrock,
    "SecondOrder": second_order_no_better,
    "Rastrigin": rastrigin_defeats_all_beyond_2d,
    "NelderMeadTwo": nelder_mead_cheaper_in_2d,
    "Hybrid": hybrid_fails_on_sphere_100,
    "MinpyPotentialTwo": minpy_potential_mostly_2d,
    "MinpyNotClose": minpy_not_close_to_the_beam,
}


def verdicts(summary: Summary) -> dict[str, bool | None]:
    """Each claim: True, False, or None when the config did not run what it needs."""
    out: dict[str, bool | None] = {}
    for name, claim in CLAIMS.items():
        try:
            out[name] = claim(summary)
        except NotRun:
            out[name] = None
    return out
