"""Figures fig:permuted_mnist_potential (EWC) and fig:permuted_mnist_l2sp: what the strength of one R of the
potential does to each arm. Per guard (alone,
guarded), one line per optimizer: the test ACC with R at each strength of the ladder minus the arm's test ACC
without R (at the same rate; mean over seeds); the strength each arm selects is ringed. A strength at which some
seed's training diverged is left out."""

import json
from pathlib import Path
from typing import Any

from common.figure_style import plt, save

from permuted_mnist._grid import GUARDS
from permuted_mnist._text import potential_kind


def plot(summary: dict[str, Any], out: Path) -> None:
    """Two panels (alone, guarded): the change of test ACC in points (y) against the strength (x, log)."""
    names = list(dict.fromkeys(arm["optimizer"] for arm in summary["arms"].values()))
    colors = {name: plt.get_cmap("tab10")(i % 10) for i, name in enumerate(names)}
    fig, axes = plt.subplots(1, 2, figsize=(6.4, 2.7), constrained_layout=True, sharey=True)
    for ax, guard in zip(axes, GUARDS, strict=True):
        for name in names:
            arm = summary["arms"].get(f"{name}/{guard}")
            if arm is None:
                continue
            without = arm["test_without"]["acc"]["mean"]
            kept = [i for i, row in enumerate(arm["grid"]) if not row["diverged_runs"]]
            lam = [arm["grid"][i]["lam"] for i in kept]
            change = [100 * (arm["grid"][i]["test"]["acc"]["mean"] - without) for i in kept]
            ax.plot(lam, change, lw=1.0, ms=3, marker="o", color=colors[name], label=arm["label"])
            if arm["selected"] in kept:
                best = kept.index(arm["selected"])
                ax.plot(lam[best], change[best], ms=8, marker="o", mfc="none", mec=colors[name], lw=0)
        ax.axhline(0.0, color="0.6", lw=0.5)
        ax.set_xscale("log")
        ax.set(title=f"{guard}, with {potential_kind(summary['potential'])}", xlabel=r"strength $\lambda$")
        ax.tick_params(labelsize=7)
    axes[0].set_ylabel("test ACC change (points)")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=4, frameon=False, fontsize=7)
    save(fig, out)


if __name__ == "__main__":
    sm = snakemake
    plot(json.loads(Path(sm.input.summary).read_text()), Path(sm.output[0]))
