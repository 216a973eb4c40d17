"""Every path the workflow scripts use, in one place (like showyourwork's paths.py)."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
RESULTS = ROOT / "results"
PAPER = ROOT / "paper"
FIGURES = PAPER / "figures"
GENERATED = PAPER / "generated"


def repository_path(file: str | Path) -> str:
    """``file`` relative to the repository, as generated files name the script that wrote them."""
    return Path(file).resolve().relative_to(ROOT).as_posix()
