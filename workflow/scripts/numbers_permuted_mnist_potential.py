"""In-text numbers of permuted MNIST's potential runs with one R as LaTeX macros
(paper/generated/numbers_permuted_mnist_potential_<name>.tex), each named with the R's prefix ``P``
(:func:`~potential_names.macro_prefix`: ``PmnistEwc`` for the config's ``ewc``).

Per optimizer ``X`` and guard ``G`` (``Alone``, ``Guarded``): ``<P>Acc<X><G>``, ``<P>Bwt<X><G>``, ``<P>La<X><G>``
(test, percent, mean over seeds, with R at its selected strength ``<P>Lam<X><G>``) and R's paired effect on ACC
``<P>Effect<X><G>``; then the sentences that compare the four variants of each optimizer (alone, guarded, each
with and without R)."""

import json
from pathlib import Path
from typing import Any

from latex_format import claim_mark, escape, fmt, listing, macro
from numbers_permuted_mnist import arm_name, direction_sentence, pct, span
from paper_numbers import macro_key
from potential_names import macro_prefix, potential_kind

GUARDS = ("alone", "guarded")


def variant_name(arm: dict[str, Any], potential: str | None) -> str:
    """An arm as the text names it: ``Muon``, ``guarded Muon``, or with R named ``potential``: ``Muon with EWC``."""
    return arm_name(arm) + ("" if potential is None else f" with {potential}")


def effects_by_guard(summary: dict[str, Any], guard: str) -> dict[str, dict[str, Any]]:
    """R's paired effects of the arms with ``guard``, by the optimizer's label."""
    return {a["label"]: a["effect"] for a in summary["arms"].values() if a["guard"] == guard}


def effect_macros(summary: dict[str, Any], prefix: str) -> dict[str, str]:
    """Per guard: where R raised or lowered the test ACC seed by seed, and the ranges of its paired effects on ACC,
    BWT and LA and of the BWT with R (macros named ``prefix...``)."""
    out = {}
    for guard in GUARDS:
        effects = effects_by_guard(summary, guard)
        subject = "$R$" if guard == "alone" else "Added to the guard, $R$"
        sentence, helped = direction_sentence(subject, effects)
        key = guard.capitalize()
        out[f"{prefix}Sentence{key}"] = sentence
        out[f"{prefix}HelpedCount{key}"] = str(helped)
        for metric in ("acc", "bwt", "la"):
            name = "" if metric == "acc" else metric.capitalize()
            out[f"{prefix}{name}EffectRange{key}"] = span([e[metric]["mean"] for e in effects.values()])
        bwt = [a["test"]["bwt"]["mean"] for a in summary["arms"].values() if a["guard"] == guard]
        out[f"{prefix}BwtRange{key}"] = span(bwt)
    return out


def claim_macros(summary: dict[str, Any], base: dict[str, Any], prefix: str) -> dict[str, str]:
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

    counts = {
        "GuardWins": str(len(wins)),
        "Compared": str(len(names)),
        "ClaimGuardOverR": majority(len(wins), len(names)),
        "SmallerLam": str(len(smaller)),
        "Paired": str(len(paired)),
        "ClaimSmallerLam": majority(len(smaller), len(paired)),
        "LowerLa": str(lower_la),
        "Arms": str(len(arms)),
        "ClaimLaCost": majority(lower_la, len(arms)),
    }
    return {prefix + name: value for name, value in counts.items()}


def comparisons(summary: dict[str, Any], base: dict[str, Any], prefix: str) -> dict[str, str]:
    """R's effects, the claims' counts, where the note's full method ranks among the guarded arms with R, and the
    arms at an end of the strength ladder."""
    out = {**effect_macros(summary, prefix), **claim_macros(summary, base, prefix)}
    out[f"{prefix}NoteSentence"] = note_sentence(summary)
    out[f"{prefix}EdgeSentence"] = edge_sentence(summary)
    return out


