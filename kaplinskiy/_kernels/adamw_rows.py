"""AdamW with its update projected layer by layer (eq:projected_update), every layer in one grouped launch, on CUDA.

``HybridAdamW(fused=True)`` uses it. ``ForgettingGuard(AdamW(fused=True), memory)`` moves the covered weights
in two kernels: torch's fused AdamW (read ``w, g, m, v``, write ``w, m, v``), then the projection (read the new
``w`` for its coefficients, again to subtract, write it: 2-3 passes more). Here one program takes ``BM`` rows of
a layer and does both: the coefficients ``C = Delta U`` are accumulated while ``w + Delta`` is written, and the
second sweep rereads rows the same program has just written. The floor is AdamW's own 7 passes, plus at most
one read and one write of the covered weights where those rows have left the cache. Weights in bfloat16 or
float16 are rounded twice (``w + Delta``, then the projected row), as after the guard's two kernels, where the
foreach path rounds once: their coordinates along ``U`` keep the rounding noise of that precision.

The launch table of the layers is the projection's (:class:`~kaplinskiy._kernels.layerwise.RowPlan`); this plan
adds, per layer, the addresses of the gradients, moments and step counts (``state``) and the hyperparameters
(``hyper``), rebuilt only when a gradient is reallocated or a hyperparameter changes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from itertools import chain
from operator import attrgetter
from typing import Any

import torch
from torch import Tensor

from .launch import Launch
from .layerwise import RowPlan

__all__ = ["AdamWRowPlan", "cache_hints", "set_cache_hints"]

_grad = attrgetter("grad")

# L2 eviction hints of the fused kernel: the gradient and moments are streamed (evict first), the weights kept
# (evict last) for the second sweep, which rereads them; see workflow/records/step_time/h100_kernel_notes.md.
_cache_hints = True


def cache_hints() -> bool:
    """Whether the launches built from now on give the kernel its L2 eviction hints."""
    return _cache_hints


def set_cache_hints(on: bool) -> None:
    """Turn the fused kernel's L2 eviction hints on or off for the launches built from now on (for sweeps; the
    results are the same either way)."""
    global _cache_hints
    if not isinstance(on, bool):
        raise ValueError(f"Invalid cache hints: True or False, got {on!r}")
    _cache_hints = on


class AdamWRowPlan:
    """The grouped AdamW-and-projection launch of the layers of ``rows``.

    Args:
        rows: the projection's plan over the parameters themselves (``LayerwiseMemory.fused_layers``).
        params: each layer's ``(weight, bias)`` parameters, in ``rows``' order (bias ``None`` where it has none).
    """

    def __init__(self, rows: RowPlan, params: Sequence[tuple[Tensor, Tensor | None]]) -> None:
        if len(params) != len(rows.layers):
            raise ValueError(f"Invalid params: {len(params)} layers for a plan of {len(rows.layers)}")
        self.rows, self.params = rows, list(params)
        self.tensors = [p for pair in self.params for p in pair if p is not None]
        index = {id(p): i for i, p in enumerate(self.tensors)}
        self._slots = [(index[id(w)], index[id(b)] if b is not None else None) for w, b in self.params]
        self._state_key: tuple[Any, ...] | None = None
        self._hyper_key: list[tuple[float, ...]] | None = None
        self._state = self._hyper = torch.empty(0)
        self._aligned = False

    def launch(
        self,
        moments: Sequence[tuple[Tensor, Tensor, Tensor]],
        hyper: Sequence[tuple[float, ...]],
        skip: Tensor | None = None,
    ) -> Launch:
        """The launch that steps every layer of the plan. Both lists follow :attr:`tensors`: ``moments[i]`` is
        that tensor's ``(exp_avg, exp_avg_sq, step)``, the step a float32 tensor on its device that already counts
        this step; ``hyper[i]`` its ``(lr, weight_decay, beta1, beta2, eps)``. Every tensor needs a gradient.
        Where the device flag ``skip`` (a 0-dim float32 tensor) is 1, nothing is written."""
        self._update_state(moments)
        hyper = [tuple(map(float, h)) for h in hyper]  # values: a tensor changed in place is a change
        if hyper != self._hyper_key:
            rows = []
            for w, b in self._slots:
                rows.append([*_table_row(hyper[w]), *(_table_row(hyper[b]) if b is not None else (0.0,) * 8)])
            self._hyper = _upload(rows, torch.float32, self.rows.device)
            self._hyper_key = hyper
        from .adamw_rows_triton import adamw_layer_rows  # Triton compiles (or interprets) it on first launch

        constants = {
            "HAS_SKIP": skip is not None,
            "BM": self.rows.block_rows,
            "BK": self.rows.block_k,
            "BR": self.rows.block_r,
            "LAYOUT": self.rows.layout,
            "ALIGNED": self._aligned,
            "VEC": self.rows.vec,
            "STREAM": "evict_first" if _cache_hints else "",
            "KEEP": "evict_last" if _cache_hints else "",
        }
        flag = skip if skip is not None else self._hyper
        args = (self.rows.table, self._state, self._hyper, self.rows.blocks, flag, self.rows.layers[0].w)
        return Launch(adamw_layer_rows, (self.rows.blocks.shape[0],), args, constants, dict(self.rows.options))

    def check_gradients(self) -> None:
        """Raise ``RuntimeError`` if a parameter of the plan has no gradient (call before stepping anything)."""
        if any(p.grad is None for p in self.tensors):
            raise RuntimeError("Invalid step: the fused AdamW kernel needs a gradient for every projected layer")

    def _update_state(self, moments: Sequence[tuple[Tensor, Tensor, Tensor]]) -> None:
        """The ``state`` table (``g, m, v, step`` addresses of weight then bias), rebuilt when one of them moved."""
        grads = list(map(_grad, self.tensors))
        if any(g is None for g in grads):
            self.check_gradients()  # raises
        key = (*map(Tensor.data_ptr, grads), *map(Tensor.data_ptr, chain.from_iterable(moments)))
        if key == self._state_key:
            return
        rows, aligned = [], self.rows.aligned
        for slots in self._slots:
            row = []
            for i in slots:
                if i is None:
                    row += [0, 0, 0, 0]
                    continue
                p, (exp_avg, exp_avg_sq, step) = self.tensors[i], moments[i]
                tensors = (p.grad, exp_avg, exp_avg_sq)
                if any(t.stride() != p.stride() or t.dtype != p.dtype for t in tensors):
                    raise ValueError(
                        "Invalid state: gradients and moments must have their parameter's strides and dtype"
                    )
                if step.dtype != torch.float32 or step.device != p.device:
                    raise ValueError("Invalid state: the step counts must be float32 tensors on the parameters' device")
                row += [t.data_ptr() for t in tensors] + [step.data_ptr()]
                if i == slots[0]:  # the weights' tiles are the vector accesses; a bias is read row by row
                    aligned = aligned and all(t.data_ptr() % 16 == 0 for t in tensors)
            rows.append(row)
        self._state = _upload(rows, torch.int64, self.rows.device)
        self._state_key, self._aligned = key, aligned


def _table_row(values: Sequence[float]) -> list[float]:
    """A tensor's row of the kernel's ``hyper`` table from its ``(lr, weight_decay, beta1, beta2, eps)``:
    ``lr, wd, eps, beta2, 1 - beta1, 1 - beta2, ln beta1, ln beta2``, the last four in float64 before their
    rounding to float32 (``-inf`` for ``ln 0``)."""
    lr, wd, beta1, beta2, eps = map(float, values)
    logs = [math.log(b) if b > 0 else -math.inf for b in (beta1, beta2)]
    return [lr, wd, eps, beta2, 1.0 - beta1, 1.0 - beta2, *logs]


def _upload(rows: list[list[Any]], dtype: torch.dtype, device: torch.device) -> Tensor:
    """A small table on ``device`` without a host synchronisation: a CUDA copy from pinned memory, which torch's
    host allocator keeps until the copy is done (a learning-rate schedule rebuilds the table every step)."""
    table = torch.tensor(rows, dtype=dtype)
    if device.type != "cuda":
        return table.to(device)
    return table.pin_memory().to(device, non_blocking=True)
