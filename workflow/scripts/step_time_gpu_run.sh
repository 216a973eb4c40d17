#!/usr/bin/env bash
# The step-time run on a GPU machine (workflow/records/step_time/README.md), from the repository root:
#
#     bash workflow/scripts/step_time_gpu_run.sh [OUT_DIR [NAME]]
#
# OUT_DIR defaults to $OUT (the device tool's folder) or "."; NAME (default h100) prefixes every file. In order of
# what matters most if the run is cut short: the CUDA paths' tests, the benchmark with the default block sizes,
# the sweep of the layer-wise kernels' block sizes, and, when the sweep's best differs from the defaults, the
# benchmark again with the sweep's best. Each stage runs even if the one before it failed.
set -u
out=${1:-${OUT:-.}}
name=${2:-h100}
preset=${PRESET:-gpt2-124m}  # a smaller one (tiny) for a dry run on a CPU
mkdir -p "$out"
export PYTHONPATH=.
stage() { echo "== $(date -u +%H:%M:%S) $*"; }

stage "tests -> $out/${name}_tests.log"
python3 -m pytest -q -rA tests/test_deferred_check.py tests/test_layerwise_kernel.py tests/test_dense_kernel.py \
    tests/test_forgetting_guard.py tests/test_hybrid_adamw_fused.py tests/test_hybrid_adamw.py \
    tests/test_memory_layerwise.py tests/test_memory_dense.py tests/test_low_precision.py \
    tests/test_kernel_compile.py tests/test_block_sizes.py tests/test_sweep_layerwise_kernel.py \
    > "$out/${name}_tests.log" 2>&1
tail -n 1 "$out/${name}_tests.log"

stage "benchmark, default blocks -> $out/$name.json"
python3 workflow/scripts/bench_step_time.py --preset "$preset" --repeats 7 --out "$out/$name.json" \
    > "$out/${name}_bench.txt" 2>&1
grep -iE "^target|Error" "$out/${name}_bench.txt"

stage "sweep -> $out/${name}_kernel_sweep.json"
python3 workflow/scripts/sweep_layerwise_kernel.py --preset "$preset" --out "$out/${name}_kernel_sweep.json" \
    > "$out/${name}_kernel_sweep.txt" 2>&1
grep -iE "^best|Error" "$out/${name}_kernel_sweep.txt"

stage "benchmark, the sweep's best blocks -> $out/${name}_swept_blocks.json"
python3 workflow/scripts/bench_step_time.py --preset "$preset" --repeats 7 \
    --blocks-from "$out/${name}_kernel_sweep.json" --out "$out/${name}_swept_blocks.json" \
    > "$out/${name}_swept_blocks.txt" 2>&1
grep -iE "^target|nothing more|Error" "$out/${name}_swept_blocks.txt"
stage done