def edge_sentence(summary: dict[str, Any]) -> str:
    """Which arms selected an end of the strength ladder (marked in the table), and what each end means."""
    arms = [a for a in summary["arms"].values() if a["at_edge"]]
    low = [variant_name(a, "$R$") for a in arms if a["selected"] == 0]
    high = [variant_name(a, "$R$") for a in arms if a["selected"] != 0]
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


def full_method(arms: list[dict[str, Any]], name: str = "kaplinskiy") -> dict[str, Any] | None:
    """The note's full method among one R's ``arms``: optimizer ``name``, guarded."""
    return next((a for a in arms if a["optimizer"] == name and a["guard"] == "guarded"), None)


def rank(arm: dict[str, Any], arms: list[dict[str, Any]]) -> int:
    """1 + how many of ``arms`` have a higher mean test ACC than ``arm``."""
    return 1 + sum(a["test"]["acc"]["mean"] > arm["test"]["acc"]["mean"] for a in arms)


def note_sentence(summary: dict[str, Any], name: str = "kaplinskiy") -> str:
    """Where the note's full method (``name``, guarded, descending the potential with this R) ranks by test ACC
    among the guarded arms with R; empty when it did not run."""
    peers = [a for a in summary["arms"].values() if a["guard"] == "guarded"]
    mine = full_method(peers, name)
    if mine is None:
        return ""
    return (
        f"The note's full method (its optimizer, guarded, descending the potential) reaches a test ACC of "
        f"{pct(mine['test']['acc']['mean'])}\\%: {rank(mine, peers)} of the {len(peers)} guarded arms with $R$."
    )


# What the paper's text says of the R it names: the config's name -> the Fisher and decay the text describes.
TEXT_DESCRIBES = {"ewc": {"fisher": "empirical", "gamma": 1.0}, "l2sp": {"fisher": "identity"}}


def described_as_run(name: str, potential: dict[str, Any]) -> bool | None:
    """Whether R ``name`` ran as the text describes it (None for an R the text does not name)."""
    said = TEXT_DESCRIBES.get(name)
    return None if said is None else all(potential[k] == v for k, v in said.items())


def lines_for(
    summary: dict[str, Any], base: dict[str, Any], name: str, potential: dict[str, Any], source: str
) -> list[str]:
    """Every macro of R ``name`` (config ``potential``), each with its source."""
    prefix, cfg = macro_prefix(name), f"config permuted_mnist.potentials.{name}"
    lines = [
        macro(f"{prefix}LamCentre", f"{potential['lam']:g}", cfg),
        macro(f"{prefix}Kind", escape(potential_kind(potential)), cfg),
        macro(f"{prefix}Gamma", f"{potential['gamma']:g}", cfg),
        macro(f"{prefix}ClaimKind", claim_mark(described_as_run(name, potential)), cfg),
    ]
    for arm in summary["arms"].values():
        stem = macro_key(arm["optimizer"]) + arm["guard"].capitalize()
        for metric in ("acc", "bwt", "la"):
            lines.append(macro(f"{prefix}{metric.capitalize()}{stem}", pct(arm["test"][metric]["mean"]), source))
        lines.append(macro(f"{prefix}Lam{stem}", fmt(arm["selected_lam"], 2), source))
        lines.append(macro(f"{prefix}Effect{stem}", pct(arm["effect"]["acc"]["mean"]), source))
    lines += [macro(key, value, source) for key, value in comparisons(summary, base, prefix).items()]
    return lines


if __name__ == "__main__":
    sm = snakemake
    summary = json.loads(Path(sm.input.summary).read_text())
    base = json.loads(Path(sm.input.base).read_text())
    lines = lines_for(summary, base, sm.wildcards.potential, dict(sm.params.potential), sm.input.summary)
    Path(sm.output[0]).write_text(
        "% Generated by workflow/scripts/numbers_permuted_mnist_potential.py\n" + "\n".join(lines) + "\n"
    )
