# The Kaplinskii-Propoi benchmark (issue 5): test functions x dimensions x arms -> records -> summary
# -> data/performance profiles, tables and in-text numbers. Include before paper.smk (it extends
# PAPER_INPUTS).

from kaplinskiy.kp import OBJECTIVES

# The library modules the cells run; a change in them reruns the cells.
KP_LIBRARY = sorted(str(p) for p in Path("kaplinskiy/kp").glob("*.py"))


def _check_kp_benchmark(cfg):
    arms = cfg["arms"]
    for key in ("run_arms", "figure_arms", "table_arms", "defect_arms"):
        for name in cfg[key]:
            if name not in arms:
                raise ValueError(f"Invalid config kp_benchmark.{key}: {name!r} is not one of the arms {sorted(arms)}")
    if cfg["headline_arm"] not in cfg["run_arms"]:
        raise ValueError(f"Invalid config kp_benchmark.headline_arm: {cfg['headline_arm']!r} is not in run_arms")
    for name in cfg["functions"]:
        if name not in OBJECTIVES:
            raise ValueError(f"Invalid config kp_benchmark.functions: {name!r} is not one of {sorted(OBJECTIVES)}")
    for name in cfg["target_functions"]:
        if name not in cfg["functions"] or 2 not in kp_dims(name):
            raise ValueError(f"Invalid config kp_benchmark.target_functions: {name!r} is not run in 2-D")


def kp_dims(function):
    """The dimensions a function runs in: its own for fixed-dimension functions, else the configured ones."""
    o = OBJECTIVES[function]
    return list(o.dims) if o.dims is not None else [n for n in config["kp_benchmark"]["dims"] if o.supports(n)]


_check_kp_benchmark(config["kp_benchmark"])


def kp_cells():
    """Every record of the KP benchmark: one per function, dimension and arm (an arm may cap the dimension)."""
    cfg = config["kp_benchmark"]
    return [
        f"results/kp_benchmark/{function}/d{dim}/{arm}.json"
        for function in cfg["functions"]
        for dim in kp_dims(function)
        for arm in cfg["run_arms"]
        if dim <= cfg["arms"][arm].get("max_dim", dim)
    ]


def _kp_cell_params(cfg):
    keys = ("starts", "budget_per_dim", "gradient_cost_per_dim", "sigma0_frac", "stop_at_target")
    return {k: cfg[k] for k in keys}


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
        kp_cells(),
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


def _kp_labels(cfg):
    return {name: arm["label"] for name, arm in cfg["arms"].items()}


rule fig_kp_profiles:
    input:
        rules.kp_aggregate.output,
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
