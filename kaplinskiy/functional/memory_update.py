"""GPM's memory update (eq:energy_basis), Saha et al. 2021's eqs. 8-9: grow an orthonormal basis of a layer's old-task
inputs by the fewest principal directions that bring the kept energy to a threshold, and the triangular factor of the
inputs the update reads (``R^T R`` their uncentred covariance, joined across batches and ranks by a QR).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor
from torch.nn import functional as F  # noqa: N812 (the torch idiom)

__all__ = ["energy_basis_update", "energy_basis_update_rows", "protected_rows_update", "stacked_factor"]


def energy_basis_update(U: Tensor, cov: Tensor, threshold: float, max_new: int | None = None) -> Tensor:
    """GPM's criterion (eq:energy_basis) on the covariance ``cov = R R^T`` of the new task's representations ``R``.

    Keep the existing basis ``U`` and add the fewest top eigenvectors of ``(I - U U^T) cov (I - U U^T)``
    such that ``||U U^T R||^2 + ||R_hat_k||^2 >= threshold ||R||^2``; ``threshold = 1`` keeps every
    numerically non-zero direction. Returns the extended orthonormal basis. The covariance resolves directions
    down to ``eps`` of its largest eigenvalue, ``eps`` of the largest singular value squared: from the
    representations themselves, :func:`energy_basis_update_rows` resolves ``eps`` of that singular value.
    """
    d = cov.shape[0]
    total = torch.trace(cov)
    if total <= 0:
        return U
    kept = torch.trace(U.T @ cov @ U) if U.shape[1] else total.new_zeros(())
    P = torch.eye(d, dtype=cov.dtype, device=cov.device) - U @ U.T
    lam, V = torch.linalg.eigh(P @ cov @ P)
    lam, V = lam.flip(0).clamp_min(0), V.flip(1)
    significant = int((lam > d * torch.finfo(cov.dtype).eps * lam[0].clamp_min(total / d)).sum())
    return _extended(U, lam, V, total, kept, significant, threshold, max_new)


def energy_basis_update_rows(
    U: Tensor, rows: Tensor, threshold: float, max_new: int | None = None, resolution: float | None = None
) -> Tensor:
    """:func:`energy_basis_update` (eq:energy_basis) from the representations as rows (``m x d``: the inputs, or
    any ``R`` with ``R^T R`` their covariance, such as the triangular factor :class:`LayerwiseMemory` keeps).

    The directions are the right singular vectors of ``rows (I - U U^T)``, their energies the squared singular
    values. An SVD of the rows resolves a direction down to ``d eps`` of the largest singular value (the default
    ``resolution``: singular values below it count as zero), and finds it to an angle of about ``eps`` times the
    condition; the covariance's eigendecomposition squares both (an input spread over singular values 1 and 1e-6
    has a covariance of condition 1e12: its small directions come out with errors of 1e-4).
    """
    d = rows.shape[1]
    total = rows.square().sum()
    if total <= 0:
        return U
    if U.shape[1]:
        coords = rows @ U
        kept, rows = coords.square().sum(), rows - coords @ U.T
    else:
        kept = total.new_zeros(())
    _, sigma, Vh = torch.linalg.svd(rows, full_matrices=False)
    if resolution is None:
        resolution = d * torch.finfo(rows.dtype).eps
    significant = int((sigma > resolution * sigma[0].clamp_min((total / d).sqrt())).sum())
    return _extended(U, sigma.square(), Vh.T, total, kept, significant, threshold, max_new)


def _extended(
    U: Tensor,
    lam: Tensor,
    V: Tensor,
    total: Tensor,
    kept: Tensor,
    significant: int,
    threshold: float,
    max_new: int | None,
) -> Tensor:
    """``U`` and the fewest of the directions ``V`` (energies ``lam``, in decreasing order; the first
    ``significant`` of them numerically non-zero) that bring the kept energy to ``threshold * total`` (eq:energy_basis;
    with ``threshold = 1``, all the significant ones), at most ``max_new`` of them, orthonormalised against ``U``."""
    d = V.shape[0]
    need = threshold * total - kept
    before = torch.cumsum(lam, 0) - lam
    r = min(significant, int((before < need - d * torch.finfo(lam.dtype).eps * total).sum()))
    if threshold >= 1.0:  # every significant direction, also those whose energy is below the energy sums' rounding
        r = significant
    if max_new is not None:
        r = min(r, max_new)
    if r == 0:
        return U
    N = V[:, :r]
    if U.shape[1]:
        N = N - U @ (U.T @ N)
    N, _ = torch.linalg.qr(N, mode="reduced")
    return torch.cat([U, N], dim=1)


def stacked_factor(parts: Sequence[Tensor], *, square: bool = False) -> Tensor:
    """The triangular ``R`` of a QR of the rows ``parts`` stacked, so that ``R^T R`` is the sum of the parts'
    ``P^T P``: a running factor joins new inputs, or the ranks' factors join. ``R`` has ``min(n, d)`` rows for
    ``n`` rows stacked (fewer inputs than their width make a short factor, and each later QR and the SVD that
    reads it cost less), or ``d`` with ``square`` (zero rows below ``n``)."""
    A = torch.cat(list(parts))
    R = torch.linalg.qr(A, mode="r")[1]
    d = A.shape[1]
    return F.pad(R, (0, 0, 0, d - R.shape[0])) if square and R.shape[0] < d else R


def protected_rows_update(
    rows: Tensor, counts: Tensor, threshold: float, max_new: int | None = None, padding_idx: int | None = None
) -> Tensor:
    """GPM's criterion for an embedding (eq:energy_basis), the one-hot case: its inputs are the rows it reads, each read
    ``counts`` times (float, ``num_embeddings``), so the principal directions are rows and their energies the counts.

    Keep the protected ``rows`` and add the fewest most-read others that bring the kept reads to ``threshold`` of
    all reads (every row read at all with ``threshold = 1``), at most ``max_new`` of them. The padding row gets no
    gradient, so it takes no share of the reads; but decoupled weight decay (AdamW's) still moves it, so once read
    it is protected as well, where ``max_new`` leaves room after the others (protecting it costs the new task
    nothing).
    """
    pad_read = padding_idx is not None and bool(counts[padding_idx] > 0) and not bool((rows == padding_idx).any())
    if padding_idx is not None:
        counts = counts.clone()
        counts[padding_idx] = 0
    fresh = counts.clone()
    fresh[rows] = 0  # rows already protected carry their energy already
    total, kept = counts.sum(), counts[rows].sum()
    order = torch.argsort(fresh, descending=True)
    before = torch.cumsum(fresh[order], 0) - fresh[order]
    r = int(((before < threshold * total - kept) & (fresh[order] > 0)).sum())
    if max_new is not None:
        r = min(r, max_new)
    new = order[:r].to(rows)
    if pad_read and (max_new is None or r < max_new):
        new = torch.cat([new, new.new_tensor([padding_idx])])
    return torch.cat([rows, new])
