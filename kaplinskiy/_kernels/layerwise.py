"""Every layer's projection ``D <- D - (D U - C_ref) U^T`` (eq:layerwise_projection) in one grouped launch, on CUDA.

Per layer, :class:`~kaplinskiy.LayerwiseMemory` needs two skinny products with ``U`` (``in x r``, ``r`` of
a few dozen at most). As separate BLAS calls they cost 4-5 kernel launches per layer, most of them too small
to fill a GPU, and the host's time to issue them exceeds the device's time to run them (measured on an H100,
GPT-2 124M shapes: 3.5 ms to issue the projection, 1.3 ms of kernels, against 1.3 ms for the fused AdamW
step). Here one program takes ``BM`` rows of one layer's matrix, forms their coefficients
``C = D_W U_w + d_b u_b^T - C_ref`` over the full width, and then subtracts ``C U^T`` from the same rows: one
launch for all layers, two or three passes over the weights at best (measured on an H100: 4.5-5 passes' time,
0.24 of the per-layer BLAS calls'; workflow/records/step_time/h100_kernel_notes.md). Products are float32 in
IEEE arithmetic (no TF32), whatever the weights' dtype.

Triton is imported on first use: without it (or on the CPU) the memory uses its per-layer BLAS path.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch
from torch import Tensor

from .launch import Launch

__all__ = [
    "DEFAULT_BLOCKS",
    "MAX_RANK",
    "BlockSizes",
    "RowLayer",
    "RowPlan",
    "block_sizes",
    "kernel_takes",
    "padded_bases",
    "set_block_sizes",
]

MAX_RANK = 64  # larger bases make the products compute-bound: per-layer BLAS does those better


class BlockSizes(NamedTuple):
    """The grouped kernels' launch shape: rows per program, columns per inner step, warps, pipeline stages."""

    rows: int
    cols: int
    warps: int
    stages: int


# The fastest of 40 variants swept on an H100 (GPT-2 124M shapes, r = 16; 16-row programs beat 32-128, and IEEE
# float32 beat 3xTF32 there).
DEFAULT_BLOCKS = BlockSizes(16, 64, 4, 3)
_blocks = DEFAULT_BLOCKS
_DTYPES = (torch.float32, torch.bfloat16, torch.float16)


