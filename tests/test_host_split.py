"""workflow/gpu_tools/host_split.py: each row's host time per step and the host time of the library pieces its steps
call, with the pieces unwrapped afterwards."""

from __future__ import annotations

import re

import pytest
import torch
from host_split import PIECES, split

from kaplinskiy import ForgettingGuard

GUARD = "Guard(AdamW fused) layer-wise update, Q^T w kept"


def test_a_guarded_row_names_its_step_and_its_finite_check() -> None:
    step = ForgettingGuard.__dict__["step"]
    text = split("tiny", 2, torch.device("cpu"), [GUARD, "AdamW (fused, reference)"], steps=2)
    lines = text.splitlines()
    assert re.fullmatch(rf"## {re.escape(GUARD)}: host [0-9.]+ ms/step, wall [0-9.]+ ms/step", lines[0])
    assert lines[1].startswith("  ForgettingGuard.step") and "(1 calls)" in lines[1]
    assert lines[2].startswith("    finite check (GradientCheck)")  # inside the step, listed after it
    assert lines[3].startswith("## AdamW (fused, reference)") and len(lines) == 4  # no library piece in plain AdamW
    assert ForgettingGuard.__dict__["step"] is step
    assert all(owner.__dict__[name].__name__ != "wrapper" for owner, name, _ in PIECES)


def test_an_unknown_row_is_refused_with_the_rows_there() -> None:
    with pytest.raises(SystemExit, match="Unknown rows: \\['no such row'\\]"):
        split("tiny", 2, torch.device("cpu"), ["no such row"], steps=1)


def test_the_gpu_runs_split_stage_names_rows_the_benchmark_has_where_the_kernel_runs(monkeypatch) -> None:
    import shlex
    from pathlib import Path

    import step_time.rows as step_time_rows

    script = (Path(__file__).parents[1] / "workflow" / "gpu_tools" / "step_time_gpu_run.sh").read_text()
    call = script[script.index("python3 workflow/gpu_tools/host_split.py") : script.index('> "$out/${name}_host_split')]
    rows = [w for w in shlex.split(call.replace("\\\n", " ")) if w[0].isupper()]
    torch.set_default_dtype(torch.float32)
    monkeypatch.setattr(step_time_rows, "grouped_kernel_available", lambda device: True)
    named = step_time_rows.candidates(step_time_rows.build("tiny", 2, torch.device("cpu")), True)
    assert len(rows) == 6 and set(rows) <= set(named)
