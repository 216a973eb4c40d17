"""In-text numbers of the permuted-MNIST section as LaTeX macros (paper/generated/numbers_permuted_mnist.tex).

Per optimizer ``X`` (its config name in letters, ``lion_muon`` -> ``LionMuon``): ``PmnistAcc<X>Alone``,
``PmnistAcc<X>Guarded``, ``PmnistBwt<X>...``, ``PmnistLa<X>...`` (test, percent, mean over seeds) and the guard's
paired effect ``PmnistEffect<X>`` with its seed-by-seed range; then the sentences that rank the arms."""

import json
from pathlib import Path
from typing import Any

from latex_format import claim_mark, escape, fmt, listing, macro
from paper_numbers import macro_key


def pct(x: float) -> str:
    """A fraction in percent, three significant digits, in math mode (a minus sign, not a hyphen, in the text)."""
    return rf"\ensuremath{{{fmt(100 * x, 3)}}}"


def span(values: list[float]) -> str:
    """``min to max`` of ``values`` in percent, or ``--`` for none."""
    return f"{pct(min(values))} to {pct(max(values))}" if values else "--"


def arm_name(arm: dict[str, Any]) -> str:
    """An arm as the text names it: ``Muon`` or ``guarded Muon``."""
    return ("guarded " if arm["guard"] == "guarded" else "") + escape(arm["label"])


def direction_sentence(subject: str, effects: dict[str, dict[str, Any]]) -> tuple[str, int]:
    """Where ``subject`` raised the test ACC on every seed, lowered it on every seed, or changed it both ways, over
    ``effects`` (a name's paired effects, seed by seed); and how many it raised on every seed."""
    helped = [n for n, e in effects.items() if min(e["acc"]["values"]) > 0]
    hurt = [n for n, e in effects.items() if max(e["acc"]["values"]) < 0]
    mixed = [n for n, e in effects.items() if min(e["acc"]["values"]) <= 0 <= max(e["acc"]["values"])]
    verbs = [("raised {} on every seed", helped), ("lowered {} on every seed", hurt)]
    verbs = [(v, names) for v, names in [*verbs, ("changed {} in both directions across seeds", mixed)] if names]
    if not verbs:
        return "", 0
    phrases = [
        v.format("it" if i else "the test ACC") + f" for {escape(listing(names))}" for i, (v, names) in enumerate(verbs)
    ]
    sentence = f"{subject} {listing(phrases)}"
    return sentence[:1].upper() + sentence[1:] + ".", len(helped)


def ranking_sentences(summary: dict[str, Any]) -> dict[str, str]:
    """The best arm, the best unguarded arm, where the guard raised or lowered ACC on every seed, and the arms
    whose selected rate is an end of the grid."""
    arms, effects = summary["arms"], summary["guard_effect"]
    by_acc = sorted(arms.values(), key=lambda a: -a["test"]["acc"]["mean"])
    best, best_alone = by_acc[0], next((a for a in by_acc if a["guard"] == "alone"), None)
    sentence, helped = direction_sentence("the guard", {arms[f"{n}/alone"]["label"]: e for n, e in effects.items()})
    out = {
        "PmnistBestArm": arm_name(best),
        "PmnistBestAcc": pct(best["test"]["acc"]["mean"]),
        "PmnistBestAloneArm": "--" if best_alone is None else arm_name(best_alone),
        "PmnistBestAloneAcc": "--" if best_alone is None else pct(best_alone["test"]["acc"]["mean"]),
        "PmnistGuardHelpedCount": str(helped),
        "PmnistOptimizerCount": str(len(effects)),
        "PmnistGuardSentence": sentence,
    }
    edge = [arm_name(a) for a in arms.values() if a["at_edge"]]
    out["PmnistEdgeSentence"] = (
        f"The rate selected for {listing(edge)} is an end of its grid (marked $^\\dagger$): a wider grid might "
        "serve it better."
        if edge
        else "No arm selected a rate at an end of its grid."
    )
    return out


def ranges(summary: dict[str, Any]) -> dict[str, str]:
    """Over the optimizers: the range of test BWT alone and guarded, and of the guard's paired effect on LA."""
    arms, effects = summary["arms"], summary["guard_effect"]
    out = {}
    for guard in ("alone", "guarded"):
        bwt = [a["test"]["bwt"]["mean"] for a in arms.values() if a["guard"] == guard]
        out[f"PmnistBwtRange{guard.capitalize()}"] = span(bwt)
    out["PmnistLaEffectRange"] = span([e["la"]["mean"] for e in effects.values()])
    out["PmnistBwtEffectRange"] = span([e["bwt"]["mean"] for e in effects.values()])
    gains = [arms[f"{n}/guarded"]["selected_lr"] / arms[f"{n}/alone"]["selected_lr"] for n in effects]
    out["PmnistLrGainRange"] = f"{min(gains):.3g} to {max(gains):.3g}" if gains else "--"
    lower, pairs = same_rate_la(summary)
    out["PmnistSameRateLower"], out["PmnistSameRatePairs"] = str(lower), str(pairs)
    # the text's two qualitative claims, marked where these results do not bear them out
    out["PmnistClaimNotFree"] = claim_mark(lower > pairs / 2 if pairs else None)
    out["PmnistClaimLargerRate"] = claim_mark(min(gains) > 1 if gains else None)
    return out


