"""The Triton kernel of :mod:`kaplinskiy._kernels.layerwise`: the projection (eq:layerwise_projection) of many
layers in one launch.

One program takes ``BM`` rows of one layer (which layer and which rows: ``blocks``; the layer's addresses,
strides, sizes and rank: its row of ``table``, see ``RowPlan``), forms ``C = D_W U_w + d_b u_b^T`` over the
full width, optionally subtracts a reference ``C_ref``, stores ``C`` and/or applies ``D <- D - C U^T``. Imported
only where Triton is installed; ``tl`` is a module global so that Triton's CPU interpreter can run it.
"""

import triton
import triton.language as tl


@triton.jit
def layer_rows(
    table,
    blocks,
    ref_base,
    out_base,
    skip,  # a 0-dim flag: 1 leaves every tensor as it is (a skipped step)
    weights,  # any tensor of the weights' dtype: only its type is read
    COMPUTE: tl.constexpr,  # C = D U (+ bias); else C = C_ref
    HAS_SKIP: tl.constexpr,
    HAS_REF: tl.constexpr,  # C -= C_ref
    STORE: tl.constexpr,  # write C
    APPLY: tl.constexpr,  # D -= C U^T
    BM: tl.constexpr,
    BK: tl.constexpr,
    BR: tl.constexpr,
    LAYOUT: tl.constexpr,  # 0: any strides; 1: row-major (unit column stride); 2: column-major (HF Conv1D)
    ALIGNED: tl.constexpr,  # addresses and strides allow 16-byte vector access
    VEC: tl.constexpr,  # elements per 16 bytes
):
    pid = tl.program_id(0)
    layer = tl.load(blocks + 2 * pid)
    row0 = tl.multiple_of(tl.load(blocks + 2 * pid + 1), BM)  # blocks start every BM rows (RowPlan)
    w, s_row, s_col, rows, cols, b_addr, u, r, u_t, u_stride, ut_stride = layer_entry(
        table, layer, weights, LAYOUT, ALIGNED, VEC
    )
    entry = table + layer * 14
    c_off, c_srow, c_scol = tl.load(entry + 8), tl.load(entry + 9), tl.load(entry + 10)
    m = row0 + tl.arange(0, BM)
    m_ok = m < rows
    j = tl.arange(0, BR)
    j_ok = j < r
    c_idx = c_off + m[:, None] * c_srow + j[None, :] * c_scol
    c_ok = m_ok[:, None] & j_ok[None, :]
    has_b = b_addr != 0
    if COMPUTE:
        acc = tl.zeros((BM, BR), dtype=tl.float32)
        for k0 in range(0, cols, BK):
            k = k0 + tl.arange(0, BK)
            k_ok = k < cols
            x = tl.load(tile(w, m, k, s_row, s_col, LAYOUT), mask=m_ok[:, None] & k_ok[None, :], other=0.0)
            acc = tl.dot(x.to(tl.float32), basis_tile(u, u_stride, k, k_ok, j), acc, input_precision="ieee")
        if has_b:
            u_b = tl.load(u + cols * u_stride + j, mask=j_ok, other=0.0)  # the bias row of U (an input of 1)
            bias = tl.load(b_addr.to(weights.dtype) + m, mask=m_ok, other=0.0).to(tl.float32)
            acc += bias[:, None] * u_b[None, :]
        if HAS_REF:
            acc -= tl.load(ref_base + c_idx, mask=c_ok, other=0.0)
    else:
        acc = tl.load(ref_base + c_idx, mask=c_ok, other=0.0)
    if HAS_SKIP:
        acc = acc * (1.0 - tl.load(skip))
    if STORE:
        tl.store(out_base + c_idx, acc, mask=c_ok)
    if APPLY:
        subtract_rows(
            w, b_addr, u, u_t, u_stride, ut_stride, acc, m, m_ok, j, j_ok, s_row, s_col, cols, True, weights, BK, LAYOUT
        )


