"""The Triton kernels of :mod:`kaplinskiy._kernels.dense`: the projection (eq:projected) of every tensor in one launch.

The basis is stored direction by direction (``r x n``, row-major) and a parameter tensor owns the columns
``[offset, offset + numel)``. One program takes ``BLOCK`` consecutive entries of one tensor (``blocks``: which
tensor and where; ``table``: its address, size and offset): :func:`dense_partial_dots` writes their share of
each coordinate ``Q_j^T g`` (summed over programs afterwards, in a fixed order), :func:`dense_apply` subtracts
``sum_j c_j Q_j`` from them. Each reads the basis once, streaming: the projection reads it twice, its floor.
Imported only where Triton is installed; ``tl`` is a module global so that Triton's CPU interpreter can run it.
"""

import triton
import triton.language as tl


@triton.jit
def block_entries(table, blocks, like, BLOCK: tl.constexpr, ALIGNED: tl.constexpr):
    """This program's block (:class:`~kaplinskiy._kernels.launch.TensorBlocks`): its index, the pointers to its
    entries (of ``like``'s dtype), their mask, and their columns in the concatenation of all the tensors."""
    pid = tl.program_id(0)
    t = tl.load(blocks + 2 * pid)
    start = tl.load(blocks + 2 * pid + 1)
    g = tl.load(table + 3 * t).to(like.dtype)
    numel = tl.load(table + 3 * t + 1)
    first = tl.load(table + 3 * t + 2) + start  # the first column of the basis these entries meet
    if ALIGNED:  # lets the accesses be 16 bytes wide (a mask's bound that is a multiple of 4 included)
        g = tl.multiple_of(g, 16)  # on the pointer: a hint on the integer address does not survive the cast
        numel = tl.multiple_of(numel, 4)
        first = tl.multiple_of(first, 4)
        start = tl.multiple_of(start, 4)
    idx = start + tl.arange(0, BLOCK)
    return pid, g + idx, idx < numel, first + tl.arange(0, BLOCK)


@triton.jit
def dense_partial_dots(directions, n, r, table, blocks, partial, like, BLOCK: tl.constexpr, ALIGNED: tl.constexpr):
    """``like``: any tensor of the gradients' dtype (only its type is read)."""
    pid, g_ptrs, ok, cols = block_entries(table, blocks, like, BLOCK, ALIGNED)
    g = tl.load(g_ptrs, mask=ok, other=0.0).to(tl.float32)
    q_ptrs = directions + cols
    for j in range(0, r):  # the pointers advance a row at a time: 64-bit, wherever r * n passes 2^31
        q = tl.load(q_ptrs, mask=ok, other=0.0)
        tl.store(partial + pid * r + j, tl.sum(q * g, axis=0))
        q_ptrs += n


@triton.jit
def dense_apply(directions, n, r, table, blocks, coefficients, like, BLOCK: tl.constexpr, ALIGNED: tl.constexpr):
    """``like``: any tensor of the gradients' dtype (only its type is read)."""
    _, g_ptrs, ok, cols = block_entries(table, blocks, like, BLOCK, ALIGNED)
    g = tl.load(g_ptrs, mask=ok, other=0.0).to(tl.float32)
    q_ptrs = directions + cols
    for j in range(0, r):
        g -= tl.load(coefficients + j) * tl.load(q_ptrs, mask=ok, other=0.0)
        q_ptrs += n
    tl.store(g_ptrs, g.to(like.dtype.element_ty), mask=ok)
