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
