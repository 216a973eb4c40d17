"""A run's record: its results stamped with :func:`~provenance.provenance`, written as one JSON file."""

import json
from pathlib import Path
from typing import Any

from common.provenance import provenance


def write_record(out: Path, record: dict[str, Any]) -> dict[str, Any]:
    """Add ``provenance`` to ``record`` (after its own keys), write it to ``out`` (making its folder), return it."""
    record = {**record, "provenance": provenance()}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=1) + "\n")
    return record
