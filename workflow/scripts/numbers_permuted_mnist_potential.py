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
from numbers_permuted_mnist import arm_name, direction_sentence, pct
from paper_numbers import macro_key

GUARDS = ("alone", "guarded")


def variant_name(arm: dict[str, Any], with_potential: bool) -> str:
    """An arm as the text names it: ``Muon``, ``guarded Muon``, ``Muon with R``, ``guarded Muon with R``."""
    return arm_name(arm) + (" with $R$" if with_potential else "")


def span(values: list[float]) -> str:
    """``min to max`` of ``values`` in percent, or ``--`` for none."""
    return f"{pct(min(values))} to {pct(max(values))}" if values else "--"


def effects_by_guard(summary: dict[str, Any], guard: str) -> dict[str, dict[str, Any]]:
    """R's paired effects of the arms with ``guard``, by the optimizer's label."""
    return {a["label"]: a["effect"] for a in summary["arms"].values() if a["guard"] == guard}


def comparisons(summary: dict[str, Any], base: dict[str, Any]) -> dict[str, str]:
    """R's effect alone and under the guard; how often the guard without R beats R without the guard; the best of
    every variant; and where the note's full method (its optimizer, guarded, descending the potential) ranks."""
    arms, out = summary["arms"], {}
    for guard in GUARDS:
        effects = effects_by_guard(summary, guard)
        subject = "$R$" if guard == "alone" else "Added to the guard, $R$"
        sentence, helped = direction_sentence(subject, effects)
        key = guard.capitalize()
        out[f"PmnistPotSentence{key}"] = sentence
        out[f"PmnistPotHelpedCount{key}"] = str(helped)
        out[f"PmnistPotEffectRange{key}"] = span([e["acc"]["mean"] for e in effects.values()])
        out[f"PmnistPotBwtEffectRange{key}"] = span([e["bwt"]["mean"] for e in effects.values()])
        out[f"PmnistPotLaEffectRange{key}"] = span([e["la"]["mean"] for e in effects.values()])
        out[f"PmnistPotBwtRange{key}"] = span([a["test"]["bwt"]["mean"] for a in arms.values() if a["guard"] == guard])
    names = [a["optimizer"] for a in arms.values() if a["guard"] == "alone"]
    guard_wins = [
        n
        for n in names
        if f"{n}/guarded" in base["arms"]
        and base["arms"][f"{n}/guarded"]["test"]["acc"]["mean"] > arms[f"{n}/alone"]["test"]["acc"]["mean"]
    ]
    out["PmnistPotGuardWins"], out["PmnistPotCompared"] = str(len(guard_wins)), str(len(names))
    out["PmnistPotClaimGuardOverR"] = claim_mark(len(guard_wins) > len(names) / 2 if names else None)
    la_effects = [a["effect"]["la"]["mean"] for a in arms.values()]
    lower_la = sum(e < 0 for e in la_effects)
    out["PmnistPotClaimLaCost"] = claim_mark(lower_la > len(la_effects) / 2 if la_effects else None)
    variants = [(a, False) for a in base["arms"].values()] + [(a, True) for a in arms.values()]
    best, best_r = max(variants, key=lambda v: v[0]["test"]["acc"]["mean"])
    out["PmnistAllBestArm"] = variant_name(best, best_r)
    out["PmnistAllBestAcc"] = pct(best["test"]["acc"]["mean"])
    out["PmnistAllVariants"] = str(len(variants))
    out["PmnistPotNoteSentence"] = note_sentence(variants)
    out["PmnistPotNoteRank"] = note_rank(variants)
    out["PmnistPotEdgeSentence"] = edge_sentence(summary)
    return out


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
        macro("PmnistPotLamCentre", fmt(potential["lam"], 3), cfg),
        macro("PmnistPotKind", escape(kind), cfg),
        macro("PmnistPotGamma", f"{potential['gamma']:g}", cfg),
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
