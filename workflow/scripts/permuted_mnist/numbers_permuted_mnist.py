"""In-text numbers of the permuted-MNIST section as LaTeX macros (paper/generated/numbers_permuted_mnist.tex).

Per optimizer ``X`` (its config name in letters, ``lion_muon`` -> ``LionMuon``): ``PmnistAcc<X>Alone``,
``PmnistAcc<X>Guarded``, ``PmnistBwt<X>...``, ``PmnistLa<X>...`` (test, percent, mean over seeds) and the guard's
paired effect ``PmnistEffect<X>`` with its seed-by-seed range; then the sentences that rank the arms."""

import json
from pathlib import Path
from typing import Any

from common.latex_format import claim_mark, fmt, listing, macro, macro_key
from common.paths import repository_path

from permuted_mnist._text import arm_name, direction_sentence, pct, span


def ranking_sentences(summary: dict[str, Any]) -> dict[str, str]:
    """The best arm, the best unguarded arm, where the guard raised or lowered ACC on every seed, and the arms
    whose selected rate is an end of the grid."""
    arms, effects, ranks = summary["arms"], summary["guard_effect"], summary["ranking"]
    best = arms[ranks["by_acc"][0]]
    best_alone = arms[ranks["by_guard"]["alone"][0]] if ranks["by_guard"]["alone"] else None
    labelled = {k: [arms[f"{n}/alone"]["label"] for n in names] for k, names in summary["guard_direction"].items()}
    out = {
        "PmnistBestArm": arm_name(best),
        "PmnistBestAcc": pct(best["test"]["acc"]["mean"]),
        "PmnistBestAloneArm": "--" if best_alone is None else arm_name(best_alone),
        "PmnistBestAloneAcc": "--" if best_alone is None else pct(best_alone["test"]["acc"]["mean"]),
        "PmnistGuardHelpedCount": str(len(summary["guard_direction"]["raised"])),
        "PmnistOptimizerCount": str(len(effects)),
        "PmnistGuardSentence": direction_sentence("the guard", labelled),
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
    """Over the optimizers: the range of test BWT alone and guarded, of the guard's paired effect on LA and BWT and
    of its factor on the selected rate; at how many rates the guard lowered LA; and the two claims these bear."""
    arms, effects = summary["arms"], summary["guard_effect"]
    out = {}
    for guard in ("alone", "guarded"):
        bwt = [a["test"]["bwt"]["mean"] for a in arms.values() if a["guard"] == guard]
        out[f"PmnistBwtRange{guard.capitalize()}"] = span(bwt)
    out["PmnistLaEffectRange"] = span([e["la"]["mean"] for e in effects.values()])
    out["PmnistBwtEffectRange"] = span([e["bwt"]["mean"] for e in effects.values()])
    gains = list(summary["lr_gain"].values())
    out["PmnistLrGainRange"] = f"{min(gains):.3g} to {max(gains):.3g}" if gains else "--"
    lower, pairs = summary["same_rate_la"]["lower"], summary["same_rate_la"]["pairs"]
    out["PmnistSameRateLower"], out["PmnistSameRatePairs"] = str(lower), str(pairs)
    # the text's two qualitative claims, marked where these results do not bear them out
    out["PmnistClaimNotFree"] = claim_mark(lower > pairs / 2 if pairs else None)
    out["PmnistClaimLargerRate"] = claim_mark(min(gains) > 1 if gains else None)
    return out


def note_sentence(summary: dict[str, Any], name: str = "kaplinskiy") -> str:
    """Where the note's optimizer (config name ``name``) ranks by test ACC among the guarded arms and among the
    unguarded ones; empty when it did not run."""
    arms, parts = summary["arms"], []
    for guard, word in (("guarded", "guarded"), ("alone", "unguarded")):
        key = f"{name}/{guard}"
        if key not in arms:
            continue
        peers = summary["ranking"]["by_guard"][guard]
        rank, best = peers.index(key) + 1, arms[peers[0]]
        lead = "" if rank == 1 else f", against {pct(best['test']['acc']['mean'])}\\% for {arm_name(best)}"
        acc = pct(arms[key]["test"]["acc"]["mean"])
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
    Path(sm.output[0]).write_text(f"% Generated by {repository_path(__file__)}\n" + "\n".join(lines) + "\n")
