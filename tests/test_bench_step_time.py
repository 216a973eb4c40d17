"""The step-time micro-benchmark runs on a tiny model and reports a ratio for every optimizer (the measurement:
workflow/scripts/step_time/; its command line: workflow/gpu_tools/bench_step_time.py)."""

from __future__ import annotations

import math

import pytest
import torch
from step_time.measure import run
from step_time.rows import build


def test_benchmark_reports_finite_ratios_against_the_adamw_reference() -> None:
    torch.set_default_dtype(torch.float32)
    measured = run("tiny", 4, torch.device("cpu"), warmup=1, iters=1, repeats=3, bandwidth=None)
    rows = measured.rows
    names = [name for name, _ in rows]
    assert names[0].startswith("AdamW") and rows[0][1] == 1.0
    assert any("layer-wise" in n for n in names) and names[-1].startswith("dense projection / bandwidth")
    assert all(math.isfinite(r) and r > 0 for _, r in rows)
    assert all(lo <= r <= hi for name, r in rows for lo, hi in [measured.spread[name]])
    assert all(len(ts) == 3 for ts in measured.samples.values()) and measured.bandwidth["bytes_per_s"] > 0
    assert measured.layerwise_backend.startswith("torch") and measured.dense_backend.startswith("torch")


def test_ratios_are_taken_within_a_round() -> None:
    """A round where the machine was twice as slow for every row leaves the ratios as they were (the median of
    per-row medians would mix rounds)."""
    from step_time.measure import median, ratio_rows

    samples = {"ref": [1.0, 2.0, 2.0], "row": [1.5, 3.0, 3.0]}
    assert ratio_rows(samples, "ref")["row"] == [1.5, 1.5, 1.5]
    assert median([3.0, 1.0, 2.0]) == 2.0 and median([1.0, 2.0]) == 1.5


def test_a_given_bandwidth_is_recorded_as_given() -> None:
    measured = run("tiny", 2, torch.device("cpu"), warmup=0, iters=1, repeats=1, bandwidth=1e9, rows="dense")
    assert measured.bandwidth["bytes_per_s"] == 1e9 and measured.bandwidth["source"].startswith("given")


def test_benchmark_memories_have_the_requested_rank() -> None:
    torch.set_default_dtype(torch.float32)
    s = build("tiny", 3, torch.device("cpu"))
    assert s.dense.rank == 3
    assert all((U.numel() if U.ndim == 1 else U.shape[1]) == 3 for U in s.layerwise.bases)


def test_record_holds_ratios_targets_and_provenance(tmp_path, monkeypatch, capsys) -> None:
    import json
    import sys

    from bench_step_time import main
    from step_time.measure import TARGETS
    from step_time.rows import FUSED, FUSED_DEVICE, FUSED_UNCHECKED

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
    from step_time.rows import layerwise_twin

    torch.set_default_dtype(torch.float32)
    s = build("tiny", 2, torch.device("cpu"))
    params, memory = layerwise_twin(s)
    assert all(
        p is not q and torch.equal(p, q) and torch.equal(p.grad, q.grad) for p, q in zip(params, s.params, strict=True)
    )
    assert all(torch.equal(a, b) for a, b in zip(memory.bases, s.layerwise.bases, strict=True))
    assert all(a is b for a, b in zip(memory.params, params, strict=True))


def test_fused_rows_join_where_the_grouped_kernel_runs(monkeypatch) -> None:
    import step_time.measure as measure
    import step_time.rows as step_time_rows

    torch.set_default_dtype(torch.float32)
    s = build("tiny", 2, torch.device("cpu"))
    assert step_time_rows.FUSED not in step_time_rows.candidates(s, True)
    monkeypatch.setattr(step_time_rows, "grouped_kernel_available", lambda device: True)
    rows = step_time_rows.candidates(s, True)
    fused = {step_time_rows.FUSED, step_time_rows.FUSED_DEVICE, step_time_rows.FUSED_UNCHECKED}
    assert fused <= set(rows) and fused <= set(measure.TARGETS)


def _main(monkeypatch, *extra: str) -> None:
    import sys

    from bench_step_time import main

    torch.set_default_dtype(torch.float32)
    argv = ["bench_step_time.py", "--preset", "tiny", "--k", "2", "--warmup", "0", "--iters", "1", "--repeats", "1"]
    monkeypatch.setattr(sys, "argv", [*argv, *extra])
    main()


@pytest.fixture
def default_blocks():
    import kaplinskiy._kernels.adamw_rows as adamw_rows_kernel
    import kaplinskiy._kernels.layerwise as layerwise_kernel

    yield
    layerwise_kernel.set_block_sizes(layerwise_kernel.DEFAULT_BLOCKS)
    adamw_rows_kernel.set_cache_hints(True)


def test_rows_and_blocks_of_a_second_run_are_recorded(tmp_path, monkeypatch, default_blocks) -> None:
    import json

    out = tmp_path / "record.json"
    _main(monkeypatch, "--rows", "layer-wise update", "--blocks", "32,128,8,2", "--out", str(out))
    record = json.loads(out.read_text())
    names = list(record["ratios"])
    assert names[0].startswith("AdamW") and len(names) > 2
    assert all("layer-wise update" in n for n in names[1:]) and "dense projection alone" not in names
    assert record["layerwise_blocks"] == {"rows": 32, "cols": 128, "warps": 8, "stages": 2}
    assert record["fused_cache_hints"] is True
    assert record["rows_selected"] == "layer-wise update"


