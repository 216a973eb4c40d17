"""How the permuted-MNIST aggregations compare arms: paired effects seed by seed, where an effect raised or lowered
the test ACC, and the arms ranked by test ACC."""

from typing import Any

from common.statistics import ordered_by, paired_differences, spread

from permuted_mnist._grid import GUARDS, METRICS


def paired_effect(after: dict[str, Any], before: dict[str, Any]) -> dict[str, Any]:
    """Seed by seed, ``after``'s test metrics minus ``before``'s (both over the same seeds, in the same order)."""
    return {m: spread(paired_differences(after[m]["values"], before[m]["values"])) for m in METRICS}


def mean_test_acc(arm: dict[str, Any]) -> float:
    """An arm's mean test ACC at its selected setting."""
    return arm["test"]["acc"]["mean"]


def ranking(arms: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The arms' keys by mean test ACC, best first (equals in the arms' order): all of them, and per guard."""
    by_acc = ordered_by(list(arms), lambda key: mean_test_acc(arms[key]))
    return {"by_acc": by_acc, "by_guard": {g: [k for k in by_acc if arms[k]["guard"] == g] for g in GUARDS}}


def direction(effects: dict[str, dict[str, Any]]) -> dict[str, list[str]]:
    """The names of ``effects`` (paired effects, seed by seed) whose test ACC rose on every seed, fell on every
    seed, or changed both ways, each in the order of ``effects``."""
    return {
        "raised": [n for n, e in effects.items() if min(e["acc"]["values"]) > 0],
        "lowered": [n for n, e in effects.items() if max(e["acc"]["values"]) < 0],
        "mixed": [n for n, e in effects.items() if min(e["acc"]["values"]) <= 0 <= max(e["acc"]["values"])],
    }
