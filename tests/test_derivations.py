"""Every SymPy notebook in derivations/ executes headless and writes its certificate; a broken
identity makes its notebook fail (one mutation per notebook shows that each can fail)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

sys.path.append(str(Path(__file__).resolve().parents[1] / "derivations"))
from certify import AT_A_POINT, NUMERICAL, PROVED

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "derivations").glob("*.ipynb"))

pytestmark = pytest.mark.slow

# (notebook, a line of it, the text in that line to replace, its replacement). Each mutation breaks
# one identity the paper relies on; the notebook must then stop with IdentityFailed.
MUTATIONS = [
    pytest.param(
        "taylor_forgetting", "expansion = quadratic(w) - eta * (gA_quad.T * gB)[0]", "- eta", "+ eta", id="eq2-sign"
    ),
    pytest.param("mitigations", "ewc = L_B + lam / 2 * (dev.T * F * dev)[0]", "lam / 2", "lam", id="eq6-factor"),
    pytest.param("projection", "d = -P * g  # eq. (11)", "-P", "P", id="eq11-sign"),
    pytest.param("armijo_step", "eta_max = 2 * cbar * sigma / (L * dd)", "2 *", "4 *", id="eq13-threshold"),
    pytest.param(  # the displayed bound on the trials, one too small: not the checked N (and the search exceeds it)
        "armijo_step",
        "trials_display = sp.Max(1, 1 + sp.ceiling(sp.log(seta_max / seta0) / sp.log(sbeta)))",
        "1 + sp.ceiling",
        "sp.ceiling",
        id="eq13-trials-display",
    ),
    pytest.param("kaplinskii_propoi", "kp_step = mv + eps * stein_2d", "+ eps", "- eps", id="kp-step-sign"),
    pytest.param(  # the displayed gradient of Green's function with the wrong power: not the checked gradient
        "kaplinskii_propoi",
        "green_grad = sp.Mul(bold_x, sp.Pow(omega_n * norm_x**nn, -1, evaluate=False), evaluate=False)",
        "norm_x**nn",
        "norm_x ** (nn - 1)",
        id="kp-green-gradient-display",
    ),
    pytest.param("embedding_drift", "closed = 2 * dA", "2 * dA", "1 * dA", id="drift-second-order"),
    pytest.param(  # the displayed first-order term doubled: the numerical bound still holds, the display check fails
        "embedding_drift",
        "terms = [jn * dn, xn * dn**2, curv / 2 * (an + dn) * xn**2 * dn**2]",
        "[jn * dn,",
        "[2 * jn * dn,",
        id="drift-first-order-display",
    ),
    pytest.param(  # the drift bound without its curvature term: the second-order check alone must catch it
        "embedding_drift",
        "terms = [jn * dn, xn * dn**2, curv / 2 * (an + dn) * xn**2 * dn**2]",
        "curv / 2",
        "0 * curv",
        id="drift-bound-curvature",
    ),
]


def execute(nb: nbformat.NotebookNode, out: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Run ``nb`` from the repository root with its outputs redirected to ``out``."""
    monkeypatch.setenv("DERIVATIONS_OUT", str(out))
    NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(ROOT)}}).execute()


def mutated(name: str, line: str, old: str, new: str) -> nbformat.NotebookNode:
    """The notebook ``name`` with ``old`` replaced by ``new`` in the one cell that contains ``line``."""
    nb = nbformat.read(ROOT / "derivations" / f"{name}.ipynb", as_version=4)
    cells = [c for c in nb.cells if c.cell_type == "code" and line in c.source]
    assert len(cells) == 1, f"the line this test mutates has moved in {name}.ipynb; update MUTATIONS: {line!r}"
    assert old in line
    cells[0].source = cells[0].source.replace(line, line.replace(old, new))
    return nb


def test_every_notebook_has_a_mutation() -> None:
    assert {p.values[0] for p in MUTATIONS} == {p.stem for p in NOTEBOOKS}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_proves_its_identities(path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    execute(nbformat.read(path, as_version=4), tmp_path, monkeypatch)
    cert = json.loads((tmp_path / f"{path.stem}.json").read_text())
    assert cert["notebook"] == path.stem
    assert cert["identities"] and all(c["status"] in {PROVED, AT_A_POINT, NUMERICAL} for c in cert["identities"])
    shown = {d["key"] for d in cert["displays"]}  # every macro is a display bound to its checks (or a definition)
    assert shown and all(d["proved_by"] or d["kind"] == "definition" for d in cert["displays"])
    assert (tmp_path / f"eq_{path.stem}.tex").read_text().count(r"\newcommand") == len(shown)


@pytest.mark.parametrize(("name", "line", "old", "new"), MUTATIONS)
def test_a_broken_identity_fails_its_notebook(
    name: str, line: str, old: str, new: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(CellExecutionError, match="IdentityFailed"):
        execute(mutated(name, line, old, new), tmp_path, monkeypatch)
    assert not (tmp_path / f"{name}.json").exists()
