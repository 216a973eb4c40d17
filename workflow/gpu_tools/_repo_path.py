"""Puts the library (the repository's root) and the workflow's helpers (workflow/scripts: the step-time rows and
measurement, provenance) on ``sys.path``, so that each tool here runs as ``python workflow/gpu_tools/<tool>.py``
from the repository's root without an install. Imported first by every tool."""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
for folder in (ROOT / "workflow" / "scripts", ROOT):
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))
