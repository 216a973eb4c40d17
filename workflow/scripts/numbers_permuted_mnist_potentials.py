"""In-text numbers that compare every permuted-MNIST variant as LaTeX macros
(paper/generated/numbers_permuted_mnist_potentials.tex): each arm without R and with each R of the config.

``PmnistAllBestArm``/``PmnistAllBestAcc``: the best variant by mean test ACC, and the variants its lead is not
separated from (a sentence, and a clause for the abstract). Per R with prefix ``P``
(:func:`~potential_names.macro_prefix`): ``<P>NoteRank``, the note's full method's rank among all variants;
``<P>HigherMean``, the arms (optimizer and guard) where this R's selected variant has a higher mean test ACC
than every other R's (``<P>ClaimMostHigher`` marks it below half; the arms in ``<P>HigherMeanList``); and
``<P>HeadWins``, those where it is ahead of every other R's in a paired 95% interval over seeds; each also with
the suffix ``Alone`` or ``Guarded`` for the arms with that guard."""

import json
from pathlib import Path
from typing import Any

from latex_format import claim_mark, escape, listing, macro
from numbers_permuted_mnist import arm_name, pct
from numbers_permuted_mnist_potential import full_method, rank, variant_name
from paper_numbers import paired_interval
from potential_names import macro_prefix, potential_kind


def tied_with_best(
    best: dict[str, Any], variants: list[tuple[dict[str, Any], str | None]], level: float = 0.95
) -> list[tuple[dict[str, Any], str | None]]:
    """The variants (arm, its R or None) whose test ACC ``best``'s does not exceed in a paired ``level`` interval
    over seeds (every arm runs on the same seeds, in the same order); a nan bound (one seed) is not a lead."""
    tied = []
    for arm, r in variants:
        if arm is best:
            continue
        if not paired_interval(acc_differences(best, arm), level)[1] > 0:
            tied.append((arm, r))
    return tied


def acc_differences(arm: dict[str, Any], other: dict[str, Any]) -> list[float]:
    """Seed by seed, ``arm``'s test ACC minus ``other``'s (both ran on the same seeds, in the same order)."""
    return [a - o for a, o in zip(arm["test"]["acc"]["values"], other["test"]["acc"]["values"], strict=True)]


def all_variants(base: dict[str, Any], summaries: dict[str, dict[str, Any]]) -> list[tuple[dict[str, Any], str | None]]:
    """Every arm without R (None) and with each R (its kind, as the text names it)."""
    variants: list[tuple[dict[str, Any], str | None]] = [(a, None) for a in base["arms"].values()]
    for summary in summaries.values():
        variants += [(a, potential_kind(summary["potential"])) for a in summary["arms"].values()]
    return variants


def best_macros(variants: list[tuple[dict[str, Any], str | None]]) -> dict[str, str]:
    """The best variant by mean test ACC, how many there are, and the sentence that says whether it leads."""
    best, best_r = max(variants, key=lambda v: v[0]["test"]["acc"]["mean"])
    tied = [variant_name(a, r) for a, r in tied_with_best(best, variants)]
    return {
        "PmnistAllBestArm": variant_name(best, best_r),
        "PmnistAllBestAcc": pct(best["test"]["acc"]["mean"]),
        "PmnistAllVariants": str(len(variants)),
        "PmnistAllTiedCount": str(len(tied)),
        "PmnistAllTiedClause": (
            f" (over these seeds not separated from {len(tied)} other arm{'s' if len(tied) > 1 else ''})"
            if tied
            else ""
        ),
        "PmnistAllTiedSentence": (
            f"Over these seeds its lead is not separated from {listing(tied)} (paired 95\\% intervals of the "
            "difference include zero), so these data name no single best arm."
            if tied
            else "It leads every other arm in a paired 95\\% interval over seeds."
        ),
    }


def head_wins(summaries: dict[str, dict[str, Any]], name: str, level: float = 0.95) -> list[str]:
    """The arms (``optimizer/guard``) where R ``name``'s selected variant has a higher test ACC than every other
    R's in a paired ``level`` interval over seeds (arms some R lacks are not compared)."""
    mine, others = summaries[name]["arms"], [s["arms"] for n, s in summaries.items() if n != name]
    return [
        key
        for key, arm in mine.items()
        if others and all(key in o and paired_interval(acc_differences(arm, o[key]), level)[1] > 0 for o in others)
    ]


def higher_means(summaries: dict[str, dict[str, Any]], name: str) -> list[str]:
    """The arms where R ``name``'s selected variant has a higher mean test ACC than every other R's (none without
    another R)."""
    mine, others = summaries[name]["arms"], [s["arms"] for n, s in summaries.items() if n != name]
    return [
        key
        for key, arm in mine.items()
        if others and all(key in o and arm["test"]["acc"]["mean"] > o[key]["test"]["acc"]["mean"] for o in others)
    ]


# The arms each head-to-head count covers: all of them, the unguarded ones, the guarded ones.
SCOPES = {"": None, "Alone": "alone", "Guarded": "guarded"}


def head_macros(summaries: dict[str, dict[str, Any]], name: str, prefix: str) -> dict[str, str]:
    """Per scope (all arms, alone, guarded): how many arms R ``name`` wins by mean and in a paired interval, of
    how many, the claim mark of winning most of them, and the arms it wins by mean (by optimizer within a guard)."""
    arms = summaries[name]["arms"]
    higher, wins = higher_means(summaries, name), head_wins(summaries, name)
    out = {}
    for suffix, guard in SCOPES.items():
        keys = [k for k, a in arms.items() if guard is None or a["guard"] == guard]
        ahead = [k for k in keys if k in higher]
        out[f"{prefix}HigherMean{suffix}"] = str(len(ahead))
        out[f"{prefix}HeadWins{suffix}"] = str(sum(k in wins for k in keys))
        out[f"{prefix}HeadCompared{suffix}"] = str(len(keys))
        # the text's claim that this R does better than the others in most of these arms
        out[f"{prefix}ClaimMostHigher{suffix}"] = claim_mark(len(ahead) > len(keys) / 2 if keys else None)
        names = [arm_name(arms[k]) if guard is None else escape(arms[k]["label"]) for k in ahead]
        out[f"{prefix}HigherMeanList{suffix}"] = listing(names) if names else "none"
    return out


def lines_for(base: dict[str, Any], summaries: dict[str, dict[str, Any]], source: str) -> list[str]:
    """Every macro, each with its source."""
    variants = all_variants(base, summaries)
    arms = [a for a, _ in variants]
    out = best_macros(variants)
    for name, summary in summaries.items():
        prefix = macro_prefix(name)
        mine = full_method(list(summary["arms"].values()))
        out[f"{prefix}NoteRank"] = "--" if mine is None else f"{rank(mine, arms)} of {len(arms)}"
        out.update(head_macros(summaries, name, prefix))
    return [macro(key, value, source) for key, value in out.items()]


if __name__ == "__main__":
    sm = snakemake
    names = list(sm.params.potentials)
    summaries = {n: json.loads(Path(p).read_text()) for n, p in zip(names, sm.input.summaries, strict=True)}
    base = json.loads(Path(sm.input.base).read_text())
    lines = lines_for(base, summaries, ", ".join(sm.input.summaries))
    Path(sm.output[0]).write_text(
        "% Generated by workflow/scripts/numbers_permuted_mnist_potentials.py\n" + "\n".join(lines) + "\n"
    )