@triton.jit
def layer_entry(table, layer, weights, LAYOUT: tl.constexpr, ALIGNED: tl.constexpr, VEC: tl.constexpr):
    """A layer's row of the launch table: weight pointer, strides, sizes, bias address, bases and rank, with
    the alignment hints that make 16-byte accesses (``ALIGNED``, checked by the plan)."""
    entry = table + layer * 14
    w = tl.load(entry + 0).to(weights.dtype)
    s_row, s_col = tl.load(entry + 1), tl.load(entry + 2)
    rows, cols = tl.load(entry + 3), tl.load(entry + 4)
    if ALIGNED:  # the hint goes on the pointer itself: one on the integer address does not survive the cast
        w = tl.multiple_of(w, 16)
        if LAYOUT == 1:  # and a mask bound that is a multiple of VEC keeps the masked accesses 16 bytes wide
            s_row, cols = tl.multiple_of(s_row, VEC), tl.multiple_of(cols, VEC)
        if LAYOUT == 2:
            s_col, rows = tl.multiple_of(s_col, VEC), tl.multiple_of(rows, VEC)
    b_addr = tl.load(entry + 5)
    u = tl.load(entry + 6).to(tl.pointer_type(tl.float32))
    r = tl.load(entry + 7)
    u_t = tl.load(entry + 11).to(tl.pointer_type(tl.float32))
    u_stride, ut_stride = tl.load(entry + 12), tl.load(entry + 13)  # U's row: r_pad floats, zero past r
    if ALIGNED:
        u, u_t = tl.multiple_of(u, 16), tl.multiple_of(u_t, 16)
        u_stride, ut_stride = tl.multiple_of(u_stride, 4), tl.multiple_of(ut_stride, 4)
    return w, s_row, s_col, rows, cols, b_addr, u, r, u_t, u_stride, ut_stride


@triton.jit
def basis_tile(u, u_stride, k, k_ok, j):
    """Rows ``k`` of ``U``, its padding included (zeros), so that the loads stay 16 bytes wide."""
    return tl.load(u + k[:, None] * u_stride + j[None, :], mask=k_ok[:, None] & (j < u_stride)[None, :], other=0.0)


@triton.jit
def subtract_rows(
    w,
    b_addr,
    u,
    u_t,
    u_stride,
    ut_stride,
    acc,
    m,
    m_ok,
    j,
    j_ok,
    s_row,
    s_col,
    cols,
    keep,
    weights,
    BK: tl.constexpr,
    LAYOUT: tl.constexpr,
):
    """``D <- D - C U^T`` on rows ``m`` of a layer (and its bias), ``C = acc``; nothing is written unless
    ``keep``."""
    elem = weights.dtype.element_ty
    for k0 in range(0, cols, BK):
        k = k0 + tl.arange(0, BK)
        k_ok = k < cols
        ptrs = tile(w, m, k, s_row, s_col, LAYOUT)
        ok = tl.where(keep, m_ok[:, None] & k_ok[None, :], False)  # (keep: a scalar; & fails interpreted)
        # U^T row-major (r x cols (+1), rows padded): a tile contiguous along k, no transpose in registers
        ut_ptrs = u_t + j[:, None] * ut_stride + k[None, :]
        ut_ok = j_ok[:, None] & (k < ut_stride)[None, :]  # past cols: bias column, padding; never stored
        ut = tl.load(ut_ptrs, mask=ut_ok, other=0.0)
        x = tl.load(ptrs, mask=ok, other=0.0).to(tl.float32) - tl.dot(acc, ut, input_precision="ieee")
        tl.store(ptrs, x.to(elem), mask=ok)
    if b_addr != 0:
        u_b = tl.load(u + cols * u_stride + j, mask=j_ok, other=0.0)
        bias_ptrs = b_addr.to(weights.dtype) + m
        bias = tl.load(bias_ptrs, mask=m_ok, other=0.0).to(tl.float32) - tl.sum(acc * u_b[None, :], axis=1)
        tl.store(bias_ptrs, bias.to(elem), mask=tl.where(keep, m_ok, False))


@triton.jit
def tile(w, m, k, s_row, s_col, LAYOUT: tl.constexpr):
    """The addresses of the ``rows m x columns k`` tile of a layer's matrix."""
    if LAYOUT == 1:
        return w + m[:, None] * s_row + k[None, :]
    if LAYOUT == 2:
        return w + m[:, None] + k[None, :] * s_col
    return w + m[:, None] * s_row + k[None, :] * s_col
