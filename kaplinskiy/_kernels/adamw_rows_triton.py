"""The Triton kernel of :mod:`kaplinskiy._kernels.adamw_rows`: AdamW and the projection of its update
(eq:projected_update, eq:layerwise_projection) for many layers in one launch.

One program takes ``BM`` rows of one layer (``blocks``, ``table``: as in :mod:`kaplinskiy._kernels.layerwise_triton`),
and in one sweep over the columns reads ``w, g, m, v``, writes the new moments and ``w + Delta``, and
accumulates ``C = Delta U``; a second sweep subtracts ``C U^T`` from the same rows, which the first sweep has
just written (they are read again from the cache, not from memory, when they fit; with ``STREAM``/``KEEP`` the
gradient and moments, used once, are the first out of L2 and the weights the last). The bias is an input of 1.
Each layer's gradient, moments and step count are its row of ``state`` (``g, m, v, step`` of the weight,
then of the bias); its hyperparameters are its row of ``hyper`` (``lr, wd, eps, beta2, 1 - beta1, 1 - beta2,
ln beta1, ln beta2`` of the weight, then of the bias, from the host in float64). The bias corrections are computed
from the step count on the device (it stays there, as torch's fused AdamW keeps it), without cancellation.
"""

import triton
import triton.language as tl

from .layerwise_triton import basis_tile, layer_entry, subtract_rows, tile


@triton.jit
def adamw_layer_rows(
    table,
    state,
    hyper,
    blocks,
    skip,  # a 0-dim flag: 1 leaves every tensor as it is (a step rejected on the device)
    weights,  # any tensor of the weights' dtype: only its type is read
    HAS_SKIP: tl.constexpr,
    BM: tl.constexpr,
    BK: tl.constexpr,
    BR: tl.constexpr,
    LAYOUT: tl.constexpr,  # 1: row-major (unit column stride); 2: column-major (HF Conv1D); 0: any strides
    ALIGNED: tl.constexpr,  # addresses and strides allow 16-byte vector access
    VEC: tl.constexpr,  # elements per 16 bytes
    STREAM: tl.constexpr,  # L2 eviction policy of g, m, v (read once, written once): "evict_first" or ""
    KEEP: tl.constexpr,  # that of the weights, which sweep 2 reads again: "evict_last" or ""
):
    elem = weights.dtype.element_ty
    pid = tl.program_id(0)
    layer = tl.load(blocks + 2 * pid)
    row0 = tl.multiple_of(tl.load(blocks + 2 * pid + 1), BM)
    w, s_row, s_col, rows, cols, b_addr, u, r, u_t, u_stride, ut_stride = layer_entry(
        table, layer, weights, LAYOUT, ALIGNED, VEC
    )
    st = state + layer * 8
    g, ma, va = tl.load(st + 0).to(weights.dtype), tl.load(st + 1).to(weights.dtype), tl.load(st + 2).to(weights.dtype)
    if ALIGNED:  # the gradient and moments share the weight's strides (AdamWRowPlan checks)
        g, ma, va = tl.multiple_of(g, 16), tl.multiple_of(ma, 16), tl.multiple_of(va, 16)
    step = tl.load(tl.load(st + 3).to(tl.pointer_type(tl.float32)))
    coef = step_coefficients(hyper + layer * 16, step)
    keep = True
    if HAS_SKIP:
        keep = tl.load(skip) == 0
    m = row0 + tl.arange(0, BM)
    m_ok = m < rows
    j = tl.arange(0, BR)
    j_ok = j < r
    acc = tl.zeros((BM, BR), dtype=tl.float32)
    for k0 in range(0, cols, BK):
        k = k0 + tl.arange(0, BK)
        k_ok = k < cols
        ok = m_ok[:, None] & k_ok[None, :]
        store_ok = tl.where(keep, ok, False)  # (keep: a scalar; & fails interpreted)
        x_ptrs, g_ptrs = tile(w, m, k, s_row, s_col, LAYOUT), tile(g, m, k, s_row, s_col, LAYOUT)
        m_ptrs, v_ptrs = tile(ma, m, k, s_row, s_col, LAYOUT), tile(va, m, k, s_row, s_col, LAYOUT)
        x = tl.load(x_ptrs, mask=ok, other=0.0, eviction_policy=KEEP).to(tl.float32)
        grad = tl.load(g_ptrs, mask=ok, other=0.0, eviction_policy=STREAM).to(tl.float32)
        mt = tl.load(m_ptrs, mask=ok, other=0.0, eviction_policy=STREAM).to(tl.float32)
        vt = tl.load(v_ptrs, mask=ok, other=0.0, eviction_policy=STREAM).to(tl.float32)
        d, mt, vt = adamw_delta(x, grad, mt, vt, coef)
        d = tl.where(ok, d, 0.0)
        tl.store(m_ptrs, mt.to(elem), mask=store_ok, eviction_policy=STREAM)
        tl.store(v_ptrs, vt.to(elem), mask=store_ok, eviction_policy=STREAM)
        tl.store(x_ptrs, (x + d).to(elem), mask=store_ok, eviction_policy=KEEP)
        acc = tl.dot(d, basis_tile(u, u_stride, k, k_ok, j), acc, input_precision="ieee")
    if b_addr != 0:
        b_st = state + layer * 8 + 4
        b_step = tl.load(tl.load(b_st + 3).to(tl.pointer_type(tl.float32)))
        b_coef = step_coefficients(hyper + layer * 16 + 8, b_step)
        b_ptrs = b_addr.to(weights.dtype) + m
        bm_ptrs, bv_ptrs = tl.load(b_st + 1).to(weights.dtype) + m, tl.load(b_st + 2).to(weights.dtype) + m
        xb = tl.load(b_ptrs, mask=m_ok, other=0.0).to(tl.float32)
        gb = tl.load(tl.load(b_st + 0).to(weights.dtype) + m, mask=m_ok, other=0.0).to(tl.float32)
        mb = tl.load(bm_ptrs, mask=m_ok, other=0.0).to(tl.float32)
        vb = tl.load(bv_ptrs, mask=m_ok, other=0.0).to(tl.float32)
        db, mb, vb = adamw_delta(xb, gb, mb, vb, b_coef)
        db = tl.where(m_ok, db, 0.0)
        b_ok = tl.where(keep, m_ok, False)
        tl.store(bm_ptrs, mb.to(elem), mask=b_ok)
        tl.store(bv_ptrs, vb.to(elem), mask=b_ok)
        tl.store(b_ptrs, (xb + db).to(elem), mask=b_ok)
        u_b = tl.load(u + cols * u_stride + j, mask=j_ok, other=0.0)  # the bias row of U (an input of 1)
        acc += db[:, None] * u_b[None, :]
    # sweep 2 reads what other threads of this program wrote in sweep 1: a CTA barrier orders those accesses
    tl.debug_barrier()
    subtract_rows(
        w, b_addr, u, u_t, u_stride, ut_stride, acc, m, m_ok, j, j_ok, s_row, s_col, cols, keep, weights, BK, LAYOUT
    )


