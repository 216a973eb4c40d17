# The two-task study (sec:experiments) end to end: one run per arm and seed -> a JSON record with provenance;
# their aggregation (curves, statistics over seeds, the headline pair's ratios, the best arm at matched
# learning); the figure fig:forgetting_curves and the table tab:forgetting. Its in-text numbers: rule numbers
# (paper.smk).

TWO_TASK = config["two_task"]
# Every record of the two-task benchmark: one per arm and seed.
TWO_TASK_RUNS = expand("results/two_task/{arm}/seed{seed}.json", arm=list(TWO_TASK["arms"]), seed=TWO_TASK["seeds"])


rule two_task_run:
    input:
        code=code("two_task/run_two_task.py"),
    output:
        "results/two_task/{arm}/seed{seed}.json",
    params:
        problem=lambda w: {k: v for k, v in TWO_TASK.items() if k not in ("arms", "labels", "seeds", "headline")},
        arm=lambda w: TWO_TASK["arms"][w.arm],
    log:
        "results/logs/two_task/{arm}/seed{seed}.log",
    threads: 1
    conda:
        ENV
    script:
        "../scripts/two_task/run_two_task.py"


rule two_task_aggregate:
    input:
        records=TWO_TASK_RUNS,
        code=code("two_task/aggregate_two_task.py"),
    output:
        "results/two_task/summary.json",
    params:
        arms=list(TWO_TASK["arms"]),
        headline=TWO_TASK["headline"],
    log:
        "results/logs/two_task/aggregate.log",
    conda:
        ENV
    script:
        "../scripts/two_task/aggregate_two_task.py"


rule fig_forgetting_curves:
    input:
        summary=rules.two_task_aggregate.output[0],
        code=code("two_task/fig_forgetting_curves.py"),
    output:
        "paper/figures/fig_forgetting_curves.pdf",
    params:
        labels=TWO_TASK["labels"],
    log:
        "results/logs/figures/fig_forgetting_curves.log",
    conda:
        ENV
    script:
        "../scripts/two_task/fig_forgetting_curves.py"


rule tab_forgetting:
    input:
        summary=rules.two_task_aggregate.output[0],
        code=code("two_task/tab_forgetting.py"),
    output:
        "paper/generated/tab_forgetting.tex",
    params:
        labels=TWO_TASK["labels"],
    log:
        "results/logs/tables/tab_forgetting.log",
    conda:
        ENV
    script:
        "../scripts/two_task/tab_forgetting.py"


PAPER_INPUTS += [*rules.fig_forgetting_curves.output, *rules.tab_forgetting.output]
