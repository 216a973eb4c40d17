"""Bring the files of a step-time GPU run (workflow/gpu_tools/step_time_gpu_run.sh) into workflow/records/step_time/.

The device machine runs a copy of the working tree whose ``.git`` may be stale, so a record's ``git_commit``
cannot be trusted there; its ``source_sha256`` (workflow/scripts/common/provenance.py) can. For every JSON record
of the run this finds the commit, among the last ``--search`` ones, whose committed sources give that digest, and
stamps it as ``code_commit`` (with how it was found); a record whose sources match no commit is refused, since it
was made from code nobody can check out. The logs and printed tables are copied as they are. Then it prints each
record's targets and, when the run measured the sweep's best blocks too, which of the two runs was faster.

    python workflow/gpu_tools/adopt_gpu_run.py RUN_DIR [--name h100] [--dest workflow/records/step_time]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

import _repo_path  # noqa: F401  (workflow/scripts on sys.path)
from common.paths import ROOT
from common.provenance import commit_digest
from common.records import record_json

RECORDS = ("{name}.json", "{name}_swept_blocks.json", "{name}_kernel_sweep.json")
TEXTS = (
    "{name}_tests.log",
    "{name}_bench.txt",
    "{name}_host_split.txt",
    "{name}_kernel_sweep.txt",
    "{name}_swept_blocks.txt",
)
FUSED_ROWS = (
    "HybridAdamW(fused) layer-wise update",
    "HybridAdamW(fused) layer-wise update, device check",
    "HybridAdamW(fused) layer-wise update, no finite check",
)


def find_commit(digest: str, search: int) -> str | None:
    """The newest of the last ``search`` commits whose sources give ``digest``, or ``None``."""
    commits = subprocess.run(
        ["git", "rev-list", f"--max-count={search}", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    return next((c for c in commits if commit_digest(c) == digest), None)


def stamp(record: dict, search: int) -> dict:
    """The record with ``provenance.code_commit`` and ``code_commit_how``; ``ValueError`` if no commit matches."""
    prov = record["provenance"]
    commit = find_commit(prov["source_sha256"], search)
    if commit is None:
        raise ValueError(
            f"no commit among the last {search} has the sources of this record (source_sha256 "
            f"{prov['source_sha256'][:12]}...): it was made from uncommitted code"
        )
    how = "source_sha256 equals the digest of this commit's library, workflow scripts and GPU tools (adopt_gpu_run.py)"
    if prov.get("git_commit") != commit or prov.get("git_dirty"):
        how += "; git_commit and git_dirty above come from the device machine's copy of .git"
    return record | {"provenance": prov | {"code_commit": commit, "code_commit_how": how}}


def summary(records: dict[str, dict], name: str) -> list[str]:
    """Each benchmark record's targets, and the fused rows of the default and swept runs side by side."""
    lines = []
    for file, record in records.items():
        for t in record.get("targets", []):
            verdict = "met" if t["met"] else "NOT met"
            lines.append(f"{file}: {t['row']} {t['ratio']:.2f}x (target {t['limit']}x, {verdict})")
        for row, error in record.get("failed_rows", {}).items():
            lines.append(f"{file}: FAILED {row}: {error}")
        if "best" in record:
            lines.append(f"{file}: the sweep's best {record['best']}")
    default, swept = records.get(f"{name}.json"), records.get(f"{name}_swept_blocks.json")
    if default is not None and swept is not None:
        for row in FUSED_ROWS:
            if row in default["ratios"] and row in swept["ratios"]:
                a, b = default["ratios"][row], swept["ratios"][row]
                lines.append(f"{row}: defaults {a:.2f}x, swept {b:.2f}x -> {faster(default, swept, row)}")
    return lines


def faster(default: dict, swept: dict, row: str) -> str:
    """Which of two runs' ratios (each to fused AdamW in its own run) is faster, only where their rounds do not
    overlap (each run's least and greatest ratio over its rounds; 5% either way for a record without them):
    the two come from separate runs, and a difference within their spread is noise."""

    def bounds(record: dict) -> tuple[float, float]:
        r = record["ratios"][row]
        return tuple(record.get("ratio_spread", {}).get(row, (0.95 * r, 1.05 * r)))

    (a_lo, a_hi), (b_lo, b_hi) = bounds(default), bounds(swept)
    if b_hi < a_lo:
        return "swept blocks faster"
    if a_hi < b_lo:
        return "defaults faster"
    return "within the runs' spread: keep the defaults"


def adopt(run: Path, name: str, dest: Path, search: int) -> list[str]:
    """Stamp and copy the run's files into ``dest``; returns the summary lines. Nothing is written unless every
    record found its commit."""
    records = {}
    for pattern in RECORDS:
        path = run / pattern.format(name=name)
        if path.exists():
            records[path.name] = stamp(json.loads(path.read_text()), search)
    if not records:
        raise ValueError(f"no record of a run named {name!r} in {run}")
    dest.mkdir(parents=True, exist_ok=True)
    for file, record in records.items():
        (dest / file).write_text(record_json(record))
    for pattern in TEXTS:
        path = run / pattern.format(name=name)
        if path.exists():
            shutil.copyfile(path, dest / path.name)
    return summary(records, name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path, help="the folder the GPU run wrote to ($OUT)")
    parser.add_argument("--name", default="h100", help="the run's file prefix")
    parser.add_argument("--dest", type=Path, default=ROOT / "workflow" / "records" / "step_time")
    parser.add_argument("--search", type=int, default=200, help="how many recent commits to look through")
    args = parser.parse_args()
    try:
        lines = adopt(args.run, args.name, args.dest, args.search)
    except (ValueError, OSError, KeyError) as error:
        sys.exit(f"adopt_gpu_run.py: {error}")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
