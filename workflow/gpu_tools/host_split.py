"""Where a step's host time goes: the pieces of the benchmark's guarded steps, timed on the host.

A step whose host takes longer to issue it than the device takes to run it is bound by the host, and a kernel
made faster changes nothing there. On an H100 the rows with the finite check were such steps (the check's
multi-tensor reduction cost the host more than the device's pass; workflow/records/step_time/h100_kernel_notes.md).
This script times each row's steps on the host (issue, then a synchronisation for the whole) and, inside them, the
wall time of each library piece called (the finite check, the verdict's trip to the host, the fused step's host
preparation and launch), by wrapping those functions for the run. No profiler, so the numbers are what a training
loop pays. For development: the record holds ratios only.

    python workflow/gpu_tools/host_split.py [--preset gpt2-124m] [--steps 50] ROW [ROW ...]
"""

from __future__ import annotations

import argparse
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import _repo_path  # noqa: F401  (the library and workflow/scripts on sys.path)
import torch
from step_time.rows import PRESETS, build, candidates, fused_adamw_runs

import kaplinskiy._kernels.gradient_check as gradient_check
import kaplinskiy.optim._finite_check as deferred_check
import kaplinskiy.optim._fused_adamw as hybrid_adamw_fused
from kaplinskiy import ForgettingGuard, HybridAdamW

# (owner, attribute, label): the pieces timed, each inside the one before it where it is called from there
PIECES = [
    (HybridAdamW, "step", "HybridAdamW.step"),
    (ForgettingGuard, "step", "ForgettingGuard.step"),
    (gradient_check.GradientCheck, "__call__", "  finite check (GradientCheck)"),
    (deferred_check.VerdictQueue, "push", "  verdict to the host (push)"),
    (deferred_check.VerdictQueue, "settle", "  verdicts read (settle)"),
    (hybrid_adamw_fused.FusedAdamWStep, "prepare", "  fused step: host preparation"),
    (hybrid_adamw_fused.FusedAdamWStep, "step", "  fused step: launches"),
]


@contextmanager
def timed_pieces(spent: dict[str, float], calls: dict[str, int]) -> Iterator[None]:
    """Wrap each piece of :data:`PIECES` to add its wall time and calls to ``spent`` and ``calls``; unwrapped after."""
    saved = [(owner, name, owner.__dict__[name]) for owner, name, _ in PIECES]

    def wrap(f: Callable[..., Any], label: str) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return f(*args, **kwargs)
            finally:
                spent[label] += time.perf_counter() - t0
                calls[label] += 1

        return wrapper

    try:
        for (owner, name, label), (_, _, f) in zip(PIECES, saved, strict=True):
            setattr(owner, name, wrap(f, label))
        yield
    finally:
        for owner, name, f in saved:
            setattr(owner, name, f)


def split(preset: str, k: int, device: torch.device, names: list[str], steps: int) -> str:
    """Per row: host time to issue a step, wall time per step, and the host time of each piece called."""
    s = build(preset, k, device)
    factories = candidates(s, fused_adamw_runs(s))
    unknown = [n for n in names if n not in factories]
    if unknown:
        raise SystemExit(f"Unknown rows: {unknown}; the rows here: {sorted(factories)}")
    out = []
    for name in names:
        spent: dict[str, float] = defaultdict(float)
        calls: dict[str, int] = defaultdict(int)
        with timed_pieces(spent, calls):  # before the row is built: a row may hold a bound method
            fn = factories[name]()
            for _ in range(5):
                fn()
            _sync(device)
            spent.clear()
            calls.clear()
            t0 = time.perf_counter()
            for _ in range(steps):
                fn()
            host = (time.perf_counter() - t0) / steps
            _sync(device)
            wall = (time.perf_counter() - t0) / steps
        out.append(f"## {name}: host {host * 1e3:.3f} ms/step, wall {wall * 1e3:.3f} ms/step")
        for label in (label for _, _, label in PIECES if label in spent):  # each piece after the one calling it
            out.append(f"  {label:<34} {spent[label] / steps * 1e6:8.1f} us/step ({calls[label] / steps:g} calls)")
    return "\n".join(out)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("rows", nargs="+", metavar="ROW", help="benchmark rows (bench_step_time.py's names)")
    parser.add_argument("--preset", choices=sorted(PRESETS), default=None, help="default: gpt2-124m on a GPU")
    parser.add_argument("--k", type=int, default=16)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    device = torch.device(args.device)
    preset = args.preset or ("gpt2-124m" if device.type == "cuda" else "cpu-small")
    print(split(preset, args.k, device, args.rows, args.steps))


if __name__ == "__main__":
    main()
