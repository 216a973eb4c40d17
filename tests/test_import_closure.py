"""The static import closure that names each rule's code (workflow/scripts/common/import_closure.py): on a toy
package, which imports count (load-time ones, packages on the way, relative ones) and which do not (lazy,
type-only, outside every root); on the real rules, that a Triton file is in no rule's code."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from common.import_closure import import_closure, module_file, module_name, notebook_closure

ROOT = Path(__file__).resolve().parents[1]

TOY = {
    "pkg/__init__.py": "from .a import run\n",
    "pkg/a.py": (
        "from typing import TYPE_CHECKING\n"
        "import numpy\n"  # outside every root: left out
        "from . import b\n"
        "import pkg.sub.c\n"
        "if TYPE_CHECKING:\n    import pkg.typed\n"
        "else:\n    import pkg.untyped\n"
        "try:\n    import pkg.tried\nexcept ImportError:\n    import pkg.fallback\n"
        "class Holder:\n    import pkg.in_class\n"
        "def run():\n    import pkg.lazy_triton\n    return b\n"
    ),
    "pkg/b.py": "X = 1\n",
    "pkg/sub/__init__.py": "",
    "pkg/sub/c.py": "from ..d import y\nfrom .. import e as renamed\n",
    "pkg/d.py": "y = 2\n",
    "pkg/e.py": "",
    "pkg/typed.py": "",
    "pkg/untyped.py": "",
    "pkg/tried.py": "",
    "pkg/fallback.py": "",
    "pkg/in_class.py": "",
    "pkg/lazy_triton.py": "import pkg.unused\n",
    "pkg/unused.py": "",
}


@pytest.fixture
def toy(tmp_path: Path) -> Path:
    for name, text in TOY.items():
        (tmp_path / "lib" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "lib" / name).write_text(text)
    return tmp_path


def _names(files: list[Path], root: Path) -> list[str]:
    return [f.relative_to(root).as_posix() for f in files]


def test_the_closure_follows_load_time_imports_and_every_package_on_the_way(toy: Path) -> None:
    script = toy / "script.py"
    script.write_text("import os\nfrom pkg.sub import c\n")
    closure = import_closure([script], [toy / "lib"])
    assert closure[0] == script.resolve()
    assert set(_names(closure[1:], (toy / "lib").resolve())) == {
        "pkg/__init__.py",  # importing pkg.sub runs pkg/__init__.py, which imports .a
        "pkg/a.py",
        "pkg/b.py",  # from . import b: a submodule
        "pkg/sub/__init__.py",
        "pkg/sub/c.py",
        "pkg/d.py",  # from ..d import y, resolved from pkg.sub
        "pkg/e.py",  # from .. import e
        "pkg/untyped.py",  # the else branch of if TYPE_CHECKING runs
        "pkg/tried.py",
        "pkg/fallback.py",  # both arms of a try are taken: either may run
        "pkg/in_class.py",  # a class body runs at load time
    }


def test_lazy_and_type_only_imports_and_what_they_bring_are_left_out(toy: Path) -> None:
    closure = _names(import_closure([toy / "lib" / "pkg" / "a.py"], [toy / "lib"]), (toy / "lib").resolve())
    assert not {"pkg/lazy_triton.py", "pkg/unused.py", "pkg/typed.py"} & set(closure)


def test_the_first_root_holding_a_module_wins_and_a_file_has_its_dotted_name(toy: Path) -> None:
    other = toy / "other" / "pkg"
    other.mkdir(parents=True)
    (other / "__init__.py").write_text("")
    roots = [toy / "other", toy / "lib"]
    assert module_file("pkg", roots) == other / "__init__.py"
    assert module_file("pkg.b", roots) is None  # a package is not merged from two roots
    assert module_file("pkg.b", [toy / "lib"]) == toy / "lib" / "pkg" / "b.py"
    assert module_name(toy / "lib" / "pkg" / "sub" / "__init__.py", [toy / "lib"]) == "pkg.sub"
    assert module_name(toy / "lib" / "pkg" / "sub" / "c.py", [toy / "lib"]) == "pkg.sub.c"
    assert module_name(toy / "elsewhere.py", [toy / "lib"]) is None


def test_a_relative_import_outside_a_package_is_refused(toy: Path) -> None:
    (toy / "lib" / "top.py").write_text("from . import pkg\n")
    with pytest.raises(ImportError, match="outside a package"):
        import_closure([toy / "lib" / "top.py"], [toy / "lib"])
    (toy / "lib" / "pkg" / "deep.py").write_text("from ... import pkg\n")
    with pytest.raises(ImportError, match="above the package"):
        import_closure([toy / "lib" / "pkg" / "deep.py"], [toy / "lib"])


def test_an_edited_file_is_read_again(toy: Path) -> None:
    script = toy / "script.py"
    script.write_text("import pkg.b\n")
    assert "pkg/unused.py" not in _names(import_closure([script], [toy / "lib"])[1:], (toy / "lib").resolve())
    (toy / "lib" / "pkg" / "e.py").write_text("import pkg.unused\n")
    assert "pkg/unused.py" in _names(import_closure([script], [toy / "lib"])[1:], (toy / "lib").resolve())


def test_a_notebook_s_code_cells_are_read_without_its_magics(toy: Path) -> None:
    cells = [
        {"cell_type": "markdown", "source": ["import pkg.unused\n"]},
        {"cell_type": "code", "source": ["%matplotlib inline\n", "!ls\n", "from pkg import b\n"]},
    ]
    notebook = toy / "nb.ipynb"
    notebook.write_text(json.dumps({"cells": cells}))
    closure = _names(notebook_closure(notebook, [toy / "lib"]), (toy / "lib").resolve())
    assert "pkg/b.py" in closure and "pkg/__init__.py" in closure and "pkg/unused.py" not in closure


def test_no_rule_script_loads_a_triton_file_and_each_loads_its_helpers() -> None:
    """A Triton edit reruns no cell: the library imports its ``*_triton.py`` files only inside functions."""
    scripts = sorted((ROOT / "workflow" / "scripts").glob("*/*.py"))
    roots = [ROOT / "workflow" / "scripts", ROOT]
    for script in scripts:
        closure = _names(import_closure([script], roots), ROOT)
        assert not [f for f in closure if f.endswith("_triton.py")], script
    cell = _names(import_closure([ROOT / "workflow/scripts/kp_benchmark/run_kp_cell.py"], roots), ROOT)
    assert {
        "kaplinskiy/__init__.py",
        "kaplinskiy/kaplinskii_propoi/objectives.py",
        "workflow/scripts/common/provenance.py",
    } <= set(cell)
    numbers = _names(import_closure([ROOT / "workflow/scripts/permuted_mnist/numbers_permuted_mnist.py"], roots), ROOT)
    assert "workflow/scripts/permuted_mnist/_text.py" in numbers and not any(
        f.startswith("kaplinskiy") for f in numbers
    )
