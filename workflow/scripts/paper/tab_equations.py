"""The paper's table "equation -> function", read from the library's docstrings (so it cannot drift).

A function or class implements an equation of the paper when the first line of its docstring cites the
equation's label as ``(eq:<label>)``. The table lists, room by room of the library, each such citation: the
equation as the built paper numbers it (``\\eqref``) and the name a user imports it by. The library is read
with :mod:`ast`, never imported.
"""

import ast
import os
import re
from dataclasses import dataclass
from pathlib import Path

# The rooms from the equations outwards (docs/architecture.md): an equation's rows start in the first room that
# implements it, and equations come in the order these rooms first implement them. Other rooms follow, by name.
ROOMS = ("functional", "regularizers", "memory", "optim", "baselines", "optimizers", "kaplinskii_propoi", "metrics")
CITATION = re.compile(r"\(eq:([A-Za-z0-9_]+)\)")
TEX_SPECIAL = {"_": r"\_", "&": r"\&", "%": r"\%", "#": r"\#", "$": r"\$"}


@dataclass(frozen=True)
class Implementation:
    """One first-line citation: the label, the importable name, and where it is defined."""

    label: str
    name: str
    path: str
    line: int


def _exported(init: Path) -> set[str]:
    """The names a package's ``__init__.py`` lists in ``__all__``."""
    for node in ast.parse(init.read_text()).body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "__all__" for t in node.targets):
            return {elt.value for elt in node.value.elts if isinstance(elt, ast.Constant)}
    return set()


def _public_name(package: Path, module: Path, qualname: str) -> str:
    """The shortest path a user imports ``qualname`` by: the top package or a subpackage that exports it, else
    its own module."""
    top = qualname.split(".")[0]
    parts = module.relative_to(package.parent).with_suffix("").parts
    if parts[-1] == "__init__":
        parts = parts[:-1]
    for depth in range(1, len(parts) + 1):
        init = package.parent.joinpath(*parts[:depth], "__init__.py")
        if init.is_file() and top in _exported(init):
            return ".".join((*parts[:depth], qualname))
    return ".".join((*parts, qualname))


def _documented(tree: ast.Module) -> list[tuple[str, ast.AST]]:
    """Every top-level function and class of a module, and the methods of its classes, by qualified name."""
    found: list[tuple[str, ast.AST]] = []
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            found.append((node.name, node))
            if isinstance(node, ast.ClassDef):
                found += [
                    (f"{node.name}.{item.name}", item)
                    for item in node.body
                    if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef))
                ]
    return found


def _room_order(package: Path, module: Path) -> tuple[int, str]:
    room = module.relative_to(package).with_suffix("").parts[0]
    return (ROOMS.index(room) if room in ROOMS else len(ROOMS), module.relative_to(package).as_posix())


def _private(name: str) -> bool:
    return any(part.startswith("_") and not part.startswith("__") for part in name.split("."))


def implementations(package: Path) -> list[Implementation]:
    """Every ``(eq:<label>)`` in the first docstring line of a function, class or method that a user can import
    from ``package`` (private names and private modules left out unless a package exports the name), grouped by
    equation in the order the equations first appear in the package's files (room by room as ``ROOMS`` orders them, then
    by path and line)."""
    rows = []
    for module in sorted(package.rglob("*.py"), key=lambda path: _room_order(package, path)):
        tree = ast.parse(module.read_text(), filename=str(module))
        for qualname, node in _documented(tree):
            doc = ast.get_docstring(node)
            if _private(qualname) or not doc:
                continue
            name = _public_name(package, module, qualname)
            if _private(name):
                continue
            for label in CITATION.findall(doc.splitlines()[0]):
                rows.append(Implementation(label, name, str(module.relative_to(package.parent)), node.lineno))
    order = {label: i for i, label in reversed(list(enumerate(r.label for r in rows)))}
    return sorted(rows, key=lambda r: order[r.label])


def tex(text: str) -> str:
    """Text safe inside ``\\texttt``, breakable after each ``.`` and ``/`` (a long dotted name wraps in its
    column)."""
    breaks = {".": r".\allowbreak{}", "/": r"/\allowbreak{}"}
    return "".join(TEX_SPECIAL.get(ch, breaks.get(ch, ch)) for ch in text)


def render(rows: list[Implementation]) -> str:
    """The table's body: one row per implementation, equation first."""
    if not rows:
        raise ValueError("No docstring cites an equation as (eq:<label>) in its first line")
    lines = [f"\\eqref{{eq:{r.label}}} & \\texttt{{{tex(r.name)}}} & \\texttt{{{tex(r.path)}}} \\\\" for r in rows]
    return "\n".join(lines) + "\n"


def main(package: Path, output: Path) -> None:
    """Write the table body for ``package`` to ``output`` (a temporary file, then a rename)."""
    tmp = output.with_suffix(output.suffix + ".tmp")
    header = f"% Generated by workflow/scripts/paper/tab_equations.py from the docstrings of {package.name}/\n"
    tmp.write_text(header + render(implementations(package)))
    tmp.replace(output)


if __name__ == "__main__":
    main(Path(os.path.commonpath(snakemake.input.library)), Path(snakemake.output[0]))
