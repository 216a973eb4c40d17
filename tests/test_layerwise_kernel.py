"""The grouped Triton projection computes what the per-layer BLAS path computes (eq. 11), on every layer kind.

Runs on CUDA, or on the CPU under Triton's interpreter; skipped where Triton is not installed (CI installs the
CPU torch wheel alone). The set-up is shared: tests/triton_kernels.py.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn
from triton_kernels import DEVICE, requires_kernels

from kaplinskiy import ForgettingGuard, LayerwiseMemory

pytestmark = requires_kernels


class Mixed(nn.Module):
    """Every layer kind the memory covers, with and without bias, odd sizes (masks at every edge)."""

    def __init__(self) -> None:
        super().__init__()
        self.emb = nn.Embedding(11, 6)
        self.lin = nn.Linear(6, 37)
        self.nob = nn.Linear(37, 5, bias=False)
        self.conv = nn.Conv1d(5, 7, 3, padding=1)
        self.conv2 = nn.Conv2d(2, 3, 2)
        self.conv3 = nn.Conv3d(3, 2, (2, 1, 2))
        self.up = nn.ConvTranspose1d(7, 2, 2, stride=2)  # by BLAS beside the kernel: its rows are no view

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.nob(self.lin(self.emb(x)))  # (n, T, 5)
        h = self.conv(h.transpose(1, 2))  # (n, 7, T)
        z = self.conv2(h[:, :2, :].unsqueeze(-1).expand(-1, -1, -1, 3))  # (n, 3, T - 1, 2)
        v = self.conv3(z.unsqueeze(-1).expand(-1, -1, -1, -1, 2))  # (n, 2, T - 2, 2, 1)
        return h.sum() + z.sum() + v.sum() + self.up(h).sum()


def gpt2() -> nn.Module:
    """A tiny GPT-2 built from a config: its attention and MLP layers are HF Conv1D (stored ``in x out``)."""
    transformers = pytest.importorskip("transformers")
    config = transformers.GPT2Config(n_embd=24, n_layer=1, n_head=2, vocab_size=11, n_positions=8)
    return transformers.GPT2LMHeadModel(config)


MODELS = {  # name -> (model, the kernel's layout: 0 any strides, 1 row-major, 2 column-major)
    "mixed": (Mixed, 1),
    "gpt2": (gpt2, 2),
    # nn.MultiheadAttention's input projection (an AttentionInProjection, 3E x E) and out_proj, and the MLP
    "attention": (lambda: nn.TransformerEncoderLayer(8, 2, 16, dropout=0.0), 1),
    "both": (lambda: nn.ModuleDict({"mixed": Mixed(), "gpt2": gpt2()}), 0),
}


def memories(
    dtype: torch.dtype = torch.float32, seed: int = 0, model: str = "mixed"
) -> tuple[LayerwiseMemory, LayerwiseMemory]:
    """Two memories of one model with the same random bases of 1..19 vectors: the kernel's and BLAS's."""
    torch.manual_seed(seed)
    net = MODELS[model][0]().to(DEVICE, dtype)
    kernel, blas = LayerwiseMemory(net), LayerwiseMemory(net)
    kernel._backend, blas._backend = "triton", "torch"
    for i, U in enumerate(kernel.bases):
        if U.ndim == 1:
            kernel.bases[i] = torch.randperm(kernel.layers[i].num_embeddings, device=DEVICE)[:3]
        else:
            r = min(U.shape[0], 1 + 6 * i % 19)
            kernel.bases[i] = torch.linalg.qr(torch.randn(U.shape[0], r, device=DEVICE, dtype=torch.float64))[0].to(U)
    blas.load_state_dict(kernel.state_dict())
    return kernel, blas


def random_like(params: list[torch.Tensor]) -> list[torch.Tensor]:
    return [torch.randn_like(p) for p in params]


def close(a: list[torch.Tensor], b: list[torch.Tensor], tol: float) -> None:
    for x, y in zip(a, b, strict=True):
        torch.testing.assert_close(x.float(), y.float(), rtol=tol, atol=tol)


@pytest.mark.parametrize("model", sorted(MODELS))
def test_project_matches_blas(model: str) -> None:
    kernel, blas = memories(model=model)
    plan, grouped = kernel._grouped(kernel.params)
    assert plan.layout == MODELS[model][1] and len(grouped) == plan.table.shape[0] > 0
    g = random_like(kernel.params)
    h = [t.clone() for t in g]
    kernel.project_(g)
    blas.project_(h)
    close(g, h, 1e-5)
    assert blas.residual(g) < 1e-4 * sum(float(t.norm()) for t in h)


@pytest.mark.parametrize("model", sorted(MODELS))
def test_coefficients_and_subtract_match_blas(model: str) -> None:
    kernel, blas = memories(model=model)
    d = random_like(kernel.params)
    ck, cb = kernel.coefficients(d), blas.coefficients(d)
    close(ck, cb, 1e-5)
    e, f = [t.clone() for t in d], [t.clone() for t in d]
    kernel.subtract_(e, ck)
    blas.subtract_(f, cb)
    close(e, f, 1e-5)


@pytest.mark.parametrize("model", sorted(MODELS))
def test_restore_projects_a_step_without_a_copy(model: str) -> None:
    """``restore_(w1, coefficients(w0))`` equals ``w0 + P_perp (w1 - w0)``, on a kept or a rebuilt reference."""
    kernel, blas = memories(model=model)
    w0 = random_like(kernel.params)
    step = random_like(kernel.params)
    w1 = [a + s for a, s in zip(w0, step, strict=True)]
    expected = [s.clone() for s in step]
    blas.project_(expected)
    expected = [a + s for a, s in zip(w0, expected, strict=True)]
    for reference in (kernel.coefficients(w0), [c.clone() for c in kernel.coefficients(w0)]):
        w = [t.clone() for t in w1]
        kernel.restore_(w, reference)
        close(w, expected, 1e-5)


def test_a_kernel_that_skipped_rows_would_be_caught() -> None:
    """The check has teeth: projecting only the first layer leaves the others' coefficients non-zero."""
    kernel, _ = memories()
    g = random_like(kernel.params)
    kernel.project_(g)
    assert kernel.residual(g) < 1e-4
    g[kernel._slots[1][0]].add_(1.0)
    assert kernel.residual(g) > 1e-2


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_weights(dtype: torch.dtype) -> None:
    kernel, blas = memories(dtype)
    g = random_like(kernel.params)
    h = [t.clone() for t in g]
    kernel.project_(g)
    blas.project_(h)
    close(g, h, 3e-2)


