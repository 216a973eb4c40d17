"""Provenance stamped into every record: code version, library versions, machine, time."""

import datetime as dt
import platform
import subprocess
import sys
from typing import Any

from paths import ROOT


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip()


def _optional_version(module: str) -> str | None:
    try:
        return __import__(module).__version__
    except ImportError:
        return None


def source_digest() -> str:
    """SHA-256 over the library's and the workflow scripts' Python sources (paths and contents, sorted): names
    the code even where ``.git`` is absent or stale (a copy of the working tree on another machine)."""
    import hashlib

    digest = hashlib.sha256()
    for path in sorted([*ROOT.glob("kaplinskiy/**/*.py"), *ROOT.glob("workflow/scripts/*.py")]):
        digest.update(path.relative_to(ROOT).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def provenance() -> dict[str, Any]:
    """Git commit (and whether the tree had uncommitted changes), versions, platform and UTC time."""
    import numpy
    import torch

    import kaplinskiy

    status = _git("status", "--porcelain", "--untracked-files=no")
    return {
        "git_commit": _git("rev-parse", "HEAD"),
        "git_dirty": None if status is None else bool(status),
        "source_sha256": source_digest(),
        "kaplinskiy": kaplinskiy.__version__,
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "triton": _optional_version("triton"),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "torch_threads": torch.get_num_threads(),
        "created_utc": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }
