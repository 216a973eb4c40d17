"""What the figure scripts share: matplotlib without a display, fonts embedded as TrueType (``pdf.fonttype`` 42),
an 8-point base font, and a save that writes the same bytes on every run (no creation or modification date)."""

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.figure import Figure

matplotlib.rcParams.update({"pdf.fonttype": 42, "ps.fonttype": 42, "font.size": 8})

__all__ = ["plt", "save"]


def save(fig: Figure, out: Path) -> None:
    """Write ``fig`` to ``out`` (making its folder) without timestamps, then close it."""
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, metadata={"CreationDate": None, "ModDate": None})
    plt.close(fig)
