# Permuted MNIST, every optimizer alone and guarded: the data from a pinned PyPI package, one cell per optimizer,
# guard and seed (every learning rate of the grid), the aggregation, then the figure, table and in-text numbers.
# Then the potential: for each R of the config (online EWC, L2-SP), each arm again, descending L_t + R over a
# ladder of strengths at the rate it selected, its aggregation against the arm without R, its figure, table and
# numbers; and the comparison of every variant (each arm without R and with each R) with its numbers. Then a
# second coordinate round of that search: each arm's rate ladder again, with R at the strength it selected.
# The aggregations compute every statistic the text quotes; the figure, table and number rules only format them.

PMNIST = config["permuted_mnist"]
PMNIST_CELLS = dict(optimizer=list(PMNIST["optimizers"]), guard=PMNIST["guards"], seed=PMNIST["seeds"])
PMNIST_LABELS = {name: spec["label"] for name, spec in PMNIST["optimizers"].items()}
POTENTIAL_NAMES = "|".join(PMNIST["potentials"])
# The problem each R's cells run: permuted_mnist's config less the arms and seeds, with that one R of its
# potentials as ``potential`` (in the config's order, so EWC's cells keep their params).
POTENTIAL_PROBLEMS = {
    name: {
        ("potential" if k == "potentials" else k): (v[name] if k == "potentials" else v)
        for k, v in PMNIST.items()
        if k not in ("optimizers", "seeds", "guards")
    }
    for name in PMNIST["potentials"]
}


rule prepare_mnist:
    input:
        code=code("permuted_mnist/prepare_mnist.py"),
    output:
        npz="results/data/mnist.npz",
        meta="results/data/mnist.json",
    log:
        "results/logs/data/prepare_mnist.log",
    conda:
        ENV
    script:
        "../scripts/permuted_mnist/prepare_mnist.py"


rule permuted_mnist_cell:
    input:
        data=rules.prepare_mnist.output.npz,
        code=code("permuted_mnist/run_permuted_mnist.py"),
    output:
        "results/permuted_mnist/{optimizer}/{guard}/seed{seed}.json",
    wildcard_constraints:
        guard="alone|guarded",
    params:
        problem={k: v for k, v in PMNIST.items() if k not in ("optimizers", "seeds", "guards", "potentials")},
        optimizer=lambda w: PMNIST["optimizers"][w.optimizer],
    log:
        "results/logs/permuted_mnist/{optimizer}/{guard}/seed{seed}.log",
    threads: 1
    conda:
        ENV
    script:
        "../scripts/permuted_mnist/run_permuted_mnist.py"


rule permuted_mnist_aggregate:
    input:
        cells=expand("results/permuted_mnist/{optimizer}/{guard}/seed{seed}.json", **PMNIST_CELLS),
        code=code("permuted_mnist/aggregate_permuted_mnist.py"),
    output:
        "results/permuted_mnist/summary.json",
    params:
        labels=PMNIST_LABELS,
    log:
        "results/logs/permuted_mnist/aggregate.log",
    conda:
        ENV
    script:
        "../scripts/permuted_mnist/aggregate_permuted_mnist.py"


rule fig_permuted_mnist:
    input:
        summary=rules.permuted_mnist_aggregate.output[0],
        code=code("permuted_mnist/fig_permuted_mnist.py"),
    output:
        "paper/figures/fig_permuted_mnist.pdf",
    log:
        "results/logs/figures/fig_permuted_mnist.log",
    conda:
        ENV
    script:
        "../scripts/permuted_mnist/fig_permuted_mnist.py"


rule tab_permuted_mnist:
    input:
        summary=rules.permuted_mnist_aggregate.output[0],
        code=code("permuted_mnist/tab_permuted_mnist.py"),
    output:
        "paper/generated/tab_permuted_mnist.tex",
    log:
        "results/logs/tables/tab_permuted_mnist.log",
    conda:
        ENV
    script:
        "../scripts/permuted_mnist/tab_permuted_mnist.py"


