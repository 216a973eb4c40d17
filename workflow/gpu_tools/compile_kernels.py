"""Compile every grouped-kernel launch the library makes, ahead of time for CUDA GPUs, on a machine without one.

The launch plans of :mod:`kaplinskiy._kernels.layerwise` and :mod:`kaplinskiy._kernels.dense` are built from small
CPU tensors that have the properties a plan keys on (layout, alignment, dtype, rank); each plan's
:class:`~kaplinskiy._kernels.launch.Launch` is compiled by Triton for each architecture asked for (PTX, then a
cubin with Triton's bundled ptxas), specialised as Triton's runtime specialises it (pointers and integers
divisible by 16, integers equal to 1). From the PTX it reports the width of every global access, so that a
kernel meant to move 16 bytes per access can be checked to do so, and from ptxas the registers and spills.
Compilation needs Triton but no GPU; Triton's CPU interpreter must be off (``TRITON_INTERPRET`` unset).

    python workflow/gpu_tools/compile_kernels.py [--arch 90 80] [--json report.json]

tests/test_kernel_compile.py runs it; on a GPU machine it shows the same for the Triton installed there.
"""

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import _repo_path  # noqa: F401  (the library on sys.path)
import torch

import kaplinskiy._kernels.adamw_rows as adamw_rows_kernel
from kaplinskiy._kernels.adamw_rows import AdamWRowPlan
from kaplinskiy._kernels.dense import DensePlan
from kaplinskiy._kernels.gradient_check import verdict_launch
from kaplinskiy._kernels.launch import Launch, TensorBlocks
from kaplinskiy._kernels.layerwise import RowLayer, RowPlan, padded_bases

