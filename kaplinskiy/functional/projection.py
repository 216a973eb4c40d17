"""The orthogonal projector onto the complement of the memory span(G_A) (eq:projected), whose direction is orthogonal to
it (eq:orthogonal).

Everything here is a pure tensor function: no optimizer, no state. ``G_A`` holds one direction per
column (shape ``(n, k)``); the basis ``Q`` returned by :func:`orthonormal_basis` has shape ``(n, r)``
with ``r = rank(G_A) <= k``.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["complement_projector", "orthonormal_basis", "project_out", "project_out_twice", "projected_direction"]


def _check_matrix(G: Tensor) -> None:
    if G.ndim != 2:
        raise ValueError(
            f"Invalid G_A: expected a 2-D tensor (n, k) with one direction per column, got shape {tuple(G.shape)}"
        )
    if not torch.is_floating_point(G):
        raise ValueError(f"Invalid G_A: expected a floating-point tensor, got dtype {G.dtype}")
    if not torch.isfinite(G).all():
        raise ValueError("Invalid G_A: it contains non-finite entries")


def orthonormal_basis(G: Tensor, rtol: float | None = None) -> Tensor:
    """Orthonormal basis ``Q`` of span(G_A), robust to rank deficiency and zero columns.

    A thin QR gives ``G = Q_0 R`` in O(n k^2); plain (unpivoted) QR cannot reveal the rank, so the
    small ``k x k`` factor is split by an SVD, ``R = U S V^T``, and ``Q = Q_0 U[:, S > tol]``.
    The tolerance follows ``numpy.linalg.matrix_rank``: ``max(n, k) * eps * S_max`` unless ``rtol``
    (relative to ``S_max``) is given. A zero or empty ``G`` gives an ``(n, 0)`` basis.
    """
    _check_matrix(G)
    n, k = G.shape
    if k == 0:
        return G.new_zeros((n, 0))
    Q0, R = torch.linalg.qr(G, mode="reduced")
    U, S, _ = torch.linalg.svd(R)
    s_max = S.max() if S.numel() else G.new_zeros(())
    if s_max == 0:
        return G.new_zeros((n, 0))
    rel = rtol if rtol is not None else max(n, k) * torch.finfo(G.dtype).eps
    keep = S > rel * s_max
    return Q0 @ U[:, keep]


def project_out(g: Tensor, basis: Tensor) -> Tensor:
    """``P_perp g = g - Q (Q^T g)`` (eq:projected) for an orthonormal ``basis`` Q: the direction without its sign.

    Costs two thin matrix-vector products, O(n r); the ``n x n`` projector is never formed.
    """
    if basis.ndim != 2 or g.ndim != 1 or basis.shape[0] != g.shape[0]:
        raise ValueError(f"Invalid shapes: g {tuple(g.shape)} and basis {tuple(basis.shape)} must be (n,) and (n, r)")
    if basis.shape[1] == 0:
        return g.clone()
    return g - basis @ (basis.T @ g)


def project_out_twice(C: Tensor, basis: Tensor) -> Tensor:
    """``P_perp C`` for the columns of ``C``, applied twice (classical Gram-Schmidt with one re-orthogonalisation,
    "twice is enough"): ``Q^T`` of the result is zero to rounding even where ``C`` lies mostly in span(Q)."""
    for _ in range(2):
        if basis.shape[1]:
            C = C - basis @ (basis.T @ C)
    return C


def projected_direction(g: Tensor, basis: Tensor) -> Tensor:
    """``d = -P_perp(G_A) g`` (eq:projected), so that ``G_A^T d = 0`` (eq:orthogonal)."""
    return -project_out(g, basis)


def complement_projector(basis: Tensor) -> Tensor:
    """The dense ``n x n`` matrix ``P_perp = I - Q Q^T`` (eq:projected), for tests and small problems only."""
    n = basis.shape[0]
    return torch.eye(n, dtype=basis.dtype, device=basis.device) - basis @ basis.T