def test_guarded_adamw_takes_the_same_steps_on_both_backends() -> None:
    kernel, blas = memories()
    model_b = Mixed().to(DEVICE)
    model_b.load_state_dict(kernel.model.state_dict())
    blas_b = LayerwiseMemory(model_b)
    blas_b._backend = "torch"
    blas_b.load_state_dict(blas.state_dict())
    guards = [
        ForgettingGuard(torch.optim.AdamW(m.params, lr=1e-2), m, reuse_coefficients=True) for m in (kernel, blas_b)
    ]
    x = torch.randint(0, 11, (4, 5), device=DEVICE)
    for _ in range(3):
        for guard, m in zip(guards, (kernel, blas_b), strict=True):
            guard.zero_grad()
            m.model(x).backward()
            guard.step()
    close(kernel.params, blas_b.params, 1e-5)


def test_auto_uses_the_kernel_on_cuda_only() -> None:
    kernel, _ = memories()
    auto = LayerwiseMemory(kernel.model)
    auto.load_state_dict(kernel.state_dict())
    plan, grouped = auto._grouped(auto.params)
    m = kernel.model  # every layer but the embedding (a gather) and the transposed convolution (no row view)
    kernel_layers = {auto.layers.index(layer) for layer in (m.lin, m.nob, m.conv, m.conv2, m.conv3)}
    assert (plan is not None) == (DEVICE.type == "cuda")
    assert grouped == (kernel_layers if plan is not None else frozenset())


@pytest.fixture
def blocks():
    """Set block sizes for one test; the defaults come back after it."""
    import kaplinskiy._kernels.layerwise as layerwise_kernel

    yield layerwise_kernel.set_block_sizes
    layerwise_kernel.set_block_sizes(layerwise_kernel.DEFAULT_BLOCKS)


@pytest.mark.parametrize("sizes", [(32, 16, 2, 2), (16, 128, 8, 1)])
def test_other_block_sizes_project_alike(blocks, sizes: tuple[int, int, int, int]) -> None:
    """A sweep's variant is the same projection: the plans built after ``set_block_sizes`` take it."""
    blocks(sizes)
    kernel, blas = memories(model="both")
    plan, _ = kernel._grouped(kernel.params)
    assert (plan.block_rows, plan.block_k, plan.options["num_warps"], plan.options["num_stages"]) == sizes
    assert plan.blocks.shape[0] == sum(-(-n // sizes[0]) for n in plan.row_counts)
    g = random_like(kernel.params)
    h = [t.clone() for t in g]
    kernel.project_(g)
    blas.project_(h)
    close(g, h, 1e-5)
