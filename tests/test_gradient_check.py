"""The finite check's grouped kernel gives the verdict of the multi-tensor reduction it replaces, keeps its table
while the gradients stay where they are, and hands the gradients it does not take to that reduction.

Runs on CUDA, or on the CPU under Triton's interpreter; skipped where Triton is not installed (CI installs the
CPU torch wheel alone). The set-up is shared: tests/triton_kernels.py.
"""

from __future__ import annotations

import math
import warnings

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from triton_kernels import DEVICE, requires_kernels

import kaplinskiy._kernels.gradient_check as gradient_check
from kaplinskiy import ForgettingGuard, HybridAdamW, LayerwiseMemory, NonFiniteStepWarning
from kaplinskiy._kernels.gradient_check import GradientCheck, gradient_verdict
from kaplinskiy._kernels.launch import TensorBlocks

pytestmark = requires_kernels
BLOCK = 64  # so that the tensors below span several blocks (and the interpreter is quick)
DTYPES = [torch.float32, torch.bfloat16, torch.float16]


@pytest.fixture(autouse=True)
def _small_blocks(monkeypatch):
    monkeypatch.setattr(gradient_check, "_BLOCK", BLOCK)


def _check() -> GradientCheck:
    return GradientCheck(interpreted=True)


def _said(verdict: torch.Tensor) -> list[bool]:
    """``[non-finite, all zero]`` as read on the host."""
    assert verdict.dtype == torch.float32 and verdict.shape == (2,)
    return [bool(f) for f in verdict.tolist()]


@st.composite
def gradients(draw) -> list[torch.Tensor]:
    """A few gradients of odd sizes (an empty one too), all zero or random, with NaN, +-inf or 0 planted."""
    dtype = draw(st.sampled_from(DTYPES))
    sizes = draw(st.lists(st.integers(0, 3 * BLOCK + 5), min_size=1, max_size=4))
    seed = draw(st.integers(0, 2**16))
    zero = draw(st.booleans())
    gen = torch.Generator().manual_seed(seed)
    grads = [torch.zeros(n) if zero else torch.randn(n, generator=gen) for n in sizes]
    for value in draw(st.lists(st.sampled_from([math.nan, math.inf, -math.inf, 0.0]), max_size=2)):
        nonempty = [g for g in grads if g.numel()]
        if nonempty:
            g = nonempty[draw(st.integers(0, len(nonempty) - 1))]
            g[draw(st.integers(0, g.numel() - 1))] = value
    return [g.to(DEVICE, dtype) for g in grads]


LOSSES = [None, 1.5, math.nan, "tensor", "nan tensor", "inf tensor", "cpu nan tensor"]


def _loss(kind: str | float | None) -> torch.Tensor | float | None:
    """A loss of each kind the optimizers see: none, a number, one number on the gradients' device or the CPU."""
    if not isinstance(kind, str):
        return kind
    value = {"tensor": 0.25, "nan tensor": math.nan, "inf tensor": -math.inf, "cpu nan tensor": math.nan}[kind]
    return torch.tensor(value, device="cpu" if kind.startswith("cpu") else DEVICE, dtype=torch.float32)


@settings(max_examples=40, deadline=None)
@given(grads=gradients(), loss=st.sampled_from(LOSSES))
def test_the_kernels_verdict_equals_the_reductions(grads: list[torch.Tensor], loss: str | float | None) -> None:
    value = _loss(loss)
    bad_loss = value is not None and not math.isfinite(float(value))
    bad = bad_loss or any(not torch.isfinite(g.float()).all() for g in grads)
    expected = [bad, not bad and all(bool((g == 0).all()) for g in grads)]
    check = _check()
    assert _said(check(value, grads)) == _said(gradient_verdict(value, grads)) == expected
    assert (check._cut is not None) == any(g.numel() for g in grads)  # the kernel decided wherever it could


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("where", [0, BLOCK - 1, BLOCK, 2 * BLOCK + 2])  # a block's first and last entry
@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_one_non_finite_entry_anywhere_is_found(dtype: torch.dtype, where: int, value: float) -> None:
    grads = [torch.zeros(5, device=DEVICE, dtype=dtype), torch.zeros(2 * BLOCK + 3, device=DEVICE, dtype=dtype)]
    check = _check()
    grads[1][where] = value
    assert _said(check(None, grads)) == [True, False]
    grads[1][where] = 1e-30 if dtype == torch.float32 else 1e-3  # tiny but nonzero
    assert _said(check(None, grads)) == [False, False]
    grads[1][where] = 0.0
    assert _said(check(None, grads)) == [False, True]
    assert _said(check(torch.tensor(math.nan, device=DEVICE, dtype=dtype), grads)) == [True, False]
    assert check._cut is not None


