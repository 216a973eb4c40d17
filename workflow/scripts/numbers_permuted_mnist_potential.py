"""In-text numbers of permuted MNIST's potential runs as LaTeX macros
(paper/generated/numbers_permuted_mnist_potential.tex).

Per optimizer ``X`` and guard ``G`` (``Alone``, ``Guarded``): ``PmnistPotAcc<X><G>``, ``PmnistPotBwt<X><G>``,
``PmnistPotLa<X><G>`` (test, percent, mean over seeds, with R at its selected strength ``PmnistPotLam<X><G>``) and
R's paired effect on ACC ``PmnistPotEffect<X><G>``; then the sentences that compare the four variants of each
optimizer (alone, guarded, each with and without R)."""

import json
from pathlib import Path
from typing import Any

from latex_format import claim_mark, escape, fmt, listing, macro
from numbers_permuted_mnist import arm_name, direction_sentence, pct, span
from paper_numbers import macro_key, paired_interval

GUARDS = ("alone", "guarded")


def variant_name(arm: dict[str, Any], with_potential: bool) -> str:
    """An arm as the text names it: ``Muon``, ``guarded Muon``, ``Muon with R``, ``guarded Muon with R``."""
    return arm_name(arm) + (" with $R$" if with_potential else "")


def effects_by_guard(summary: dict[str, Any], guard: str) -> dict[str, dict[str, Any]]:
    """R's paired effects of the arms with ``guard``, by the optimizer's label."""
    return {a["label"]: a["effect"] for a in summary["arms"].values() if a["guard"] == guard}


def effect_macros(summary: dict[str, Any]) -> dict[str, str]:
    """Per guard: where R raised or lowered the test ACC seed by seed, and the ranges of its paired effects on ACC,
    BWT and LA and of the BWT with R."""
    out = {}
    for guard in GUARDS:
        effects = effects_by_guard(summary, guard)
        subject = "$R$" if guard == "alone" else "Added to the guard, $R$"
        sentence, helped = direction_sentence(subject, effects)
        key = guard.capitalize()
        out[f"PmnistPotSentence{key}"] = sentence
        out[f"PmnistPotHelpedCount{key}"] = str(helped)
        for metric in ("acc", "bwt", "la"):
            name = "" if metric == "acc" else metric.capitalize()
            out[f"PmnistPot{name}EffectRange{key}"] = span([e[metric]["mean"] for e in effects.values()])
        bwt = [a["test"]["bwt"]["mean"] for a in summary["arms"].values() if a["guard"] == guard]
        out[f"PmnistPotBwtRange{key}"] = span(bwt)
    return out


def claim_macros(summary: dict[str, Any], base: dict[str, Any]) -> dict[str, str]:
    """The counts behind the text's three qualitative claims, and their marks: the guard without R beats R
    without the guard; guarded arms select a smaller strength than unguarded ones; R lowers LA."""
    arms = summary["arms"]
    names = [a["optimizer"] for a in arms.values() if a["guard"] == "alone"]

    def acc(arm: dict[str, Any]) -> float:
        return arm["test"]["acc"]["mean"]

    wins = [
        n
        for n in names
        if f"{n}/guarded" in base["arms"] and acc(base["arms"][f"{n}/guarded"]) > acc(arms[f"{n}/alone"])
    ]
    paired = [n for n in names if f"{n}/guarded" in arms]
    smaller = [n for n in paired if arms[f"{n}/guarded"]["selected_lam"] < arms[f"{n}/alone"]["selected_lam"]]
    lower_la = sum(a["effect"]["la"]["mean"] < 0 for a in arms.values())

    def majority(count: int, of: int) -> str:
        return claim_mark(count > of / 2 if of else None)

    return {
        "PmnistPotGuardWins": str(len(wins)),
        "PmnistPotCompared": str(len(names)),
        "PmnistPotClaimGuardOverR": majority(len(wins), len(names)),
        "PmnistPotSmallerLam": str(len(smaller)),
        "PmnistPotPaired": str(len(paired)),
        "PmnistPotClaimSmallerLam": majority(len(smaller), len(paired)),
        "PmnistPotLowerLa": str(lower_la),
        "PmnistPotArms": str(len(arms)),
        "PmnistPotClaimLaCost": majority(lower_la, len(arms)),
    }


def comparisons(summary: dict[str, Any], base: dict[str, Any]) -> dict[str, str]:
    """R's effects, the claims' counts, the best of every variant (each arm with and without R), where the note's
    full method ranks, and the arms at an end of the strength ladder."""
    out = {**effect_macros(summary), **claim_macros(summary, base)}
    variants = [(a, False) for a in base["arms"].values()] + [(a, True) for a in summary["arms"].values()]
    best, best_r = max(variants, key=lambda v: v[0]["test"]["acc"]["mean"])
    out["PmnistAllBestArm"] = variant_name(best, best_r)
    out["PmnistAllBestAcc"] = pct(best["test"]["acc"]["mean"])
    out["PmnistAllVariants"] = str(len(variants))
    tied = [variant_name(a, r) for a, r in tied_with_best(best, variants)]
    out["PmnistAllTiedSentence"] = (
        f"Over these seeds its lead is not separated from {listing(tied)} (paired 95\\% intervals of the "
        "difference include zero), so these data name no single best arm."
        if tied
        else "It leads every other arm in a paired 95\\% interval over seeds."
    )
    out["PmnistAllTiedCount"] = str(len(tied))
    out["PmnistPotNoteSentence"] = note_sentence(variants)
    out["PmnistPotNoteRank"] = note_rank(variants)
    out["PmnistPotEdgeSentence"] = edge_sentence(summary)
    return out


