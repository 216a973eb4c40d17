# The Kaplinskii-Propoi benchmark (sec:kp_benchmark): test functions x dimensions x arms -> records -> the summary
# (per cell and arm, the profiles' problems, the target, the defects' counts, the section's claims checked) ->
# data/performance profiles, tables and in-text numbers. kp_dims (common.smk) says where each function runs.

KP = config["kp_benchmark"]
KP_LABELS = {name: arm["label"] for name, arm in KP["arms"].items()}
KP_CELL = {k: KP[k] for k in ("starts", "budget_per_dim", "gradient_cost_per_dim", "sigma0_frac", "stop_at_target")}
# Every record of the KP benchmark: one per function, dimension and arm (an arm may cap the dimension).
KP_CELLS = [
    f"results/kp_benchmark/{function}/d{dim}/{arm}.json"
    for function in KP["functions"]
    for dim in kp_dims(function)
    for arm in KP["run_arms"]
    if dim <= KP["arms"][arm].get("max_dim", dim)
]


rule kp_cell:
    input:
        code=code("kp_benchmark/run_kp_cell.py"),
    output:
        "results/kp_benchmark/{function}/d{dim}/{arm}.json",
    params:
        arm=lambda w: KP["arms"][w.arm],
        cell=KP_CELL,
    log:
        "results/logs/kp_benchmark/{function}/d{dim}/{arm}.log",
    wildcard_constraints:
        dim=r"\d+",
    threads: 1
    conda:
        ENV
    script:
        "../scripts/kp_benchmark/run_kp_cell.py"


rule kp_aggregate:
    input:
        records=KP_CELLS,
        code=code("kp_benchmark/aggregate_kp.py"),
    output:
        "results/kp_benchmark/summary.json",
    params:
        tol=KP["tol"],
        tol_multimodal=KP["tol_multimodal"],
        functions=KP["functions"],
        arms=KP["run_arms"],
        headline_arm=KP["headline_arm"],
        target_functions=KP["target_functions"],
        defect_arms=KP["defect_arms"],
    log:
        "results/logs/kp_benchmark/aggregate.log",
    conda:
        ENV
    script:
        "../scripts/kp_benchmark/aggregate_kp.py"


rule fig_kp_profiles:
    input:
        summary=rules.kp_aggregate.output[0],
        code=code("kp_benchmark/fig_kp_profiles.py"),
    output:
        "paper/figures/fig_kp_profiles.pdf",
    params:
        arms=KP["figure_arms"],
        labels=KP_LABELS,
    log:
        "results/logs/figures/fig_kp_profiles.log",
    conda:
        ENV
    script:
        "../scripts/kp_benchmark/fig_kp_profiles.py"


rule tab_kp_benchmark:
    input:
        summary=rules.kp_aggregate.output[0],
        code=code("kp_benchmark/tab_kp_benchmark.py"),
    output:
        main="paper/generated/tab_kp_benchmark.tex",
        defects="paper/generated/tab_kp_defects.tex",
    params:
        arms=KP["table_arms"],
        labels=KP_LABELS,
    log:
        "results/logs/tables/tab_kp_benchmark.log",
    conda:
        ENV
    script:
        "../scripts/kp_benchmark/tab_kp_benchmark.py"


rule numbers_kp:
    input:
        summary=rules.kp_aggregate.output[0],
        code=code("kp_benchmark/numbers_kp.py"),
    output:
        "paper/generated/numbers_kp.tex",
    params:
        minpy_nm_reference_evals=KP["minpy_nm_reference_evals"],
        cell=KP_CELL,
    log:
        "results/logs/tables/numbers_kp.log",
    conda:
        ENV
    script:
        "../scripts/kp_benchmark/numbers_kp.py"


PAPER_INPUTS += [
    *rules.fig_kp_profiles.output,
    *rules.tab_kp_benchmark.output,
    *rules.numbers_kp.output,
]
