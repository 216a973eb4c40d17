"""The step-time benchmark: each optimizer's step time relative to fused (or foreach) AdamW on the same model, in
the same run (the rows: :mod:`step_time.rows`). Rule step_time_local measures this machine with it; the GPU run
measures an H100 with it through workflow/gpu_tools/bench_step_time.py.

The guard's finite check waits for the device on the host; the "device check" row makes it on the device
instead (``defer_check=True``: fused AdamW skips a rejected step through ``found_inf``).

Also the dense projection against its bandwidth bound ``2 k n_params bytes / bandwidth`` (the basis is read
twice: once for ``Q^T g``, once for ``g - Q c``), with the bandwidth measured in the same run, the fastest of a
large copy and a read-only sum (or given; the record says which, and the value). Only ratios are printed:
absolute times depend on the machine and its load. A ratio is the median over rounds of the row's time over the
reference's in the same round, printed with the rounds' least and greatest; a run whose reference spreads by
more than 10% over the rounds is marked noisy.

Gradients are fixed random tensors, so a step is the optimizer's work alone (no forward or backward pass).
The rows step the same weights, each with a memory of its own, except the guards that keep ``Q^T w``
(``reuse_coefficients=True``): each steps a copy of the model that nothing else moves, as in training, so it
computes ``Q^T w`` once and then reuses it.
The record holds every ratio, the machine and code provenance, and the targets checked on this run: the
guarded (exactly projected) AdamW step with layer-wise memory <= 1.3x fused AdamW (as it is by default, with
``Q^T w`` kept, with the check made on the device, and without the check, so that each cost shows; and, where
the grouped kernel runs, ``HybridAdamW(fused=True)``, which takes the same projected step in one launch, with
its check on the host, on the device and without it), and the dense projection within 1.25x of its bandwidth
limit.
"""

from __future__ import annotations

import platform
import re
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass

import torch
from common.provenance import provenance

import kaplinskiy._kernels.adamw_rows as adamw_rows_kernel
import kaplinskiy._kernels.layerwise as layerwise_kernel
from step_time.rows import (
    FUSED,
    FUSED_DEVICE,
    FUSED_UNCHECKED,
    PRESETS,
    GPTShaped,
    build,
    candidates,
    dense_backend,
    finite_check_path,
    fused_adamw_runs,
    layerwise_backend,
)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_all(
    fns: dict[str, Callable[[], object]], device: torch.device, warmup: int, iters: int, repeats: int
) -> dict[str, list[float]]:
    """Per function, the mean time of ``iters`` calls in each of ``repeats`` rounds (seconds).

    Rounds interleave the functions (each round times every function once), so a change in the machine's
    load during the run shifts a round's times alike: ratios are taken within a round (:func:`ratio_rows`).
    """
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    samples: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            synchronize(device)
            t0 = time.perf_counter()
            for _ in range(iters):
                fn()
            synchronize(device)
            samples[name].append((time.perf_counter() - t0) / iters)
    return samples


def median(values: list[float]) -> float:
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


@dataclass
class Measured:
    """What :func:`run` measured: each row's ratio (the median over rounds of its time over the reference's in
    the same round) with the rounds' least and greatest, the raw times, the bandwidth the dense limit used, the
    paths the measured memories took, and the rows that failed their first step (name -> the error)."""

    rows: list[tuple[str, float]]
    spread: dict[str, tuple[float, float]]
    samples: dict[str, list[float]]
    bandwidth: dict[str, object]
    layerwise_backend: str
    dense_backend: str
    failed: dict[str, str]


DENSE_LIMIT = "dense projection / bandwidth limit 2*k*n*bytes/bw"


def ratio_rows(samples: dict[str, list[float]], reference: str) -> dict[str, list[float]]:
    """Per row, its time over the reference's in each round (pairs from the same round only)."""
    ref = samples[reference]
    return {name: [t / r for t, r in zip(ts, ref, strict=True)] for name, ts in samples.items()}


