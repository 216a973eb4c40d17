"""In-text numbers of the paper as LaTeX macros; each line says which file it came from."""

import json
import math
from pathlib import Path
from typing import Any

from latex_format import claim_mark, fmt, listing, macro
from scipy import stats

DIGITS = dict(
    zip("0123456789", ("Zero", "One", "Two", "Three", "Four", "Five", "Six", "Seven", "Eight", "Nine"), strict=True)
)


def macro_key(name: str) -> str:
    """A config name as a letters-only macro fragment: ``l2sp_armijo`` -> ``LTwospArmijo``."""
    camel = "".join(part[:1].upper() + part[1:] for part in name.split("_"))
    return "".join(DIGITS.get(ch, ch) for ch in camel)


def _range(values: list[float]) -> str:
    return f"{fmt(min(values), 2)}--{fmt(max(values), 2)}"


def _matched(data: dict[str, Any]) -> float | None:
    stats = data["stats"].get("matched_forgetting")
    return None if stats is None else stats["mean"]


def paired_interval(differences: list[float], level: float = 0.95) -> tuple[float, float, float]:
    """Mean of paired per-seed differences and its Student-t interval; (mean, nan, nan) below two seeds."""
    n = len(differences)
    mean = sum(differences) / n
    if n < 2:
        return mean, math.nan, math.nan
    half = stats.t.ppf(0.5 + level / 2, n - 1) * stats.tstd(differences) / math.sqrt(n)
    return mean, mean - half, mean + half


def matched_best(summary: dict[str, Any], level: float = 0.95) -> tuple[str, list[str]]:
    """The arm with the least mean forgetting at matched learning, and the arms its lead over is not separated from.

    Each other arm is compared with the best seed by seed (paired differences of matched forgetting, on the seeds
    where both reached matched learning); a lead counts only when the paired ``level`` interval excludes zero, and
    never on fewer than two seeds."""
    arms = summary["arms"]
    per_seed = {arm: data["per_seed"]["matched_forgetting"] for arm, data in arms.items() if _matched(data) is not None}
    best = min(per_seed, key=lambda arm: _matched(arms[arm]))
    tied = []
    for arm, values in per_seed.items():
        diffs = [o - b for o, b in zip(values, per_seed[best], strict=True) if o is not None and b is not None]
        if arm != best and not (diffs and paired_interval(diffs, level)[1] > 0):  # a nan bound is not a lead
            tied.append(arm)
    return best, tied


def matched_best_sentence(summary: dict[str, Any], labels: dict[str, str], level: float = 0.95) -> str:
    """The text's clause on the best arm at matched learning, saying which arms its lead is within the spread of."""
    best, tied = matched_best(summary, level)
    head = (
        f"the lowest mean forgetting at matched learning is that of {labels.get(best, best)} "
        f"(${fmt(_matched(summary['arms'][best]))}$)"
    )
    percent = f"{round(level * 100)}\\%"
    if not tied:
        return f"{head}, below every other arm's in a paired {percent} interval over seeds"
    listed = listing([labels.get(arm, arm) for arm in tied])
    return (
        f"{head}, but over these seeds it is not separated from {listed} (paired {percent} intervals of the "
        "difference include zero), so these data name no single best arm"
    )


def matched_best_abstract(summary: dict[str, Any], labels: dict[str, str], method: str, level: float = 0.95) -> str:
    """The abstract's shorter clause on the best arm at matched learning (``method``: the paper's full method)."""
    best, tied = matched_best(summary, level)
    name = labels.get(best, best)
    if not tied:
        return f"the least forgetting is that of {name}, lower than every other arm's over seeds"
    others = "one other arm" if len(tied) == 1 else f"{len(tied)} other arms"
    among = ", the full method among them" if method in tied else ""
    return f"the lowest mean forgetting, that of {name}, is not separated over seeds from {others}{among}"


def armijo_sentence(summary: dict[str, Any]) -> str:
    """What the Armijo test did in the arms that use it, from their rejection counts and step sizes."""
    arms = [data for data in summary["arms"].values() if data["config"]["armijo"]]
    if not arms:
        return "No arm uses the Armijo test."
    rejected = sum(data["n_rejected"] for data in arms)
    lr = summary["problem"]["lr"]
    shortened = any(eta != [lr] for data in arms for eta in data["per_seed"]["eta"])
    if rejected == 0 and not shortened:
        return (
            "The Armijo test never acted: every step of every Armijo arm was accepted at the full step size, "
            "which already satisfies \\cref{eq:armijo} here, so each Armijo arm takes the steps of its "
            "fixed-step twin and the Armijo ingredient is untested by this problem."
        )
    return f"The Armijo test shortened steps in these runs and rejected {rejected} of them."


def phi_sentence(summary: dict[str, Any], labels: dict[str, str]) -> str:
    """Which arms' potential decreased at every step (a property of the step size as much as of Armijo)."""
    monotone = [arm for arm, data in summary["arms"].items() if data["all_phi_monotone"]]
    if len(monotone) == len(summary["arms"]):
        return "Every arm's potential decreased at every step, plain gradient descent's included."
    names = ", ".join(labels.get(arm, arm) for arm in monotone) or "no arm"
    return f"The potential decreased at every step for {names} only."


def two_task_numbers(
    summary: dict[str, Any], headline: dict[str, str], source: str, labels: dict[str, str] | None = None
) -> list[str]:
    """Problem sizes, per-arm forgetting/learning (at the end and at matched learning), and the ratios and
    sentences the text quotes."""
    labels = labels or {}
    arms, prob = summary["arms"], summary["problem"]
    lines = [
        macro("TwoTaskDim", str(prob["dim"]), source),
        macro("TwoTaskSamples", str(prob["n_samples"]), source),
        macro("TwoTaskSteps", str(prob["steps"]), source),
        macro("TwoTaskLr", f"{prob['lr']:g}", source),
        macro("TwoTaskMemoryK", str(prob["memory_k"]), source),
        macro("TwoTaskCondition", f"{prob['condition']:g}", source),
        macro("TwoTaskSeeds", str(len(next(iter(arms.values()))["seeds"])), source),
    ]
    for arm, data in arms.items():
        key = macro_key(arm)
        s = data["stats"]
        lines += [
            macro(f"Forgetting{key}", fmt(s["forgetting"]["mean"]), source),
            macro(f"FinalLB{key}", fmt(s["L_B_end"]["mean"]), source),
            macro(f"MatchedForgetting{key}", "--" if _matched(data) is None else fmt(_matched(data)), source),
        ]
    base, method = arms[headline["baseline"]], arms[headline["method"]]
    ratio = {k: method["stats"][k]["mean"] / base["stats"][k]["mean"] for k in ("forgetting", "L_B_end")}
    paired = {
        k: [m / b for m, b in zip(method["per_seed"][k], base["per_seed"][k], strict=True)]
        for k in ("forgetting", "L_B_end")
    }
    base_m, method_m = base["per_seed"]["matched_forgetting"], method["per_seed"]["matched_forgetting"]
    matched_pairs = [m / b for m, b in zip(method_m, base_m, strict=True) if m is not None and b]
    lines += [
        macro("HeadlineForgettingRatio", fmt(ratio["forgetting"], 2), source),
        macro("HeadlineForgettingRange", _range(paired["forgetting"]), source),
        macro("HeadlineLBRatio", fmt(ratio["L_B_end"], 2), source),
        macro("HeadlineLBRange", _range(paired["L_B_end"]), source),
        macro(
            "HeadlineMatchedRatio",
            fmt(_matched(method) / _matched(base), 2) if _matched(base) and _matched(method) is not None else "--",
            source,
        ),
        macro("HeadlineMatchedRange", _range(matched_pairs) if matched_pairs else "--", source),
        # labels are LaTeX, as in the table
        macro("MatchedBestSentence", matched_best_sentence(summary, labels), source),
        macro("MatchedBestAbstract", matched_best_abstract(summary, labels, headline["method"]), source),
        macro("HeadlinePhiMonotone", "every" if method["all_phi_monotone"] else "not every", source),
        macro("PhiMonotoneSentence", phi_sentence(summary, labels), source),
        macro("ArmijoSentence", armijo_sentence(summary), source),
        macro("HeadlineMaxOldSlope", fmt(method["max_abs_old_task_slope"], 2), source),
        macro("TwoTaskLTwosp", f"{method['config']['l2sp']:g}", source),
        # the judgements the text makes of these numbers, each checked (marked in the text if it fails)
        macro("ClaimTradeOff", claim_mark(ratio["forgetting"] < 1 < ratio["L_B_end"]), source),
        macro(
            "ClaimEndFlatters",
            claim_mark(
                _matched(method) is not None
                and bool(_matched(base))
                and _matched(method) / _matched(base) > ratio["forgetting"]
            ),
            source,
        ),
        macro("ClaimFirstOrderLeak", claim_mark(method["max_abs_old_task_slope"] > 0), source),
    ]
    return lines


# The status of a check in a certificate (derivations/certify.py) and the macro that counts it.
CHECK_COUNTS = {
    "proved": "SympyIdentities",  # symbolic: for all values of the symbols
    "exact at a point": "SympyPointChecks",  # exact arithmetic at one sample point
    "checked numerically": "SympyNumericChecks",  # floating point, with a tolerance
}


def certificate_numbers(certificates: list[dict[str, Any]], sources: list[str]) -> list[str]:
    """How many checks of each kind the notebooks made (\\SympyIdentities: proved symbolically only), and with
    which SymPy."""
    counts = dict.fromkeys(CHECK_COUNTS, 0)
    for cert in certificates:
        for check in cert["identities"]:
            if check["status"] not in counts:
                raise ValueError(f"{cert['notebook']}: unknown status {check['status']!r} of {check['identity']!r}")
            counts[check["status"]] += 1
    versions = sorted({c["sympy_version"] for c in certificates})
    src = ", ".join(sources)
    return [
        *(macro(name, str(counts[status]), src) for status, name in CHECK_COUNTS.items()),
        macro("SympyNotebooks", str(len(certificates)), src),
        macro("SympyVersion", "/".join(versions), src),
    ]


if __name__ == "__main__":
    sm = snakemake
    summary_path = sm.input.two_task
    certs = [json.loads(Path(p).read_text()) for p in sm.input.certificates]
    lines = ["% Generated by workflow/scripts/paper_numbers.py; do not edit."]
    summary = json.loads(Path(summary_path).read_text())
    lines += two_task_numbers(summary, dict(sm.params.headline), summary_path, dict(sm.params.labels))
    lines += certificate_numbers(certs, list(sm.input.certificates))
    if sm.params.allow_missing:  # smoke builds: \kpnum prints n/a for a cell the config did not run
        lines.append(macro("AllowMissingNumbers", "", "config paper.allow_missing_numbers"))
    Path(sm.output[0]).write_text("\n".join(lines) + "\n")