_TYPES = {torch.float32: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16", torch.int64: "i64", torch.int32: "i32"}
# the guard's and the memories' calls of RowPlan.run: coefficients, project_, restore_ (+ skip), subtract_ (+ skip)
ROW_MODES = {
    "coefficients": {"compute": True, "store": True},
    "project_": {"compute": True, "apply": True},
    "restore_": {"compute": True, "reference": True, "apply": True},
    "restore_ skip": {"compute": True, "reference": True, "apply": True, "skip": True},
    "subtract_": {"compute": False, "reference": True, "apply": True},
    "subtract_ skip": {"compute": False, "reference": True, "apply": True, "skip": True},
}


def row_layer(rows: int, cols: int, rank: int, dtype: torch.dtype, *, hf_conv1d: bool, bias: bool) -> RowLayer:
    """A layer as the grouped kernel sees it (weights stored ``cols x rows`` for HF Conv1D), bases padded as
    :class:`~kaplinskiy.LayerwiseMemory` pads them."""
    w = torch.zeros((cols, rows) if hf_conv1d else (rows, cols), dtype=dtype)
    b = torch.zeros(rows, dtype=dtype) if bias else None
    U = torch.zeros(cols + int(bias), rank, dtype=torch.float32)
    return RowLayer(w, b, *padded_bases(U), hf_conv1d, rank)


def row_plans() -> dict[str, RowPlan]:
    """One plan per kind of launch: each layout, aligned or not, each dtype, the largest rank block."""
    plans = {}
    for dtype in (torch.float32, torch.bfloat16, torch.float16):
        name = _TYPES[dtype]
        linear = [
            row_layer(48, 64, 16, dtype, hf_conv1d=False, bias=True),
            row_layer(40, 96, 16, dtype, hf_conv1d=False, bias=False),
        ]
        conv1d = [row_layer(48, 64, 16, dtype, hf_conv1d=True, bias=True)]
        plans[f"row-major {name}"] = RowPlan(linear)
        plans[f"HF Conv1D {name}"] = RowPlan(conv1d)
        plans[f"mixed {name}"] = RowPlan(linear + conv1d)
        plans[f"row-major unaligned {name}"] = RowPlan([row_layer(48, 37, 16, dtype, hf_conv1d=False, bias=True)])
    plans["row-major fp32 rank 64"] = RowPlan([row_layer(48, 64, 64, torch.float32, hf_conv1d=False, bias=True)])
    return plans


def row_launch(plan: RowPlan, mode: str) -> Launch:
    """The launch ``plan.run`` makes in ``mode`` (see ``ROW_MODES``)."""
    kw = dict(ROW_MODES[mode])
    reference = torch.zeros(plan.numel, dtype=torch.float32) if kw.pop("reference", False) else None
    skip = torch.zeros((), dtype=torch.float32) if kw.pop("skip", False) else None
    out = torch.zeros(plan.numel if kw.get("store") else 1, dtype=torch.float32)
    return plan.launch(out, reference=reference, skip=skip, **kw)


def adamw_launch(plan: RowPlan, skip: bool = False, hints: bool = True) -> Launch:
    """The launch ``HybridAdamW(fused=True)`` makes over ``plan``'s layers: gradients and moments like the weights,
    float32 step counts; ``skip``: with the device flag of ``defer_check=True``; ``hints``: with its L2 eviction
    hints (the default) or without."""
    fused = AdamWRowPlan(plan, [(lay.w, lay.b) for lay in plan.layers])
    for p in fused.tensors:
        p.grad = torch.zeros_like(p)
    moments = [(torch.zeros_like(p), torch.zeros_like(p), torch.ones(())) for p in fused.tensors]
    hyper = [(1e-3, 0.01, 0.9, 0.999, 1e-8)] * len(fused.tensors)
    adamw_rows_kernel.set_cache_hints(hints)
    try:
        return fused.launch(moments, hyper, torch.zeros(()) if skip else None)
    finally:
        adamw_rows_kernel.set_cache_hints(True)


def dense_launches() -> dict[str, Launch]:
    """The dense memory's two kernels on aligned and unaligned tensors of each dtype."""
    from kaplinskiy._kernels.dense_triton import dense_apply, dense_partial_dots

    out = {}
    for dtype in (torch.float32, torch.bfloat16, torch.float16):
        for aligned, sizes in ((True, (4096, 640)), (False, (4096, 37))):
            tensors = [torch.zeros(s, dtype=dtype) for s in sizes]
            plan = DensePlan(tensors, torch.zeros(16, sum(sizes), dtype=torch.float32))
            tag = f"{_TYPES[dtype]}{'' if aligned else ' unaligned'}"
            out[f"dense_partial_dots {tag}"] = plan.launch(dense_partial_dots, torch.zeros(8, 16, dtype=torch.float32))
            out[f"dense_apply {tag}"] = plan.launch(dense_apply, torch.zeros(16, dtype=torch.float32))
    return out


def verdict_launches() -> dict[str, Launch]:
    """The finite check's kernel on aligned and unaligned gradients of each dtype (and with a loss, in float32)."""
    out = {}
    for dtype in (torch.float32, torch.bfloat16, torch.float16):
        for aligned, sizes in ((True, (4096, 640)), (False, (4096, 37))):
            cut = TensorBlocks([torch.zeros(s, dtype=dtype) for s in sizes], 4096)
            like, verdict = torch.zeros(1, dtype=dtype), torch.zeros(2, dtype=torch.float32)
            tag = f"{_TYPES[dtype]}{'' if aligned else ' unaligned'}"
            out[f"block_verdict {tag}"] = verdict_launch(cut, verdict, None, like)
            if dtype == torch.float32 and aligned:
                out[f"block_verdict {tag} loss"] = verdict_launch(cut, verdict, torch.zeros(()), like)
    return out


def specialisation(launch: Launch) -> tuple[dict[str, str], dict[str, object], dict[tuple[int, ...], list]]:
    """Triton's signature, constants and attributes for ``launch``'s arguments, as its runtime would make them."""
    names = launch.kernel.arg_names
    signature, constants, attrs = {}, dict(launch.constants), {}
    for i, (name, arg) in enumerate(zip(names, launch.args, strict=False)):
        if isinstance(arg, torch.Tensor):
            signature[name] = "*" + _TYPES[arg.dtype]
            if arg.data_ptr() % 16 == 0:
                attrs[(i,)] = [["tt.divisibility", 16]]
        elif isinstance(arg, bool) or not isinstance(arg, int):
            raise TypeError(f"Invalid launch: argument {name} is {type(arg).__name__}")
        elif arg == 1:
            signature[name], constants[name] = "constexpr", 1
        else:
            signature[name] = "i32" if -(2**31) <= arg < 2**31 else "i64"
            if arg % 16 == 0:
                attrs[(i,)] = [["tt.divisibility", 16]]
    for name in launch.constants:
        signature[name] = "constexpr"
    return signature, constants, attrs


_ACCESS = re.compile(r"\b(ld|st)\.global((?:\.[A-Za-z0-9_:]+)*)")
_ASYNC = re.compile(
    r"\bcp\.async\.c[ag]\.shared\.global(?:\.[A-Za-z0-9_:]+)*\s*\[[^\]]*\],\s*\[[^\]]*\],\s*(0x[0-9a-f]+|\d+)"
)


def access_widths(ptx: str) -> dict[str, dict[int, int]]:
    """Bytes per global load, store and asynchronous copy to shared memory, counted over the PTX's instructions."""
    widths: dict[str, Counter] = {"load": Counter(), "store": Counter(), "async copy": Counter()}
    for op, suffixes in _ACCESS.findall(ptx):
        parts = suffixes.split(".")
        lanes = next((int(p[1:]) for p in parts if re.fullmatch(r"v\d", p)), 1)
        bits = next((int(p[1:]) for p in parts if re.fullmatch(r"[bfsu]\d+", p)), None)
        if bits is not None:
            widths["load" if op == "ld" else "store"][lanes * bits // 8] += 1
    for size in _ASYNC.findall(ptx):
        widths["async copy"][int(size, 0)] += 1
    return {kind: dict(sorted(c.items())) for kind, c in widths.items()}


def ptxas_usage(ptx: str, arch: int) -> dict[str, int]:
    """Registers per thread and spilled bytes, as ptxas (Triton's bundled one) reports them."""
    from triton.backends.nvidia.compiler import get_ptxas

    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp, "kernel.ptx")
        src.write_text(ptx)
        suffix = "a" if arch >= 90 else ""
        cmd = [get_ptxas(arch).path, "-v", f"--gpu-name=sm_{arch}{suffix}", str(src), "-o", str(Path(tmp, "k.cubin"))]
        text = subprocess.run(cmd, capture_output=True, text=True, check=True).stderr
    registers = re.search(r"Used (\d+) registers", text)
    spills = [int(n) for n in re.findall(r"(\d+) bytes spill (?:stores|loads)", text)]
    return {"registers": int(registers.group(1)) if registers else -1, "spill_bytes": sum(spills)}


def compile_launch(launch: Launch, arch: int) -> dict:
    """Compile ``launch`` for ``sm_<arch>``; its access widths, resources and compile time, or the error."""
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    signature, constants, attrs = specialisation(launch)
    source = ASTSource(fn=launch.kernel, signature=signature, constexprs=constants, attrs=attrs)
    options = {"num_warps": 4, **launch.options}
    start = time.perf_counter()
    try:
        kernel = triton.compile(source, target=GPUTarget("cuda", arch, 32), options=options)
    except Exception as error:  # a compile failure is the finding: reported, not raised
        return {"ok": False, "error": f"{type(error).__name__}: {str(error)[:2000]}"}
    seconds = time.perf_counter() - start
    ptx = kernel.asm["ptx"]
    return {
        "ok": True,
        "seconds": round(seconds, 2),
        "shared_bytes": kernel.metadata.shared,
        "widths": access_widths(ptx),
        **ptxas_usage(ptx, arch),
    }


def launches(subset: str = "all") -> dict[str, tuple[Launch, dict]]:
    """Every launch to check, with what describes it: ``all``, or ``defaults`` (float32 update projection and
    fused AdamW step)."""
    out = {}
    for plan_name, plan in row_plans().items():
        modes = ROW_MODES if plan.dtype == torch.float32 else ("restore_", "project_")
        if subset == "defaults":
            modes = ("restore_",) if plan_name in ("row-major fp32", "HF Conv1D fp32") else ()
        for mode in modes:
            info = {
                "kernel": "layer_rows",
                "plan": plan_name,
                "mode": mode,
                "aligned": plan.aligned,
                "layout": plan.layout,
                "dtype": str(plan.dtype),
            }
            out[f"layer_rows {mode} [{plan_name}]"] = (row_launch(plan, mode), info)
        if subset == "all" or plan_name in ("row-major fp32", "HF Conv1D fp32"):
            every = plan.dtype == torch.float32 and subset == "all"
            for mode in ("step", "step skip", "step no hints") if every else ("step",):
                info = {"kernel": "adamw_layer_rows", "plan": plan_name, "mode": mode}
                info |= {"aligned": plan.aligned, "layout": plan.layout, "dtype": str(plan.dtype)}
                launch = adamw_launch(plan, skip=mode == "step skip", hints=mode != "step no hints")
                out[f"adamw_layer_rows {mode} [{plan_name}]"] = (launch, info)
    if subset == "all":
        for name, launch in (dense_launches() | verdict_launches()).items():
            info = {
                "kernel": name.split()[0],
                "aligned": launch.constants["ALIGNED"],
                "dtype": str(launch.args[-1].dtype),
            }
            out[name] = (launch, info)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--arch", type=int, nargs="+", default=[90], help="compute capabilities, e.g. 90 80")
    parser.add_argument("--subset", choices=("all", "defaults"), default="all")
    parser.add_argument("--match", default="", help="only the launches whose name matches this regex")
    parser.add_argument("--json", type=Path, help="write the report here")
    args = parser.parse_args()
    if os.environ.get("TRITON_INTERPRET") == "1":
        sys.exit("compile_kernels.py: unset TRITON_INTERPRET (the interpreter's kernels cannot be compiled)")
    import triton

    report = {"triton": triton.__version__, "torch": torch.__version__, "kernels": []}
    for arch in args.arch:
        for name, (launch, info) in launches(args.subset).items():
            if not re.search(args.match, name):
                continue
            result = compile_launch(launch, arch)
            report["kernels"].append({"name": name, "arch": arch, **info, **result})
            line = (
                "FAILED " + result["error"].splitlines()[0]
                if not result["ok"]
                else (
                    f"{result['seconds']:5.1f} s, {result['registers']} registers, {result['spill_bytes']} B spilled; "
                    + "; ".join(f"{k} {v}" for k, v in result["widths"].items() if v)
                )
            )
            print(f"sm_{arch} {name}: {line}", flush=True)
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))
    failed = [k["name"] for k in report["kernels"] if not k["ok"]]
    if failed:
        sys.exit(f"{len(failed)} launches failed to compile")


if __name__ == "__main__":
    main()
