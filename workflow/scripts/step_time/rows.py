"""What the step-time benchmark times (``step_time.measure``): a model with the parameter shapes of a GPT-2 stack,
fixed random gradients, a dense and a layer-wise memory of ``k`` random directions, and the rows, each a factory
of a zero-argument step function (the reference, fused or foreach AdamW, first).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from kaplinskiy import DenseMemory, ForgettingGuard, HybridAdamW, LayerwiseMemory
from kaplinskiy._kernels.launch import grouped_kernel_available
from kaplinskiy.optimizers import LionMuon, SoftMuon, SoftSignum, muon_param_groups

PRESETS = {
    "tiny": dict(d_model=32, n_layer=1, vocab=64),
    "cpu-small": dict(d_model=256, n_layer=4, vocab=4096),
    "gpt2-124m": dict(d_model=768, n_layer=12, vocab=50257),
}


class GPTShaped(nn.Module):
    """The parameter shapes of a GPT-2 stack (embeddings, per block qkv/proj/fc/proj Linear layers and two
    LayerNorms, a final LayerNorm; the head is tied to the token embedding). Never run forward here."""

    def __init__(self, d_model: int, n_layer: int, vocab: int, n_ctx: int = 1024) -> None:
        super().__init__()
        self.wte, self.wpe = nn.Embedding(vocab, d_model), nn.Embedding(n_ctx, d_model)
        blocks = []
        for _ in range(n_layer):
            blocks += [
                nn.LayerNorm(d_model),
                nn.Linear(d_model, 3 * d_model),
                nn.Linear(d_model, d_model),
                nn.LayerNorm(d_model),
                nn.Linear(d_model, 4 * d_model),
                nn.Linear(4 * d_model, d_model),
            ]
        self.blocks = nn.ModuleList(blocks)
        self.ln_f = nn.LayerNorm(d_model)


@dataclass(frozen=True)
class Setup:
    """What the optimizers are built on: the model, its parameters and two memories of rank ``k``."""

    model: nn.Module
    params: list[torch.Tensor]
    dense: DenseMemory
    layerwise: LayerwiseMemory
    k: int


def build(preset: str, k: int, device: torch.device, seed: int = 0) -> Setup:
    """A GPT-shaped model with random gradients, a dense memory of k directions and k per layer."""
    torch.manual_seed(seed)
    model = GPTShaped(**PRESETS[preset]).to(device)
    params = list(model.parameters())
    for p in params:
        p.grad = torch.randn_like(p)
    dense = DenseMemory(params, k_per_task=k)
    basis = torch.randn(dense.numel, k, device=device) / dense.numel**0.5  # timing only: orthonormality is irrelevant
    dense.load_state_dict({"basis": basis, "n_tasks": 1, "n_dropped": 0})
    layerwise = LayerwiseMemory(model)
    for i, U in enumerate(layerwise.bases):
        if U.ndim == 1:
            layerwise.bases[i] = torch.randperm(layerwise.layers[i].num_embeddings, device=device)[:k]
        else:
            layerwise.bases[i] = torch.linalg.qr(torch.randn(U.shape[0], k, device=device))[0]
    return Setup(model, params, dense, layerwise, k)


def layerwise_twin(s: Setup) -> tuple[list[torch.Tensor], LayerwiseMemory]:
    """A copy of the model with the same gradients and layer-wise bases, stepped by one row alone."""
    twin = copy.deepcopy(s.model)
    params = list(twin.parameters())
    for p, q in zip(params, s.params, strict=True):
        p.grad = q.grad.clone()
    memory = LayerwiseMemory(twin)
    memory.load_state_dict(s.layerwise.state_dict())
    return params, memory


def _kept_guard(s: Setup, impl: str, check_finite: bool = True, defer: bool = False) -> Callable[[], object]:
    params, memory = layerwise_twin(s)
    guard = ForgettingGuard(
        _adamw(params, impl), memory, reuse_coefficients=True, check_finite=check_finite, defer_check=defer
    )
    return guard.step


def _adamw(params, impl: str) -> torch.optim.Optimizer:
    return torch.optim.AdamW(params, lr=1e-4, weight_decay=0.1, **{impl: True})


def candidates(s: Setup, fused_ok: bool) -> dict[str, Callable[[], Callable[[], object]]]:
    """Name -> factory of a zero-argument step function. The first entry is the reference."""
    ref = "fused" if fused_ok else "foreach"
    sgd = lambda: torch.optim.SGD(s.params, lr=1e-3, momentum=0.9, foreach=True)  # noqa: E731
    lw, dense = (lambda: memory_twin(s.layerwise)), (lambda: memory_twin(s.dense))
    out: dict[str, Callable[[], Callable[[], object]]] = {
        f"AdamW ({ref}, reference)": lambda: _adamw(s.params, ref).step,
        "AdamW (foreach)": lambda: _adamw(s.params, "foreach").step,
        "SGD momentum (foreach)": lambda: sgd().step,
        "HybridAdamW, no memory": lambda: HybridAdamW(s.params, lr=1e-4).step,
        "HybridAdamW + layer-wise projection": lambda: HybridAdamW(s.params, lr=1e-4, memory=lw()).step,
        "HybridAdamW + dense projection": lambda: HybridAdamW(s.params, lr=1e-4, memory=dense()).step,
        f"Guard(AdamW {ref}) layer-wise update": lambda: ForgettingGuard(_adamw(s.params, ref), lw()).step,
        f"Guard(AdamW {ref}) layer-wise update, Q^T w kept": lambda: _kept_guard(s, ref),
        f"Guard(AdamW {ref}) layer-wise update, Q^T w kept, no finite check": lambda: _kept_guard(s, ref, False),
        f"Guard(AdamW {ref}) dense update": lambda: ForgettingGuard(_adamw(s.params, ref), dense()).step,
        "GPM: Guard(SGD) layer-wise gradient": lambda: ForgettingGuard(sgd(), lw(), project="gradient").step,
        "OGD: Guard(SGD) dense gradient": lambda: ForgettingGuard(sgd(), dense(), project="gradient").step,
        "layer-wise projection alone": lambda: _projection(lw(), s.params),
        "layer-wise projection alone, per-layer BLAS": lambda: _projection(memory_twin(s.layerwise, "torch"), s.params),
        "dense projection alone": lambda: _projection(dense(), s.params),
        "dense projection alone, per-tensor BLAS": lambda: _projection(memory_twin(s.dense, "torch"), s.params),
        "dense projection, naive: flat g, Q (n x k)": lambda: _naive_dense_projection(s.dense),
    }
    if fused_ok:  # fused AdamW takes the device verdict as found_inf; foreach AdamW cannot
        out[f"Guard(AdamW {ref}) layer-wise update, Q^T w kept, device check"] = lambda: _kept_guard(s, ref, defer=True)
    out.update(recent_rows(s, lw))
    if grouped_kernel_available(s.params[0].device):  # AdamW and the projection in one grouped launch
        out[FUSED] = lambda: _fused_hybrid(s, check_finite=True)
        out[FUSED_DEVICE] = lambda: _fused_hybrid(s, check_finite=True, defer=True)
        out[FUSED_UNCHECKED] = lambda: _fused_hybrid(s, check_finite=False)
    return out


def newton_schulz_dtype(device: torch.device) -> torch.dtype:
    """The dtype the Muon family's Newton-Schulz runs in: bfloat16 on a GPU, as the papers and torch.optim.Muon
    run it; float32 on a CPU, where bfloat16 products are some 75-100 times slower (a bfloat16 LionMuon step took
    about 4 s at cpu-small, 800 times fused AdamW: a row about the CPU, not the step). The rows' names say which."""
    return torch.bfloat16 if device.type == "cuda" else torch.float32