rule numbers_permuted_mnist:
    input:
        summary=rules.permuted_mnist_aggregate.output[0],
        data=rules.prepare_mnist.output.meta,
        code=code("permuted_mnist/numbers_permuted_mnist.py"),
    output:
        "paper/generated/numbers_permuted_mnist.tex",
    params:
        problem={k: v for k, v in PMNIST.items() if k != "optimizers"},
    log:
        "results/logs/tables/numbers_permuted_mnist.log",
    conda:
        ENV
    script:
        "../scripts/permuted_mnist/numbers_permuted_mnist.py"


rule permuted_mnist_potential_cell:
    input:
        data=rules.prepare_mnist.output.npz,
        summary=rules.permuted_mnist_aggregate.output[0],
        code=code("permuted_mnist/run_permuted_mnist.py"),
    output:
        "results/permuted_mnist_potential/{potential}/{optimizer}/{guard}/seed{seed}.json",
    wildcard_constraints:
        guard="alone|guarded",
        potential=POTENTIAL_NAMES,
    params:
        problem=lambda w: POTENTIAL_PROBLEMS[w.potential],
        optimizer=lambda w: PMNIST["optimizers"][w.optimizer],
    log:
        "results/logs/permuted_mnist_potential/{potential}/{optimizer}/{guard}/seed{seed}.log",
    threads: 1
    conda:
        ENV
    script:
        "../scripts/permuted_mnist/run_permuted_mnist.py"


rule permuted_mnist_retune_cell:
    input:
        data=rules.prepare_mnist.output.npz,
        lam_summary="results/permuted_mnist_potential/{potential}/summary.json",
        code=code("permuted_mnist/run_permuted_mnist.py"),
    output:
        "results/permuted_mnist_retune/{potential}/{optimizer}/{guard}/seed{seed}.json",
    wildcard_constraints:
        guard="alone|guarded",
        potential=POTENTIAL_NAMES,
    params:
        problem=lambda w: POTENTIAL_PROBLEMS[w.potential],
        optimizer=lambda w: PMNIST["optimizers"][w.optimizer],
    log:
        "results/logs/permuted_mnist_retune/{potential}/{optimizer}/{guard}/seed{seed}.log",
    threads: 1
    conda:
        ENV
    script:
        "../scripts/permuted_mnist/run_permuted_mnist.py"


rule permuted_mnist_potential_aggregate:
    input:
        cells=lambda w: expand(
            "results/permuted_mnist_potential/{potential}/{optimizer}/{guard}/seed{seed}.json",
            potential=w.potential,
            **PMNIST_CELLS,
        ),
        base=rules.permuted_mnist_aggregate.output[0],
        code=code("permuted_mnist/aggregate_permuted_mnist_potential.py"),
    output:
        "results/permuted_mnist_potential/{potential}/summary.json",
    wildcard_constraints:
        potential=POTENTIAL_NAMES,
    params:
        labels=PMNIST_LABELS,
        potential=lambda w: PMNIST["potentials"][w.potential],
    log:
        "results/logs/permuted_mnist_potential/{potential}/aggregate.log",
    conda:
        ENV
    script:
        "../scripts/permuted_mnist/aggregate_permuted_mnist_potential.py"


rule fig_permuted_mnist_potential:
    input:
        summary=rules.permuted_mnist_potential_aggregate.output[0],
        code=code("permuted_mnist/fig_permuted_mnist_potential.py"),
    output:
        "paper/figures/fig_permuted_mnist_potential_{potential}.pdf",
    wildcard_constraints:
        potential=POTENTIAL_NAMES,
    log:
        "results/logs/figures/fig_permuted_mnist_potential_{potential}.log",
    conda:
        ENV
    script:
        "../scripts/permuted_mnist/fig_permuted_mnist_potential.py"


rule tab_permuted_mnist_potential:
    input:
        summary=rules.permuted_mnist_potential_aggregate.output[0],
        code=code("permuted_mnist/tab_permuted_mnist_potential.py"),
    output:
        "paper/generated/tab_permuted_mnist_potential_{potential}.tex",
    wildcard_constraints:
        potential=POTENTIAL_NAMES,
    params:
        names=list(PMNIST["optimizers"]),
    log:
        "results/logs/tables/tab_permuted_mnist_potential_{potential}.log",
    conda:
        ENV
    script:
        "../scripts/permuted_mnist/tab_permuted_mnist_potential.py"