def _padded(x: Tensor, multiple: int = 4) -> Tensor:
    """A float32 copy of the matrix ``x`` whose rows are padded with zeros to a multiple of ``multiple``."""
    out = x.new_zeros(x.shape[0], -(-x.shape[1] // multiple) * multiple, dtype=torch.float32)
    out[:, : x.shape[1]] = x
    return out


def padded_bases(U: Tensor) -> tuple[Tensor, Tensor]:
    """``U`` and ``U^T`` as :class:`RowLayer` takes them: float32, rows padded with zeros to 4 floats."""
    return _padded(U), _padded(U.T)[:, : U.shape[0]]


def block_sizes() -> BlockSizes:
    """The block sizes plans built from now on take (:data:`DEFAULT_BLOCKS` unless set)."""
    return _blocks


def set_block_sizes(blocks: Sequence[int]) -> None:
    """Set the block sizes of the plans built from now on (a plan already built keeps its own), for sweeps and
    benchmarks: ``(rows, cols, warps, stages)``, rows and columns powers of two of at least 16 (``tl.dot``'s
    least), warps a power of two up to 32, at least one stage. Raises ``ValueError`` otherwise."""
    global _blocks
    if len(blocks) != 4 or not all(isinstance(x, int) and not isinstance(x, bool) for x in blocks):
        raise ValueError(f"Invalid blocks: four integers (rows, cols, warps, stages), got {blocks!r}")
    new = BlockSizes(*blocks)
    if not all(x >= 16 and x & (x - 1) == 0 for x in (new.rows, new.cols)):
        raise ValueError(f"Invalid blocks: rows and cols must be powers of two of at least 16, got {new}")
    if new.warps not in (1, 2, 4, 8, 16, 32) or new.stages < 1:
        raise ValueError(f"Invalid blocks: warps must be a power of two up to 32 and stages at least 1, got {new}")
    _blocks = new


def _kernel() -> Any:
    from .layerwise_triton import layer_rows  # Triton compiles (or interprets) it on first launch

    return layer_rows


@dataclass(frozen=True)
class RowLayer:
    """One layer as the kernel sees it: ``w`` read as a ``rows x cols`` matrix (``transposed``: stored
    ``cols x rows``, Hugging Face's Conv1D), its bias or ``None``, and its float32 basis of ``rank`` vectors
    twice: ``U`` (``cols (+1 for the bias) x r_pad``, contiguous, zero beyond column ``rank``) and ``U_T``
    (``rank x cols (+1)``, unit column stride, any row stride). Padding both to rows of a multiple of 4 floats
    (:func:`padded_bases`) lets the kernel read them 16 bytes at a time."""

    w: Tensor
    b: Tensor | None
    U: Tensor
    U_T: Tensor
    transposed: bool
    rank: int

    @property
    def rows(self) -> int:
        return self.w.shape[1] if self.transposed else self.w.shape[0]

    def coefficient_shape(self) -> tuple[int, int]:
        """``C`` is ``rows x r`` (``r x rows`` for a transposed layer, as the BLAS path returns it)."""
        return (self.rank, self.rows) if self.transposed else (self.rows, self.rank)


def kernel_takes(w: Tensor, b: Tensor | None, device: torch.device, dtype: torch.dtype) -> bool:
    """Whether a plan on ``device`` over weights of ``dtype`` can take the layer ``(w, b)``: a float32, bfloat16
    or float16 weight of that dtype on that device, and a contiguous bias of the same dtype (the kernel reads the
    bias at the weights' precision)."""
    if dtype not in _DTYPES or w.dtype != dtype or w.device != device:
        return False
    return b is None or (b.dtype == dtype and b.device == device and b.is_contiguous())


class RowPlan:
    """The launch table of a fixed list of layers (their tensors' addresses, strides and bases)."""

    def __init__(self, layers: list[RowLayer], layout: RowPlan | None = None) -> None:
        device, dtype = layers[0].w.device, layers[0].w.dtype
        if not all(kernel_takes(lay.w, lay.b, device, dtype) for lay in layers):
            raise ValueError(
                "Invalid layers: one plan takes weights of one floating dtype (float32, bfloat16 or float16) on one "
                "device, and contiguous biases of their weights' dtype"
            )
        if any(lay.rank > MAX_RANK for lay in layers):
            raise ValueError(f"Invalid layers: the grouped kernel takes bases of at most {MAX_RANK} vectors")
        if any(not (lay.U.is_contiguous() and lay.U.shape[1] >= lay.rank and lay.U_T.stride(1) == 1) for lay in layers):
            raise ValueError("Invalid layers: U must be contiguous with at least rank columns, U_T row-major")
        self.layers, self.device, self.dtype = layers, device, dtype
        rows, offset = [], 0
        for lay in layers:
            w = lay.w if lay.w.ndim == 2 else lay.w.reshape(lay.w.shape[0], -1)
            s_row, s_col = (w.stride(1), w.stride(0)) if lay.transposed else (w.stride(0), w.stride(1))
            cols = w.shape[0] if lay.transposed else w.shape[1]
            c_srow, c_scol = (1, lay.rows) if lay.transposed else (lay.rank, 1)
            b_addr = lay.b.data_ptr() if lay.b is not None else 0
            rows.append([w.data_ptr(), s_row, s_col, lay.rows, cols, b_addr, lay.U.data_ptr(), lay.rank, offset])
            rows[-1] += [c_srow, c_scol, lay.U_T.data_ptr(), lay.U.stride(0), lay.U_T.stride(0)]
            offset += lay.rows * lay.rank
        self.numel = offset
        self.sizes = [lay.rows * lay.rank for lay in layers]
        self.shapes = [lay.coefficient_shape() for lay in layers]
        self._last_split: tuple[Tensor | None, list[Tensor]] = (None, [])
        self.table = torch.tensor(rows, dtype=torch.int64, device=device)
        self.row_counts = [lay.rows for lay in layers]
        bm, bk, warps, stages = _blocks
        if layout is not None and layout.row_counts == self.row_counts and layout.block_rows == bm:
            self.blocks = layout.blocks  # the same layers' shapes: the block list (thousands of rows) is reused
        else:
            blocks = [(i, r0) for i, n_rows in enumerate(self.row_counts) for r0 in range(0, n_rows, bm)]
            self.blocks = torch.tensor(blocks, dtype=torch.int64, device=device)
        self.block_rows, self.block_k = bm, bk
        self.options = {"num_warps": warps, "num_stages": stages}
        self.block_r = max(16, 1 << (max(lay.rank for lay in layers) - 1).bit_length())
        col_unit = all(row[2] == 1 for row in rows)
        row_unit = all(row[1] == 1 for row in rows)
        self.layout = 1 if col_unit else 2 if row_unit else 0
        self.vec = 16 // layers[0].w.element_size()
        unit = 4 if col_unit else 3  # the contiguous extent: columns (row-major) or rows (column-major)
        # 16-byte accesses: the weights' address, their stride and extent along the contiguous axis; the bases'
        # addresses and row strides (LayerwiseMemory pads them)
        self.aligned = self.layout != 0 and all(
            row[0] % 16 == 0
            and row[1 if col_unit else 2] % self.vec == 0
            and row[unit] % self.vec == 0
            and row[6] % 16 == 0
            and row[11] % 16 == 0
            and row[12] % 4 == 0
            and row[13] % 4 == 0
            for row in rows
        )

    def run(
        self,
        *,
        compute: bool,
        reference: Tensor | None = None,
        store: bool = False,
        apply: bool = False,
        skip: Tensor | None = None,
    ) -> Tensor | None:
        """One launch; returns the flat float32 coefficients when ``store``."""
        out = torch.empty(self.numel if store else 1, dtype=torch.float32, device=self.device)
        self.launch(out, compute=compute, reference=reference, apply=apply, skip=skip, store=store)()
        return out if store else None

    def launch(
        self,
        out: Tensor,
        *,
        compute: bool,
        reference: Tensor | None = None,
        store: bool = False,
        apply: bool = False,
        skip: Tensor | None = None,
    ) -> Launch:
        """The launch :meth:`run` makes, writing the coefficients (when ``store``) to ``out``."""
        if not compute and reference is None:
            raise ValueError("Invalid run: without compute, the coefficients come from reference")
        ref = reference if reference is not None else out
        flag = skip.to(torch.float32) if skip is not None else out
        constants = {
            "COMPUTE": compute,
            "HAS_SKIP": skip is not None,
            "HAS_REF": compute and reference is not None,
            "STORE": store,
            "APPLY": apply,
            "BM": self.block_rows,
            "BK": self.block_k,
            "BR": self.block_r,
            "LAYOUT": self.layout,
            "ALIGNED": self.aligned,
            "VEC": self.vec,
        }
        args = (self.table, self.blocks, ref, out, flag, self.layers[0].w)
        return Launch(_kernel(), (self.blocks.shape[0],), args, constants, dict(self.options))

    def split(self, flat: Tensor) -> list[Tensor]:
        """The flat coefficients as one view per layer, in the BLAS path's shapes."""
        views = [c.view(shape) for c, shape in zip(flat.split(self.sizes), self.shapes, strict=True)]
        self._last_split = (flat, views)
        return views

    def flatten(self, coefficients: list[Tensor]) -> Tensor:
        """Per-layer coefficients as one flat float32 buffer: no copy when they are the views of the last
        :meth:`split` (kept coefficients), else one concatenation."""
        flat, views = self._last_split
        if len(coefficients) == len(views) and all(c is v for c, v in zip(coefficients, views, strict=True)):
            return flat
        return torch.cat([c.reshape(-1).float() for c in coefficients])