def recent_rows(s: Setup, memory: Callable[[], LayerwiseMemory]) -> dict[str, Callable[[], Callable[[], object]]]:
    """The optimizers of kaplinskiy.optimizers alone and guarded with the layer-wise memory: Muon (SoftMuon without a
    transition) and LionMuon on the hidden matrices, with AdamW for the embeddings and LayerNorms
    (``muon_param_groups``), and SoftSignum in its tanh phase (temperatures fitted at the first, untimed,
    step)."""
    dtype = newton_schulz_dtype(s.params[0].device)
    ns = f"NS in {str(dtype).removeprefix('torch.')}"
    groups = lambda: muon_param_groups(s.model, lr=1e-4)  # noqa: E731
    bases = {
        f"Muon ({ns}) + AdamW": lambda: SoftMuon(groups(), lr=1e-4, weight_decay=0.1, ns_dtype=dtype),
        f"LionMuon (P = 2, {ns}) + AdamW": lambda: LionMuon(groups(), lr=1e-4, ns_dtype=dtype),
        "SoftSignum (tanh phase)": lambda: SoftSignum(s.params, lr=1e-4, sign_steps=0, transition_steps=10**6),
    }
    out: dict[str, Callable[[], Callable[[], object]]] = {}
    for name, base in bases.items():
        out[name] = lambda base=base: base().step
        out[f"Guard({name}) layer-wise update"] = lambda base=base: ForgettingGuard(base(), memory()).step
    return out