rule numbers_permuted_mnist_potential:
    input:
        summary=rules.permuted_mnist_potential_aggregate.output[0],
        code=code("permuted_mnist/numbers_permuted_mnist_potential.py"),
    output:
        "paper/generated/numbers_permuted_mnist_potential_{potential}.tex",
    wildcard_constraints:
        potential=POTENTIAL_NAMES,
    params:
        potential=lambda w: PMNIST["potentials"][w.potential],
    log:
        "results/logs/tables/numbers_permuted_mnist_potential_{potential}.log",
    conda:
        ENV
    script:
        "../scripts/permuted_mnist/numbers_permuted_mnist_potential.py"


rule permuted_mnist_variants_aggregate:
    input:
        summaries=expand(rules.permuted_mnist_potential_aggregate.output[0], potential=list(PMNIST["potentials"])),
        base=rules.permuted_mnist_aggregate.output[0],
        code=code("permuted_mnist/aggregate_permuted_mnist_variants.py"),
    output:
        "results/permuted_mnist_variants/summary.json",
    params:
        potentials=list(PMNIST["potentials"]),
    log:
        "results/logs/permuted_mnist_variants/aggregate.log",
    conda:
        ENV
    script:
        "../scripts/permuted_mnist/aggregate_permuted_mnist_variants.py"


rule numbers_permuted_mnist_potentials:
    input:
        variants=rules.permuted_mnist_variants_aggregate.output[0],
        code=code("permuted_mnist/numbers_permuted_mnist_potentials.py"),
    output:
        "paper/generated/numbers_permuted_mnist_potentials.tex",
    log:
        "results/logs/tables/numbers_permuted_mnist_potentials.log",
    conda:
        ENV
    script:
        "../scripts/permuted_mnist/numbers_permuted_mnist_potentials.py"


rule permuted_mnist_retune_aggregate:
    input:
        cells=lambda w: expand(
            "results/permuted_mnist_retune/{potential}/{optimizer}/{guard}/seed{seed}.json",
            potential=w.potential,
            **PMNIST_CELLS,
        ),
        round1="results/permuted_mnist_potential/{potential}/summary.json",
        base=rules.permuted_mnist_aggregate.output[0],
        code=code("permuted_mnist/aggregate_permuted_mnist_retune.py"),
    output:
        "results/permuted_mnist_retune/{potential}/summary.json",
    wildcard_constraints:
        potential=POTENTIAL_NAMES,
    params:
        labels=PMNIST_LABELS,
        potential=lambda w: PMNIST["potentials"][w.potential],
    log:
        "results/logs/permuted_mnist_retune/{potential}/aggregate.log",
    conda:
        ENV
    script:
        "../scripts/permuted_mnist/aggregate_permuted_mnist_retune.py"


rule numbers_permuted_mnist_retune:
    input:
        summary=rules.permuted_mnist_retune_aggregate.output[0],
        code=code("permuted_mnist/numbers_permuted_mnist_retune.py"),
    output:
        "paper/generated/numbers_permuted_mnist_retune_{potential}.tex",
    wildcard_constraints:
        potential=POTENTIAL_NAMES,
    log:
        "results/logs/tables/numbers_permuted_mnist_retune_{potential}.log",
    conda:
        ENV
    script:
        "../scripts/permuted_mnist/numbers_permuted_mnist_retune.py"


PAPER_INPUTS += [
    *rules.fig_permuted_mnist.output,
    *rules.tab_permuted_mnist.output,
    *rules.numbers_permuted_mnist.output,
    *expand(rules.fig_permuted_mnist_potential.output[0], potential=list(PMNIST["potentials"])),
    *expand(rules.tab_permuted_mnist_potential.output[0], potential=list(PMNIST["potentials"])),
    *expand(rules.numbers_permuted_mnist_potential.output[0], potential=list(PMNIST["potentials"])),
    *rules.numbers_permuted_mnist_potentials.output,
    *expand(rules.numbers_permuted_mnist_retune.output[0], potential=list(PMNIST["potentials"])),
]
