"""Development sweep of the grouped layer-wise Triton kernel (kaplinskiy/layerwise_kernel.py) on a GPU.

For GPT-2 124M shapes with k = 16 basis vectors per layer, checks each variant against the per-layer BLAS
projection, then times ``project_``, ``restore_``, ``coefficients`` and ``subtract_`` as CUDA-graph replays
(device time alone, no host overhead) and in passes over the covered weights at the copy bandwidth measured in
the same run. It also checks the fused AdamW-and-projection kernel of ``HybridAdamW(fused=True)`` (the same
block sizes) against HybridAdamW's foreach step with per-layer BLAS, and times it against torch's fused AdamW on
the same covered layers (AdamW alone, the floor). The defaults of ``layerwise_kernel`` (``DEFAULT_BLOCKS``) were
chosen by such runs: workflow/records/step_time/h100_kernel_notes.md.

    python workflow/gpu_tools/sweep_layerwise_kernel.py [--out sweep.json] [--preset P] [--device D]

A variant that fails to compile or run is reported and the sweep goes on. The fused kernel is timed with its
L2 eviction hints (``adamw_rows_kernel.set_cache_hints``) on and off. ``--out`` also writes every variant's
numbers and ``best``: the blocks and hint setting whose fused kernel is fastest among the variants that match
their references (``bench_step_time.py --blocks-from`` takes it). On a CPU (a dry run) the times are one call's
wall time.
"""

import argparse
import time
from pathlib import Path

import _repo_path  # noqa: F401  (the library and workflow/scripts on sys.path)
import step_time.rows as step_time_rows
import torch
import triton.testing
from common.provenance import provenance
from common.records import record_json
from step_time.measure import device_name

import kaplinskiy._kernels.adamw_rows as adamw_rows_kernel
import kaplinskiy._kernels.layerwise as lk
from kaplinskiy import HybridAdamW

# rows, cols, warps, stages; the first is the default. v7's 16-byte accesses may move the best, so wider column
# steps and more warps are in the list too; 64-row programs, 1.4-1.9x slower than 16-row ones in the v5 sweep,
# are not.
VARIANTS = [
    lk.DEFAULT_BLOCKS,
    (16, 128, 4, 3),
    (16, 256, 4, 3),
    (16, 64, 8, 3),
    (16, 128, 8, 3),
    (32, 64, 4, 3),
    (32, 128, 8, 3),
    (16, 64, 4, 2),
    (16, 128, 4, 4),
]
TOLERANCE = 1e-4  # max |kernel - BLAS| of a projection (float32 rounding is about 1e-6 here)
STEP_TOLERANCE = 1e-3  # max |step - foreach step| / max |foreach step| of the fused step
CHECK_LR = 1e-2  # the checked steps' lr: float32 rounding of w + Delta, ulp(w) / |Delta|, stays near 1e-5


def median_ms(fn, device: torch.device | None = None) -> float:
    """Median time of ``fn`` in ms: Triton's ``do_bench`` on CUDA; on a CPU (a dry run) one call's wall time."""
    if device is not None and device.type != "cuda":  # one call: a dry run checks the flow, not the speed
        t0 = time.perf_counter()
        fn()
        return (time.perf_counter() - t0) * 1e3
    return triton.testing.do_bench(fn, warmup=30, rep=200, return_mode="median")


def device_ms(fn, device: torch.device | None = None) -> float:
    """Median time of ``fn`` replayed from a CUDA graph: the device's work alone (on a CPU: its wall time)."""
    if device is not None and device.type != "cuda":
        return median_ms(fn, device)
    fn()
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        fn()
    return median_ms(graph.replay)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=None, help="also write every variant and the best as JSON")
    parser.add_argument("--preset", choices=sorted(step_time_rows.PRESETS), default="gpt2-124m")
    parser.add_argument("--device", default="cuda")
    args = parser.parse_args()
    sweep(args.preset, torch.device(args.device), out=args.out)


