"""The step-time micro-benchmark runs on a tiny model and reports a ratio for every optimizer."""

from __future__ import annotations

import math

import torch
from bench_step_time import build, run


def test_benchmark_reports_finite_ratios_against_the_adamw_reference() -> None:
    torch.set_default_dtype(torch.float32)
    rows = run("tiny", 4, torch.device("cpu"), warmup=1, iters=1, repeats=1, bandwidth=None)
    names = [name for name, _ in rows]
    assert names[0].startswith("AdamW") and rows[0][1] == 1.0
    assert any("layer-wise" in n for n in names) and names[-1].startswith("dense projection / bandwidth")
    assert all(math.isfinite(r) and r > 0 for _, r in rows)


def test_benchmark_memories_have_the_requested_rank() -> None:
    torch.set_default_dtype(torch.float32)
    s = build("tiny", 3, torch.device("cpu"))
    assert s.dense.rank == 3
    assert all((U.numel() if U.ndim == 1 else U.shape[1]) == 3 for U in s.layerwise.bases)


def test_record_holds_ratios_targets_and_provenance(tmp_path, monkeypatch, capsys) -> None:
    import json
    import sys

    from bench_step_time import FUSED, FUSED_DEVICE, FUSED_UNCHECKED, TARGETS, main

    torch.set_default_dtype(torch.float32)
    out = tmp_path / "bench" / "record.json"
    argv = ["bench_step_time.py", "--preset", "tiny", "--k", "2", "--warmup", "0", "--iters", "1", "--repeats", "1"]
    monkeypatch.setattr(sys, "argv", [*argv, "--out", str(out)])
    main()
    record = json.loads(out.read_text())
    assert record["preset"] == "tiny" and record["k"] == 2 and record["device"] == "cpu"
    # fused AdamW exists on CPU in torch >= 2.4; the grouped kernel of HybridAdamW(fused=True) needs CUDA
    assert {t["row"] for t in record["targets"]} == set(TARGETS) - {FUSED, FUSED_DEVICE, FUSED_UNCHECKED}
    assert all(isinstance(t["met"], bool) and t["met"] == (t["ratio"] <= t["limit"]) for t in record["targets"])
    assert record["ratios"][next(iter(record["ratios"]))] == 1.0
    assert record["provenance"]["torch"] == torch.__version__
    assert len(record["provenance"]["source_sha256"]) == 64  # names the code where .git is stale or absent
    assert "target: dense projection" in capsys.readouterr().out


def test_the_twin_has_its_own_weights_and_the_same_bases() -> None:
    from bench_step_time import layerwise_twin

    torch.set_default_dtype(torch.float32)
    s = build("tiny", 2, torch.device("cpu"))
    params, memory = layerwise_twin(s)
    assert all(
        p is not q and torch.equal(p, q) and torch.equal(p.grad, q.grad) for p, q in zip(params, s.params, strict=True)
    )
    assert all(torch.equal(a, b) for a, b in zip(memory.bases, s.layerwise.bases, strict=True))
    assert all(a is b for a, b in zip(memory.params, params, strict=True))


def test_fused_rows_join_where_the_grouped_kernel_runs(monkeypatch) -> None:
    import bench_step_time

    torch.set_default_dtype(torch.float32)
    s = build("tiny", 2, torch.device("cpu"))
    assert bench_step_time.FUSED not in bench_step_time.candidates(s, True)
    monkeypatch.setattr(bench_step_time, "grouped_kernel_available", lambda device: True)
    rows = bench_step_time.candidates(s, True)
    fused = {bench_step_time.FUSED, bench_step_time.FUSED_DEVICE, bench_step_time.FUSED_UNCHECKED}
    assert fused <= set(rows) and fused <= set(bench_step_time.TARGETS)
