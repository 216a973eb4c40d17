# One training run per benchmark/arm/seed -> a JSON record with provenance; then the aggregation.


# The library modules the two-task benchmark runs (a change in them reruns it; other modules do not).
TWO_TASK_LIBRARY = [f"kaplinskiy/{m}.py" for m in ("projection", "potential", "line_search", "potential_descent")]


rule two_task_run:
    input:
        library=TWO_TASK_LIBRARY,
        code=[f"workflow/scripts/{m}.py" for m in ("two_task", "records", "provenance", "paths")],
    output:
        "results/two_task/{arm}/seed{seed}.json",
    params:
        problem=lambda w: {k: v for k, v in config["two_task"].items() if k not in ("arms", "labels", "seeds", "headline")},
        arm=lambda w: config["two_task"]["arms"][w.arm],
    log:
        "results/logs/two_task/{arm}/seed{seed}.log",
    threads: 1
    conda:
        ENV
    script:
        "../scripts/run_two_task.py"


rule two_task_aggregate:
    input:
        two_task_runs(),
    output:
        "results/two_task/summary.json",
    params:
        arms=list(config["two_task"]["arms"]),
        reference=config["two_task"]["headline"]["method"],
    log:
        "results/logs/two_task/aggregate.log",
    conda:
        ENV
    script:
        "../scripts/aggregate_two_task.py"
