"""Every SymPy notebook in derivations/ executes headless and writes its certificate; a broken
identity makes its notebook fail."""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "derivations").glob("*.ipynb"))

pytestmark = pytest.mark.slow


def execute(nb: nbformat.NotebookNode, out: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Run ``nb`` from the repository root with its outputs redirected to ``out``."""
    monkeypatch.setenv("DERIVATIONS_OUT", str(out))
    NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(ROOT)}}).execute()


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_proves_its_identities(path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    execute(nbformat.read(path, as_version=4), tmp_path, monkeypatch)
    cert = json.loads((tmp_path / f"{path.stem}.json").read_text())
    assert cert["notebook"] == path.stem
    assert cert["identities"] and all(c["status"] in {"proved", "checked numerically"} for c in cert["identities"])
    assert (tmp_path / f"eq_{path.stem}.tex").read_text().count(r"\newcommand") >= 1


def test_flipping_a_sign_in_eq2_fails_the_notebook(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    nb = nbformat.read(ROOT / "derivations" / "taylor_forgetting.ipynb", as_version=4)
    correct = "expansion = quadratic(w) - eta * (gA_quad.T * gB)[0]"
    cells = [c for c in nb.cells if correct in c.source]
    assert len(cells) == 1, "the eq. 2 line this test mutates has moved; update the test"
    cells[0].source = cells[0].source.replace(correct, correct.replace("- eta", "+ eta"))
    with pytest.raises(CellExecutionError, match="IdentityFailed"):
        execute(nb, tmp_path, monkeypatch)
    assert not (tmp_path / "taylor_forgetting.json").exists()
