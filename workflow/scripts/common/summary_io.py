"""Reading the JSON a rule gets and writing a summary that names what it was made from."""

import json
from pathlib import Path
from typing import Any


def read_json(path: Path) -> Any:
    """The JSON in ``path``."""
    return json.loads(path.read_text())


def write_summary(
    out: Path, benchmark: str, sources: list[Path], body: dict[str, Any], **references: Path
) -> dict[str, Any]:
    """Write ``body`` to ``out`` under the benchmark's name, the summaries it was compared with (``references``,
    by role) and the records it summarises (``sources``); return what was written."""
    summary = {
        "benchmark": benchmark,
        **{role: str(path) for role, path in references.items()},
        "sources": [str(p) for p in sources],
        **body,
    }
    out.write_text(json.dumps(summary, indent=1) + "\n")
    return summary
