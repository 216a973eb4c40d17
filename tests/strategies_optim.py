"""Named Hypothesis strategies for the optimizer library: tiny networks with an old task A and a new task B.

Everything is float64 and built from a drawn seed, so each example is reproducible from its printed draw.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from hypothesis import strategies as st
from torch import Tensor, nn

from kaplinskiy.optimizers import LionMuon, SoftMuon, SoftSignum

EPS64 = torch.finfo(torch.float64).eps


def eq12_tolerance(n: int, factor: float = 1e3) -> float:
    """Relative tolerance for ``|grad L_A . d| / (||grad L_A|| ||d||)``: ``factor * n * eps`` in float64."""
    return factor * max(1, n) * EPS64


@dataclass(frozen=True)
class TaskPair:
    """A model with old-task data (xa, ya) and new-task data (xb, yb), classification with cross-entropy."""

    model: nn.Module
    xa: Tensor
    ya: Tensor
    xb: Tensor
    yb: Tensor

    def loss_a(self) -> Tensor:
        """L_A at the model's current parameters (mean cross-entropy)."""
        return nn.functional.cross_entropy(self.model(self.xa), self.ya)

    def loss_b(self) -> Tensor:
        """L_B at the model's current parameters."""
        return nn.functional.cross_entropy(self.model(self.xb), self.yb)

    def grad_a(self) -> list[Tensor]:
        """grad L_A for every parameter (zeros for parameters L_A does not touch)."""
        params = list(self.model.parameters())
        grads = torch.autograd.grad(self.loss_a(), params, allow_unused=True)
        return [torch.zeros_like(p) if g is None else g for p, g in zip(params, grads, strict=True)]


def mlp(d_in: int, hidden: int, classes: int, bias: bool) -> nn.Module:
    """Linear-tanh-Linear, the smallest network whose first layer's inputs are not its parameters' business."""
    return nn.Sequential(nn.Linear(d_in, hidden, bias=bias), nn.Tanh(), nn.Linear(hidden, classes, bias=bias))


@st.composite
def task_pairs(draw, bias: bool | None = None, max_batch: int = 6) -> TaskPair:
    """A random MLP (input 1-5, hidden 1-6, 2-4 classes, with or without biases) and two small batches.
    Special cases mixed in: one old sample, a hidden width of one."""
    d_in = draw(st.integers(1, 5))
    hidden = draw(st.one_of(st.just(1), st.integers(1, 6)))
    classes = draw(st.integers(2, 4))
    n_a = draw(st.one_of(st.just(1), st.integers(1, max_batch)))
    n_b = draw(st.integers(1, max_batch))
    use_bias = draw(st.booleans()) if bias is None else bias
    seed = draw(st.integers(0, 2**31 - 1))
    torch.manual_seed(seed)
    model = mlp(d_in, hidden, classes, use_bias)
    gen = torch.Generator().manual_seed(seed)
    xa, xb = torch.randn(n_a, d_in, generator=gen), torch.randn(n_b, d_in, generator=gen)
    ya, yb = torch.randint(classes, (n_a,), generator=gen), torch.randint(classes, (n_b,), generator=gen)
    return TaskPair(model, xa, ya, xb, yb)


class TinyBlock(nn.Module):
    """A one-block causal transformer LM: token and position embeddings, attention and MLP of nn.Linear, LayerNorm."""

    def __init__(self, vocab: int = 11, dim: int = 8, seq: int = 5) -> None:
        super().__init__()
        self.tok, self.pos = nn.Embedding(vocab, dim), nn.Embedding(seq, dim)
        self.ln1, self.ln2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.q, self.k, self.v, self.o = (nn.Linear(dim, dim) for _ in range(4))
        self.up, self.down, self.head = nn.Linear(dim, 2 * dim), nn.Linear(2 * dim, dim), nn.Linear(dim, vocab)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        T = ids.shape[1]
        h = self.tok(ids) + self.pos(torch.arange(T))
        a = self.ln1(h)
        att = nn.functional.scaled_dot_product_attention(self.q(a), self.k(a), self.v(a), is_causal=True)
        h = h + self.o(att)
        h = h + self.down(torch.tanh(self.up(self.ln2(h))))
        return self.head(h)


class TiedLM(nn.Module):
    """An embedding whose matrix is also the output layer (weight tying, as in GPT-2; with a bias of the output
    layer's own, as in BERT's decoder)."""

    def __init__(self, vocab: int = 7, dim: int = 4, bias: bool = False) -> None:
        super().__init__()
        self.tok, self.head = nn.Embedding(vocab, dim), nn.Linear(dim, vocab, bias=bias)
        self.head.weight = self.tok.weight

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.head(torch.tanh(self.tok(ids)))


def _muon(params, lr):  # torch.optim.Muon (torch >= 2.9) updates 2-D parameters only
    return torch.optim.Muon(params, lr=lr, weight_decay=0.1)


BASE_OPTIMIZERS: dict[str, Callable] = {
    "sgd": lambda params, lr: torch.optim.SGD(params, lr=lr),
    "sgd_momentum_wd": lambda params, lr: torch.optim.SGD(params, lr=lr, momentum=0.9, nesterov=True, weight_decay=0.1),
    "adamw": lambda params, lr: torch.optim.AdamW(params, lr=lr, weight_decay=0.1),
    "adamw_foreach": lambda params, lr: torch.optim.AdamW(params, lr=lr, foreach=True, amsgrad=True),
    "rmsprop": lambda params, lr: torch.optim.RMSprop(params, lr=lr, momentum=0.5),
}
if hasattr(torch.optim, "Muon"):
    BASE_OPTIMIZERS["muon"] = _muon
# LionMuon with P = 2 alternates Muon and Lion steps; SoftSignum and SoftMuon pass from sign steps to their
# transition after one step, and past its end after three (the guard test takes up to three unguarded steps first).
BASE_OPTIMIZERS["lion_muon"] = lambda params, lr: LionMuon(params, lr=lr, lion_lr_ratio=0.5)
BASE_OPTIMIZERS["soft_signum"] = lambda params, lr: SoftSignum(
    params, lr=lr, momentum=0.9, weight_decay=0.1, sign_steps=1, transition_steps=2
)
BASE_OPTIMIZERS["soft_muon"] = lambda params, lr: SoftMuon(
    params, lr=lr, weight_decay=0.1, sign_steps=1, transition_steps=2, ns_dtype=torch.float32
)
"""Torch optimizers the guard is tested around (Muon where this torch has it; Lion in its own test), and the
recent ones of kaplinskiy.optimizers."""


def full_memory(kind: str, case: TaskPair):
    """A memory that holds all of task A: ``"dense"`` (per-sample loss gradients, OGD) or ``"layerwise"``
    (every direction of each layer's input space, GPM with threshold 1), so grad L_A lies in its span. The dense
    memory drops only directions below 1e-14 of the largest gradient: with the default ``drop_tol`` (1.5e-8),
    grad L_A would lie in the span only to that relative size, far above the rounding the tests allow."""
    from kaplinskiy import DenseMemory, LayerwiseMemory, sample_loss

    if kind == "dense":
        mem = DenseMemory(case.model.parameters(), k_per_task=64, drop_tol=1e-14)
        mem.add_task(case.model, case.xa, case.ya, sample_loss)
        return mem
    mem = LayerwiseMemory(case.model, threshold=1.0)
    mem.add_task([case.xa])
    return mem