def tied_with_best(
    best: dict[str, Any], variants: list[tuple[dict[str, Any], bool]], level: float = 0.95
) -> list[tuple[dict[str, Any], bool]]:
    """The variants whose test ACC ``best``'s does not exceed in a paired ``level`` interval over seeds (every arm
    runs on the same seeds, in the same order); a nan bound (one seed) is not a lead."""
    tied = []
    for arm, with_r in variants:
        if arm is best:
            continue
        diffs = [b - o for b, o in zip(best["test"]["acc"]["values"], arm["test"]["acc"]["values"], strict=True)]
        if not paired_interval(diffs, level)[1] > 0:
            tied.append((arm, with_r))
    return tied


def edge_sentence(summary: dict[str, Any]) -> str:
    """Which arms selected an end of the strength ladder (marked in the table), and what each end means."""
    arms = [a for a in summary["arms"].values() if a["at_edge"]]
    low = [variant_name(a, True) for a in arms if a["selected"] == 0]
    high = [variant_name(a, True) for a in arms if a["selected"] != 0]
    parts = []
    if low:
        parts.append(
            f"the smallest of its ladder for {listing(low)}: a smaller one tends to the arm without $R$, which "
            "the $\\Delta$ACC column compares"
        )
    if high:
        parts.append(f"the largest for {listing(high)}: a larger one might do better")
    if not parts:
        return "No arm selected a strength at an end of its ladder."
    return f"The selected strength (marked $^\\dagger$) is {'; '.join(parts)}."


def full_method(variants: list[tuple[dict[str, Any], bool]], name: str = "kaplinskiy") -> dict[str, Any] | None:
    """The note's full method among ``variants`` (arm, with R): optimizer ``name``, guarded, with R."""
    return next((a for a, r in variants if r and a["optimizer"] == name and a["guard"] == "guarded"), None)


def rank(arm: dict[str, Any], arms: list[dict[str, Any]]) -> int:
    """1 + how many of ``arms`` have a higher mean test ACC than ``arm``."""
    return 1 + sum(a["test"]["acc"]["mean"] > arm["test"]["acc"]["mean"] for a in arms)


def note_rank(variants: list[tuple[dict[str, Any], bool]], name: str = "kaplinskiy") -> str:
    """``k of N``: the note's full method's rank by test ACC among all the arms (``--`` when it did not run)."""
    mine = full_method(variants, name)
    return "--" if mine is None else f"{rank(mine, [a for a, _ in variants])} of {len(variants)}"


def note_sentence(variants: list[tuple[dict[str, Any], bool]], name: str = "kaplinskiy") -> str:
    """Where the note's full method (``name``, guarded, with R) ranks by test ACC among the guarded arms with R and
    among every variant; empty when it did not run."""
    mine = full_method(variants, name)
    if mine is None:
        return ""
    peers = [a for a, r in variants if r and a["guard"] == "guarded"]
    return (
        f"The note's full method (its optimizer, guarded, descending the potential) reaches a test ACC of "
        f"{pct(mine['test']['acc']['mean'])}\\%: {rank(mine, peers)} of the {len(peers)} guarded arms with $R$, "
        f"and {note_rank(variants, name)} arms."
    )


def lines_for(summary: dict[str, Any], base: dict[str, Any], potential: dict[str, Any], source: str) -> list[str]:
    """Every macro, each with its source."""
    cfg = "config permuted_mnist.potential"
    kinds = {"identity": "L2-SP", "empirical": "EWC (empirical Fisher)", "true": "EWC (true Fisher)"}
    kind = kinds[potential["fisher"]]
    lines = [
        macro("PmnistPotLamCentre", f"{potential['lam']:g}", cfg),
        macro("PmnistPotKind", escape(kind), cfg),
        macro("PmnistPotGamma", f"{potential['gamma']:g}", cfg),
        # the text describes R as online EWC with the empirical Fisher, the tasks' Fishers summed: marked otherwise
        macro("PmnistPotClaimKind", claim_mark(potential["fisher"] == "empirical" and potential["gamma"] == 1), cfg),
    ]
    for arm in summary["arms"].values():
        stem = macro_key(arm["optimizer"]) + arm["guard"].capitalize()
        for metric in ("acc", "bwt", "la"):
            lines.append(macro(f"PmnistPot{metric.capitalize()}{stem}", pct(arm["test"][metric]["mean"]), source))
        lines.append(macro(f"PmnistPotLam{stem}", fmt(arm["selected_lam"], 2), source))
        lines.append(macro(f"PmnistPotEffect{stem}", pct(arm["effect"]["acc"]["mean"]), source))
    lines += [macro(name, value, source) for name, value in comparisons(summary, base).items()]
    return lines


if __name__ == "__main__":
    sm = snakemake
    summary = json.loads(Path(sm.input.summary).read_text())
    base = json.loads(Path(sm.input.base).read_text())
    lines = lines_for(summary, base, sm.params.potential, sm.input.summary)
    Path(sm.output[0]).write_text(
        "% Generated by workflow/scripts/numbers_permuted_mnist_potential.py\n" + "\n".join(lines) + "\n"
    )
