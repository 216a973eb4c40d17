"""The rooms of docs/architecture.md and what each may import; the one-way data path of the workflow.

Every import is read with :mod:`ast` (lazy imports inside functions included), so a test fails the moment a
module reaches into a room it may not enter.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Library room -> the rooms it may import (itself always). A room is the first name under ``kaplinskiy``.
LIBRARY_ROOMS: dict[str, set[str]] = {
    "_tensor_lists": set(),
    "metrics": set(),
    "functional": {"_tensor_lists"},
    "_kernels": {"_tensor_lists"},
    "regularizers": {"_tensor_lists", "functional"},
    "memory": {"_tensor_lists", "functional", "regularizers", "_kernels"},
    "optim": {"_tensor_lists", "functional", "memory", "_kernels"},
    "baselines": {"_tensor_lists", "functional", "memory", "regularizers", "optim"},
    "optimizers": {"_tensor_lists", "optim"},
    "kaplinskii_propoi": set(),
}
# Top-level folders of the repository and the top-level names each may never import.
FORBIDDEN = {
    "kaplinskiy": {"workflow", "derivations", "tests", "paper", "snakemake"},
    "workflow": {"derivations", "tests", "paper"},
    "derivations": {"workflow", "tests", "paper"},
}


def imports(path: Path, package_root: Path) -> list[tuple[int, str]]:
    """Every module ``path`` imports (absolute dotted names, relative imports resolved), with its line."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = path.relative_to(package_root).with_suffix("").parts[:-1]  # a module's package, or an __init__'s
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                name = ".".join((*base, node.module)) if node.module else ".".join(base)
            else:
                name = node.module or ""
            found.append((node.lineno, name))
    return found


def library_violations(library: Path, rooms: dict[str, set[str]]) -> list[str]:
    """Imports of a library module into a room its own room may not import, as ``file:line: room -> room``."""
    name = library.name
    bad = []
    for path in sorted(library.rglob("*.py")):
        parts = path.relative_to(library).with_suffix("").parts
        if parts == ("__init__",):
            continue  # the package's door re-exports every room
        room = parts[0]
        if room not in rooms:
            bad.append(f"{path.relative_to(library.parent)}: {room} is no room of docs/architecture.md")
            continue
        for line, module in imports(path, library.parent):
            top, _, rest = module.partition(".")
            if top in FORBIDDEN.get(name, set()):
                bad.append(f"{path.relative_to(library.parent)}:{line}: {name} imports {module}")
            if top != name or not rest:
                if top == name:
                    bad.append(f"{path.relative_to(library.parent)}:{line}: {room} imports the package's door")
                continue
            target = rest.split(".")[0]
            if target != room and target not in rooms[room]:
                bad.append(f"{path.relative_to(library.parent)}:{line}: {room} -> {target}")
    return bad


def test_each_library_room_imports_only_what_it_may() -> None:
    assert library_violations(ROOT / "kaplinskiy", LIBRARY_ROOMS) == []


def test_the_check_fails_on_an_import_that_breaks_a_room(tmp_path: Path) -> None:
    lib = tmp_path / "kaplinskiy"
    for room in ("functional", "optim"):
        (lib / room).mkdir(parents=True)
        (lib / room / "__init__.py").write_text("")
    (lib / "__init__.py").write_text("from .optim import step\n")
    (lib / "optim" / "step.py").write_text("from ..functional import projection\n")
    assert library_violations(lib, {"functional": set(), "optim": {"functional"}}) == []
    (lib / "functional" / "projection.py").write_text("def f():\n    from ..optim.step import x\n")
    (lib / "functional" / "lazy.py").write_text("import kaplinskiy.optim.step\nimport workflow.scripts\n")
    bad = library_violations(lib, {"functional": set(), "optim": {"functional"}})
    assert bad == [
        "kaplinskiy/functional/lazy.py:1: functional -> optim",
        "kaplinskiy/functional/lazy.py:2: kaplinskiy imports workflow.scripts",
        "kaplinskiy/functional/projection.py:2: functional -> optim",
    ]


@pytest.mark.parametrize("folder", ["workflow", "derivations"])
def test_workflow_and_derivations_import_no_forbidden_room(folder: str) -> None:
    bad = []
    for path in sorted((ROOT / folder).rglob("*.py")):
        for line, module in imports(path, ROOT):
            if module.split(".")[0] in FORBIDDEN[folder]:
                bad.append(f"{path.relative_to(ROOT)}:{line}: {module}")
    assert bad == []


def test_derivations_use_only_the_library_s_door() -> None:
    """A notebook checks the library through what a user imports, never through its inner modules."""
    bad = []
    for path in sorted((ROOT / "derivations").glob("*.ipynb")):
        cells = json.loads(path.read_text())["cells"]
        source = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")
        for node in ast.walk(ast.parse(source)):
            names = [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            names += [a.name for a in node.names] if isinstance(node, ast.Import) else []
            bad += [f"{path.name}: {n}" for n in names if n.startswith("kaplinskiy.")]
    assert bad == []


def _dry_run_jobs() -> list[tuple[str, list[str], list[str]]]:
    """(rule, inputs, outputs) of every job of the smoke DAG, from a dry run."""
    bindir = str(Path(sys.executable).parent)
    env = os.environ | {"PATH": bindir + os.pathsep + os.environ.get("PATH", "")}
    cmd = [os.path.join(bindir, "snakemake"), "-n", "--forceall", "--configfile", "workflow/config/smoke.yaml"]
    out = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600, check=True).stdout
    jobs, rule, fields = [], None, {}
    for line in [*out.splitlines(), "rule end:"]:
        stripped = line.strip()
        if line.startswith(("rule ", "localrule ")) and stripped.endswith(":"):
            if rule is not None:
                jobs.append((rule, fields.get("input", []), fields.get("output", [])))
            rule, fields = stripped.split()[1].rstrip(":"), {}
        elif rule and ":" in stripped and stripped.split(":")[0] in ("input", "output"):
            key, _, value = stripped.partition(":")
            fields[key] = [v.strip() for v in value.split(",") if v.strip()]
    return jobs


@pytest.mark.slow
def test_the_data_path_runs_one_way() -> None:
    """config -> run -> record -> figure/table/number -> paper: no job before the paper reads what the paper
    stage writes, and no job that writes results/ reads a generated figure, table or number."""
    jobs = _dry_run_jobs()
    assert len(jobs) > 10
    paper_stage = ("paper/generated/", "paper/figures/", "paper/main.pdf")
    for rule, inputs, outputs in jobs:
        read = [p for p in inputs if p.startswith(paper_stage)]
        if rule != "paper" and read:
            assert not any(o.startswith("results/") for o in outputs), f"{rule} writes results from {read}"
        assert not any(p.startswith("paper/sections") for p in inputs) or rule == "paper", rule


def test_no_file_refers_to_a_file_outside_the_repository() -> None:
    """The sources a session works from lie beside the repository; nothing inside names them."""
    outside = ("../" + "shared", "shared" + "/research", "shared" + "/seeds")
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    bad = []
    for rel in tracked.split():
        path = ROOT / rel
        if not path.is_file() or path.suffix in (".pdf", ".png", ".npz", ".gz"):
            continue
        text = path.read_text(errors="ignore")
        bad += [f"{rel}: {name}" for name in outside if name in text]
    assert bad == []
