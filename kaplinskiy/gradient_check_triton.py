"""The Triton kernel of :mod:`kaplinskiy.gradient_check`: the finite check's one pass over every gradient.

One program takes ``BLOCK`` consecutive entries of one tensor (:class:`~kaplinskiy.tensor_blocks.TensorBlocks`)
and writes two flags: whether any entry is NaN or infinite, and whether any is nonzero (a NaN counts as nonzero).
Imported only where Triton is installed; ``tl`` is a module global so that Triton's CPU interpreter can run it.
"""

import triton
import triton.language as tl

from .dense_triton import block_entries

FLOAT32_MAX = tl.constexpr(3.4028234663852886e38)  # an entry beyond it, in float32, is infinite


@triton.jit
def block_flags(table, blocks, flags, like, BLOCK: tl.constexpr, ALIGNED: tl.constexpr):
    """``flags[2 p] = any(entry not finite)``, ``flags[2 p + 1] = any(entry != 0)`` (int32) for program ``p``;
    ``like``: any tensor of the gradients' dtype (only its type is read)."""
    pid, ptrs, ok, _ = block_entries(table, blocks, like, BLOCK, ALIGNED)
    x = tl.load(ptrs, mask=ok, other=0.0).to(tl.float32)  # float16 and bfloat16 keep NaN and infinity
    bad = (x != x) | (tl.abs(x) > FLOAT32_MAX)
    tl.store(flags + 2 * pid, tl.max(bad.to(tl.int32), axis=0))
    tl.store(flags + 2 * pid + 1, tl.max((x != 0.0).to(tl.int32), axis=0))
