"""In-text numbers of permuted MNIST's potential runs with one R as LaTeX macros
(paper/generated/numbers_permuted_mnist_potential_<name>.tex), each named with the R's prefix ``P``
(:func:`~permuted_mnist._text.macro_prefix`: ``PmnistEwc`` for the config's ``ewc``).

Per optimizer ``X`` and guard ``G`` (``Alone``, ``Guarded``): ``<P>Acc<X><G>``, ``<P>Bwt<X><G>``, ``<P>La<X><G>``
(test, percent, mean over seeds, with R at its selected strength ``<P>Lam<X><G>``) and R's paired effect on ACC
``<P>Effect<X><G>``; then the sentences that compare the four variants of each optimizer (alone, guarded, each
with and without R)."""

import json
from pathlib import Path
from typing import Any

from common.latex_format import claim_mark, escape, fmt, listing, macro, macro_key
from common.paths import repository_path

from permuted_mnist._grid import GUARDS
from permuted_mnist._text import direction_sentence, macro_prefix, pct, potential_kind, span, variant_name


def effect_macros(summary: dict[str, Any], prefix: str) -> dict[str, str]:
    """Per guard: where R raised or lowered the test ACC seed by seed, and the ranges of its paired effects on ACC,
    BWT and LA and of the BWT with R (macros named ``prefix...``)."""
    arms, out = summary["arms"], {}
    for guard in GUARDS:
        mine = [a for a in arms.values() if a["guard"] == guard]
        subject = "$R$" if guard == "alone" else "Added to the guard, $R$"
        direction = summary["direction"][guard]
        labelled = {k: [arms[key]["label"] for key in keys] for k, keys in direction.items()}
        key = guard.capitalize()
        out[f"{prefix}Sentence{key}"] = direction_sentence(subject, labelled)
        out[f"{prefix}HelpedCount{key}"] = str(len(direction["raised"]))
        for metric in ("acc", "bwt", "la"):
            name = "" if metric == "acc" else metric.capitalize()
            out[f"{prefix}{name}EffectRange{key}"] = span([a["effect"][metric]["mean"] for a in mine])
        out[f"{prefix}BwtRange{key}"] = span([a["test"]["bwt"]["mean"] for a in mine])
    return out


def claim_macros(summary: dict[str, Any], prefix: str) -> dict[str, str]:
    """The counts behind the text's three qualitative claims, and their marks: the guard without R beats R
    without the guard; guarded arms select a smaller strength than unguarded ones; R lowers LA."""
    counts = summary["claim_counts"]

    def majority(count: int, of: int) -> str:
        return claim_mark(count > of / 2 if of else None)

    out = {
        "GuardWins": str(counts["guard_wins"]),
        "Compared": str(counts["compared"]),
        "ClaimGuardOverR": majority(counts["guard_wins"], counts["compared"]),
        "SmallerLam": str(counts["smaller_lam"]),
        "Paired": str(counts["paired"]),
        "ClaimSmallerLam": majority(counts["smaller_lam"], counts["paired"]),
        "LowerLa": str(counts["lower_la"]),
        "Arms": str(counts["arms"]),
        "ClaimLaCost": majority(counts["lower_la"], counts["arms"]),
    }
    return {prefix + name: value for name, value in out.items()}


def comparisons(summary: dict[str, Any], prefix: str) -> dict[str, str]:
    """R's effects, the claims' counts, where the note's full method ranks among the guarded arms with R, and the
    arms at an end of the strength ladder."""
    out = {**effect_macros(summary, prefix), **claim_macros(summary, prefix)}
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


def note_sentence(summary: dict[str, Any], name: str = "kaplinskiy") -> str:
    """Where the note's full method (``name``, guarded, descending the potential with this R) ranks by test ACC
    among the guarded arms with R; empty when it did not run."""
    key = f"{name}/guarded"
    if key not in summary["arms"]:
        return ""
    peers = sum(a["guard"] == "guarded" for a in summary["arms"].values())
    return (
        f"The note's full method (its optimizer, guarded, descending the potential) reaches a test ACC of "
        f"{pct(summary['arms'][key]['test']['acc']['mean'])}\\%: {summary['rank_in_guard'][key]} of the {peers} "
        "guarded arms with $R$."
    )


# What the paper's text says of the R it names: the config's name -> the Fisher and decay the text describes.
TEXT_DESCRIBES = {"ewc": {"fisher": "empirical", "gamma": 1.0}, "l2sp": {"fisher": "identity"}}


def described_as_run(name: str, potential: dict[str, Any]) -> bool | None:
    """Whether R ``name`` ran as the text describes it (None for an R the text does not name)."""
    said = TEXT_DESCRIBES.get(name)
    return None if said is None else all(potential[k] == v for k, v in said.items())


def lines_for(summary: dict[str, Any], name: str, potential: dict[str, Any], source: str) -> list[str]:
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
    lines += [macro(key, value, source) for key, value in comparisons(summary, prefix).items()]
    return lines


if __name__ == "__main__":
    sm = snakemake
    summary = json.loads(Path(sm.input.summary).read_text())
    lines = lines_for(summary, sm.wildcards.potential, dict(sm.params.potential), sm.input.summary)
    Path(sm.output[0]).write_text(f"% Generated by {repository_path(__file__)}\n" + "\n".join(lines) + "\n")
