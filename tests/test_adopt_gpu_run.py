"""Records of a GPU run are stamped with the commit whose sources made them, or refused."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from adopt_gpu_run import adopt
from common.provenance import ROOT, SOURCES, commit_digest, digest_of, is_source, source_digest

_in_git = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True).returncode == 0
pytestmark = pytest.mark.skipif(not _in_git, reason="needs a git checkout (a fresh clone has one)")


def test_the_committed_digest_covers_the_same_files_as_the_working_tree_digest() -> None:
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    globbed = {p.relative_to(ROOT).as_posix() for pattern in SOURCES for p in ROOT.glob(pattern)}
    assert {f for f in tracked if is_source(f)} == {f for f in globbed if f in tracked}
    assert is_source("kaplinskiy/kaplinskii_propoi/beam.py") and is_source("workflow/scripts/common/provenance.py")
    assert is_source("workflow/gpu_tools/host_split.py") and not is_source("workflow/gpu_tools/step_time_gpu_run.sh")
    assert not is_source("workflow/gpu_tools/nested/x.py") and not is_source("tests/test_x.py")


def test_digests_depend_on_paths_and_contents_not_their_order() -> None:
    files = [("b/x.py", b"1"), ("a/y.py", b"2")]
    assert digest_of(files) == digest_of(files[::-1])
    assert digest_of(files) != digest_of([("b/x.py", b"1"), ("a/y.py", b"3")])
    assert digest_of(files) != digest_of([("b/z.py", b"1"), ("a/y.py", b"2")])
    assert len(source_digest()) == 64


def run_dir(tmp_path: Path, digest: str) -> Path:
    run = tmp_path / "run"
    run.mkdir()
    prov = {"git_commit": "0" * 40, "git_dirty": True, "source_sha256": digest}
    targets = [{"row": "HybridAdamW(fused) layer-wise update", "ratio": 1.2, "limit": 1.3, "met": True}]
    row = "HybridAdamW(fused) layer-wise update"
    record = {"ratios": {row: 1.2}, "ratio_spread": {row: [1.18, 1.22]}, "targets": targets, "provenance": prov}
    (run / "h100.json").write_text(json.dumps(record))
    swept = record | {"ratios": {row: 1.1}, "ratio_spread": {row: [1.08, 1.12]}}
    (run / "h100_swept_blocks.json").write_text(json.dumps(swept))
    (run / "h100_tests.log").write_text("1 passed\n")
    return run


def test_a_run_is_stamped_with_the_commit_of_its_sources(tmp_path) -> None:
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True)
    run, dest = run_dir(tmp_path, commit_digest("HEAD")), tmp_path / "records"
    lines = adopt(run, "h100", dest, search=5)
    record = json.loads((dest / "h100.json").read_text())
    assert record["provenance"]["code_commit"] == head.stdout.strip()
    assert "device machine" in record["provenance"]["code_commit_how"]  # its git_commit was another
    assert (dest / "h100_tests.log").read_text() == "1 passed\n" and (dest / "h100_swept_blocks.json").exists()
    assert any("met" in line for line in lines) and any("swept blocks faster" in line for line in lines)


def test_a_run_of_uncommitted_code_is_refused_and_nothing_is_written(tmp_path) -> None:
    run, dest = run_dir(tmp_path, "f" * 64), tmp_path / "records"
    with pytest.raises(ValueError, match="uncommitted code"):
        adopt(run, "h100", dest, search=3)
    assert not dest.exists()
    with pytest.raises(ValueError, match="no record"):
        adopt(run, "h200", dest, search=3)


def test_runs_whose_rounds_overlap_keep_the_defaults() -> None:
    from adopt_gpu_run import faster

    row = "HybridAdamW(fused) layer-wise update"
    default = {"ratios": {row: 1.20}, "ratio_spread": {row: [1.10, 1.30]}}
    assert faster(default, {"ratios": {row: 1.15}, "ratio_spread": {row: [1.12, 1.25]}}, row).startswith("within")
    assert faster(default, {"ratios": {row: 1.40}, "ratio_spread": {row: [1.35, 1.45]}}, row) == "defaults faster"
    assert faster({"ratios": {row: 1.2}}, {"ratios": {row: 1.0}}, row) == "swept blocks faster"  # 5% without spread


def test_the_summary_names_rows_that_failed() -> None:
    from adopt_gpu_run import summary

    record = {"targets": [], "ratios": {}, "failed_rows": {"dense projection alone": "RuntimeError: boom"}}
    assert summary({"h100.json": record}, "h100") == ["h100.json: FAILED dense projection alone: RuntimeError: boom"]


def test_a_record_keeps_its_lists_of_numbers_on_one_line() -> None:
    from common.records import record_json

    record = {"ratios": {"a": 1.5}, "rounds": [1.0, 2.5, None], "nested": [[1, 2], {"k": ["x"]}], "empty": {}}
    text = record_json(record)
    assert json.loads(text) == record
    assert '  "rounds": [1.0, 2.5, null],' in text.splitlines() and "    [1, 2]," in text.splitlines()
    for path in (ROOT / "workflow/records/step_time").glob("*.json"):
        assert record_json(json.loads(path.read_text())) == path.read_text(), path.name
