"""The Snakemake workflow: lint, dry run, config validation, and the whole DAG on the smoke config."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
SMOKE = ["--configfile", "workflow/config/smoke.yaml"]


def snakemake(*args: str, cwd: Path = ROOT, timeout: int = 600) -> subprocess.CompletedProcess[str]:
    """Run snakemake from the venv that runs the tests, with that venv's bin/ on PATH (for the notebooks)."""
    bindir = str(Path(sys.executable).parent)
    env = os.environ | {"PATH": bindir + os.pathsep + os.environ.get("PATH", "")}
    cmd = [os.path.join(bindir, "snakemake"), *args]
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def test_lint_is_clean() -> None:
    res = snakemake("--lint")
    assert res.returncode == 0, res.stdout + res.stderr


def test_dry_run_plans_every_stage() -> None:
    res = snakemake("-n", "--forceall", *SMOKE)
    assert res.returncode == 0, res.stderr
    stages = ("derivation", "two_task_run", "fig_forgetting_curves", "tab_forgetting", "numbers", "step_time_local")
    pmnist = ("prepare_mnist", "permuted_mnist_cell", "fig_permuted_mnist", "tab_permuted_mnist")
    pmnist += ("permuted_mnist_potential_cell", "tab_permuted_mnist_potential", "numbers_permuted_mnist_potential")
    pmnist += ("permuted_mnist_variants_aggregate", "numbers_permuted_mnist_potentials", "permuted_mnist_retune_cell")
    lm = ("language_model_source", "language_model_tokenizer", "language_model_tokens", "language_model_unseen_tokens")
    lm += ("language_model_protected_sample",)
    for rule in (*stages, *pmnist, *lm, "numbers_permuted_mnist_retune", "tab_step_time", "paper"):
        assert rule in res.stdout, f"rule {rule} is not planned"
    # each job's inputs name the code it runs (its script and what that loads), and never a Triton file; only
    # the equation table reads every library file, as its data (the docstrings)
    inputs = re.findall(r"^    input: (.*)$", res.stdout, re.MULTILINE)
    assert not [line for line in inputs if "_triton.py" in line and "paper/tab_equations.py" not in line]
    cells = [line for line in inputs if "workflow/scripts/kp_benchmark/run_kp_cell.py" in line]
    assert cells and all("kaplinskiy/kaplinskii_propoi/objectives.py" in line for line in cells)


def test_parsing_the_dag_imports_neither_torch_nor_the_library(tmp_path: Path) -> None:
    """The DAG reads each rule's code statically: a torch or kaplinskiy that cannot be imported stops nothing."""
    for name in ("torch", "kaplinskiy"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "__init__.py").write_text(f"raise ImportError('the DAG imported {name}')\n")
    bindir = str(Path(sys.executable).parent)
    env = os.environ | {"PATH": bindir + os.pathsep + os.environ.get("PATH", ""), "PYTHONPATH": str(tmp_path)}
    cmd = [os.path.join(bindir, "snakemake"), "-n", "--forceall", *SMOKE]
    res = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]


def _rule_scripts() -> set[Path]:
    """Every script a rule runs (the ``script:`` lines of workflow/rules/*.smk)."""
    rules = ROOT / "workflow" / "rules"
    found = re.findall(r"^    script:\n\s+\"([^\"]+)\"", "".join(p.read_text() for p in rules.glob("*.smk")), re.M)
    return {(rules / path).resolve() for path in found}


def test_the_scripts_layout_keeps_its_rules() -> None:
    """At most 15 files directly in workflow/scripts, no code file over 400 lines in workflow/, a rule script
    imports no other rule script, and an experiment's private helper (``_name.py``) serves that experiment only."""
    from common.import_closure import import_closure

    scripts = ROOT / "workflow" / "scripts"
    assert len([p for p in scripts.iterdir() if p.is_file()]) <= 15
    code = [p for ext in ("py", "smk", "sh", "yaml") for p in (ROOT / "workflow").rglob(f"*.{ext}")]
    long = [str(p.relative_to(ROOT)) for p in code if len(p.read_text().splitlines()) > 400]
    assert not long, f"over 400 lines: {long}"
    rule_scripts = _rule_scripts()
    assert len(rule_scripts) > 20 and all(p.is_file() for p in rule_scripts)
    for script in rule_scripts:
        loaded = set(import_closure([script], [scripts, ROOT])[1:])
        assert not loaded & rule_scripts, f"{script.name} imports a rule script: {sorted(loaded & rule_scripts)}"
        private = [
            p for p in loaded if p.is_relative_to(scripts) and p.name.startswith("_") and p.name != "__init__.py"
        ]
        assert all(p.parent == script.parent for p in private), f"{script.name} imports another experiment's helper"


