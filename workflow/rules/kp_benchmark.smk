# The Kaplinskii-Propoi benchmark (issue 5): test functions x dimensions x arms -> records -> summary
# -> data/performance profiles, tables and in-text numbers. Include before paper.smk (it extends
# PAPER_INPUTS). Its helper functions (kp_cells, kp_dims, ...) live in common.smk.

rule kp_cell:
    input:
        library=KP_LIBRARY,
        code=["workflow/scripts/run_kp_cell.py", "workflow/scripts/kp_arms.py", "workflow/scripts/provenance.py"],
    output:
        "results/kp_benchmark/{function}/d{dim}/{arm}.json",
    params:
        arm=lambda w: config["kp_benchmark"]["arms"][w.arm],
        cell=_kp_cell_params(config["kp_benchmark"]),
    log:
        "results/logs/kp_benchmark/{function}/d{dim}/{arm}.log",
    wildcard_constraints:
        dim=r"\d+",
    threads: 1
    conda:
        ENV
    script:
        "../scripts/run_kp_cell.py"


rule kp_aggregate:
    input:
        records=kp_cells(),
        code=["workflow/scripts/kp_profiles.py"],  # modules the script imports: a change reruns the rule
    output:
        "results/kp_benchmark/summary.json",
    params:
        tol=config["kp_benchmark"]["tol"],
        tol_multimodal=config["kp_benchmark"]["tol_multimodal"],
        functions=config["kp_benchmark"]["functions"],
        arms=config["kp_benchmark"]["run_arms"],
    log:
        "results/logs/kp_benchmark/aggregate.log",
    conda:
        ENV
    script:
        "../scripts/aggregate_kp.py"


rule fig_kp_profiles:
    input:
        rules.kp_aggregate.output,
        code=["workflow/scripts/kp_profiles.py", "workflow/scripts/figure_style.py"],
    output:
        "paper/figures/fig_kp_profiles.pdf",
    params:
        arms=config["kp_benchmark"]["figure_arms"],
        labels=_kp_labels(config["kp_benchmark"]),
    log:
        "results/logs/figures/fig_kp_profiles.log",
    conda:
        ENV
    script:
        "../scripts/fig_kp_profiles.py"


rule tab_kp_benchmark:
    input:
        rules.kp_aggregate.output,
        code=["workflow/scripts/kp_profiles.py", "workflow/scripts/latex_format.py"],
    output:
        main="paper/generated/tab_kp_benchmark.tex",
        defects="paper/generated/tab_kp_defects.tex",
    params:
        arms=config["kp_benchmark"]["table_arms"],
        defect_arms=config["kp_benchmark"]["defect_arms"],
        labels=_kp_labels(config["kp_benchmark"]),
    log:
        "results/logs/tables/tab_kp_benchmark.log",
    conda:
        ENV
    script:
        "../scripts/tab_kp_benchmark.py"


rule numbers_kp:
    input:
        rules.kp_aggregate.output,
        code=["workflow/scripts/kp_claims.py", "workflow/scripts/kp_profiles.py", "workflow/scripts/latex_format.py"],
    output:
        "paper/generated/numbers_kp.tex",
    params:
        headline_arm=config["kp_benchmark"]["headline_arm"],
        target_functions=config["kp_benchmark"]["target_functions"],
        minpy_nm_reference_evals=config["kp_benchmark"]["minpy_nm_reference_evals"],
        defect_arms=config["kp_benchmark"]["defect_arms"],
        cell=_kp_cell_params(config["kp_benchmark"]),
    log:
        "results/logs/tables/numbers_kp.log",
    conda:
        ENV
    script:
        "../scripts/numbers_kp.py"


PAPER_INPUTS += [
    *rules.fig_kp_profiles.output,
    *rules.tab_kp_benchmark.output,
    *rules.numbers_kp.output,
]
