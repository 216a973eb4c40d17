"""The code a script runs, read statically: the files of every module it imports at module level, transitively.

Nothing is imported: each file is parsed (``ast``) and its imports resolved against source roots (folders that
hold top-level modules and packages, first match wins). Only imports that run when a module is loaded count:
those at module level and in class bodies, in ``if``/``try``/``with`` blocks, but not inside functions (lazy
imports, such as the library's Triton kernels) nor under ``if TYPE_CHECKING:``. Importing ``a.b.c`` runs
``a/__init__.py`` and ``a/b/__init__.py`` too, so every package on the way is part of the closure; ``from a import
b`` takes ``a/b.py`` when ``b`` is a submodule. Relative imports are resolved from the importing file's package.
Modules found under no root (the standard library, third-party packages) are left out.
"""

from __future__ import annotations

import ast
import json
from collections.abc import Iterable, Iterator, Sequence
from functools import cache
from pathlib import Path


def _file(base: Path) -> Path | None:
    """``base.py``, or the package ``base/__init__.py``; None if neither is a file."""
    for candidate in (base / "__init__.py", base.with_name(base.name + ".py")):
        if candidate.is_file():
            return candidate
    return None


def module_file(name: str, roots: Sequence[Path]) -> Path | None:
    """The file of module ``name`` (``a.b``: ``a/b.py`` or ``a/b/__init__.py``), looked up as Python does: under
    the first root that holds its top-level module ``a``, and only there."""
    top, *rest = name.split(".")
    for root in roots:
        if _file(root / top) is not None:
            return _file(root.joinpath(top, *rest))
    return None


def module_name(path: Path, roots: Sequence[Path]) -> str | None:
    """The dotted name ``path`` has under the first root it lies in (a package's ``__init__.py``: the package)."""
    for root in roots:
        if path.is_relative_to(root):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            return ".".join(parts) or None
    return None


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _load_time_imports(body: Iterable[ast.AST]) -> Iterator[ast.Import | ast.ImportFrom]:
    """The import statements of ``body`` that run when the module is loaded (not in functions, not type-only)."""
    for node in body:
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        elif isinstance(node, ast.If) and _is_type_checking(node.test):
            yield from _load_time_imports(node.orelse)
        else:
            for field in ("body", "orelse", "finalbody", "handlers", "cases"):  # blocks, handlers, match cases
                yield from _load_time_imports(getattr(node, field, []))


def _package(path: Path, roots: Sequence[Path]) -> str | None:
    """The package a relative import in ``path`` is resolved from (``None``: a script outside every package)."""
    name = module_name(path, roots)
    if name is None:
        return None
    return name if path.name == "__init__.py" else name.rpartition(".")[0] or None


def imported_modules(tree: ast.Module, package: str | None) -> list[str]:
    """Every module name the load-time imports of ``tree`` may load, packages on the way included; a name
    ``from a import b`` brings is listed as the candidate ``a.b`` (kept only if it is a file)."""
    names: list[str] = []
    for node in _load_time_imports(tree.body):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        else:
            if node.level:
                if package is None:
                    raise ImportError(f"Invalid import: relative import of level {node.level} outside a package")
                parts = package.split(".")
                if node.level - 1 >= len(parts):
                    raise ImportError(f"Invalid import: level {node.level} goes above the package {package!r}")
                anchor = ".".join(parts[: len(parts) - node.level + 1])
                base = f"{anchor}.{node.module}" if node.module else anchor
            else:
                base = node.module or ""
            targets = [base, *(f"{base}.{alias.name}" for alias in node.names if alias.name != "*")]
        for target in targets:
            parts = target.split(".")
            names += [".".join(parts[:i]) for i in range(1, len(parts) + 1)]
    return list(dict.fromkeys(names))


@cache
def _direct(path: Path, roots: tuple[Path, ...], source: str) -> tuple[Path, ...]:
    """The files ``path`` loads directly, given its ``source`` (cached per version of the file)."""
    tree = ast.parse(source, filename=str(path))
    found = (module_file(name, roots) for name in imported_modules(tree, _package(path, roots)))
    return tuple(dict.fromkeys(f for f in found if f is not None))


def import_closure(entries: Iterable[Path], roots: Sequence[Path]) -> list[Path]:
    """``entries`` and the files of every module they load, transitively, in a fixed order (sorted, entries first).

    ``roots``: the source roots, searched in order for each module name. An entry is parsed as a script when it
    lies under no root, else as the module it is there (so its relative imports resolve)."""
    roots = tuple(Path(r).resolve() for r in roots)
    entries = [Path(e).resolve() for e in entries]
    seen: set[Path] = set()
    todo = list(entries)
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        todo += _direct(path, roots, path.read_text())
    return entries + sorted(seen - set(entries))


def notebook_code(path: Path) -> ast.Module:
    """The code cells of a Jupyter notebook as one module (IPython magics and shell lines dropped)."""
    cells = json.loads(Path(path).read_text())["cells"]
    lines = [
        line
        for cell in cells
        if cell["cell_type"] == "code"
        for line in "".join(cell["source"]).splitlines()
        if not line.lstrip().startswith(("%", "!"))
    ]
    return ast.parse("\n".join(lines), filename=str(path))


def notebook_closure(path: Path, roots: Sequence[Path]) -> list[Path]:
    """The files of every module a notebook's code cells load at their top level, transitively (not the
    notebook itself)."""
    roots = tuple(Path(r).resolve() for r in roots)
    found = (module_file(name, roots) for name in imported_modules(notebook_code(path), None))
    return import_closure(dict.fromkeys(f for f in found if f is not None), roots)
