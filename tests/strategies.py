"""Named Hypothesis strategies for random, well-conditioned problems (float64).

Each strategy draws a small description (sizes, a seed, flags) and builds the tensors with a
seeded ``torch.Generator``, so every example is reproducible from its printed draw.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from hypothesis import strategies as st
from torch import Tensor

EPS = torch.finfo(torch.float64).eps


def tolerance(*sizes: int, factor: float = 100.0) -> float:
    """Relative tolerance for float64 linear algebra on these sizes: ``factor * max(sizes) * eps``."""
    return factor * max(1, *sizes) * EPS


@dataclass(frozen=True)
class GradientSet:
    """A memory matrix G_A (n, k) of known rank, with some zero columns, and a random vector g (n,)."""

    G: Tensor
    g: Tensor
    rank: int


def _orthonormal(n: int, r: int, gen: torch.Generator) -> Tensor:
    q, _ = torch.linalg.qr(torch.randn(n, r, generator=gen, dtype=torch.float64))
    return q


@st.composite
def gradient_sets(draw, max_n: int = 40, max_k: int = 10) -> GradientSet:
    """G_A = U diag(s) V^T with r = rank <= min(n, k) and singular values in [1e-2, 1e2] (so the
    numerical rank is the true rank), times a random scale, with random columns zeroed (rank kept).
    Special cases mixed in: k = 0, rank 0 (all zero), full rank, a single column, n = 1."""
    n = draw(st.one_of(st.sampled_from([1, 2, 3]), st.integers(1, max_n)))
    k = draw(st.one_of(st.sampled_from([0, 1]), st.integers(0, max_k)))
    r = draw(st.integers(0, min(n, k)))
    seed = draw(st.integers(0, 2**31 - 1))
    scale = draw(st.sampled_from([1e-6, 1.0, 1e6]))
    n_zero = draw(st.integers(0, 3))
    gen = torch.Generator().manual_seed(seed)
    if r == 0:
        G = torch.zeros(n, k, dtype=torch.float64)
    else:
        U, V = _orthonormal(n, r, gen), _orthonormal(k, r, gen)
        s = 10.0 ** (4 * torch.rand(r, generator=gen, dtype=torch.float64) - 2)
        G = scale * (U * s) @ V.T
    if k > 0 and n_zero > 0:
        G = torch.cat([G, torch.zeros(n, n_zero, dtype=torch.float64)], dim=1)
        G = G[:, torch.randperm(G.shape[1], generator=gen)]
    g = torch.randn(n, generator=gen, dtype=torch.float64) * draw(st.sampled_from([1e-3, 1.0, 1e3]))
    return GradientSet(G, g, r)


@dataclass(frozen=True)
class QuadraticProblem:
    """Phi(w) = 1/2 (w - c)^T H (w - c) + b sum(sin(w)) with SPD H (condition <= 100), and a start w0.

    ``b = 0`` gives a convex quadratic; ``b > 0`` makes it non-convex but smooth.
    """

    H: Tensor
    c: Tensor
    b: float
    w0: Tensor

    def phi(self, w: Tensor) -> Tensor:
        """The potential at ``w``."""
        r = w - self.c
        return 0.5 * r @ (self.H @ r) + self.b * torch.sin(w).sum()


def well_conditioned_spd(n: int, gen: torch.Generator, cond: float = 100.0) -> Tensor:
    """A random SPD matrix with eigenvalues log-uniform in [1, cond]."""
    Q = _orthonormal(n, n, gen)
    lam = cond ** torch.rand(n, generator=gen, dtype=torch.float64)
    return (Q * lam) @ Q.T


@st.composite
def quadratic_problems(draw, max_n: int = 20) -> QuadraticProblem:
    """Random smooth potentials: SPD quadratic, optionally plus a non-convex sine term."""
    n = draw(st.integers(1, max_n))
    seed = draw(st.integers(0, 2**31 - 1))
    b = draw(st.sampled_from([0.0, 0.5, 5.0]))
    gen = torch.Generator().manual_seed(seed)
    H = well_conditioned_spd(n, gen)
    c = torch.randn(n, generator=gen, dtype=torch.float64)
    w0 = c + 3.0 * torch.randn(n, generator=gen, dtype=torch.float64)
    return QuadraticProblem(H, c, b, w0)
