# Load and validate the config; helpers shared by the rules. Every stage appends what the paper needs
# to PAPER_INPUTS, and paper.smk (included last) depends on all of it.
from pathlib import Path

import jsonschema
import yaml


def validate_config(cfg, schema_path):
    """Check ``cfg`` against the JSON schema; stop with one line per problem, naming the key."""
    schema = yaml.safe_load(Path(schema_path).read_text())
    errors = sorted(jsonschema.Draft202012Validator(schema).iter_errors(cfg), key=lambda e: list(e.absolute_path))
    if errors:
        lines = [f"  {'.'.join(map(str, e.absolute_path)) or '(top level)'}: {e.message}" for e in errors]
        raise ValueError("Invalid config (see workflow/schemas/config.schema.yaml):\n" + "\n".join(lines))


validate_config(config, Path(workflow.current_basedir) / "../schemas/config.schema.yaml")

ENV = "../../environment.yml"  # for `--sdm conda` where conda exists; ignored otherwise
PAPER_INPUTS = []


def _check_two_task(cfg):
    arms = cfg["arms"]
    for role, name in cfg["headline"].items():
        if name not in arms:
            raise ValueError(f"Invalid config two_task.headline.{role}: {name!r} is not one of the arms {sorted(arms)}")


_check_two_task(config["two_task"])


def two_task_runs():
    """Every record of the two-task benchmark: one per arm and seed."""
    cfg = config["two_task"]
    return expand("results/two_task/{arm}/seed{seed}.json", arm=list(cfg["arms"]), seed=cfg["seeds"])


# --- The Kaplinskii-Propoi benchmark (rules in kp_benchmark.smk) ---
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


def _kp_labels(cfg):
    return {name: arm["label"] for name, arm in cfg["arms"].items()}


# --- Permuted MNIST (rules in permuted_mnist.smk) ---
def potential_problem(cfg, name):
    """The problem a potential cell runs: ``cfg`` (permuted_mnist's config) less the arms and seeds, with the one
    R ``name`` of its potentials as ``potential`` (in the config's order, so EWC's cells keep their params)."""
    return {
        ("potential" if k == "potentials" else k): (v[name] if k == "potentials" else v)
        for k, v in cfg.items()
        if k not in ("optimizers", "seeds", "guards")
    }
