"""A run's record: its results stamped with :func:`~provenance.provenance`, written as one JSON file."""

import json
from pathlib import Path
from typing import Any

from common.provenance import provenance


def record_json(record: dict[str, Any]) -> str:
    """``record`` as JSON indented by two spaces, except that a list of numbers or strings stays on one line (a
    step-time record's rounds would otherwise take a line per number); ``json.loads`` gives ``record`` back."""
    return _dumped(record, 0) + "\n"


def _dumped(value: Any, level: int) -> str:
    pad = "  " * level
    if isinstance(value, dict) and value:
        items = [f"{pad}  {json.dumps(k)}: {_dumped(v, level + 1)}" for k, v in value.items()]
        return "{\n" + ",\n".join(items) + f"\n{pad}}}"
    if isinstance(value, list) and any(isinstance(v, (dict, list)) for v in value):
        items = [f"{pad}  {_dumped(v, level + 1)}" for v in value]
        return "[\n" + ",\n".join(items) + f"\n{pad}]"
    return json.dumps(value)


def write_record(out: Path, record: dict[str, Any]) -> dict[str, Any]:
    """Add ``provenance`` to ``record`` (after its own keys), write it to ``out`` (making its folder), return it."""
    record = {**record, "provenance": provenance()}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=1) + "\n")
    return record
