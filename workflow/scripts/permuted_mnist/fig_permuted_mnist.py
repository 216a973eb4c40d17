"""Figure fig:permuted_mnist: per optimizer, learning (LA) against forgetting (BWT) over its learning-rate grid,
alone and guarded; the rate each arm selects is ringed. A rate at which some seed's training diverged is left out
(its accuracies are those of a broken network)."""

import json
import math
from pathlib import Path
from typing import Any

from common.figure_style import plt, save

STYLE = {"alone": {"color": "tab:red", "marker": "o"}, "guarded": {"color": "tab:blue", "marker": "s"}}


def plot(summary: dict[str, Any], out: Path) -> None:
    """One panel per optimizer: test LA (x) and BWT (y) in percent, mean over seeds, one point per rate."""
    names = list(dict.fromkeys(arm["optimizer"] for arm in summary["arms"].values()))
    cols = min(4, len(names))
    rows = math.ceil(len(names) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(6.4, 1.75 * rows), constrained_layout=True, squeeze=False)
    for ax in axes.flat[len(names) :]:
        ax.set_visible(False)
    for ax, name in zip(axes.flat, names, strict=False):
        for guard, style in STYLE.items():
            arm = summary["arms"].get(f"{name}/{guard}")
            if arm is None:
                continue
            kept = [i for i, row in enumerate(arm["grid"]) if not row["diverged_runs"]]  # a blown-up rate: off the plot
            la = [100 * arm["grid"][i]["test"]["la"]["mean"] for i in kept]
            bwt = [100 * arm["grid"][i]["test"]["bwt"]["mean"] for i in kept]
            ax.plot(la, bwt, lw=1.0, ms=3, label=guard, **style)
            if arm["selected"] in kept:
                best = kept.index(arm["selected"])
                ax.plot(la[best], bwt[best], ms=9, marker="o", mfc="none", mec=style["color"], lw=0)
            ax.set_title(arm["label"], fontsize=8)
        ax.axhline(0.0, color="0.6", lw=0.5)
        ax.set(xlabel="LA (%)", ylabel="BWT (%)")
        ax.tick_params(labelsize=7)
    axes.flat[0].legend(frameon=False, fontsize=7)
    save(fig, out)


if __name__ == "__main__":
    sm = snakemake
    plot(json.loads(Path(sm.input.summary).read_text()), Path(sm.output[0]))