FUSED = "HybridAdamW(fused) layer-wise update"
FUSED_DEVICE = "HybridAdamW(fused) layer-wise update, device check"
FUSED_UNCHECKED = "HybridAdamW(fused) layer-wise update, no finite check"


def _fused_hybrid(s: Setup, check_finite: bool, defer: bool = False) -> Callable[[], object]:
    """``HybridAdamW(fused=True)`` on a copy of the model: its plans stay put, as in training."""
    params, memory = layerwise_twin(s)
    kw = dict(check_finite=check_finite, defer_check=defer)
    return HybridAdamW(params, lr=1e-4, weight_decay=0.1, memory=memory, fused=True, **kw).step


def memory_twin(memory: LayerwiseMemory | DenseMemory, backend: str = "auto") -> LayerwiseMemory | DenseMemory:
    """The same bases in a memory of its own (its launch plans stay put, as in training); ``backend="torch"``
    (the memory's private kernel choice) projects layer by layer (tensor by tensor) with BLAS."""
    if isinstance(memory, LayerwiseMemory):
        other = LayerwiseMemory(memory.model)
        other._backend = backend
        other.load_state_dict(memory.state_dict())
        return other
    other = DenseMemory(memory.params, k_per_task=memory.k_per_task)
    other._backend = backend
    other._directions = memory._directions  # shared, not copied: k n numbers (8 GB for GPT-2 with k = 16)
    return other


def dense_backend(memory: DenseMemory) -> str:
    """Which path the dense rows took: the grouped Triton kernels or per-tensor BLAS."""
    grouped = memory._grouped(memory.params) is not None
    return "triton (grouped kernels)" if grouped else "torch (per-tensor BLAS)"


def layerwise_backend(memory: LayerwiseMemory) -> str:
    """Which path the layer-wise rows took: the grouped Triton kernel or per-layer BLAS."""
    plan, _ = memory._grouped(memory.params)
    return "torch (per-layer BLAS)" if plan is None else "triton (grouped kernel)"


def finite_check_path(device: torch.device) -> str:
    """How the checked rows make the finite check there: one grouped launch or a multi-tensor reduction."""
    return "triton (grouped kernel)" if grouped_kernel_available(device) else "torch (multi-tensor reduction)"


def _projection(memory, params: list[torch.Tensor]) -> Callable[[], object]:
    grads = [p.grad.clone() for p in params]  # projecting again costs the same: the work does not shrink
    return lambda: memory.project_(grads)


def _naive_dense_projection(dense: DenseMemory) -> Callable[[], object]:
    """The issue's "naive" reference: one flat gradient and a contiguous ``n x k`` basis, ``g - Q (Q^T g)``."""
    Q = dense.basis.contiguous()
    g = torch.randn(dense.numel, dtype=Q.dtype, device=Q.device)
    return lambda: g.sub_(Q @ (Q.T @ g))


def fused_adamw_runs(s: Setup) -> bool:
    """Whether fused AdamW runs here (it is the reference when it does); the gradients are drawn afresh."""
    try:
        _adamw(s.params, "fused").step()
        ok = True
    except (RuntimeError, ValueError):
        ok = False
    for p in s.params:
        p.grad = torch.randn_like(p)
    return ok
