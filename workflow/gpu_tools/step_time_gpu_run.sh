#!/usr/bin/env bash
# The step-time run on a GPU machine (workflow/records/step_time/README.md), from the repository root:
#
#     bash workflow/gpu_tools/step_time_gpu_run.sh [OUT_DIR [NAME]]
#
# OUT_DIR defaults to $OUT (the device tool's folder) or "."; NAME (default h100) prefixes every file. Stages, in
# order of what matters most if the run is cut short: "tests" (the CUDA paths' tests), "bench" (the benchmark
# with the default block sizes), "split" (where the host's time goes in the rows with and without the finite
# check: workflow/gpu_tools/host_split.py), "sweep" (the layer-wise kernels' block sizes and the fused kernel's L2
# hints) and "swept" (the benchmark again with the sweep's best, where it differs from the defaults; it reads the
# sweep record of the same OUT_DIR). STAGES picks some (default: all five), so that a run longer than one call of
# the device tool (600 s) can be split: STAGES="tests bench split", then STAGES="sweep swept". Each stage runs even
# if the one before it failed.
set -u
out=${1:-${OUT:-.}}
name=${2:-h100}
preset=${PRESET:-gpt2-124m}  # a smaller one (tiny) for a dry run on a CPU
stages=" ${STAGES:-tests bench split sweep swept} "
mkdir -p "$out"
export PYTHONPATH=.
stage() { echo "== $(date -u +%H:%M:%S) $*"; }
wanted() { [[ "$stages" == *" $1 "* ]]; }

if wanted tests; then
    stage "tests -> $out/${name}_tests.log"
    python3 -m pytest -q -rA tests/test_deferred_check.py tests/test_layerwise_kernel.py tests/test_dense_kernel.py \
        tests/test_forgetting_guard.py tests/test_forgetting_guard_edges.py tests/test_hybrid_adamw.py \
        tests/test_hybrid_adamw_fused.py tests/test_hybrid_adamw_fused_resume.py tests/test_memory_layerwise.py \
        tests/test_memory_dense.py tests/test_low_precision.py tests/test_block_sizes.py tests/test_recent_cuda.py tests/test_gradient_check.py \
        > "$out/${name}_tests.log" 2>&1
    tail -n 1 "$out/${name}_tests.log"
fi

if wanted bench; then
    stage "benchmark, default blocks -> $out/$name.json"
    python3 workflow/gpu_tools/bench_step_time.py --preset "$preset" --repeats 7 --out "$out/$name.json" \
        > "$out/${name}_bench.txt" 2>&1
    grep -iE "^target|Error" "$out/${name}_bench.txt"
fi

if wanted split; then
    stage "host time per piece -> $out/${name}_host_split.txt"
    python3 workflow/gpu_tools/host_split.py --preset "$preset" "AdamW (fused, reference)" \
        "HybridAdamW(fused) layer-wise update, no finite check" "HybridAdamW(fused) layer-wise update" \
        "HybridAdamW(fused) layer-wise update, device check" \
        "Guard(AdamW fused) layer-wise update, Q^T w kept, no finite check" \
        "Guard(AdamW fused) layer-wise update, Q^T w kept, device check" > "$out/${name}_host_split.txt" 2>&1
    grep -E "^## |Error|Unknown rows" "$out/${name}_host_split.txt"
fi

if wanted sweep; then
    stage "sweep -> $out/${name}_kernel_sweep.json"
    python3 workflow/gpu_tools/sweep_layerwise_kernel.py --preset "$preset" --out "$out/${name}_kernel_sweep.json" \
        > "$out/${name}_kernel_sweep.txt" 2>&1
    grep -iE "^best|Error" "$out/${name}_kernel_sweep.txt"
fi

if wanted swept; then
    stage "benchmark, the sweep's best blocks -> $out/${name}_swept_blocks.json"
    python3 workflow/gpu_tools/bench_step_time.py --preset "$preset" --repeats 7 \
        --blocks-from "$out/${name}_kernel_sweep.json" --out "$out/${name}_swept_blocks.json" \
        > "$out/${name}_swept_blocks.txt" 2>&1
    grep -iE "^target|nothing more|Error" "$out/${name}_swept_blocks.txt"
fi
stage done
