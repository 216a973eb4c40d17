"""Muon's orthogonalisation NS_K (Jordan et al. 2024): K quintic Newton-Schulz iterations that
map a matrix ``X = U S V^T`` close to its polar factor ``U V^T``."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .._tensor_lists import gathered

__all__ = ["NS_COEFFICIENTS", "aspect_scale", "newton_schulz", "rms_matching_scale"]

NS_COEFFICIENTS = (3.4445, -4.7750, 2.0315)
"""(a, b, c) of the quintic iteration, tuned so that few steps push every singular value into about [0.5, 1.5]
(not onto 1): the constants of Keller Jordan's Muon, torch.optim.Muon, LionMuon and SoftMuon."""


def newton_schulz(
    update: Tensor,
    steps: int = 5,
    coefficients: tuple[float, float, float] = NS_COEFFICIENTS,
    eps: float = 1e-7,
    dtype: torch.dtype = torch.bfloat16,
) -> Tensor:
    """NS_K(X), in ``dtype`` (bfloat16, as Muon computes it on a GPU): ``X <- X / max(||X||_F, eps)``, then
    ``steps`` times ``A = X X^T``, ``B = b A + c A^2``, ``X <- a X + B X``, on the orientation with fewer rows (so
    ``A`` is the smaller Gram matrix). A tensor of more than two dimensions (a convolution's weight) is taken as its
    ``dim 0 x rest`` matrix; the result has ``update``'s shape, in ``dtype``. On a CPU without bfloat16 matrix
    units, ``dtype=torch.float32`` is far faster (75 and 98 times on 256 x 1024 and 768 x 3072, measured side by
    side on a 2-core CPU)."""
    if update.ndim < 2:
        raise ValueError(f"Invalid update: Newton-Schulz takes a matrix, got shape {tuple(update.shape)}")
    if steps < 0:
        raise ValueError(f"Invalid steps: {steps}")
    if not dtype.is_floating_point:
        raise ValueError(f"Invalid dtype: {dtype}")
    a, b, c = coefficients
    update, shard_back = gathered(update)  # a whole matrix under FSDP2 (whole_matrices.py)
    x = update.reshape(update.shape[0], -1).to(dtype)
    tall = x.shape[0] > x.shape[1]
    if tall:
        x = x.T
    x = x / x.norm().clamp(min=eps)
    for _ in range(steps):
        gram = x @ x.T
        x = torch.addmm(x, torch.addmm(gram, gram, gram, beta=b, alpha=c), x, beta=a)
    return shard_back((x.T if tall else x).reshape(update.shape))


def rms_matching_scale(shape: torch.Size | tuple[int, ...]) -> float:
    """``s = 0.2 sqrt(max(m, n))`` for an ``m x n`` matrix (Moonshot's scale, torch.optim.Muon's
    ``adjust_lr_fn="match_rms_adamw"``): an orthogonalised step of RMS about AdamW's, so AdamW's rates carry over.
    ``n`` is the product of the trailing dimensions."""
    return 0.2 * math.sqrt(max(shape[0], math.prod(shape[1:])))


def aspect_scale(shape: torch.Size | tuple[int, ...]) -> float:
    """``sqrt(max(1, m / n))`` for an ``m x n`` matrix (Keller Jordan's Muon, torch.optim.Muon's default
    ``adjust_lr_fn="original"``): a tall matrix's orthogonalised step is scaled up to the RMS of a wide one's.
    ``n`` is the product of the trailing dimensions."""
    return math.sqrt(max(1.0, shape[0] / math.prod(shape[1:])))