def test_the_workflow_refers_to_no_file_outside_the_repository() -> None:
    """The paper's sections and equations, or published papers, are cited instead of notes outside it."""
    texts = [p for ext in ("py", "smk", "sh", "yaml", "md") for p in (ROOT / "workflow").rglob(f"*.{ext}")]
    texts.append(ROOT / "Snakefile")
    cited = [
        str(p.relative_to(ROOT)) for p in texts if re.search(r"\.\./shared|shared/(research|seeds)", p.read_text())
    ]
    assert not cited, cited


@pytest.mark.parametrize(
    ("patch", "named"),
    [
        ({"two_task": {"learning_rate": 0.1}}, "'learning_rate' was unexpected"),
        ({"two_task": {"lr": -0.5}}, "two_task.lr: -0.5"),
        ({"two_task": {"armijo": {"c": 2.0}}}, "two_task.armijo.c: 2.0"),
        ({"step_time": {"preset": "gpt3"}}, "step_time.preset: 'gpt3' is not one of"),
        ({"step_time": {"records": ["h100.json"]}}, "step_time.records.0: 'h100.json' does not match"),
        ({"surprise": 1}, "'surprise' was unexpected"),
        ({"permuted_mnist": {"lr_grid": {"ratio": 0.5}}}, "permuted_mnist.lr_grid.ratio: 0.5"),
        ({"permuted_mnist": {"guards": ["sometimes"]}}, "permuted_mnist.guards.0: 'sometimes' is not one of"),
        (
            {"permuted_mnist": {"potentials": {"ewc": {"fisher": "diagonal"}}}},
            "permuted_mnist.potentials.ewc.fisher: 'diagonal'",
        ),
        ({"permuted_mnist": {"potentials": {"L2": {}}}}, "permuted_mnist.potentials: 'L2' does not match"),
        ({"two_task": {"headline": {"baseline": "nope", "method": "potential"}}}, "two_task.headline.baseline"),
        ({"kp_benchmark": {"functions": ["sphere", "nope"]}}, "kp_benchmark.functions: 'nope' is not one of"),
        ({"kp_benchmark": {"domains": {"sphere": {"dims": [2], "min_dim": 1}}}}, "kp_benchmark.domains.sphere"),
        ({"language_model": {"vocab_size": 70000}}, "language_model.vocab_size: 70000"),
        ({"language_model": {"new_domains": ["wikipedia"]}}, "language_model.new_domains.0: 'wikipedia'"),
        ({"language_model": {"unseen_old_domain": "austen"}}, "language_model: a source plays two roles"),
    ],
)
def test_bad_config_stops_with_a_message_naming_the_key(patch: dict, named: str, tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(patch))
    res = snakemake("-n", "--configfile", str(bad))
    assert res.returncode != 0
    assert named in res.stdout + res.stderr, res.stdout + res.stderr


def _copy_tracked(dst: Path) -> None:
    """A fresh-clone-like copy: the files git tracks or would track (nothing generated)."""
    listed = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.splitlines()
    for rel in listed:
        src = ROOT / rel
        if src.is_file():
            (dst / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst / rel)


@pytest.mark.slow
def test_smoke_dag_builds_the_paper_and_then_has_nothing_to_do(tmp_path: Path) -> None:
    if shutil.which("latexmk") is None:
        pytest.fail("latexmk is missing: `make test` installs TeX Live; run it through make")
    repo = tmp_path / "repo"
    _copy_tracked(repo)
    # about 9 min on the CI machine's 2 cores when nothing else runs; a busy machine took more than 10 min
    res = snakemake("--cores", "2", *SMOKE, cwd=repo, timeout=1500)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    pdf = repo / "paper" / "main.pdf"
    assert pdf.stat().st_size > 10_000
    generated_files = ("numbers.tex", "tab_forgetting.tex", "tab_sympy_certificates.tex", "eq_taylor_forgetting.tex")
    pmnist = ("tab_permuted_mnist.tex", "numbers_permuted_mnist.tex", "numbers_permuted_mnist_potentials.tex")
    potentials = [
        f"{kind}_permuted_mnist_{r}.tex" for kind in ("tab", "numbers") for r in ("potential_ewc", "potential_l2sp")
    ]
    potentials += [f"numbers_permuted_mnist_retune_{r}.tex" for r in ("ewc", "l2sp")]
    for generated in (*generated_files, *pmnist, *potentials):
        assert (repo / "paper" / "generated" / generated).exists()
    assert (repo / "results" / "derivations" / "taylor_forgetting.executed.ipynb").exists()
    for data in ("tokenizer.json", "tokens/protected.npy", "tokens/kjv/unseen.npy", "tokens/sympy/train.npy"):
        assert (repo / "results" / "language_model" / data).exists()
    latex = (repo / "results" / "logs" / "paper" / "latexmk.log").read_text(errors="replace")
    wide = [float(m) for m in re.findall(r"Overfull \\hbox \(([\d.]+)pt too wide\)", latex)]
    assert max(wide, default=0.0) < 10.0, f"a line or table runs {max(wide)} pt into the margin"
    again = snakemake("-n", *SMOKE, cwd=repo)
    assert again.returncode == 0 and "Nothing to be done" in again.stdout + again.stderr, again.stdout
