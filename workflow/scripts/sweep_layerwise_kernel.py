"""Development sweep of the grouped layer-wise Triton kernel (kaplinskiy/layerwise_kernel.py) on a GPU.

For GPT-2 124M shapes with k = 16 basis vectors per layer, checks each variant against the per-layer BLAS
projection, then times ``project_``, ``restore_``, ``coefficients`` and ``subtract_`` as CUDA-graph replays
(device time alone, no host overhead) and in passes over the covered weights at the copy bandwidth measured in
the same run. It also times the fused AdamW-and-projection kernel of ``HybridAdamW(fused=True)`` (the same
block sizes) against torch's fused AdamW on the same covered layers (AdamW alone, the floor). The chosen
block sizes are the defaults of ``layerwise_kernel``; the runs that chose them are in
workflow/records/step_time/h100_kernel_notes.md.

    PYTHONPATH=. python workflow/scripts/sweep_layerwise_kernel.py
"""

import sys
from pathlib import Path

import torch
import triton.testing

sys.path.insert(0, str(Path(__file__).parent))
import bench_step_time as bench

import kaplinskiy.layerwise_kernel as lk
from kaplinskiy import HybridAdamW

# BM, BK, warps, stages; the first is the default. v7's 16-byte accesses may move the best, so wider column steps
# and more warps are in the list too.
VARIANTS = [
    (16, 64, 4, 3),
    (16, 128, 4, 3),
    (16, 256, 4, 3),
    (16, 128, 8, 3),
    (32, 64, 4, 3),
    (32, 128, 4, 3),
    (32, 128, 8, 3),
    (64, 64, 4, 3),
    (64, 128, 8, 3),
    (16, 64, 4, 2),
    (16, 128, 4, 4),
]


def median_ms(fn) -> float:
    return triton.testing.do_bench(fn, warmup=30, rep=200, return_mode="median")


def device_ms(fn) -> float:
    """Median time of ``fn`` replayed from a CUDA graph: the device's work alone."""
    fn()
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        fn()
    return median_ms(graph.replay)


def main() -> None:
    s = bench.build("gpt2-124m", 16, torch.device("cuda"))
    mem, blas = s.layerwise, bench._twin(s.layerwise, "torch")
    grads = [p.grad.clone() for p in s.params]  # timed in place: projected again and again
    original = [g.clone() for g in grads]
    expected = [g.clone() for g in grads]
    blas.project_(expected)
    covered = sum(m.weight.numel() for m in mem.layers if not isinstance(m, torch.nn.Embedding))
    x = torch.empty(2**28, device="cuda")
    y = torch.empty_like(x)
    bandwidth = 2 * x.numel() * 4 / (median_ms(lambda: y.copy_(x)) * 1e-3)
    one = covered * 4 / bandwidth * 1e3
    print(f"copy bandwidth {bandwidth / 1e12:.2f} TB/s; one pass over {covered / 1e6:.1f}M weights: {one:.3f} ms")
    print(f"per-layer BLAS project_: {device_ms(lambda: blas.project_(grads)):.3f} ms of device time")
    reference = mem.coefficients(s.params)
    for bm, bk, warps, stages in VARIANTS:
        lk._BM, lk._BK, lk._WARPS, lk._STAGES = bm, bk, warps, stages
        mem._plan_key = None
        g = [t.clone() for t in original]
        mem.project_(g)
        err = max(float((a - b).abs().max()) for a, b in zip(g, expected, strict=True))
        times = {
            "project_": device_ms(lambda: mem.project_(grads)),
            "restore_": device_ms(lambda: mem.restore_(s.params, reference)),
            "coefficients": device_ms(lambda: mem.coefficients(s.params)),
            "subtract_": device_ms(lambda: mem.subtract_(grads, reference)),
        }
        cells = ", ".join(f"{k} {t:.3f} ms ({t / one:.1f} passes)" for k, t in times.items())
        print(f"BM={bm:3d} BK={bk:3d} warps={warps} stages={stages}: max |kernel - BLAS| {err:.1e}; {cells}")
        print(f"    {fused_step(s, one)}", flush=True)


def fused_step(s: bench.Setup, one: float) -> str:
    """The fused AdamW-and-projection kernel's device time on the covered layers, against torch's fused AdamW
    on the same tensors (wall time of its step, whose device time dominates), in passes over the weights."""
    try:
        return _fused_step(s, one)
    except Exception as error:  # a variant that fails to compile or run is reported, and the sweep goes on
        return f"fused AdamW kernel FAILED: {type(error).__name__}: {str(error).splitlines()[0][:200]}"


def _fused_step(s: bench.Setup, one: float) -> str:
    params, memory = bench.layerwise_twin(s)
    opt = HybridAdamW(params, lr=1e-4, weight_decay=0.1, memory=memory, fused=True, check_finite=False)
    opt.step()
    plan = opt._fused_plan
    group = opt.param_groups[0]
    hyper = [(group["lr"], group["weight_decay"], *group["betas"], group["eps"])] * len(plan.tensors)
    moments = [tuple(opt.state[p][k] for k in ("exp_avg", "exp_avg_sq", "step")) for p in plan.tensors]
    kernel = device_ms(plan.launch(moments, hyper))
    covered = [p.detach().clone().requires_grad_() for p in plan.tensors]
    for p, q in zip(covered, plan.tensors, strict=True):
        p.grad = q.grad.clone()
    reference = torch.optim.AdamW(covered, lr=1e-4, weight_decay=0.1, fused=True)
    adamw = median_ms(reference.step)
    return (
        f"fused AdamW + projection kernel {kernel:.3f} ms ({kernel / one:.1f} passes over the covered weights); "
        f"torch fused AdamW on the same layers {adamw:.3f} ms ({adamw / one:.1f} passes): {kernel / adamw:.2f}x"
    )


if __name__ == "__main__":
    main()