def sweep(
    preset: str, device: torch.device, variants: list[tuple[int, int, int, int]] = VARIANTS, out: Path | None = None
) -> dict:
    """Every variant checked and timed (printed as it goes), and the best; a variant that fails to compile or
    run is reported and the sweep goes on. The record is written to ``out`` after every variant, so a run cut
    short keeps what it measured."""
    s = step_time_rows.build(preset, 16, device)
    mem, blas = s.layerwise, step_time_rows.memory_twin(s.layerwise, "torch")
    grads = [p.grad.clone() for p in s.params]  # timed in place: projected again and again
    original = [g.clone() for g in grads]
    expected = [g.clone() for g in grads]
    blas.project_(expected)
    covered = sum(m.weight.numel() for m in mem.layers if not isinstance(m, torch.nn.Embedding))
    x = torch.empty(2**28 if device.type == "cuda" else 2**20, device=device)
    y = torch.empty_like(x)
    bandwidth = 2 * x.numel() * 4 / (median_ms(lambda: y.copy_(x), device) * 1e-3)
    one = covered * 4 / bandwidth * 1e3
    print(f"copy bandwidth {bandwidth / 1e12:.2f} TB/s; one pass over {covered / 1e6:.1f}M weights: {one:.3f} ms")
    print(f"per-layer BLAS project_: {device_ms(lambda: blas.project_(grads), device):.3f} ms of device time")
    reference = mem.coefficients(s.params)
    fused_reference = adamw_reference_step(s)
    record = {"what": "sweep_layerwise_kernel.py", "preset": preset, "bandwidth_bytes_per_s": bandwidth}
    record |= {"one_pass_ms": one, "defaults": list(lk.DEFAULT_BLOCKS), "provenance": machine_provenance(device)}
    rows: list[dict] = []
    record = _write(record, rows, out)
    for blocks in map(lk.BlockSizes._make, variants):
        name = f"BM={blocks.rows:3d} BK={blocks.cols:3d} warps={blocks.warps} stages={blocks.stages}"
        try:
            lk.set_block_sizes(blocks)
            mem._plan_key = None
            g = [t.clone() for t in original]
            mem.project_(g)
            err = max(float((a - b).abs().max()) for a, b in zip(g, expected, strict=True))
            times = {
                "project_": device_ms(lambda: mem.project_(grads), device),
                "restore_": device_ms(lambda: mem.restore_(s.params, reference), device),
                "coefficients": device_ms(lambda: mem.coefficients(s.params), device),
                "subtract_": device_ms(lambda: mem.subtract_(grads, reference), device),
            }
        except Exception as error:
            print(f"{name}: projection kernel FAILED: {failure(error)}")
            rows.append({"blocks": list(blocks), "failed": f"{type(error).__name__}: {error}"[:2000]})
            record = _write(record, rows, out)
            continue
        cells = ", ".join(f"{k} {t:.3f} ms ({t / one:.1f} passes)" for k, t in times.items())
        print(f"{name}: max |kernel - BLAS| {err:.1e}; {cells}")
        fused = fused_step(s, one, fused_reference)
        print(f"    {fused['line']}", flush=True)
        rows.append({"blocks": list(blocks), "max_error": err, "ms": times, "fused": fused})
        record = _write(record, rows, out)
    lk.set_block_sizes(lk.DEFAULT_BLOCKS)
    print(f"best (fastest fused kernel that matches its references): {record['best']}")
    return record


def failure(error: Exception) -> str:
    """An error in one line: its type and the first line of its message."""
    return f"{type(error).__name__}: {str(error).splitlines()[0][:200] if str(error) else ''}"


def _write(record: dict, rows: list[dict], out: Path | None) -> dict:
    """The record with the variants so far and their best, written to ``out`` (if given)."""
    record = record | {"variants": rows, "best": best_variant(rows)}
    if out is not None:
        out.write_text(record_json(record))
    return record


def machine_provenance(device: torch.device) -> dict:
    return provenance() | {"device_name": device_name(device)}


def best_variant(variants: list[dict]) -> dict | None:
    """``{"blocks", "cache_hints"}`` of the variant whose fused kernel is fastest among those whose projection
    and fused step match their references (``None`` if none does)."""
    ok = [
        v
        for v in variants
        if "failed" not in v
        and v["max_error"] <= TOLERANCE
        and "kernel_ms" in v["fused"]
        and v["fused"]["relative_error"] <= STEP_TOLERANCE
    ]
    if not ok:
        return None
    best = min(ok, key=lambda v: v["fused"]["kernel_ms"])
    return {"blocks": best["blocks"], "cache_hints": best["fused"]["cache_hints"]}


def _fused_twin(
    s: step_time_rows.Setup, backend: str = "auto", lr: float = 1e-4, **kw
) -> tuple[list[torch.Tensor], HybridAdamW]:
    params, memory = step_time_rows.layerwise_twin(s)
    if backend != "auto":
        memory = step_time_rows.memory_twin(memory, backend)
    return params, HybridAdamW(params, lr=lr, weight_decay=0.1, memory=memory, **kw)


