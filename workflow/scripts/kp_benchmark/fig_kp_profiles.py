"""Figure fig:kp_profiles: data profiles at both tolerances and the performance profile at the strict one."""

import json
from pathlib import Path
from typing import Any

import numpy as np
from common.figure_style import plt, save

from kp_benchmark._profiles import data_profile, performance_profile, shared_problems

plt.rcParams["font.size"] = 7


def common_costs(summary: dict[str, Any], arms: list[str], key: str) -> tuple[dict[str, list], list[int]]:
    """Each arm's cost to ``key`` on the problems every arm in ``arms`` ran, in one order, and their dimensions."""
    shared = shared_problems(summary["problems"], arms)
    first = next(iter(shared.values()), [])
    return {arm: [p["cost_to"][key] for p in ps] for arm, ps in shared.items()}, [p["dim"] for p in first]


def style(arm: str) -> dict[str, Any]:
    """Line style by family: the KP methods solid, minpy's dashed, the references dotted."""
    if arm.startswith("kp_"):
        return {"ls": "-", "lw": 1.3}
    if arm.startswith("minpy_"):
        return {"ls": "--", "lw": 1.0}
    return {"ls": ":", "lw": 1.2}


def tex_tol(key: str) -> str:
    """``1e-06`` -> ``10^{-6}``."""
    return rf"10^{{{int(key.split('e')[1])}}}"


def plot(summary: dict[str, Any], arms: list[str], labels: dict[str, str], out: Path) -> None:
    arms = [a for a in arms if a in summary["problems"] and summary["problems"][a]]
    budget_units = max(c["budget"] / (c["dim"] + 1) for c in summary["cells"])
    kappas = np.logspace(0, np.log10(budget_units), 200)
    taus = np.logspace(0, 3, 200)
    palette = plt.get_cmap("tab20").colors
    colors = {arm: palette[(2 * i) % 20 if i < 10 else (2 * i + 1) % 20] for i, arm in enumerate(arms)}
    fig, axes = plt.subplots(1, 3, figsize=(7.0, 2.9), constrained_layout=True)
    for key, ax in zip((summary["tol"], summary["tol_multimodal"]), axes[:2], strict=True):
        costs, dims = common_costs(summary, arms, key)
        for arm in arms:
            ax.step(
                kappas, data_profile(costs[arm], dims, kappas), where="post", label=labels.get(arm, arm), **style(arm)
            )
        ax.set(xscale="log", ylim=(0, 1.02), xlabel=r"budget $\kappa$ (units of $n+1$ evaluations)",
               title=rf"data profile, $f-f^\star\leq {tex_tol(key)}$")  # fmt: skip
    axes[0].set_ylabel("fraction of problems solved")
    costs, _ = common_costs(summary, arms, summary["tol"])
    for arm, rho in performance_profile(costs, taus).items():
        axes[2].step(taus, rho, where="post", label=labels.get(arm, arm), color=colors[arm], **style(arm))
    axes[2].set(xscale="log", ylim=(0, 1.02), xlabel=r"within a factor $\tau$ of the cheapest arm",
                title=rf"performance profile, ${tex_tol(summary['tol'])}$")  # fmt: skip
    handles, names = axes[2].get_legend_handles_labels()
    fig.legend(handles, names, loc="outside lower center", ncol=min(len(names), 6), frameon=False, fontsize=6)
    save(fig, out)


if __name__ == "__main__":
    sm = snakemake
    # The labels are LaTeX for the tables; matplotlib's mathtext reads the math but not the en dash.
    labels = {arm: text.replace("--", "\u2013") for arm, text in dict(sm.params.labels).items()}
    plot(json.loads(Path(sm.input.summary).read_text()), list(sm.params.arms), labels, Path(sm.output[0]))
