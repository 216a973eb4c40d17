"""Named Hypothesis strategies for the Kaplinskii-Propoi tests (float64).

As in ``strategies.py``, each strategy draws sizes, a seed and flags and builds its tensors with a
seeded ``torch.Generator``, so an example is reproducible from its printed draw.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from hypothesis import strategies as st
from strategies import well_conditioned_spd
from torch import Tensor

EPS = torch.finfo(torch.float64).eps


@dataclass(frozen=True)
class Quadratic:
    """``f(x) = 1/2 x^T A x + b^T x + c0`` with SPD A: its Gaussian smoothing is known in closed form.

    ``f_sigma(m) = E f(m + sigma Z) = f(m) + sigma^2/2 tr A`` and ``grad f_sigma(m) = A m + b``.
    """

    A: Tensor
    b: Tensor
    c0: float

    def __call__(self, x: Tensor) -> Tensor:
        return 0.5 * ((x @ self.A) * x).sum(-1) + x @ self.b + self.c0

    def smoothed_grad(self, m: Tensor) -> Tensor:
        """``grad f_sigma(m)`` for any sigma (smoothing a quadratic shifts it by a constant)."""
        return self.A @ m + self.b

    def minimiser(self) -> Tensor:
        return -torch.linalg.solve(self.A, self.b)


@dataclass(frozen=True)
class SteinCase:
    """A quadratic, a centre m, a Gaussian radius sigma and a fixed level c for Stein's identity."""

    f: Quadratic
    m: Tensor
    sigma: float
    c: float
    seed: int


@st.composite
def quadratics(draw, max_n: int = 6, cond: float = 100.0) -> Quadratic:
    """Random SPD quadratics in n <= ``max_n`` dimensions (condition <= ``cond``), with n = 1 and 2 mixed in."""
    n = draw(st.one_of(st.sampled_from([1, 2]), st.integers(1, max_n)))
    gen = torch.Generator().manual_seed(draw(st.integers(0, 2**31 - 1)))
    A = well_conditioned_spd(n, gen, cond) * draw(st.sampled_from([0.1, 1.0, 10.0]))
    b = torch.randn(n, generator=gen, dtype=torch.float64) * draw(st.sampled_from([0.0, 1.0, 5.0]))
    return Quadratic(A, b, draw(st.floats(-10.0, 10.0)))


@st.composite
def stein_cases(draw, max_n: int = 5) -> SteinCase:
    """A random quadratic with a centre a few units away, a radius in [0.01, 2] and a level near f(m)."""
    f = draw(quadratics(max_n=max_n))
    n = f.b.shape[0]
    seed = draw(st.integers(0, 2**31 - 1))
    gen = torch.Generator().manual_seed(seed + 1)
    m = 2.0 * torch.randn(n, generator=gen, dtype=torch.float64)
    sigma = draw(st.sampled_from([0.01, 0.1, 0.5, 1.0, 2.0]))
    c = float(f(m)) + draw(st.floats(-1.0, 1.0))
    return SteinCase(f, m, sigma, c, seed)


@dataclass(frozen=True)
class SampleSet:
    """Points u (K, n) around a centre x with values fu (some possibly non-finite) and a level c."""

    x: Tensor
    u: Tensor
    fu: Tensor
    c: float


@st.composite
def sample_sets(draw, max_n: int = 8, max_k: int = 12, allow_nonfinite: bool = False) -> SampleSet:
    """K samples at log-uniform distances 1e-3..1e3 from x, values in [-1e3, 1e3], the level their mean.

    With ``allow_nonfinite`` up to K - 1 values are replaced by nan, +inf or -inf.
    """
    n = draw(st.one_of(st.sampled_from([1, 2]), st.integers(1, max_n)))
    K = draw(st.integers(1, max_k))
    gen = torch.Generator().manual_seed(draw(st.integers(0, 2**31 - 1)))
    x = torch.randn(n, generator=gen, dtype=torch.float64)
    z = torch.randn(K, n, generator=gen, dtype=torch.float64)
    z = z / torch.linalg.vector_norm(z, dim=-1, keepdim=True)
    r = 10.0 ** (6.0 * torch.rand(K, 1, generator=gen, dtype=torch.float64) - 3.0)
    u = x + r * z
    fu = 2e3 * torch.rand(K, generator=gen, dtype=torch.float64) - 1e3
    if allow_nonfinite and K > 1:
        bad = draw(st.lists(st.integers(0, K - 1), max_size=K - 1, unique=True))
        for i in bad:
            fu[i] = draw(st.sampled_from([math.nan, math.inf, -math.inf]))
    finite = fu[torch.isfinite(fu)]
    c = float(finite.mean()) if finite.numel() else 0.0
    return SampleSet(x, u, fu, c)


@st.composite
def beam_settings(draw) -> dict[str, object]:
    """Keyword options of ``minimize_beam``: level, sampling, centre and a kernel power given as a fraction of n."""
    return {
        "level": draw(st.sampled_from(["mean", "median", "record", "current"])),
        "sampling": draw(st.sampled_from(["gaussian", "ball", "cube", "radial"])),
        "center": draw(st.sampled_from(["perspective", "current"])),
        "lam_frac": draw(st.sampled_from([0.0, 0.5, 1.0])),
        "n_samples": draw(st.sampled_from([None, 1, 2, 5])),
    }
