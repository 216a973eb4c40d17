"""The workflow's step-time measurement: the config's sizes, and an explicit note when the GPU preset did not fit."""

from __future__ import annotations

import json

import pytest
import step_time.run_step_time as run_step_time
import torch

CFG = {"preset": "auto", "k": 2, "warmup": 0, "iters": 1, "repeats": 1}


def test_auto_on_cpu_measures_the_cpu_preset(tmp_path) -> None:
    torch.set_default_dtype(torch.float32)
    out, log = tmp_path / "local.json", tmp_path / "local.log"
    record = run_step_time.main({**CFG, "preset": "tiny"}, torch.get_num_threads(), out, log)
    assert json.loads(out.read_text())["preset"] == "tiny" and record["preset_note"] is None
    assert "target:" in log.read_text()


def test_a_gpu_preset_that_does_not_fit_falls_back_and_says_so(tmp_path, monkeypatch) -> None:
    measured = []

    def fake_measure(preset, k, device, warmup, iters, repeats):
        measured.append(preset)
        if preset == "gpt2-124m":
            raise torch.cuda.OutOfMemoryError("CUDA out of memory")
        return {"preset": preset, "n_params": 1, "k": k, "device_name": "GPU", "ratios": {"a": 1.0}, "targets": []}

    monkeypatch.setattr(run_step_time, "measure", fake_measure)
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: None)
    out, log = tmp_path / "local.json", tmp_path / "local.log"
    record = run_step_time.main(CFG, 1, out, log, device=torch.device("cuda"))
    assert measured == ["gpt2-124m", "cpu-small"] and record["preset"] == "cpu-small"
    assert "did not fit" in record["preset_note"] and "did not fit" in log.read_text()
    with pytest.raises(torch.cuda.OutOfMemoryError):  # an explicit preset is measured or the rule fails
        run_step_time.main({**CFG, "preset": "gpt2-124m"}, 1, out, log, device=torch.device("cuda"))