def run(
    preset: str,
    k: int,
    device: torch.device,
    warmup: int,
    iters: int,
    repeats: int,
    bandwidth: float | None,
    rows: str | None = None,
) -> Measured:
    """Every row's ratio to the reference (the first row); ``rows``: a regular expression, only the rows whose
    names it matches (the reference always).

    The dense projection's limit ``2 k n bytes / bandwidth`` takes ``bandwidth`` (bytes/s) when given, else the
    fastest memory traffic measured in the run, over every round: a copy (``2 n`` bytes moved) and a read-only
    reduction (``n`` bytes), since a kernel that mostly reads can go faster than a copy.
    """
    s = build(preset, k, device)
    factories = select(candidates(s, fused_adamw_runs(s)), rows)
    fns, failed = trial_steps(factories, device)
    n_bytes = max(2 * k * s.dense.numel * s.dense.basis.element_size() // 4, 2**26)
    x = torch.empty(n_bytes // 4, dtype=torch.float32, device=device).normal_()
    y = torch.empty_like(x)
    fns["copy"] = lambda: y.copy_(x)
    fns["read"] = lambda: x.sum()
    samples = time_all(fns, device, warmup, iters, repeats)
    t_copy, t_read = samples.pop("copy"), samples.pop("read")
    measured_bw = max(max(2 * n_bytes / t for t in t_copy), max(n_bytes / t for t in t_read))
    bw = bandwidth or measured_bw
    source = "given (--bandwidth)" if bandwidth else "measured: the fastest round of a copy and a read-only sum"
    reference = next(iter(samples))
    per_round = ratio_rows(samples, reference)
    if "dense projection alone" in samples:
        limit = 2 * k * s.dense.numel * s.dense.basis.element_size() / bw
        per_round[DENSE_LIMIT] = [t / limit for t in samples["dense projection alone"]]
    return Measured(
        rows=[(name, median(rs)) for name, rs in per_round.items()],
        spread={name: (min(rs), max(rs)) for name, rs in per_round.items()},
        samples=samples,
        bandwidth={"bytes_per_s": bw, "measured_bytes_per_s": measured_bw, "source": source},
        layerwise_backend=layerwise_backend(s.layerwise),
        dense_backend=dense_backend(s.dense),
        failed=failed,
    )


def trial_steps(
    factories: dict[str, Callable[[], Callable[[], object]]], device: torch.device
) -> tuple[dict[str, Callable[[], object]], dict[str, str]]:
    """Each row's step function, built and stepped once. A row that raises (a kernel that does not compile on
    this machine, memory it cannot get) is left out and reported by its error, so that one row cannot cost a
    whole run of a rare machine; the reference (the first row) must run. An error that breaks the device
    itself still stops the run."""
    fns, failed = {}, {}
    for i, (name, factory) in enumerate(factories.items()):
        try:
            fn = factory()
            fn()
            synchronize(device)
        except Exception as error:  # any failure of one row is recorded and printed, never hidden
            if i == 0:
                raise
            failed[name] = f"{type(error).__name__}: {error}"
            traceback.print_exc()
            continue
        fns[name] = fn
    return fns, failed


def select(factories: dict[str, Callable], rows: str | None) -> dict[str, Callable]:
    """The reference (the first) and the rows whose names match the regular expression ``rows`` (all: None)."""
    if rows is None:
        return factories
    pattern = re.compile(rows)
    chosen = {name: f for i, (name, f) in enumerate(factories.items()) if i == 0 or pattern.search(name)}
    if len(chosen) == 1:
        raise ValueError(f"Invalid rows: {rows!r} matches no row of {list(factories)[1:]}")
    return chosen


TARGETS = {  # row -> the ratio it must not exceed (issue 4)
    "Guard(AdamW fused) layer-wise update": 1.3,
    "Guard(AdamW fused) layer-wise update, Q^T w kept": 1.3,
    "Guard(AdamW fused) layer-wise update, Q^T w kept, device check": 1.3,
    "Guard(AdamW fused) layer-wise update, Q^T w kept, no finite check": 1.3,
    FUSED: 1.3,
    FUSED_DEVICE: 1.3,
    FUSED_UNCHECKED: 1.3,
    DENSE_LIMIT: 1.25,
}
NOISY = 0.10  # a reference whose rounds spread by more than this (relative) marks the run as disturbed


def target_checks(rows: list[tuple[str, float]]) -> list[dict[str, object]]:
    """Each target whose row was measured (a fused AdamW reference is needed for the first), met or not."""
    ratios = dict(rows)
    return [
        {"row": name, "ratio": ratios[name], "limit": limit, "met": ratios[name] <= limit}
        for name, limit in TARGETS.items()
        if name in ratios
    ]


def device_name(device: torch.device) -> str:
    """The accelerator's name, or the CPU's."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU ({platform.machine()}, {torch.get_num_threads()} threads)"


def default_preset(device: torch.device) -> str:
    """The issue's reference size on a GPU, a CPU-sized GPT-like model otherwise."""
    return "gpt2-124m" if device.type == "cuda" else "cpu-small"


def measure(
    preset: str,
    k: int,
    device: torch.device,
    warmup: int,
    iters: int,
    repeats: int,
    bandwidth: float | None = None,
    rows: str | None = None,
) -> dict[str, object]:
    """One measurement as a record: every ratio, the targets, the machine and the code's provenance."""
    measured = run(preset, k, device, warmup, iters, repeats, bandwidth, rows)
    ref = next(iter(measured.samples.values()))
    noise = (max(ref) - min(ref)) / median(ref)
    return {
        "what": "optimizer step time relative to AdamW in the same run (bench_step_time.py)",
        "preset": preset,
        "n_params": sum(p.numel() for p in GPTShaped(**PRESETS[preset]).parameters()),
        "k": k,
        "device": device.type,
        "device_name": device_name(device),
        "layerwise_backend": measured.layerwise_backend,
        "dense_backend": measured.dense_backend,
        "finite_check": finite_check_path(device),
        "layerwise_blocks": layerwise_kernel.block_sizes()._asdict(),
        "fused_cache_hints": adamw_rows_kernel.cache_hints(),
        "timing": {
            "warmup": warmup,
            "iters": iters,
            "repeats": repeats,
            "statistic": "median over rounds of the ratio to the reference in the same round",
            "reference_spread": noise,
            "noisy": noise > NOISY,
        },
        "rows_selected": rows,
        "bandwidth": measured.bandwidth,
        "ratios": dict(measured.rows),
        "failed_rows": measured.failed,
        "ratio_spread": {name: list(pair) for name, pair in measured.spread.items()},
        "samples_s": measured.samples,
        "targets": target_checks(measured.rows),
        "provenance": provenance(),
    }


def report(record: dict) -> str:
    """The printed table: one ratio per row, then the targets."""
    ratios = record["ratios"]
    width = max(len(name) for name in ratios)
    head = f"# {record['preset']}: {record['n_params'] / 1e6:.1f}M parameters, k = {record['k']}, "
    lines = [head + f"{record['device_name']}, float32; ratios only"]
    lines.append(f"# layer-wise memory: {record.get('layerwise_backend', 'torch (per-layer BLAS)')}")
    lines.append(f"# dense memory: {record.get('dense_backend', 'torch (per-tensor BLAS)')}")
    lines.append(f"# finite check: {record.get('finite_check', 'torch (multi-tensor reduction)')}")
    spread = record.get("ratio_spread", {})
    for name, ratio in ratios.items():
        low, high = spread.get(name, (ratio, ratio))
        lines.append(f"{name:<{width}}  {ratio:6.2f}x  [{low:.2f}-{high:.2f}]")
    for name, error in record.get("failed_rows", {}).items():
        lines.append(f"FAILED {name}: {error}")
    timing = record.get("timing", {})
    if timing.get("noisy"):
        lines.append(
            f"# WARNING: the reference's rounds spread by {timing['reference_spread']:.0%} (> {NOISY:.0%}): the "
            "machine was disturbed during the run; measure again before trusting these ratios"
        )
    for check in record["targets"]:
        verdict = "met" if check["met"] else "NOT met"
        lines.append(f"target: {check['row']} <= {check['limit']}x: {verdict} ({check['ratio']:.2f}x)")
    return "\n".join(lines)
