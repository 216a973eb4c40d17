"""Provenance stamped into every record: code version, library versions, machine, time."""

import datetime as dt
import platform
import subprocess
import sys
from collections.abc import Iterable
from pathlib import PurePosixPath
from typing import Any

from common.paths import ROOT


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


# What source_sha256 covers (see is_source): the library, the workflow's scripts and the GPU tools. At a commit
# before the scripts moved into folders (a97e0ba and older) these patterns match the same files as the old ones.
SOURCES = ("kaplinskiy/**/*.py", "workflow/scripts/**/*.py", "workflow/gpu_tools/*.py")
_SOURCE_TREES = ("kaplinskiy", "workflow/scripts")  # every .py file below these
_SOURCE_FOLDERS = ("workflow/gpu_tools",)  # the .py files directly in these


def is_source(name: str) -> bool:
    """Whether a path relative to the repository is one that :data:`SOURCES` matches."""
    path = PurePosixPath(name)
    in_tree = any(path.is_relative_to(tree) for tree in _SOURCE_TREES)
    return path.suffix == ".py" and (in_tree or path.parent.as_posix() in _SOURCE_FOLDERS)


def digest_of(files: Iterable[tuple[str, bytes]]) -> str:
    """SHA-256 over ``(path relative to the repository, contents)`` pairs, in path order."""
    import hashlib

    digest = hashlib.sha256()
    for name, data in sorted(files, key=lambda f: PurePosixPath(f[0])):
        digest.update(name.encode() + b"\0" + data + b"\0")
    return digest.hexdigest()


def source_digest() -> str:
    """SHA-256 over the library's and the workflow scripts' Python sources (paths and contents, sorted): names
    the code even where ``.git`` is absent or stale (a copy of the working tree on another machine)."""
    paths = [p for pattern in SOURCES for p in ROOT.glob(pattern)]
    return digest_of((p.relative_to(ROOT).as_posix(), p.read_bytes()) for p in paths)


def commit_digest(commit: str) -> str:
    """:func:`source_digest` of the sources committed at ``commit`` (from ``git archive``, not the working tree)."""
    import io
    import tarfile

    tar = subprocess.run(
        ["git", "archive", "--format=tar", commit, "--", "kaplinskiy", "workflow"],
        cwd=ROOT,
        capture_output=True,
        check=True,
        timeout=60,
    ).stdout
    with tarfile.open(fileobj=io.BytesIO(tar)) as archive:
        files = [
            (m.name, archive.extractfile(m).read()) for m in archive.getmembers() if m.isfile() and is_source(m.name)
        ]
    return digest_of(files)


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
