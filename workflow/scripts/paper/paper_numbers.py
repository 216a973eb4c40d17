"""In-text numbers of the paper as LaTeX macros; each line says which file it came from."""

import json
from pathlib import Path
from typing import Any

from common.latex_format import claim_mark, fmt, listing, macro, macro_key
from common.paths import repository_path


def _range(values: list[float]) -> str:
    return f"{fmt(min(values), 2)}--{fmt(max(values), 2)}"


def _matched(data: dict[str, Any]) -> float | None:
    stats = data["stats"].get("matched_forgetting")
    return None if stats is None else stats["mean"]


def matched_best_sentence(summary: dict[str, Any], labels: dict[str, str]) -> str:
    """The text's clause on the best arm at matched learning, saying which arms its lead is within the spread of."""
    best, tied, level = (summary["matched_best"][k] for k in ("arm", "tied", "level"))
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


def matched_best_abstract(summary: dict[str, Any], labels: dict[str, str]) -> str:
    """The abstract's shorter clause on the best arm at matched learning (the headline method: the full method)."""
    best, tied = summary["matched_best"]["arm"], summary["matched_best"]["tied"]
    name = labels.get(best, best)
    if not tied:
        return f"the least forgetting is that of {name}, lower than every other arm's over seeds"
    others = "one other arm" if len(tied) == 1 else f"{len(tied)} other arms"
    among = ", the full method among them" if summary["headline"]["method"] in tied else ""
    return f"the lowest mean forgetting, that of {name}, is not separated over seeds from {others}{among}"


def armijo_sentence(summary: dict[str, Any]) -> str:
    """What the Armijo test did in the arms that use it, from their rejection counts and step sizes."""
    use = summary["armijo"]
    if not use["arms"]:
        return "No arm uses the Armijo test."
    if use["rejected"] == 0 and not use["shortened"]:
        return (
            "The Armijo test never acted: every step of every Armijo arm was accepted at the full step size, "
            "which already satisfies \\cref{eq:armijo} here, so each Armijo arm takes the steps of its "
            "fixed-step twin and the Armijo ingredient is untested by this problem."
        )
    return f"The Armijo test shortened steps in these runs and rejected {use['rejected']} of them."


def phi_sentence(summary: dict[str, Any], labels: dict[str, str]) -> str:
    """Which arms' potential decreased at every step (a property of the step size as much as of Armijo)."""
    monotone = summary["phi_monotone_arms"]
    if len(monotone) == len(summary["arms"]):
        return "Every arm's potential decreased at every step, plain gradient descent's included."
    names = ", ".join(labels.get(arm, arm) for arm in monotone) or "no arm"
    return f"The potential decreased at every step for {names} only."


def two_task_numbers(summary: dict[str, Any], source: str, labels: dict[str, str] | None = None) -> list[str]:
    """Problem sizes, per-arm forgetting/learning (at the end and at matched learning), and the ratios and
    sentences the text quotes, as the aggregation computed them."""
    labels = labels or {}
    arms, prob, head = summary["arms"], summary["problem"], summary["headline"]
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
    method = arms[head["method"]]
    ratio, paired, matched = head["ratio"], head["paired_ratios"], head["matched_ratio"]
    lines += [
        macro("HeadlineForgettingRatio", fmt(ratio["forgetting"], 2), source),
        macro("HeadlineForgettingRange", _range(paired["forgetting"]), source),
        macro("HeadlineLBRatio", fmt(ratio["L_B_end"], 2), source),
        macro("HeadlineLBRange", _range(paired["L_B_end"]), source),
        macro("HeadlineMatchedRatio", "--" if matched is None else fmt(matched, 2), source),
        macro(
            "HeadlineMatchedRange",
            _range(head["matched_paired_ratios"]) if head["matched_paired_ratios"] else "--",
            source,
        ),
        # labels are LaTeX, as in the table
        macro("MatchedBestSentence", matched_best_sentence(summary, labels), source),
        macro("MatchedBestAbstract", matched_best_abstract(summary, labels), source),
        macro("HeadlinePhiMonotone", "every" if method["all_phi_monotone"] else "not every", source),
        macro("PhiMonotoneSentence", phi_sentence(summary, labels), source),
        macro("ArmijoSentence", armijo_sentence(summary), source),
        macro("HeadlineMaxOldSlope", fmt(method["max_abs_old_task_slope"], 2), source),
        macro("TwoTaskLTwosp", f"{method['config']['l2sp']:g}", source),
        # the judgements the text makes of these numbers, each checked (marked in the text if it fails)
        macro("ClaimTradeOff", claim_mark(ratio["forgetting"] < 1 < ratio["L_B_end"]), source),
        macro("ClaimEndFlatters", claim_mark(matched is not None and matched > ratio["forgetting"]), source),
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
    lines = [f"% Generated by {repository_path(__file__)}; do not edit."]
    summary = json.loads(Path(summary_path).read_text())
    lines += two_task_numbers(summary, summary_path, dict(sm.params.labels))
    lines += certificate_numbers(certs, list(sm.input.certificates))
    if sm.params.allow_missing:  # smoke builds: \kpnum prints n/a for a cell the config did not run
        lines.append(macro("AllowMissingNumbers", "", "config paper.allow_missing_numbers"))
    Path(sm.output[0]).write_text("\n".join(lines) + "\n")
