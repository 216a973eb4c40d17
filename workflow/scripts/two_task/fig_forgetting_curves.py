"""Figure fig:forgetting_curves: L_A (forgetting) and L_B (learning) along phase B, per arm."""

import json
from pathlib import Path
from typing import Any

from common.figure_style import plt, save


def plot(summary: dict[str, Any], labels: dict[str, str], out: Path) -> None:
    """Two panels, mean over seeds with a min-max band."""
    fig, axes = plt.subplots(1, 2, figsize=(6.4, 2.4), constrained_layout=True)
    for arm, data in summary["arms"].items():
        for ax, key in zip(axes, ("L_A", "L_B"), strict=True):
            c = data["curves"][key]
            steps = range(len(c["mean"]))
            (line,) = ax.plot(steps, c["mean"], label=labels.get(arm, arm), lw=1.2)
            ax.fill_between(steps, c["min"], c["max"], color=line.get_color(), alpha=0.15, lw=0)
    axes[0].set(xlabel="step on task B", ylabel=r"$L_A$ (old task)", yscale="log")
    axes[1].set(xlabel="step on task B", ylabel=r"$L_B$ (new task)", yscale="log")
    axes[1].legend(frameon=False, fontsize=7)
    save(fig, out)


if __name__ == "__main__":
    sm = snakemake
    plot(json.loads(Path(sm.input.summary).read_text()), dict(sm.params.labels), Path(sm.output[0]))