@triton.jit
def step_coefficients(hp, step):
    """A tensor's row of ``hyper`` at step ``t``: ``lr wd``, ``eps``, ``beta2``, ``1 - beta1``, ``1 - beta2``,
    ``lr / (1 - beta1^t)`` and ``sqrt(1 - beta2^t)``. The complements and ``ln beta`` come from the host in float64:
    ``1 - beta2`` formed in float32 from ``beta2 = 0.9999`` is off by 2e-4, and ``1 - beta2^t`` likewise."""
    lr, wd, eps, beta2 = tl.load(hp + 0), tl.load(hp + 1), tl.load(hp + 2), tl.load(hp + 3)
    one_minus_beta1, one_minus_beta2 = tl.load(hp + 4), tl.load(hp + 5)
    bc1, bc2 = one_minus_power(step, tl.load(hp + 6)), one_minus_power(step, tl.load(hp + 7))
    return lr * wd, eps, beta2, one_minus_beta1, one_minus_beta2, lr / bc1, tl.sqrt(bc2)


@triton.jit
def one_minus_power(step, log_beta):
    """``1 - beta^t = -expm1(t ln beta)`` to float32 precision, also where ``beta^t`` is near 1 (``beta2 = 0.999``
    in early steps), where ``1 - exp(...)`` in float32 would lose 3-4 digits: the series of ``expm1`` for
    ``|x| < 1/2`` (8 terms, relative error below 1e-8), ``exp(x) - 1`` beyond; ``beta = 0`` (``ln beta = -inf``)
    gives 1."""
    x = step * log_beta
    small = x > -0.5
    y = tl.where(small, x, 0.0)
    series = y * (1 + y / 2 * (1 + y / 3 * (1 + y / 4 * (1 + y / 5 * (1 + y / 6 * (1 + y / 7 * (1 + y / 8)))))))
    return -tl.where(small, series, tl.exp(x) - 1.0)


@triton.jit
def adamw_delta(x, grad, m, v, coef):
    """AdamW's step ``Delta`` and new moments (Loshchilov & Hutter; the same formulas as
    :func:`kaplinskiy.optim.hybrid_adamw.adamw_update`), ``coef`` from :func:`step_coefficients`:
    ``m <- b1 m + (1-b1) g``, ``v <- b2 v + (1-b2) g^2``,
    ``Delta = -lr wd w - lr/(1-b1^t) m / (sqrt(v)/sqrt(1-b2^t) + eps)``."""
    lr_wd, eps, beta2, one_minus_beta1, one_minus_beta2, step_size, bc2_sqrt = coef
    m = m + one_minus_beta1 * (grad - m)
    v = beta2 * v + one_minus_beta2 * grad * grad
    d = -lr_wd * x - step_size * m / (tl.sqrt(v) / bc2_sqrt + eps)
    return d, m, v
