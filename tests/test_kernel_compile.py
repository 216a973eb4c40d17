"""The grouped kernels compile for Hopper and Ampere GPUs and move 16 bytes per access where their layout allows.

Checked without a GPU: workflow/gpu_tools/compile_kernels.py compiles each launch the memories make ahead of time
(PTX and cubin, Triton's bundled ptxas) and reads the widths of its global accesses from the PTX. It runs in a
subprocess: the compiler needs Triton with its interpreter off, which the other kernel tests turn on for this
interpreter process. Skipped where Triton is not installed.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

needs_triton = pytest.mark.skipif(
    importlib.util.find_spec("triton") is None, reason="needs Triton (its compiler, not a GPU)"
)

ROOT = Path(__file__).resolve().parents[1]
ROW_KERNELS = ("layer_rows", "adamw_layer_rows")  # the layer-wise projection, alone and fused with AdamW


def compile_report(tmp_path_factory: pytest.TempPathFactory, *args: str) -> list[dict]:
    """The script's per-launch report (name, arch, aligned, layout, dtype, ok, widths, registers, spills)."""
    out = tmp_path_factory.mktemp("compile") / "report.json"
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    script = ROOT / "workflow" / "gpu_tools" / "compile_kernels.py"
    run = subprocess.run(
        [sys.executable, str(script), *args, "--json", str(out)], env=env, capture_output=True, text=True
    )
    assert out.exists(), run.stdout[-3000:] + run.stderr[-3000:]
    kernels = json.loads(out.read_text())["kernels"]
    for k in kernels:  # JSON keys are strings: the widths in bytes back to integers
        k["widths"] = {kind: {int(b): n for b, n in c.items()} for kind, c in k.get("widths", {}).items()}
    return kernels


def test_access_widths_read_vectors_and_asynchronous_copies() -> None:
    from compile_kernels import access_widths

    ptx = """
    ld.global.v4.b32 { %r1, %r2, %r3, %r4 }, [ %rd1 + 0 ];
    @%p1 ld.global.b64 %rd2, [ %rd3 + 0 ];
    ld.global.L1::evict_last.v2.b16 { %h1, %h2 }, [ %rd4 + 0 ];
    @%p2 st.global.v4.b32 [ %rd5 + 0 ], { %r5, %r6, %r7, %r8 };
    st.global.b32 [ %rd6 + 0 ], { %r9 };
    cp.async.cg.shared.global [ %r10 + 0 ], [ %rd7 + 0 ], 0x10, %r11;
    cp.async.ca.shared.global [ %r12 + 0 ], [ %rd8 + 0 ], 0x4, %r13;
    ld.param.b64 %rd9, [kernel_param_0];
    """
    assert access_widths(ptx) == {"load": {4: 1, 8: 1, 16: 1}, "store": {4: 1, 16: 1}, "async copy": {4: 1, 16: 1}}


def test_specialisation_follows_tritons_runtime() -> None:
    """Tensors are typed pointers (divisible by 16 when aligned), ints i32/i64, 1 a constant, like Triton's JIT."""
    from compile_kernels import specialisation

    from kaplinskiy._kernels.launch import Launch

    class Kernel:
        arg_names = ("x", "y", "n", "one", "big", "odd", "BLOCK")

    x = torch.zeros(8, dtype=torch.float32)
    y = torch.zeros(9, dtype=torch.bfloat16)[1:]  # 2 bytes past an aligned address
    launch = Launch(Kernel(), (1,), (x, y, 4096, 1, 2**40, 7), {"BLOCK": 64})
    signature, constants, attrs = specialisation(launch)
    assert signature == {
        "x": "*fp32", "y": "*bf16", "n": "i32", "one": "constexpr", "big": "i64", "odd": "i32", "BLOCK": "constexpr"
    }  # fmt: skip
    assert constants == {"BLOCK": 64, "one": 1}
    assert set(attrs) == {(0,), (2,), (4,)}
    with pytest.raises(TypeError, match="Invalid launch"):
        specialisation(Launch(Kernel(), (1,), (x, y, 2.5), {}))


@pytest.fixture(scope="module")
def hopper(tmp_path_factory: pytest.TempPathFactory) -> list[dict]:
    """Every launch kind on sm_90, half-precision weights as bfloat16 (float16 takes the same code)."""
    return compile_report(tmp_path_factory, "--arch", "90", "--match", "^(?!.*fp16)")


