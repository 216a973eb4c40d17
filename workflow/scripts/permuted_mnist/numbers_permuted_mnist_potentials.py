"""In-text numbers that compare every permuted-MNIST variant as LaTeX macros
(paper/generated/numbers_permuted_mnist_potentials.tex): each arm without R and with each R of the config.

``PmnistAllBestArm``/``PmnistAllBestAcc``: the best variant by mean test ACC, and the variants its lead is not
separated from (a sentence, and a clause for the abstract). Per R with prefix ``P``
(:func:`~permuted_mnist._text.macro_prefix`): ``<P>NoteRank``, the note's full method's rank among all variants;
``<P>HigherMean``, the arms (optimizer and guard) where this R's selected variant has a higher mean test ACC
than every other R's (``<P>ClaimMostHigher`` marks it below half; the arms in ``<P>HigherMeanList``); and
``<P>HeadWins``, those where it is ahead of every other R's in a paired 95% interval over seeds; each also with
the suffix ``Alone`` or ``Guarded`` for the arms with that guard. The comparisons are the variants aggregation's
(aggregate_permuted_mnist_variants.py); each macro names the potential summaries they were computed from."""

import json
from pathlib import Path
from typing import Any

from common.latex_format import claim_mark, escape, listing, macro
from common.paths import repository_path

from permuted_mnist._text import arm_name, macro_prefix, pct, potential_kind, variant_name


def names(compared: dict[str, Any]) -> list[str]:
    """Each variant as the text names it: ``Muon``, ``guarded Muon``, ``Muon with EWC``."""
    kinds = {name: potential_kind(potential) for name, potential in compared["potentials"].items()}
    return [variant_name(v, None if v["potential"] is None else kinds[v["potential"]]) for v in compared["variants"]]


def best_macros(compared: dict[str, Any]) -> dict[str, str]:
    """The best variant by mean test ACC, how many there are, and the sentence that says whether it leads."""
    named, best = names(compared), compared["best"]
    tied = [named[i] for i in compared["tied"]]
    level = f"{round(compared['level'] * 100)}\\%"
    return {
        "PmnistAllBestArm": named[best],
        "PmnistAllBestAcc": pct(compared["variants"][best]["test_acc"]),
        "PmnistAllVariants": str(len(named)),
        "PmnistAllTiedCount": str(len(tied)),
        "PmnistAllTiedClause": (
            f" (over these seeds not separated from {len(tied)} other arm{'s' if len(tied) > 1 else ''})"
            if tied
            else ""
        ),
        "PmnistAllTiedSentence": (
            f"Over these seeds its lead is not separated from {listing(tied)} (paired {level} intervals of the "
            "difference include zero), so these data name no single best arm."
            if tied
            else f"It leads every other arm in a paired {level} interval over seeds."
        ),
    }


# The arms each head-to-head count covers: all of them, the unguarded ones, the guarded ones.
SCOPES = {"": None, "Alone": "alone", "Guarded": "guarded"}


def head_macros(compared: dict[str, Any], name: str, prefix: str) -> dict[str, str]:
    """Per scope (all arms, alone, guarded): how many arms R ``name`` wins by mean and in a paired interval, of
    how many, the claim mark of winning most of them, and the arms it wins by mean (by optimizer within a guard)."""
    arms = {v["arm"]: v for v in compared["variants"] if v["potential"] == name}
    higher, wins = compared["head"][name]["higher_means"], compared["head"][name]["head_wins"]
    out = {}
    for suffix, guard in SCOPES.items():
        keys = [k for k, a in arms.items() if guard is None or a["guard"] == guard]
        ahead = [k for k in keys if k in higher]
        out[f"{prefix}HigherMean{suffix}"] = str(len(ahead))
        out[f"{prefix}HeadWins{suffix}"] = str(sum(k in wins for k in keys))
        out[f"{prefix}HeadCompared{suffix}"] = str(len(keys))
        # the text's claim that this R does better than the others in most of these arms
        out[f"{prefix}ClaimMostHigher{suffix}"] = claim_mark(len(ahead) > len(keys) / 2 if keys else None)
        listed = [arm_name(arms[k]) if guard is None else escape(arms[k]["label"]) for k in ahead]
        out[f"{prefix}HigherMeanList{suffix}"] = listing(listed) if listed else "none"
    return out


def note_rank(compared: dict[str, Any], name: str, optimizer: str = "kaplinskiy") -> str:
    """``k of n``: the rank of the note's full method (``optimizer``, guarded) with R ``name`` among all variants."""
    ranks = [v["rank"] for v in compared["variants"] if v["potential"] == name and v["arm"] == f"{optimizer}/guarded"]
    return f"{ranks[0]} of {len(compared['variants'])}" if ranks else "--"


def lines_for(compared: dict[str, Any], source: str) -> list[str]:
    """Every macro, each with its source."""
    out = best_macros(compared)
    for name in compared["potentials"]:
        prefix = macro_prefix(name)
        out[f"{prefix}NoteRank"] = note_rank(compared, name)
        out.update(head_macros(compared, name, prefix))
    return [macro(key, value, source) for key, value in out.items()]


if __name__ == "__main__":
    sm = snakemake
    compared = json.loads(Path(sm.input.variants).read_text())
    lines = lines_for(compared, ", ".join(compared["sources"]))
    Path(sm.output[0]).write_text(f"% Generated by {repository_path(__file__)}\n" + "\n".join(lines) + "\n")
