"""derivations/certify.py binds every displayed equation to checks; the paper counts the checks by kind and the
certificates table shows which checks prove each displayed equation."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest
import sympy as sp

ROOT = Path(__file__).resolve().parents[1]
sys.path.append(str(ROOT / "derivations"))

from certify import AT_A_POINT, NUMERICAL, PROVED, Derivation, IdentityFailed  # noqa: E402
from paper.paper_numbers import certificate_numbers  # noqa: E402
from paper.tab_sympy_certificates import _numbers, rows  # noqa: E402

x, y = sp.symbols("x y")


def checked_derivation() -> Derivation:
    D = Derivation("toy_notebook")
    D.identity("square of a sum", "eq. 1", (x + y) ** 2, x**2 + 2 * x * y + y**2)
    D.holds("a square is nonnegative", "eq. 2", (sp.Symbol("r", real=True) ** 2).is_nonnegative)
    D.identity("at a point", "eq. 3", sp.Integer(2) + 2, 4, at_point=True)
    D.numeric("pi is about 3.14", "eq. 4", abs(3.14159 - float(sp.pi)), 1e-4)
    return D


def test_checks_are_recorded_with_their_kind() -> None:
    D = checked_derivation()
    assert [c["status"] for c in D.checks] == [PROVED, PROVED, AT_A_POINT, NUMERICAL]
    with pytest.raises(ValueError, match="used twice"):
        D.identity("square of a sum", "eq. 1", x, x)


def test_a_statement_must_name_a_check_recorded_before_it() -> None:
    D = checked_derivation()
    with pytest.raises(ValueError, match="not checked"):
        D.statement("later", r"a \le b", proved_by="a check made later")
    with pytest.raises(ValueError, match="not checked"):
        D.statement("some", r"a \le b", proved_by=["square of a sum", "no such check"])
    with pytest.raises(ValueError, match="no label"):
        D.statement("none", r"a \le b", proved_by=[])
    assert D.statement("sq", r"(x+y)^2 \ge 0", proved_by=["square of a sum", "a square is nonnegative"])
    with pytest.raises(ValueError, match="stored twice"):
        D.statement("sq", "again", proved_by="square of a sum")


def test_latex_renders_sympy_only_and_checks_that_it_is_the_checked_expression() -> None:
    D = checked_derivation()
    with pytest.raises(TypeError, match="raw LaTeX"):
        D.latex("raw", r"x^2", proved_by="square of a sum")
    with pytest.raises(ValueError, match="not checked"):
        D.latex("unbound", x**2, proved_by="nothing")
    a, b = sp.symbols("a b")  # display symbols, replaced by the checked ones
    assert (
        D.latex(
            "sum",
            sp.Eq((a + b) ** 2, a**2 + 2 * a * b + b**2),
            proved_by="square of a sum",
            checked=((x + y) ** 2, (x + y) ** 2),
            subs={a: x, b: y},
        )
        == "\\left(a + b\\right)^{2} = a^{2} + 2 a b + b^{2}"
    )
    with pytest.raises(IdentityFailed, match="not the checked expression"):
        D.latex("wrong", (a - b) ** 2, proved_by="square of a sum", checked=(x + y) ** 2, subs={a: x, b: y})
    v = sp.MatrixSymbol("v", 2, 1)  # a 1x1 matrix expression is compared as a scalar
    D.latex("norm", v.T * v, proved_by="a square is nonnegative", checked=x**2 + y**2, subs={v: sp.Matrix([x, y])})


def test_the_certificate_records_each_display_and_its_proof(tmp_path: Path) -> None:
    D = checked_derivation()
    D.statement("sq", r"(x+y)^2 = x^2 + 2xy + y^2", proved_by="square of a sum")
    D.latex("pos", sp.Symbol("r") ** 2, proved_by=["a square is nonnegative", "at a point"])
    D.definition("pi", r"\pi = 3.14\ldots", equation="eq. 4")
    D.write(tmp_path / "toy.json", tmp_path / "eq_toy.tex")
    cert = json.loads((tmp_path / "toy.json").read_text())
    shown = {d["key"]: d for d in cert["displays"]}
    assert shown["sq"]["kind"] == "statement" and shown["sq"]["proved_by"] == ["square of a sum"]
    assert shown["sq"]["macro"] == "DerivToyNotebookSq" and shown["sq"]["equation"] == "eq. 1"
    assert shown["pos"]["kind"] == "rendered" and shown["pos"]["equation"] == "eq. 2"
    assert shown["pi"]["kind"] == "definition" and shown["pi"]["proved_by"] == []
    assert r"\newcommand{\DerivToyNotebookSq}{(x+y)^2 = x^2 + 2xy + y^2}" in (tmp_path / "eq_toy.tex").read_text()

    table = rows([cert]).splitlines()
    assert table[0].startswith(r"\texttt{toy\_notebook} & eq. 1 & 1. square of a sum & proved")
    assert r"shown (raw LaTeX): $\DerivToyNotebookSq$ & by 1 \\" in table[4]
    assert r"shown (from SymPy): $\DerivToyNotebookPos$ & by 2, 3 \\" in table[5]
    assert table[6].endswith(r"& definition \\")
    assert _numbers([9, 1, 2, 5, 6, 7, 10, 11, 12, 13]) == "1, 2, 5--7, 9--13"


def test_the_paper_counts_symbolic_proofs_apart_from_point_and_numerical_checks(tmp_path: Path) -> None:
    D = checked_derivation()
    D.write(tmp_path / "toy.json", tmp_path / "eq_toy.tex")
    cert = json.loads((tmp_path / "toy.json").read_text())
    other = {"notebook": "other", "sympy_version": cert["sympy_version"], "identities": cert["identities"][:1]}
    lines = certificate_numbers([cert, other], ["a.json", "b.json"])
    values = dict(re.match(r"\\newcommand\{\\(\w+)\}\{([^}]*)\}", line).groups() for line in lines)
    assert values == {
        "SympyIdentities": "3",  # identity + holds, proved symbolically (2 + 1)
        "SympyPointChecks": "1",
        "SympyNumericChecks": "1",
        "SympyNotebooks": "2",
        "SympyVersion": sp.__version__,
    }
    other["identities"] = [{**cert["identities"][0], "status": "plausible"}]
    with pytest.raises(ValueError, match="unknown status"):
        certificate_numbers([other], ["b.json"])
