"""The block-size sweep names as best the fastest variant whose kernels match their references."""

from __future__ import annotations

import triton_kernels  # sets TRITON_INTERPRET before Triton's import, or skips without Triton)
from sweep_layerwise_kernel import STEP_TOLERANCE, TOLERANCE, best_variant


def variant(blocks: list[int], kernel_ms: float | None, err: float = 1e-6, step_err: float = 1e-7) -> dict:
    fused = {"kernel_ms": kernel_ms, "relative_error": step_err, "cache_hints": blocks[0] == 16}
    fused = {"line": "FAILED"} if kernel_ms is None else fused
    return {"blocks": blocks, "max_error": err, "fused": fused}


def test_the_fastest_matching_variant_wins() -> None:
    variants = [
        variant([16, 64, 4, 3], 1.0),
        variant([16, 128, 4, 3], 0.9),
        variant([32, 64, 4, 3], 0.5, err=10 * TOLERANCE),  # faster, but its projection is wrong
        variant([32, 128, 4, 3], 0.4, step_err=10 * STEP_TOLERANCE),  # faster, but its step is wrong
        variant([64, 64, 4, 3], None),  # failed to compile or run
    ]
    assert best_variant(variants) == {"blocks": [16, 128, 4, 3], "cache_hints": True}


def test_no_best_when_nothing_matches() -> None:
    assert best_variant([variant([16, 64, 4, 3], 1.0, step_err=1.0), variant([16, 128, 4, 3], None)]) is None


def test_the_fused_step_is_checked_against_the_foreach_step() -> None:
    """The sweep's check of a variant's fused step: small for the kernel's step, and it has teeth."""
    import torch
    from step_time.rows import build
    from sweep_layerwise_kernel import adamw_reference_step, fused_step_error

    torch.set_default_dtype(torch.float32)
    s = build("tiny", 2, triton_kernels.DEVICE)
    expected = adamw_reference_step(s)
    opt, err = fused_step_error(s, expected, backend="triton")
    assert opt._fused.plan is not None and err < STEP_TOLERANCE / 10
    _, err = fused_step_error(s, [1.01 * t for t in expected], backend="triton")
    assert err > STEP_TOLERANCE


def test_a_sweep_checks_times_and_names_the_best(monkeypatch, capsys, tmp_path) -> None:
    """The sweep end to end on the tiny model (natively on CUDA; under the interpreter, with wall times, on a
    CPU), with a variant that cannot run: it is reported and the others go on."""
    import json

    import torch
    from sweep_layerwise_kernel import sweep

    import kaplinskiy._kernels.layerwise as layerwise_kernel
    import kaplinskiy.memory.layerwise.projection as layerwise_projection

    torch.set_default_dtype(torch.float32)
    monkeypatch.setattr(layerwise_projection, "grouped_kernel_available", lambda device, interpreted=False: True)
    real = layerwise_kernel.set_block_sizes

    def refuse_one(blocks):  # a variant whose launch fails, as one that does not fit a GPU's resources would
        real(blocks)
        if tuple(blocks) == (64, 16, 1, 1):
            raise RuntimeError("out of resources")

    monkeypatch.setattr(layerwise_kernel, "set_block_sizes", refuse_one)
    variants = [tuple(layerwise_kernel.DEFAULT_BLOCKS), (64, 16, 1, 1), (32, 32, 2, 2)]
    record = sweep("tiny", triton_kernels.DEVICE, variants, out=tmp_path / "sweep.json")
    assert json.loads((tmp_path / "sweep.json").read_text()) == json.loads(json.dumps(record))
    out = capsys.readouterr().out
    assert "FAILED" in out and "fused AdamW + projection kernel" in out
    ok = [v for v in record["variants"] if "failed" not in v]
    assert len(ok) == 2 and len(record["variants"]) == 3
    assert all(v["max_error"] < TOLERANCE and v["fused"]["relative_error"] < STEP_TOLERANCE for v in ok)
    # both sides of the kernel/AdamW ratio are timed alike: graph replays on CUDA, wall times on a CPU
    timing = "graph replay" if triton_kernels.DEVICE.type == "cuda" else "wall time"
    assert all(v["fused"]["adamw_timing"] == timing for v in ok)
    assert record["best"]["blocks"] in ([16, 64, 4, 3], [32, 32, 2, 2]) and isinstance(
        record["best"]["cache_hints"], bool
    )
    assert layerwise_kernel.block_sizes() == layerwise_kernel.DEFAULT_BLOCKS