def adamw_reference_step(s: step_time_rows.Setup) -> list[torch.Tensor]:
    """The step ``w1 - w0`` of one HybridAdamW step (lr ``CHECK_LR``) with foreach kernels and per-layer BLAS
    projection."""
    params, opt = _fused_twin(s, backend="torch", lr=CHECK_LR)
    opt.step()
    return [p.detach() - q.detach() for p, q in zip(params, s.params, strict=True)]


def fused_step(s: step_time_rows.Setup, one: float, expected: list[torch.Tensor]) -> dict:
    """The fused AdamW-and-projection step checked against the reference step ``expected``, and its kernel's
    device time on the covered layers against torch's fused AdamW on the same tensors (its capturable step,
    also replayed from a CUDA graph), in passes over the weights. A variant that fails to compile or run is
    reported and the sweep goes on."""
    try:
        return _fused_step(s, one, expected)
    except Exception as error:
        return {"line": f"fused AdamW kernel FAILED: {failure(error)}"}


def fused_step_error(
    s: step_time_rows.Setup, expected: list[torch.Tensor], backend: str = "auto"
) -> tuple[HybridAdamW, float]:
    """One ``HybridAdamW(fused=True)`` step (lr ``CHECK_LR``) on a copy of the model: the optimizer, and
    ``max |step - expected| / max |expected|``."""
    params, opt = _fused_twin(s, backend, lr=CHECK_LR, fused=True, check_finite=False)
    opt.step()
    step = [p.detach() - q.detach() for p, q in zip(params, s.params, strict=True)]
    err = max(float((a - b).abs().max()) for a, b in zip(step, expected, strict=True))
    return opt, err / max(float(b.abs().max()) for b in expected)


def _fused_step(s: step_time_rows.Setup, one: float, expected: list[torch.Tensor]) -> dict:
    opt, err = fused_step_error(s, expected)
    plan = opt._fused.plan
    group = opt.param_groups[0]
    hyper = [(group["lr"], group["weight_decay"], *group["betas"], group["eps"])] * len(plan.tensors)
    moments = [tuple(opt.state[p][k] for k in ("exp_avg", "exp_avg_sq", "step")) for p in plan.tensors]
    by_hints = {}
    for hints in (True, False):  # the launch takes the setting when it is built
        adamw_rows_kernel.set_cache_hints(hints)
        by_hints[hints] = device_ms(plan.launch(moments, hyper), s.params[0].device)
    adamw_rows_kernel.set_cache_hints(True)
    hints = min(by_hints, key=by_hints.get)
    kernel = by_hints[hints]
    covered = [p.detach().clone().requires_grad_() for p in plan.tensors]
    for p, q in zip(covered, plan.tensors, strict=True):
        p.grad = q.grad.clone()
    device = s.params[0].device
    # capturable: its step replays from a CUDA graph, so both sides of the ratio are device time alone
    reference = torch.optim.AdamW(covered, lr=1e-4, weight_decay=0.1, fused=True, capturable=device.type == "cuda")
    try:
        adamw = device_ms(reference.step, device)
        adamw_timing = "graph replay" if device.type == "cuda" else "wall time"  # as the kernel's
    except RuntimeError as error:  # a capture this torch refuses: wall time, and the record says so
        print(f"torch fused AdamW could not be captured ({failure(error)}): its wall time is used")
        adamw, adamw_timing = median_ms(reference.step, device), "wall time"
    line = (
        f"fused AdamW + projection kernel {kernel:.3f} ms ({kernel / one:.1f} passes over the covered weights; "
        f"L2 hints on {by_hints[True]:.3f} ms, off {by_hints[False]:.3f} ms); "
        f"torch fused AdamW on the same layers {adamw:.3f} ms ({adamw_timing}, {adamw / one:.1f} passes): "
        f"{kernel / adamw:.2f}x; "
        f"max |step - foreach step| / max |foreach step| {err:.1e}"
    )
    out = {"line": line, "kernel_ms": kernel, "cache_hints": hints, "hints_ms": by_hints[True]}
    out |= {"no_hints_ms": by_hints[False], "adamw_ms": adamw, "adamw_timing": adamw_timing}
    return out | {"ratio": kernel / adamw, "relative_error": err}


if __name__ == "__main__":
    main()
