"""The Triton kernel of :mod:`kaplinskiy._kernels.gradient_check`: the finite check's one pass over every gradient.

One program takes ``BLOCK`` consecutive entries of one tensor (:class:`~kaplinskiy._kernels.launch.TensorBlocks`)
and folds them into the step's verdict ``[non-finite, all zero]`` (float32, set to ``[0, 1]`` before the
launch): a block holding a NaN or an infinity sets the first to 1, a block holding a nonzero entry (a NaN or an
infinity among them) sets the second to 0, each by one atomic operation, taken only while the verdict does not
already say so. With ``HAS_LOSS`` the first program also checks the loss (one number on the same device); a
non-finite loss sets both. Imported only where Triton is installed; ``tl`` is a module global so that Triton's
CPU interpreter can run it.
"""

import triton
import triton.language as tl

from .dense_triton import block_entries

FLOAT32_MAX = tl.constexpr(3.4028234663852886e38)  # an entry beyond it, in float32, is infinite


@triton.jit
def block_verdict(
    table, blocks, verdict, loss, like, BLOCK: tl.constexpr, ALIGNED: tl.constexpr, HAS_LOSS: tl.constexpr
):
    """``like``: any tensor of the gradients' dtype (only its type is read); ``loss``: read with ``HAS_LOSS``."""
    pid, ptrs, ok, _ = block_entries(table, blocks, like, BLOCK, ALIGNED)
    x = tl.load(ptrs, mask=ok, other=0.0).to(tl.float32)  # float16 and bfloat16 keep NaN and infinity
    bad = tl.max(((x != x) | (tl.abs(x) > FLOAT32_MAX)).to(tl.int32), axis=0)
    nonzero = tl.max((x != 0.0).to(tl.int32), axis=0)
    if HAS_LOSS:
        if pid == 0:
            value = tl.load(loss).to(tl.float32)
            bad = bad | ((value != value) | (tl.abs(value) > FLOAT32_MAX)).to(tl.int32)
    if bad != 0:
        tl.atomic_max(verdict, 1.0)
    if (nonzero | bad) != 0:
        if tl.load(verdict + 1, volatile=True) != 0.0:  # most blocks find it cleared already: no atomic
            tl.atomic_min(verdict + 1, 0.0)
