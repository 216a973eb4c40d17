"""The grouped Triton kernels of a dense memory compute what the per-tensor BLAS path computes (eq. 11).

Runs on CUDA, or on the CPU under Triton's interpreter; skipped where Triton is not installed (CI installs the
CPU torch wheel alone). The set-up is shared: tests/triton_kernels.py.
"""

from __future__ import annotations

import pytest
import torch
from triton_kernels import DEVICE, requires_kernels

import kaplinskiy._kernels.dense as dense_kernel
from kaplinskiy import DenseMemory

pytestmark = requires_kernels
SHAPES = [(7, 5), (300,), (3, 3, 2), (1,), (64, 33)]  # odd sizes: masks at every block's edge


@pytest.fixture(autouse=True)
def _small_blocks(monkeypatch):
    """Blocks of 64 entries, so that the tensors above span several blocks each (and the interpreter is quick)."""
    monkeypatch.setattr(dense_kernel, "_BLOCK", 64)


def memories(dtype: torch.dtype = torch.float32, r: int = 5) -> tuple[DenseMemory, DenseMemory, list[torch.Tensor]]:
    """The kernels' memory and BLAS's, with the same random orthonormal basis of ``r`` directions."""
    params = [torch.randn(s, device=DEVICE, dtype=dtype) for s in SHAPES]
    kernel, blas = DenseMemory(params), DenseMemory(params)
    kernel._backend, blas._backend = "triton", "torch"
    n = kernel.numel
    basis = torch.linalg.qr(torch.randn(n, r, device=DEVICE, dtype=torch.float64))[0].float()
    for m in (kernel, blas):
        m.load_state_dict({"basis": basis, "n_tasks": 1, "n_dropped": 0})
    return kernel, blas, params


def close(a: list[torch.Tensor], b: list[torch.Tensor], tol: float) -> None:
    for x, y in zip(a, b, strict=True):
        torch.testing.assert_close(x.float(), y.float(), rtol=tol, atol=tol)


@pytest.mark.parametrize("r", [1, 5, 17])
def test_project_matches_blas(r: int) -> None:
    kernel, blas, params = memories(r=r)
    g = [torch.randn_like(p) for p in params]
    h = [t.clone() for t in g]
    close(kernel.coefficients(g), blas.coefficients(h), 1e-5)
    kernel.project_(g)
    blas.project_(h)
    close(g, h, 1e-5)
    assert blas.residual(g) < 1e-5


def test_restore_projects_a_step_without_a_copy() -> None:
    kernel, blas, params = memories()
    w0 = [torch.randn_like(p) for p in params]
    step = [torch.randn_like(p) for p in params]
    expected = [s.clone() for s in step]
    blas.project_(expected)
    w = [a + s for a, s in zip(w0, step, strict=True)]
    kernel.restore_(w, kernel.coefficients(w0))
    close(w, [a + s for a, s in zip(w0, expected, strict=True)], 1e-5)


def test_a_tensor_left_out_would_be_caught() -> None:
    """The check has teeth: a gradient the kernel did not touch keeps its component along the memory."""
    kernel, blas, params = memories()
    g = [torch.randn_like(p) for p in params]
    kept = g[2].clone()
    kernel.project_(g)
    assert blas.residual(g) < 1e-5
    g[2] = kept
    assert blas.residual(g) > 1e-3


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_tensors(dtype: torch.dtype) -> None:
    kernel, blas, params = memories(dtype)
    g = [torch.randn_like(p) for p in params]
    h = [t.clone() for t in g]
    kernel.project_(g)
    blas.project_(h)
    close(g, h, 3e-2)


def test_auto_uses_the_kernels_on_cuda_only() -> None:
    kernel, _, params = memories()
    auto = DenseMemory(params)
    auto.load_state_dict(kernel.state_dict())
    assert (auto._grouped(params) is not None) == (DEVICE.type == "cuda")


def test_fresh_tensors_of_the_same_sizes_reuse_the_block_list_and_get_their_own_addresses() -> None:
    kernel, blas, params = memories()
    for _ in range(2):  # e.g. gradients reallocated every step
        g = [torch.randn_like(p) for p in params]
        h = [t.clone() for t in g]
        blocks = kernel._plan.blocks if kernel._plan is not None else None
        kernel.project_(g)
        blas.project_(h)
        close(g, h, 1e-5)
    assert kernel._plan.blocks is blocks


def test_a_plan_keeps_no_tensor_it_projected_alive() -> None:
    """Plans are keyed on addresses: one that held a gradient would stop the next one reusing its memory."""
    import gc
    import weakref

    kernel, _, params = memories()
    g = [torch.randn_like(p) for p in params]
    kernel.project_(g)
    refs = [weakref.ref(t) for t in g]
    del g
    gc.collect()
    assert kernel._plan is not None and all(r() is None for r in refs)


def test_tensors_of_another_dtype_at_the_same_addresses_get_their_own_plan() -> None:
    """A freed block reused for tensors of another dtype (the caching allocator does it) must not be read
    through the old plan, which would take bfloat16 data for float32 and write past the tensors."""
    kernel, blas, params = memories()
    storage = [torch.randn(p.numel(), device=DEVICE, dtype=torch.float32) for p in params]
    wide = [s.view(p.shape) for s, p in zip(storage, params, strict=True)]
    kernel.coefficients(wide)
    narrow = [s.view(torch.bfloat16)[: p.numel()].view(p.shape) for s, p in zip(storage, params, strict=True)]
    assert all(a.data_ptr() == b.data_ptr() for a, b in zip(wide, narrow, strict=True))
    for t in narrow:
        t.copy_(torch.randn(t.shape))
    close(kernel.coefficients(narrow), blas.coefficients([t.clone() for t in narrow]), 1e-2)


def test_float64_tensors_take_the_blas_path() -> None:
    kernel, blas, params = memories()
    kernel._backend = "auto"
    g = [torch.randn(p.shape, device=DEVICE, dtype=torch.float64) for p in params]
    assert kernel._grouped(g) is None
    close(kernel.coefficients(g), blas.coefficients(g), 1e-6)
