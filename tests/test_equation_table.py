"""The paper's "equation -> function" table: read from the docstrings, every label a label of the paper."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SPEC = importlib.util.spec_from_file_location("tab_equations", ROOT / "workflow/scripts/paper/tab_equations.py")
tab_equations = importlib.util.module_from_spec(SPEC)
sys.modules[SPEC.name] = tab_equations  # dataclasses look their module up
SPEC.loader.exec_module(tab_equations)

# The equations the paper says the library computes: each needs a function that implements it.
IMPLEMENTED = ("potential", "projected", "armijo")


def _paper_labels() -> set[str]:
    text = "".join(p.read_text() for p in (ROOT / "paper/sections").glob("*.tex"))
    return set(re.findall(r"\\label\{eq:([A-Za-z0-9_]+)\}", text))


def _toy(tmp_path: Path) -> Path:
    pkg = tmp_path / "toy"
    (pkg / "room").mkdir(parents=True)
    (pkg / "__init__.py").write_text('from .room.step import Step\n__all__ = ["Step"]\n')
    (pkg / "room" / "__init__.py").write_text('from .step import helper\n__all__ = ["helper"]\n')
    (pkg / "room" / "step.py").write_text(
        "class Step:\n"
        '    """A step along eq. a (eq:alpha).\n\n    Body cites (eq:beta) only in its body."""\n\n'
        "    def apply(self):\n"
        '        """Apply it (eq:gamma) (eq:delta)."""\n\n'
        "    def _hidden(self):\n"
        '        """Private (eq:private)."""\n\n\n'
        "def helper():\n"
        '    """Help (eq:beta)."""\n\n\n'
        "def lonely():\n"
        '    """Cites nothing."""\n\n\n'
        "def _private():\n"
        '    """Private too (eq:private)."""\n\n\n'
        "def again():\n"
        '    """The first equation again (eq:alpha)."""\n'
    )
    (pkg / "room" / "_inner.py").write_text('def hidden():\n    """In a private module (eq:private)."""\n')
    return pkg


def test_first_lines_of_public_docstrings_make_the_rows(tmp_path: Path) -> None:
    rows = tab_equations.implementations(_toy(tmp_path))
    got = [(r.label, r.name) for r in rows]
    assert got == [
        ("alpha", "toy.Step"),
        ("alpha", "toy.room.step.again"),
        ("gamma", "toy.Step.apply"),
        ("delta", "toy.Step.apply"),
        ("beta", "toy.room.helper"),
    ]
    body = tab_equations.render(rows)
    path = r"\texttt{toy/\allowbreak{}room/\allowbreak{}step.\allowbreak{}py}"
    first = rf"\eqref{{eq:alpha}} & \texttt{{toy.\allowbreak{{}}Step}} & {path} \\"
    assert body.splitlines()[0] == first


def test_an_uncited_package_is_refused(tmp_path: Path) -> None:
    pkg = tmp_path / "bare"
    pkg.mkdir()
    (pkg / "__init__.py").write_text('"""Nothing here cites an equation."""\n')
    with pytest.raises(ValueError, match="No docstring cites"):
        tab_equations.render(tab_equations.implementations(pkg))


def test_every_label_the_library_cites_is_a_label_of_the_paper() -> None:
    labels = _paper_labels()
    cited = {}
    for path in (ROOT / "kaplinskiy").rglob("*.py"):
        for label in re.findall(r"\beq:([A-Za-z0-9_]+)", path.read_text()):
            cited.setdefault(label, path.relative_to(ROOT))
    unknown = {label: str(path) for label, path in cited.items() if label not in labels}
    assert not unknown, f"labels cited in the library but not in paper/sections: {unknown}"


def test_the_method_equations_each_have_an_implementation() -> None:
    implemented = {r.label for r in tab_equations.implementations(ROOT / "kaplinskiy")}
    missing = [label for label in IMPLEMENTED if label not in implemented]
    assert not missing, f"no function's docstring starts by implementing {missing}"