@pytest.fixture(scope="module")
def ampere(tmp_path_factory: pytest.TempPathFactory) -> list[dict]:
    """The float32 update projection of both aligned layouts on sm_80."""
    return compile_report(tmp_path_factory, "--arch", "80", "--subset", "defaults")


@pytest.mark.slow
@needs_triton
def test_every_launch_compiles(hopper: list[dict], ampere: list[dict]) -> None:
    kinds = {(k["kernel"], k.get("layout"), k["aligned"], k["dtype"]) for k in hopper}
    assert len(hopper) >= 40 and len(kinds) >= 12 and len(ampere) >= 2
    failed = [f"sm_{k['arch']} {k['name']}: {k['error']}" for k in hopper + ampere if not k["ok"]]
    assert not failed, "\n".join(failed)


@pytest.mark.slow
@needs_triton
def test_aligned_layer_tiles_move_16_bytes_per_access(hopper: list[dict], ampere: list[dict]) -> None:
    """Row-major and HF Conv1D weights, bases padded to rows of 4 floats: every tile copied to shared memory
    and every tile written back is 16 bytes per access (4-byte accesses took 4x the instructions on the H100
    record's code, whose alignment hint never reached the pointer). The same for the fused AdamW step's kernel,
    which reads the weights, gradients and moments in the same tiles."""
    aligned = [k for k in hopper + ampere if k["kernel"] in ROW_KERNELS and k["aligned"]]
    assert {(k["kernel"], k["layout"]) for k in aligned} == {(n, layout) for n in ROW_KERNELS for layout in (1, 2)}
    for k in aligned:
        assert set(k["widths"]["async copy"]) == {16}, k["name"]
        if "coefficients" not in k["name"]:  # the modes that write the weights back
            assert 16 in k["widths"]["store"], k["name"]


@pytest.mark.slow
@needs_triton
def test_unaligned_tiles_fall_back_to_element_accesses(hopper: list[dict]) -> None:
    """The check above can fail: weights whose row length is not a multiple of 4 get element-wide accesses."""
    unaligned = [k for k in hopper if k["kernel"] in ROW_KERNELS and "unaligned" in k["name"]]
    assert unaligned and not any(k["aligned"] for k in unaligned)
    for k in unaligned:
        assert 16 not in k["widths"]["async copy"] and 16 not in k["widths"]["store"], k["name"]


@pytest.mark.slow
@needs_triton
def test_the_finite_checks_kernel_reads_4_entries_per_access(hopper: list[dict]) -> None:
    """Its one pass over every gradient: 4 entries per load where the gradients are aligned (16 bytes in
    float32), one entry per load otherwise (the launch table's own loads are 8 bytes wide; the loss, where the
    kernel checks it too, is one 4-byte load)."""
    check = {k["name"]: k for k in hopper if k["kernel"] == "block_verdict"}
    assert len(check) == 5  # float32 and bfloat16, aligned or not; aligned float32 with the loss
    for name, k in check.items():
        entry = 4 if k["dtype"] == "torch.float32" else 2
        if not name.endswith("loss"):
            assert (entry in k["widths"]["load"]) != k["aligned"], name
        if entry == 4:
            assert (16 in k["widths"]["load"]) == k["aligned"], name


@pytest.mark.slow
@needs_triton
def test_dense_kernels_stream_16_bytes_per_access(hopper: list[dict]) -> None:
    dense = [k for k in hopper if k["kernel"].startswith("dense")]
    assert len(dense) >= 8
    for k in dense:
        wide = 16 in k["widths"]["load"]
        assert wide == k["aligned"], k["name"]
        if k["kernel"] == "dense_apply" and k["dtype"] == "torch.float32":
            assert (16 in k["widths"]["store"]) == k["aligned"], k["name"]


@pytest.mark.slow
@needs_triton
def test_no_register_spills_at_the_default_rank(hopper: list[dict]) -> None:
    """Spilled registers go to local memory, traffic the projection's bandwidth floor does not count."""
    fallback = [k for k in hopper if k["kernel"] == "adamw_layer_rows" and not k["aligned"]]
    assert fallback  # the fused step's element-wise fallback holds four tiles of addresses: it may spill
    spilled = [k["name"] for k in hopper if k["spill_bytes"] and "rank 64" not in k["name"] and k not in fallback]
    assert not spilled