def same_rate_la(summary: dict[str, Any]) -> tuple[int, int]:
    """Over every optimizer and rate of its grid at which no seed diverged, alone or guarded: in how many of these
    pairs the guarded mean test LA is below the unguarded one, and how many pairs there are."""
    arms, lower, pairs = summary["arms"], 0, 0
    for name in summary["guard_effect"]:
        for alone, guarded in zip(arms[f"{name}/alone"]["grid"], arms[f"{name}/guarded"]["grid"], strict=True):
            if alone["diverged_runs"] or guarded["diverged_runs"]:
                continue
            pairs += 1
            lower += guarded["test"]["la"]["mean"] < alone["test"]["la"]["mean"]
    return lower, pairs


def note_sentence(summary: dict[str, Any], name: str = "kaplinskiy") -> str:
    """Where the note's optimizer (config name ``name``) ranks by test ACC among the guarded arms and among the
    unguarded ones; empty when it did not run."""
    arms, parts = summary["arms"], []
    for guard, word in (("guarded", "guarded"), ("alone", "unguarded")):
        mine = arms.get(f"{name}/{guard}")
        if mine is None:
            continue
        peers = sorted((a for a in arms.values() if a["guard"] == guard), key=lambda a: -a["test"]["acc"]["mean"])
        rank = next(i for i, a in enumerate(peers) if a is mine) + 1
        best = peers[0]
        lead = "" if rank == 1 else f", against {pct(best['test']['acc']['mean'])}\\% for {arm_name(best)}"
        acc = pct(mine["test"]["acc"]["mean"])
        parts.append(f"{word}, it ranks {rank} of the {len(peers)} {word} arms by test ACC ({acc}\\%{lead})")
    if not parts:
        return ""
    return "The note's optimizer: " + "; ".join(parts) + "."


def lines_for(summary: dict[str, Any], problem: dict[str, Any], data: dict[str, Any], source: str) -> list[str]:
    """Every macro, each with its source."""
    cfg = "config permuted_mnist"
    thresholds = ", ".join(f"{t:g}" for t in problem["memory"]["thresholds"])
    lines = [
        macro("PmnistTasks", str(problem["n_tasks"]), cfg),
        macro("PmnistTrain", str(problem["n_train"]), cfg),
        macro("PmnistVal", str(problem["n_val"]), cfg),
        macro("PmnistTest", str(problem["n_test"]), cfg),
        macro("PmnistBatch", str(problem["batch_size"]), cfg),
        macro("PmnistEpochs", str(problem["epochs"]), cfg),
        macro("PmnistSeeds", str(len(problem["seeds"])), cfg),
        macro("PmnistLrRatio", f"{problem['lr_grid']['ratio']:g}", cfg),
        macro("PmnistGridSize", str(len(problem["lr_grid"]["steps"])), cfg),
        macro("PmnistMemorySamples", str(problem["memory"]["samples"]), cfg),
        macro("PmnistThresholds", thresholds, cfg),
        macro("PmnistDataSha", data["source_sha256"][:12], "results/data/mnist.json"),
    ]
    for arm in summary["arms"].values():
        stem = macro_key(arm["optimizer"]) + arm["guard"].capitalize()
        for metric in ("acc", "bwt", "la"):
            lines.append(macro(f"Pmnist{metric.capitalize()}{stem}", pct(arm["test"][metric]["mean"]), source))
        lines.append(macro(f"PmnistLr{stem}", fmt(arm["selected_lr"], 2), source))
    for name, effect in summary["guard_effect"].items():
        e = effect["acc"]
        lines.append(macro(f"PmnistEffect{macro_key(name)}", pct(e["mean"]), source))
        lines.append(
            macro(f"PmnistEffectRange{macro_key(name)}", f"{pct(min(e['values']))} to {pct(max(e['values']))}", source)
        )
    lines += [macro(name, value, source) for name, value in ranking_sentences(summary).items()]
    lines += [macro(name, value, source) for name, value in ranges(summary).items()]
    lines.append(macro("PmnistNoteSentence", note_sentence(summary), source))
    return lines


if __name__ == "__main__":
    sm = snakemake
    summary = json.loads(Path(sm.input.summary).read_text())
    data = json.loads(Path(sm.input.data).read_text())
    lines = lines_for(summary, sm.params.problem, data, sm.input.summary)
    Path(sm.output[0]).write_text(
        "% Generated by workflow/scripts/numbers_permuted_mnist.py\n" + "\n".join(lines) + "\n"
    )