def test_the_table_is_kept_while_the_gradients_stay_and_rebuilt_when_they_move() -> None:
    check = _check()
    grads = [torch.randn(3 * BLOCK + 1, device=DEVICE, dtype=torch.float32), torch.randn(7, device=DEVICE)]
    grads[1] = grads[1].float()
    check(None, grads)
    cut = check._cut
    assert cut is not None and cut.table[:, 0].tolist() == [g.data_ptr() for g in grads]
    check(None, grads)
    assert check._cut is cut  # same addresses: same table
    moved = [grads[0], grads[1].clone()]
    moved[1][3] = math.nan
    assert _said(check(None, moved)) == [True, False]  # a stale table would read the old, finite tensor
    assert check._cut is not cut and check._cut.blocks is cut.blocks  # same sizes: the block list is reused


@pytest.mark.parametrize(
    "grads",
    [
        [torch.randn(4, 6, dtype=torch.float32).t()],  # not contiguous
        [torch.randn(4, dtype=torch.float32), torch.randn(4, dtype=torch.float64)],  # two dtypes
        [torch.randn(4, dtype=torch.float64)],  # a dtype the kernel does not read
        [torch.sparse_coo_tensor([[0, 2]], [1.0, math.inf], (5,), dtype=torch.float32, check_invariants=True)],
        [torch.randn(3, dtype=torch.complex64)],
        [],
        [torch.zeros(0, dtype=torch.float32)],
    ],
)
def test_gradients_the_kernel_does_not_take_go_to_the_reduction(grads: list[torch.Tensor]) -> None:
    grads = [g.to(DEVICE) for g in grads]
    check = _check()
    loss = torch.tensor(math.inf, device=DEVICE)
    for value in (None, loss):
        assert _said(check(value, grads)) == _said(gradient_verdict(value, grads))
    assert check._cut is None


def test_tensor_blocks_rows_and_alignment() -> None:
    tensors = [torch.zeros(n, device=DEVICE, dtype=torch.float32) for n in (8, 0, 130)]
    cut = TensorBlocks(tensors, BLOCK)
    assert cut.table.tolist() == [[t.data_ptr(), t.numel(), o] for t, o in zip(tensors, (0, 8, 8), strict=True)]
    assert cut.blocks.tolist() == [[0, 0], [2, 0], [2, 64], [2, 128]] and cut.n_blocks == 4
    assert not cut.aligned  # 130 entries: not a multiple of 4
    assert TensorBlocks(tensors[:1], BLOCK).aligned == (tensors[0].data_ptr() % 16 == 0)
    with pytest.raises(ValueError, match="Invalid tensors"):
        TensorBlocks([], BLOCK)
    with pytest.raises(ValueError, match="Invalid block"):
        TensorBlocks(tensors, 0)


def _poisoned_steps(opt: torch.optim.Optimizer, model: torch.nn.Linear) -> list[bool]:
    """Two steps, the second on a gradient with a NaN: whether each left the weights as they were."""
    unchanged = []
    for poison in (False, True):
        opt.zero_grad()
        model(torch.randn(4, 3, device=DEVICE, dtype=torch.float32)).square().sum().backward()
        if poison:
            model.weight.grad[1, 2] = math.nan
        before = model.weight.detach().clone()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            opt.step()
        unchanged.append(torch.equal(before, model.weight))
        assert any(issubclass(w.category, NonFiniteStepWarning) for w in caught) == poison
    return unchanged


@pytest.mark.parametrize("make", ["guard", "hybrid"])
def test_the_optimizers_reject_a_non_finite_step_through_the_kernel(make: str) -> None:
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 5).to(DEVICE, torch.float32)
    if make == "guard":
        memory = LayerwiseMemory(model)
        memory._backend = "torch"
        opt = ForgettingGuard(torch.optim.AdamW(model.parameters(), lr=0.1), memory)
    else:
        opt = HybridAdamW(model.parameters(), lr=0.1)
    opt._gradient_check = check = _check()
    assert _poisoned_steps(opt, model) == [False, True]
    assert check._cut is not None  # the kernel made the decisions
