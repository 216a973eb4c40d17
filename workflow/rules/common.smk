# Load and validate the config, and name the code of each job. Imports neither torch nor the library: the
# code a rule runs is read statically (workflow/scripts/common/import_closure.py). Every stage appends what the
# paper needs to PAPER_INPUTS, and rule paper (paper.smk, included last) depends on all of it.
import os
import sys
from pathlib import Path

import jsonschema
import yaml

ROOT = Path(workflow.current_basedir).resolve().parents[1]  # this file is ROOT/workflow/rules/common.smk
SCRIPTS = ROOT / "workflow" / "scripts"

# The rules' scripts import the workflow's helpers as packages of workflow/scripts (common.latex_format,
# two_task._problem, ...): the one place that puts it on their path (Snakemake adds only each script's folder).
# It is set here for the jobs this process starts, not required from the caller.
if str(SCRIPTS) not in os.environ.get("PYTHONPATH", "").split(os.pathsep):
    os.environ.update(PYTHONPATH=os.pathsep.join(filter(None, [str(SCRIPTS), os.environ.get("PYTHONPATH")])))
sys.path.insert(0, str(SCRIPTS))
from common.import_closure import import_closure, notebook_closure

ENV = "../../environment.yml"  # for `--sdm conda` where conda exists; ignored otherwise
PAPER_INPUTS = []


def validate_config(cfg, schema_path):
    """Check ``cfg`` against the JSON schema; stop with one line per problem, naming the key."""
    schema = yaml.safe_load(Path(schema_path).read_text())
    errors = sorted(jsonschema.Draft202012Validator(schema).iter_errors(cfg), key=lambda e: list(e.absolute_path))
    if errors:
        lines = [f"  {'.'.join(map(str, e.absolute_path)) or '(top level)'}: {e.message}" for e in errors]
        raise ValueError("Invalid config (see workflow/schemas/config.schema.yaml):\n" + "\n".join(lines))


def check_names(section, key, names, known):
    """Stop unless every name in ``names`` (config ``section.key``) is one of ``known``."""
    for name in names:
        if name not in known:
            raise ValueError(f"Invalid config {section}.{key}: {name!r} is not one of {sorted(known)}")


def check_two_task(cfg):
    """The headline pair names arms of the study."""
    for role, name in cfg["headline"].items():
        if name not in cfg["arms"]:
            arms = sorted(cfg["arms"])
            raise ValueError(f"Invalid config two_task.headline.{role}: {name!r} is not one of the arms {arms}")


def check_kp_benchmark(cfg):
    """The arm lists name configured arms, the headline arm runs, every function has a domain, and the target's
    functions run in 2-D."""
    for key in ("run_arms", "figure_arms", "table_arms", "defect_arms"):
        check_names("kp_benchmark", key, cfg[key], cfg["arms"])
    if cfg["headline_arm"] not in cfg["run_arms"]:
        raise ValueError(f"Invalid config kp_benchmark.headline_arm: {cfg['headline_arm']!r} is not in run_arms")
    check_names("kp_benchmark", "functions", cfg["functions"], cfg["domains"])
    for name in cfg["target_functions"]:
        if name not in cfg["functions"] or 2 not in kp_dims(name):
            raise ValueError(f"Invalid config kp_benchmark.target_functions: {name!r} is not run in 2-D")


def kp_dims(function):
    """The dimensions a KP function runs in: its own for a fixed-dimension function, else the configured ones
    from its least dimension on (config kp_benchmark.domains)."""
    cfg = config["kp_benchmark"]
    domain = cfg["domains"][function]
    return list(domain["dims"]) if "dims" in domain else [n for n in cfg["dims"] if n >= domain["min_dim"]]


def check_language_model(cfg):
    """The unseen old corpus is neither the old domain nor a new domain, and no source plays two roles."""
    roles = [cfg["old_domain"], cfg["unseen_old_domain"], *cfg["new_domains"]]
    if len(set(roles)) != len(roles):
        raise ValueError(f"Invalid config language_model: a source plays two roles in {roles}")


validate_config(config, ROOT / "workflow" / "schemas" / "config.schema.yaml")
check_two_task(config["two_task"])
check_kp_benchmark(config["kp_benchmark"])
check_language_model(config["language_model"])


def _relative(files):
    return [f.relative_to(ROOT).as_posix() for f in files]


def code(script):
    """The code that ``workflow/scripts/<script>`` runs: the script, and the workflow helpers and library modules
    it loads, transitively (a change in any reruns its jobs; a lazily imported Triton file is none of them)."""
    return _relative(import_closure([SCRIPTS / script], [SCRIPTS, ROOT]))


def notebook_code(name):
    """The code derivations/<name>.ipynb loads: its helpers in derivations/ and the library modules."""
    return _relative(notebook_closure(ROOT / "derivations" / f"{name}.ipynb", [ROOT / "derivations", ROOT]))
