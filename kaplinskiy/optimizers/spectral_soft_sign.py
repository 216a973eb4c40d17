"""SoftMuon's step after its Muon phase (Feoktistov et al. 2026, arXiv 2605.31371): the spectral soft sign

    Phi_tau(X) = (X X^T + tau^{-2} I)^{-1/2} X = U diag(tau s_i / sqrt(1 + tau^2 s_i^2)) V^T   for X = U S V^T,

which tends to the polar factor ``U V^T`` (Muon's step) as ``tau`` grows and to ``tau X`` (SGD's) as ``tau s``
shrinks. The inverse square root is taken by a coupled Newton-Schulz iteration, as the authors compute it."""

from __future__ import annotations

import torch
from torch import Tensor

from .._tensor_lists import gathered

__all__ = ["spectral_soft_sign"]


def spectral_soft_sign(
    update: Tensor, temperature: float, steps: int = 5, dtype: torch.dtype = torch.bfloat16
) -> Tensor:
    """Phi_tau(X) (module docstring), in ``dtype``: on the orientation with fewer rows, ``A = (X X^T + I / tau^2) /
    ||.||_F``, then ``steps`` times ``T = (3 I - Z Y) / 2``, ``Y <- Y T``, ``Z <- T Z`` from ``Y = A``, ``Z = I``
    (``Z -> A^{-1/2}``), and ``Z X / sqrt(||.||_F)``. Few steps leave the smallest eigenvalues of ``A`` short of
    convergence (each step grows them by at most 1.5), as Muon's five steps leave its singular values in about
    [0.5, 1.5]. A tensor of more than two dimensions is taken as its ``dim 0 x rest`` matrix."""
    if update.ndim < 2:
        raise ValueError(f"Invalid update: the spectral soft sign takes a matrix, got shape {tuple(update.shape)}")
    if not temperature > 0:
        raise ValueError(f"Invalid temperature: {temperature}")
    if steps < 0:
        raise ValueError(f"Invalid steps: {steps}")
    update, shard_back = gathered(update)  # a whole matrix under FSDP2 (whole_matrices.py)
    x = update.reshape(update.shape[0], -1).to(dtype)
    tall = x.shape[0] > x.shape[1]
    if tall:
        x = x.T
    eye = torch.eye(x.shape[0], dtype=dtype, device=x.device)
    a = torch.addmm(eye, x, x.T, beta=temperature**-2)
    norm = a.norm()
    y, z = a / norm, eye
    for _ in range(steps):
        t = torch.addmm(eye, z, y, beta=1.5, alpha=-0.5)
        y, z = y @ t, t @ z
    out = (z @ x) / norm.sqrt()
    return shard_back((out.T if tall else out).reshape(update.shape))