def test_blocks_from_a_sweep(tmp_path, monkeypatch, capsys, default_blocks) -> None:
    import json

    from kaplinskiy._kernels.layerwise import DEFAULT_BLOCKS

    sweep, out = tmp_path / "sweep.json", tmp_path / "record.json"
    sweep.write_text(json.dumps({"best": {"blocks": list(DEFAULT_BLOCKS), "cache_hints": True}}))
    _main(monkeypatch, "--blocks-from", str(sweep), "--out", str(out))
    assert "nothing more to measure" in capsys.readouterr().out and not out.exists()
    sweep.write_text(json.dumps({"best": {"blocks": list(DEFAULT_BLOCKS), "cache_hints": False}}))
    _main(monkeypatch, "--blocks-from", str(sweep), "--rows", "^SGD", "--out", str(out))
    record = json.loads(out.read_text())
    assert list(record["layerwise_blocks"].values()) == list(DEFAULT_BLOCKS) and len(record["ratios"]) == 2
    assert record["fused_cache_hints"] is False
    sweep.write_text(json.dumps({"best": {"blocks": list(DEFAULT_BLOCKS), "cache_hints": True}}))
    _main(monkeypatch, "--blocks-from", str(sweep), "--no-cache-hints", "--rows", "^SGD", "--out", str(out))
    assert json.loads(out.read_text())["fused_cache_hints"] is False  # the explicit flag wins, and it measures


@pytest.mark.parametrize(
    "extra",
    [
        ["--rows", "no such row"],
        ["--rows", "("],
        ["--blocks", "16,64"],
        ["--blocks", "a,b,c,d"],
        ["--blocks", "16,64,4,3", "--blocks-from", "x.json"],
        ["--blocks-from", "missing.json"],
    ],
)
def test_bad_options_stop_with_a_usage_error(monkeypatch, tmp_path, extra, default_blocks) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as stop:
        _main(monkeypatch, *extra)
    assert stop.value.code == 2


def test_a_sweep_without_a_best_is_refused(tmp_path) -> None:
    import json

    from bench_step_time import blocks_from_sweep

    path = tmp_path / "sweep.json"
    path.write_text(json.dumps({"best": None, "variants": []}))
    with pytest.raises(ValueError, match="no variant matched"):
        blocks_from_sweep(path)


def test_the_gpu_run_script_parses_and_names_existing_tests() -> None:
    import re
    import subprocess
    from pathlib import Path

    script = Path(__file__).parents[1] / "workflow" / "gpu_tools" / "step_time_gpu_run.sh"
    subprocess.run(["bash", "-n", str(script)], check=True)
    named = re.findall(r"tests/\S+\.py", script.read_text())
    assert len(named) >= 10 and all((script.parents[2] / t).is_file() for t in named)


def test_a_row_that_fails_is_reported_and_the_others_measured(monkeypatch, capsys) -> None:
    """One row raising (a kernel that does not compile, say) leaves the run and the other rows standing, and the
    record and the printed table name it with its error; the reference failing stops the run."""
    import step_time.measure as bench
    from step_time.measure import measure, report

    torch.set_default_dtype(torch.float32)
    real = bench.candidates

    def broken(row: str):
        def rows(s, fused_ok):
            out = real(s, fused_ok)

            def fails():
                raise RuntimeError("no kernel image for this device")

            out[row] = lambda: fails
            return out

        return rows

    monkeypatch.setattr(bench, "candidates", broken("dense projection alone"))
    record = measure("tiny", 2, torch.device("cpu"), warmup=0, iters=1, repeats=1, rows="layer-wise|dense")
    assert record["failed_rows"] == {"dense projection alone": "RuntimeError: no kernel image for this device"}
    assert "dense projection alone" not in record["ratios"] and "layer-wise projection alone" in record["ratios"]
    assert "FAILED dense projection alone: RuntimeError" in report(record)
    assert "no kernel image" in capsys.readouterr().err  # the traceback, for the run's log
    monkeypatch.setattr(bench, "candidates", lambda s, fused_ok: {"AdamW (fused, reference)": lambda: 1})
    with pytest.raises(TypeError):
        measure("tiny", 2, torch.device("cpu"), warmup=0, iters=1, repeats=1)


def test_the_recent_optimizers_rows_name_their_newton_schulz_dtype() -> None:
    """Muon, LionMuon and SoftSignum are timed alone and guarded; the Muon family's Newton-Schulz runs in float32
    on a CPU (bfloat16 products are slow there) and in bfloat16 on a GPU, and the rows' names say which."""
    from step_time.rows import newton_schulz_dtype

    torch.set_default_dtype(torch.float32)
    measured = run("tiny", 2, torch.device("cpu"), warmup=1, iters=1, repeats=1, bandwidth=None, rows="Muon|Soft")
    names = [name for name, _ in measured.rows]
    assert not measured.failed and len(names) == 7  # the reference and six rows
    assert "Guard(LionMuon (P = 2, NS in float32) + AdamW) layer-wise update" in names
    assert all(math.isfinite(r) and r > 0 for _, r in measured.rows)
    assert newton_schulz_dtype(torch.device("cuda")) == torch.bfloat16
