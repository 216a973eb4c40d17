"""The step-time benchmark from the command line, as the GPU run uses it (step_time_gpu_run.sh): the measurement
of workflow/scripts/step_time/measure.py with its sizes and timing as options, the block sizes and cache hints of
the grouped kernels set for the run, a kernel-level profile of a few rows, and the record written as JSON.

    python workflow/gpu_tools/bench_step_time.py                      # CPU-sized GPT-like model
    python workflow/gpu_tools/bench_step_time.py --preset gpt2-124m   # on a GPU, the issue's reference size
    python workflow/gpu_tools/bench_step_time.py --out results/bench/step_time_h100.json   # also a JSON record

``--blocks`` sets the grouped layer-wise kernels' block sizes for the run, ``--no-cache-hints`` turns off the
fused kernel's L2 eviction hints, ``--blocks-from`` takes both from a sweep_layerwise_kernel.py record, and
``--rows`` keeps the rows whose names match (the reference is always timed). The record names the blocks and
hints it ran.
"""

from __future__ import annotations

import argparse
import json
import re
import time
from pathlib import Path

import _repo_path  # noqa: F401  (the library and workflow/scripts on sys.path)
import torch
from common.records import record_json
from step_time.measure import default_preset, measure, report, select, synchronize
from step_time.rows import PRESETS, build, candidates, fused_adamw_runs

import kaplinskiy._kernels.adamw_rows as adamw_rows_kernel
import kaplinskiy._kernels.layerwise as layerwise_kernel


def blocks_from_sweep(path: Path) -> tuple[list[int], bool]:
    """The best blocks and cache-hint setting of a sweep_layerwise_kernel.py ``--out`` record; ``ValueError`` if
    it names none."""
    best = json.loads(path.read_text()).get("best")
    if best is None:
        raise ValueError(f"Invalid sweep record {path}: no variant matched its references, so it names no best")
    return best["blocks"], best["cache_hints"]


def profile_rows(preset: str, k: int, device: torch.device, names: list[str], top: int = 12) -> str:
    """A kernel-level breakdown (torch.profiler) of a few rows: where a step's time goes, and whether the host
    (Python and launches) or the device is the bottleneck. For development; the record holds ratios only."""
    from torch.profiler import ProfilerActivity, profile

    s = build(preset, k, device)
    factories = candidates(s, fused_adamw_runs(s))
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    sort = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
    out = []
    for name in names:
        fn = factories[name]()
        for _ in range(3):
            fn()
        synchronize(device)
        t0 = time.perf_counter()
        for _ in range(10):
            fn()
        host = (time.perf_counter() - t0) / 10  # time to issue a step (no synchronisation inside the loop)
        synchronize(device)
        wall = (time.perf_counter() - t0) / 10
        with profile(activities=activities) as prof:
            for _ in range(5):
                fn()
            synchronize(device)
        out.append(f"## {name}: host issue {host * 1e3:.3f} ms/step, wall {wall * 1e3:.3f} ms/step")
        out.append(prof.key_averages().table(sort_by=sort, row_limit=top))
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", choices=sorted(PRESETS), default=None)
    parser.add_argument("--k", type=int, default=16, help="memory directions (dense) and basis vectors per layer")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--iters", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--bandwidth", type=float, default=None, help="bytes/s; default: measured by a copy")
    parser.add_argument("--out", type=Path, default=None, help="also write the record as JSON here")
    parser.add_argument("--profile", nargs="*", default=None, metavar="ROW", help="kernel breakdown of these rows")
    parser.add_argument("--rows", default=None, metavar="REGEX", help="time only the rows matching (and the reference)")
    blocks = parser.add_mutually_exclusive_group()
    blocks.add_argument("--blocks", default=None, metavar="BM,BK,WARPS,STAGES", help="layer-wise kernel blocks")
    blocks.add_argument("--blocks-from", type=Path, default=None, metavar="SWEEP_JSON", help="the sweep's best")
    parser.add_argument("--no-cache-hints", action="store_true", help="the fused kernel without L2 eviction hints")
    args = parser.parse_args()
    if args.k < 1:
        parser.error(f"--k must be at least 1, got {args.k}")
    try:
        if args.blocks is not None:
            layerwise_kernel.set_block_sizes([int(x) for x in args.blocks.split(",")])
        elif args.blocks_from is not None:
            blocks, hints = blocks_from_sweep(args.blocks_from)
            layerwise_kernel.set_block_sizes(blocks)
            adamw_rows_kernel.set_cache_hints(hints and not args.no_cache_hints)  # the explicit flag wins
            defaults = layerwise_kernel.block_sizes() == layerwise_kernel.DEFAULT_BLOCKS
            if defaults and adamw_rows_kernel.cache_hints():
                print(f"{args.blocks_from}: the sweep's best are the defaults; nothing more to measure (no record)")
                return
        if args.no_cache_hints:
            adamw_rows_kernel.set_cache_hints(False)
        if args.rows is not None:  # the row names on a tiny model: a typo stops before the large model is built
            select(candidates(build("tiny", 1, torch.device(args.device)), True), args.rows)
    except (ValueError, OSError, re.error) as error:
        parser.error(str(error))
    device = torch.device(args.device)
    preset = args.preset or default_preset(device)
    if args.profile is not None:
        print(profile_rows(preset, args.k, device, args.profile))
        return
    record = measure(preset, args.k, device, args.warmup, args.iters, args.repeats, args.bandwidth, args.rows)
    print(report(record))
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(record_json(record))


if __name__ == "__main__":
    main()
