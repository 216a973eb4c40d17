"""The dense memory's new directions from candidates that do not fit in memory together (the method of snapshots).

:func:`~kaplinskiy.memory.dense.orthonormal_extension` keeps the top principal directions of the candidates
``C = [C_0, ..., C_{m-1}]`` (``n x N``) projected off the memory, ``R = (I - Q Q^T) C``: it holds all of ``C``,
``N`` per-sample gradients of ``n`` numbers each. The same directions are the leading eigenvectors of the
small Gram matrix ``R^T R = V diag(sigma^2) V^T`` (``N x N``) mapped back, ``R V sigma^{-1}`` (Sirovich's method
of snapshots). The Gram matrix is formed block by block, ``R_i^T R_j``, holding two chunks at a time: a chunk is
made for its own blocks, again for each chunk after the next one, and again to map back (all but the last): for
``m`` chunks, ``m + (m - 1)(m - 2) / 2 + m - 1`` chunks are made, against ``m`` for the candidates held whole.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from ..functional.projection import project_out_twice

__all__ = ["chunks_made", "snapshot_extension"]

_ROWS = 1 << 18  # rows of two chunks cast to float64 at a time for one block of the Gram matrix


def snapshot_extension(Q: Tensor, chunk: Callable[[int], Tensor], m: int, k: int, drop_tol: float) -> Tensor:
    """:func:`~kaplinskiy.memory.dense.orthonormal_extension` of ``Q`` by the candidates ``chunk(0), ...,
    chunk(m - 1)`` (each ``n x c_i``, made on demand, two held at once): new orthonormal columns ``N``,
    the at most ``k`` principal directions of ``R = (I - Q Q^T) C`` whose singular value is above
    ``drop_tol * max_j ||C_j||``, most energetic first, with ``Q^T N = 0`` to rounding.

    The Gram matrix is formed in float64, so its eigenvalues resolve singular values down to about
    ``sqrt(eps64)`` of the largest, below the smallest ``drop_tol`` of a float32 basis (``10 eps32``).
    """
    n = Q.shape[0]
    grams: dict[tuple[int, int], Tensor] = {}
    scale = torch.zeros((), dtype=torch.float64, device=Q.device)
    sizes: list[int] = []
    previous = None  # R_{i-1}, held from its own block to the next chunk's
    for i in range(m):
        C_i = chunk(i)
        sizes.append(C_i.shape[1])
        if C_i.shape[1]:
            scale = torch.maximum(scale, C_i.norm(dim=0).max().double())
        R_i = _projected(Q, C_i)
        del C_i
        grams[i, i] = _gram(R_i, R_i)
        if previous is not None:
            grams[i, i - 1] = _gram(R_i, previous)
        previous = None
        for j in range(i - 1):
            grams[i, j] = _gram(R_i, _projected(Q, chunk(j)))
        previous = R_i
    N_total = sum(sizes)
    if N_total == 0 or k == 0 or scale == 0:
        return Q.new_zeros((n, 0))
    G = torch.cat([torch.cat([_block(grams, i, j) for j in range(m)], dim=1) for i in range(m)], dim=0)
    lam, V = torch.linalg.eigh(G)
    sigma = lam.flip(0).clamp_min(0).sqrt()
    V = V.flip(1)
    r = min(int((sigma > drop_tol * scale).sum()), k)
    if r == 0:
        return Q.new_zeros((n, 0))
    W = (V[:, :r] / sigma[:r]).to(Q.dtype)
    N = Q.new_zeros((n, r))
    starts = [sum(sizes[:i]) for i in range(m)]
    for i in reversed(range(m)):  # the last chunk is still held
        R_i = previous if i == m - 1 else _projected(Q, chunk(i))
        previous = None
        N.addmm_(R_i, W[starts[i] : starts[i] + sizes[i]])
    N, _ = torch.linalg.qr(project_out_twice(N, Q), mode="reduced")
    return N


def chunks_made(m: int) -> int:
    """How many chunks :func:`snapshot_extension` makes for ``m`` of them: ``m`` for their own blocks, again each
    chunk before the previous one for every later chunk, and all but the last to map back."""
    return m + (m - 1) * (m - 2) // 2 + m - 1 if m > 1 else m


def _projected(Q: Tensor, C: Tensor) -> Tensor:
    """``(I - Q Q^T) C``, projected twice, in ``Q``'s dtype."""
    return project_out_twice(C.to(Q), Q)


def _gram(A: Tensor, B: Tensor) -> Tensor:
    """``A^T B`` in float64, a block of rows at a time (float64 copies of ``_ROWS`` rows, not of the whole)."""
    out = torch.zeros(A.shape[1], B.shape[1], dtype=torch.float64, device=A.device)
    for start in range(0, A.shape[0], _ROWS):
        out.addmm_(A[start : start + _ROWS].T.double(), B[start : start + _ROWS].double())
    return out


def _block(grams: dict[tuple[int, int], Tensor], i: int, j: int) -> Tensor:
    """Block ``(i, j)`` of the symmetric Gram matrix, only ``i >= j`` being stored."""
    return grams[i, j] if i >= j else grams[j, i].T
