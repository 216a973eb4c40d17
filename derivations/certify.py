"""Certificates for the SymPy derivations: every identity a notebook checks is recorded, and a
failed check raises at once, so an executed notebook is itself the proof that its identities hold.

A notebook builds one :class:`Derivation`, calls :meth:`Derivation.identity` (symbolic: the
difference simplifies to exactly 0), :meth:`Derivation.holds` (a SymPy proposition) or
:meth:`Derivation.numeric` (a numerical check with a stated tolerance), and ends with
:meth:`Derivation.write`, which writes a JSON certificate and a file of LaTeX macros.

Every displayed equation names the checks that prove it (``proved_by``, labels of checks recorded before), so the
certificate says which check stands behind each macro the paper shows:

- :meth:`Derivation.latex` renders a SymPy object with ``sp.latex``; given ``checked`` (and ``subs``) it also
  asserts that the rendered object, with its display symbols replaced by the notebook's objects, *is* the
  checked expression, so the paper cannot show a different one;
- :meth:`Derivation.statement` takes raw LaTeX, for statements SymPy cannot print in the paper's notation
  (non-commutative or abstract objects, inequalities, a general ``f``);
- :meth:`Derivation.definition` takes the raw LaTeX of a definition, which no check proves.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sympy as sp

__all__ = ["AT_A_POINT", "NUMERICAL", "PROVED", "Derivation", "IdentityFailed", "output_paths"]

PROVED = "proved"  # symbolic, for all values of the symbols
AT_A_POINT = "exact at a point"  # exact arithmetic, at one sample point
NUMERICAL = "checked numerically"  # floating point, with a stated tolerance


class IdentityFailed(AssertionError):
    """An identity the paper relies on does not hold."""


def output_paths(name: str, snakemake: Any | None = None) -> tuple[Path, Path]:
    """Where the certificate (.json) and the LaTeX macros (.tex) go.

    Under Snakemake they are the rule's ``output.certificate`` and ``output.tex``; otherwise they go to
    ``$DERIVATIONS_OUT`` (default ``results/derivations``) as ``{name}.json`` and ``eq_{name}.tex``.
    """
    if snakemake is not None:
        return Path(snakemake.output.certificate), Path(snakemake.output.tex)
    out = Path(os.environ.get("DERIVATIONS_OUT", "results/derivations"))
    return out / f"{name}.json", out / f"eq_{name}.tex"


def _macro_name(notebook: str, key: str) -> str:
    words = re.split(r"[^A-Za-z]+", f"deriv {notebook} {key}")
    name = "".join(w[:1].upper() + w[1:] for w in words if w)
    if not name.isalpha():
        raise ValueError(f"Invalid key: {key!r} gives the macro name {name!r}, which is not letters only")
    return name


def _to_zero(expr: Any) -> Any:
    """Simplify an expression that should be 0: ``cancel`` (fast, exact for rational functions), and
    ``simplify`` only if that does not already give 0."""
    reduced = sp.cancel(sp.expand(expr))
    return reduced if reduced == 0 else sp.simplify(reduced)


def _explicit(expr: Any) -> Any:
    """Evaluate matrix expressions of explicit matrices; a 1x1 matrix becomes its entry."""
    if isinstance(expr, sp.MatrixExpr) and not isinstance(expr, sp.MatrixBase):
        expr = expr.doit()
        expr = expr.as_explicit() if isinstance(expr, sp.MatrixExpr) else expr
    elif isinstance(expr, sp.Basic):
        expr = expr.doit()
    if isinstance(expr, sp.MatrixBase) and expr.shape == (1, 1):
        return expr[0, 0]
    return expr


def _difference(lhs: Any, rhs: Any, simplify) -> tuple[bool, Any]:
    """``simplify(lhs - rhs)`` (matrices: entrywise) and whether it is exactly 0."""
    simplify = simplify or _to_zero
    diff = sp.Matrix(lhs - rhs).applyfunc(simplify) if isinstance(lhs, sp.MatrixBase) else simplify(lhs - rhs)
    zero = diff.is_zero_matrix if isinstance(diff, sp.MatrixBase) else diff == 0
    return zero is True, diff


@dataclass
class Derivation:
    """The checks and the displayed equations (LaTeX snippets) of one notebook."""

    name: str
    checks: list[dict[str, str]] = field(default_factory=list)
    snippets: dict[str, str] = field(default_factory=dict)
    displays: list[dict[str, Any]] = field(default_factory=list)

    def _record(self, label: str, equation: str, status: str, method: str) -> None:
        if any(c["identity"] == label for c in self.checks):
            raise ValueError(f"{self.name}: the label {label!r} is used twice; displays name checks by label")
        self.checks.append({"identity": label, "equation": equation, "status": status, "method": method})

    def identity(
        self, label: str, equation: str, lhs: Any, rhs: Any = 0, *, simplify=None, at_point: bool = False
    ) -> None:
        """Assert ``simplify(lhs - rhs) == 0`` exactly (matrices: entrywise) and record it.

        The default simplifier is :func:`_to_zero`: rational cancellation, then ``sp.simplify``. With
        ``at_point=True`` the sides are numbers (exact, at one sample point): recorded as checked at a point.
        """
        zero, diff = _difference(lhs, rhs, simplify)
        if not zero:
            raise IdentityFailed(f"{label} ({equation}) does not hold: lhs - rhs simplifies to {diff}")
        self._record(label, equation, AT_A_POINT if at_point else PROVED, "exact" if at_point else "symbolic")

    def holds(self, label: str, equation: str, claim: Any, *, at_point: bool = False) -> None:
        """Assert a SymPy proposition that must evaluate to True (e.g. ``expr.is_nonnegative``)."""
        if claim is not True:
            raise IdentityFailed(f"{label} ({equation}) is not established: SymPy gives {claim}")
        self._record(label, equation, AT_A_POINT if at_point else PROVED, "exact" if at_point else "symbolic")

    def numeric(self, label: str, equation: str, error: float, tol: float) -> None:
        """Assert a numerical check ``error <= tol`` and record it as checked numerically."""
        if not error <= tol:
            raise IdentityFailed(f"{label} ({equation}) fails numerically: error {error:.3e} > tolerance {tol:.3e}")
        self._record(label, equation, NUMERICAL, f"error {error:.2e} <= {tol:.0e}")

    def _proved_by(self, key: str, proved_by: str | list[str] | tuple[str, ...]) -> list[str]:
        labels = [proved_by] if isinstance(proved_by, str) else list(proved_by)
        known = {c["identity"] for c in self.checks}
        missing = [label for label in labels if label not in known]
        if not labels or missing:
            raise ValueError(
                f"{self.name}: the display {key!r} must name checks recorded before it; "
                f"not checked: {missing or 'no label given'}"
            )
        return labels

    def _display(
        self, key: str, tex: str, kind: str, proved_by: list[str], rendering: str, equation: str | None = None
    ) -> str:
        if key in self.snippets:
            raise ValueError(f"{self.name}: the display {key!r} is stored twice")
        if equation is None:  # the equation of the first check that proves it
            equation = next(c["equation"] for c in self.checks if c["identity"] == proved_by[0])
        self.snippets[key] = tex
        self.displays.append(
            {
                "key": key,
                "macro": _macro_name(self.name, key),
                "latex": tex,
                "kind": kind,
                "equation": equation,
                "proved_by": proved_by,
                "rendering": rendering,
            }
        )
        return tex

    def latex(
        self,
        key: str,
        expr: Any,
        *,
        proved_by: str | list[str] | tuple[str, ...],
        checked: Any = None,
        subs: dict | Any = None,
        simplify=None,
        **options: Any,
    ) -> str:
        """Render a SymPy object (``sp.latex(expr, **options)``) as the macro ``key``, proved by ``proved_by``.

        With ``checked``, also assert that the rendered object *is* the checked expression: ``expr`` with
        ``subs`` applied (a dict for ``.subs``, or a function) minus ``checked`` simplifies to 0. For an
        equation (``sp.Eq``) ``checked`` is the pair (left side, right side).
        """
        if isinstance(expr, str):
            raise TypeError(f"{self.name}: {key!r} is raw LaTeX; use statement() (bound to checks) or definition()")
        labels = self._proved_by(key, proved_by)
        rendering = "rendered from SymPy"
        if checked is not None:
            replace = subs if callable(subs) else (lambda e: e.subs(subs or {}))
            pairs = (
                zip((expr.lhs, expr.rhs), checked, strict=True) if isinstance(expr, sp.Equality) else [(expr, checked)]
            )
            for shown, target in pairs:
                zero, diff = _difference(_explicit(replace(shown)), _explicit(target), simplify)
                if not zero:
                    raise IdentityFailed(
                        f"{self.name}: the display {key!r} is not the checked expression: the difference is {diff}"
                    )
            rendering = "rendered from SymPy; equals the checked expression"
        return self._display(key, sp.latex(expr, **options), "rendered", labels, rendering)

    def statement(self, key: str, tex: str, *, proved_by: str | list[str] | tuple[str, ...]) -> str:
        """Store raw LaTeX of a statement SymPy cannot print in the paper's notation, bound to the checks that
        prove it (``proved_by``: labels recorded before; an unknown label raises)."""
        return self._display(key, tex, "statement", self._proved_by(key, proved_by), "raw LaTeX")

    def definition(self, key: str, tex: str, equation: str) -> str:
        """Store raw LaTeX of a definition (of ``equation``): nothing proves it, and the certificate says so."""
        return self._display(key, tex, "definition", [], "raw LaTeX", equation)

    def write(self, certificate: Path, tex: Path) -> None:
        """Write the JSON certificate and the LaTeX macros (one ``\\newcommand`` per snippet)."""
        if not self.checks:
            raise IdentityFailed(f"{self.name}: no identity was checked")
        certificate.parent.mkdir(parents=True, exist_ok=True)
        tex.parent.mkdir(parents=True, exist_ok=True)
        record = {
            "notebook": self.name,
            "sympy_version": sp.__version__,
            "identities": self.checks,
            "displays": self.displays,
        }
        certificate.write_text(json.dumps(record, indent=2) + "\n")
        lines = [f"% Generated by derivations/{self.name}.ipynb (SymPy {sp.__version__}); do not edit."]
        lines += [f"\\newcommand{{\\{_macro_name(self.name, k)}}}{{{v}}}" for k, v in self.snippets.items()]
        tex.write_text("\n".join(lines) + "\n")
