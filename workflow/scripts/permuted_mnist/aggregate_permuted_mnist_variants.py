"""Compare every permuted-MNIST variant: each arm without R (the rate cells' summary) and with each R of the config
(the potential cells' summaries). The best variant by mean test ACC and the variants its lead is not separated
from (paired Student-t intervals over seeds; every arm runs on the same seeds, in the same order); each variant's
rank among all of them; and, per R, the arms where its selected variant has a higher mean test ACC than every
other R's, and those where it is ahead of every other R's in a paired interval."""

import logging
from pathlib import Path
from typing import Any

from common.statistics import paired_differences, rank_among, separated
from common.summary_io import read_json, write_summary

from permuted_mnist._compare import mean_test_acc

LEVEL = 0.95  # the paired intervals' level


def acc_differences(arm: dict[str, Any], other: dict[str, Any]) -> list[float]:
    """Seed by seed, ``arm``'s test ACC minus ``other``'s (both ran on the same seeds, in the same order)."""
    return paired_differences(arm["test"]["acc"]["values"], other["test"]["acc"]["values"])


def all_variants(base: dict[str, Any], summaries: dict[str, dict[str, Any]]) -> list[tuple[str, str | None]]:
    """Every variant as (arm key, the config's name of its R, or None without R): the arms without R first, then
    each R's arms, in the summaries' order."""
    variants: list[tuple[str, str | None]] = [(key, None) for key in base["arms"]]
    for name, summary in summaries.items():
        variants += [(key, name) for key in summary["arms"]]
    return variants


def head_wins(summaries: dict[str, dict[str, Any]], name: str, level: float = LEVEL) -> list[str]:
    """The arms (``optimizer/guard``) where R ``name``'s selected variant has a higher test ACC than every other
    R's in a paired ``level`` interval over seeds (arms some R lacks are not compared)."""
    mine, others = summaries[name]["arms"], [s["arms"] for n, s in summaries.items() if n != name]
    return [
        key
        for key, arm in mine.items()
        if others and all(key in o and separated(acc_differences(arm, o[key]), level) for o in others)
    ]


def higher_means(summaries: dict[str, dict[str, Any]], name: str) -> list[str]:
    """The arms where R ``name``'s selected variant has a higher mean test ACC than every other R's (none without
    another R)."""
    mine, others = summaries[name]["arms"], [s["arms"] for n, s in summaries.items() if n != name]
    return [
        key
        for key, arm in mine.items()
        if others and all(key in o and mean_test_acc(arm) > mean_test_acc(o[key]) for o in others)
    ]


def compare(base: dict[str, Any], summaries: dict[str, dict[str, Any]], level: float = LEVEL) -> dict[str, Any]:
    """The variants (with what the text names them by), the best and those tied with it, every variant's rank,
    and per R the arms it leads by mean and in a paired interval."""
    keyed = all_variants(base, summaries)
    arms = [(base if r is None else summaries[r])["arms"][key] for key, r in keyed]
    best = max(range(len(arms)), key=lambda i: mean_test_acc(arms[i]))
    accs = [mean_test_acc(a) for a in arms]
    return {
        "potentials": {name: summary["potential"] for name, summary in summaries.items()},
        "variants": [
            {
                "arm": key,
                "potential": r,
                "optimizer": arm["optimizer"],
                "guard": arm["guard"],
                "label": arm["label"],
                "test_acc": acc,
                "rank": rank_among(acc, accs),
            }
            for (key, r), arm, acc in zip(keyed, arms, accs, strict=True)
        ],
        "best": best,
        "tied": [
            i for i, arm in enumerate(arms) if i != best and not separated(acc_differences(arms[best], arm), level)
        ],
        "level": level,
        "head": {
            name: {"higher_means": higher_means(summaries, name), "head_wins": head_wins(summaries, name, level)}
            for name in summaries
        },
    }


def main(base_path: Path, paths: dict[str, Path], out: Path) -> dict[str, Any]:
    """Read the rate cells' summary and each R's potential summary (``paths``: by the R's config name), compare,
    write ``out``."""
    summaries = {name: read_json(p) for name, p in paths.items()}
    body = compare(read_json(base_path), summaries)
    return write_summary(out, "permuted_mnist_variants", list(paths.values()), body, base=base_path)


if __name__ == "__main__":
    sm = snakemake
    logging.basicConfig(filename=sm.log[0], level=logging.INFO, format="%(asctime)s %(message)s")
    named = dict(zip(sm.params.potentials, map(Path, sm.input.summaries), strict=True))
    s = main(Path(sm.input.base), named, Path(sm.output[0]))
    best = s["variants"][s["best"]]
    logging.info(
        "best: %s with %s, test ACC %.4f, %d tied", best["arm"], best["potential"], best["test_acc"], len(s["tied"])
    )
