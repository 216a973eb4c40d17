"""The layer-wise projection (eq:layerwise_projection): ``[D_W, d_b] <- [D_W, d_b] - ([D_W, d_b] U) U^T`` with
each covered layer's basis ``U`` of its old-task inputs, an embedding's protected rows set back or zeroed, and the
parameters no covered layer owns frozen on request. :class:`~kaplinskiy.LayerwiseMemory` builds the bases and
inherits the projection from here. Each layer goes by BLAS (:class:`~kaplinskiy.memory.layerwise.bases.BasisFactors`),
or every layer the grouped kernel takes in one launch (:mod:`kaplinskiy._kernels.layerwise`); both compute the same
projection.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from ..._kernels.launch import grouped_kernel_available
from ..._kernels.layerwise import MAX_RANK, RowLayer, RowPlan, kernel_takes
from ..._tensor_lists import local_shard
from .bases import BasisFactors, BlockFactors, basis_size, row_blocks
from .inputs import TRANSPOSED_CONVOLUTIONS, is_hf_conv1d, set_weight_rows_, weight_rows

__all__ = ["LayerwiseProjection"]


class LayerwiseProjection:
    """The projection half of :class:`~kaplinskiy.LayerwiseMemory` (eq:layerwise_projection), the interface of
    :class:`~kaplinskiy.memory.base.ProjectionMemory`: ``project_``, ``coefficients``, ``subtract_``, ``restore_`` and
    ``residual`` on tensors aligned with ``params``, and what a fused step needs (:meth:`fused_layers`). The
    memory sets the attributes below."""

    layers: list[nn.Module]  # the covered layers
    params: list[Tensor]  # the model's trainable parameters
    bases: list[Tensor]  # per layer: ``U`` (``in_eff x r``, or ``(3, in_eff, r)``), or an embedding's rows
    _backend: str  # "auto"; "torch" (always BLAS) or "triton" (the grouped kernel) in tests and benchmarks
    freeze_uncovered: bool
    _slots: list[tuple[int, int | None]]  # per layer: its weight's and bias' indices in ``params``
    _shared: set[int]  # indices of parameters two covered layers hold (a tied head's weight)
    _uncovered: list[int]  # indices of parameters no covered layer holds
    _sharded: bool  # FSDP2: the tensors are DTensors, projected by their local rows

    def _forget_plans(self) -> None:
        """Start with no cached views of the bases and no grouped kernel's plan (each is made on first use)."""
        self._factor_cache: dict[int, BasisFactors | BlockFactors] = {}
        self._plan: RowPlan | None = None
        self._plan_layers: frozenset[int] = frozenset()
        self._plan_key: tuple[Any, ...] | None = None
        self._fused_views: tuple[RowPlan, list[tuple[Tensor, Tensor | None]], list[int]] | None = None
        self._plan_bases: list[Tensor] = []  # the bases the plan was made for, kept alive: their ids stay unique

    def _size(self, i: int) -> int:
        """Layer ``i``'s basis vectors (:func:`~kaplinskiy.memory.layerwise.bases.basis_size`)."""
        return basis_size(self.bases[i])

    def _views(self, tensors: Sequence[Tensor], i: int) -> tuple[Tensor, Tensor | None]:
        """Layer ``i``'s weight and bias among ``tensors``; of a sharded layer, the rows this rank holds."""
        wi, bi = self._slots[i]
        if not self._sharded:
            return tensors[wi], (tensors[bi] if bi is not None else None)
        return local_shard(tensors[wi]), (local_shard(tensors[bi]) if bi is not None else None)

    def _factors(self, i: int) -> BasisFactors | BlockFactors:
        """Layer ``i``'s basis split into weight rows and bias row; views, rebuilt only when the basis is replaced."""
        cached = self._factor_cache.get(i)
        U = self.bases[i]
        if cached is None or cached.basis is not U or cached.version != U._version:  # replaced, or edited in place
            has_bias = self._slots[i][1] is not None
            if U.ndim == 3:
                cached = BlockFactors.of(U, has_bias, row_blocks(self.params[self._slots[i][0]]))
            else:
                cached = BasisFactors.of(U, has_bias)
            self._factor_cache[i] = cached
        return cached

    def _grouped(self, tensors: Sequence[Tensor]) -> tuple[RowPlan | None, frozenset[int]]:
        """The grouped kernel's plan for these tensors and the layers it takes (none on the BLAS path).

        The plan is kept while the tensors (addresses, strides) and the bases are the same objects, so a
        training step pays a key of a few microseconds, not a rebuild."""
        if self._sharded:
            tensors = [local_shard(t) for t in tensors]
        usable = grouped_kernel_available(tensors[0].device, interpreted=self._backend == "triton")
        if self._backend == "torch" or not usable:
            if self._backend == "triton":
                raise RuntimeError("_backend='triton' needs Triton and CUDA tensors (or TRITON_INTERPRET=1)")
            return None, frozenset()
        layout = (tuple(map(Tensor.size, tensors)), tuple(map(Tensor.stride, tensors)))
        bases = tuple((id(U), U._version) for U in self.bases)  # a basis edited in place is a new basis
        key = (tuple(map(Tensor.data_ptr, tensors)), layout, bases)
        if self._plan_key != key:
            chosen, layers = [], []
            device, dtype = tensors[0].device, tensors[0].dtype
            for i, m in enumerate(self.layers):
                w, b = self._views(tensors, i)
                if isinstance(m, nn.Embedding) or not 0 < self._size(i) <= MAX_RANK:
                    continue
                if self.bases[i].ndim == 3:  # a basis per block of rows (cross-attention): by BLAS
                    continue
                if isinstance(m, TRANSPOSED_CONVOLUTIONS):  # its rows are no view of its weight: by BLAS
                    continue
                if not kernel_takes(w, b, device, dtype):  # float64, another device, a bias of its own dtype
                    continue
                if self._slots[i][0] in self._shared:  # one launch must not write one tensor from two layers
                    continue
                if w.ndim > 2 and not w.is_contiguous():  # no matrix view (channels_last convolutions)
                    continue
                chosen.append(i)
                f = self._factors(i)
                layers.append(RowLayer(w, b, f.padded_basis, f.transposed_basis, is_hf_conv1d(m), f.basis.shape[1]))
            self._plan = RowPlan(layers, layout=self._plan) if layers else None
            self._plan_layers = frozenset(chosen)
            self._plan_key, self._plan_bases = key, list(self.bases)  # the bases stay alive: ids stay unique
        return self._plan, self._plan_layers

    def fused_layers(self) -> tuple[RowPlan | None, list[tuple[Tensor, Tensor | None]], list[int]]:
        """What a fused optimizer step (``HybridAdamW(fused=True)``) projects: the grouped kernel's plan over the
        parameters themselves, in its order each of its layers' ``(weight, bias)`` parameters, and the indices of the
        other layers with a basis (embeddings, a weight shared by two layers, a basis too large for the kernel; every
        layer without Triton or CUDA), for :meth:`outside_coefficients` and :meth:`restore_outside_`."""
        plan, grouped = self._grouped(self.params)
        if plan is not None and self._fused_views is not None and self._fused_views[0] is plan:
            return self._fused_views  # the same plan: the same layers (a step need not list them again)
        views = (plan, [self._views(self.params, i) for i in sorted(grouped)], self._outside(grouped))
        if plan is not None:
            self._fused_views = views
        return views

    @torch.no_grad()
    def outside_coefficients(self, layers: Sequence[int]) -> dict[int, Tensor]:
        """The coordinates (protected rows, for an embedding) of the parameters on each of ``layers`` (layers the
        grouped kernel does not take, from :meth:`fused_layers`) by the per-layer path, by layer index: taken
        before a fused step, set back by :meth:`restore_outside_` after it. An embedding tied to heads with a bias
        keeps, beside its rows, those heads' bias entries of the same rows (the rows of ``[W, b]``)."""
        out = {}
        for i in layers:
            C = self._layer_coefficients(self.params, i)
            heads = self._tied_heads(i) if isinstance(self.layers[i], nn.Embedding) else []
            entries = [self.params[self._slots[j][1]][self.bases[i], None].to(C.dtype) for j in heads]
            out[i] = torch.cat([C, *entries], dim=1) if entries else C
        return out

    @torch.no_grad()
    def restore_outside_(self, reference: dict[int, Tensor], skip: Tensor | None = None) -> None:
        """``restore_`` on the layers of ``reference`` (from :meth:`outside_coefficients`), in place on the
        parameters; nothing moves where the device flag ``skip`` is 1. Heads go before embeddings, which then
        set back the whole of their rows (a tied head's bias entries among them), as :meth:`project_` does."""
        embedding = [isinstance(self.layers[i], nn.Embedding) for i in range(len(self.layers))]
        for i in sorted(reference, key=lambda i: embedding[i]):
            C = reference[i]
            heads = self._tied_heads(i) if embedding[i] else []
            if heads:
                dim = self.params[self._slots[i][0]].shape[1]
                for k, j in enumerate(heads):  # a skipped step left them unchanged: setting them is exact
                    b = self.params[self._slots[j][1]]
                    b.index_copy_(0, self.bases[i], C[:, dim + k].to(b.dtype))
                C = C[:, :dim]
            self._restore_layer_(self.params, i, C, compute=True, skip=skip)

    def _outside(self, grouped: frozenset[int]) -> list[int]:
        return [i for i in range(len(self.layers)) if self._size(i) and i not in grouped]

    def frozen_params(self) -> list[Tensor]:
        """The parameters no covered layer owns when ``freeze_uncovered`` (their steps are projected to zero)."""
        return [self.params[j] for j in self._uncovered] if self.freeze_uncovered else []

    @torch.no_grad()
    def coefficients(self, tensors: Sequence[Tensor]) -> list[Tensor]:
        """Per covered layer ``[D_W, d_b] U`` (the protected rows for an embedding), then, when frozen, the
        uncovered tensors themselves. Linear in ``D``; :meth:`subtract_` removes exactly this part."""
        plan, grouped = self._grouped(tensors)
        from_kernel = iter(plan.split(plan.run(compute=True, store=True))) if plan is not None else iter(())
        out = []
        for i in range(len(self.layers)):
            out.append(next(from_kernel) if i in grouped else self._layer_coefficients(tensors, i))
        if self.freeze_uncovered:
            out.extend(local_shard(tensors[j]).clone() for j in self._uncovered)
        return out

    @torch.no_grad()
    def subtract_(self, tensors: Sequence[Tensor], coefficients: Sequence[Tensor]) -> None:
        """``G <- G - C U^T`` per layer (bias folded in as an input of 1), in place.

        Valid as one half of the projection only when ``linear_split`` (no weight shared by two layers).
        """
        self._apply_(tensors, coefficients, compute=False)

    @torch.no_grad()
    def restore_(self, tensors: Sequence[Tensor], reference: Sequence[Tensor], skip: Tensor | None = None) -> None:
        """``D <- D - (coefficients(D) - C_ref) U^T`` (eq:projected_update): move ``D`` along the memory until its
        coordinates are ``C_ref`` again (an embedding's protected rows are set back). With ``C_ref = coefficients(w0)``
        taken before a step, this projects the step ``w1 - w0`` with no copy of ``w0``. Where the device flag ``skip``
        is 1 (a step the base optimizer skipped), nothing moves.

        Valid only when ``linear_split`` (no weight shared by two layers).
        """
        self._apply_(tensors, reference, compute=True, skip=skip)

    def _apply_(
        self, tensors: Sequence[Tensor], reference: Sequence[Tensor], *, compute: bool, skip: Tensor | None = None
    ) -> None:
        """``D <- D - (C(D) - ref) U^T`` when ``compute``, else ``D <- D - ref U^T``: one layer at a time, or
        every layer the grouped kernel takes in one launch."""
        plan, grouped = self._grouped(tensors)
        if plan is not None:
            flat = plan.flatten([reference[i] for i in sorted(grouped)])
            plan.run(compute=compute, reference=flat, apply=True, skip=skip)
        for i in self._outside(grouped):
            self._restore_layer_(tensors, i, reference[i], compute=compute, skip=skip)
        if self.freeze_uncovered:
            for j, C in zip(self._uncovered, reference[len(self.layers) :], strict=True):
                if compute:
                    local_shard(tensors[j]).copy_(C)
                else:
                    local_shard(tensors[j]).sub_(C)

    def _layer_coefficients(self, tensors: Sequence[Tensor], i: int) -> Tensor:
        """Layer ``i``'s ``[D_W, d_b] U`` by the per-layer path (its protected rows, for an embedding)."""
        w, b = self._views(tensors, i)
        if isinstance(self.layers[i], nn.Embedding):
            return w[self.bases[i]]
        return self._coefficients_of(i, w, b)

    def _coefficients_of(self, i: int, w: Tensor, b: Tensor | None) -> Tensor:
        """``C = [D_W, d_b] U`` of layer ``i``'s weight and bias ``w``, ``b`` (a transposed convolution's weight
        taken as its rows, :func:`~kaplinskiy.memory.layerwise.inputs.weight_rows`)."""
        m = self.layers[i]
        if isinstance(m, TRANSPOSED_CONVOLUTIONS):
            w = weight_rows(w, m.groups)
        return self._factors(i).coefficients(w, b, transposed=is_hf_conv1d(m))

    def _move_rows_(
        self, i: int, w: Tensor, b: Tensor | None, reference: Tensor | None, *, compute: bool, skip: Tensor | None
    ) -> None:
        """``[D_W, d_b] <- [D_W, d_b] - (C(D) - ref) U^T`` when ``compute`` (``ref`` 0 where None), else
        ``[D_W, d_b] <- [D_W, d_b] - ref U^T``, on layer ``i``'s weight and bias in place; nothing moves where the
        device flag ``skip`` is 1. A transposed convolution's weight goes through one copy of its rows (both
        products read it), written back."""
        m = self.layers[i]
        rows = weight_rows(w, m.groups) if isinstance(m, TRANSPOSED_CONVOLUTIONS) else w
        factors, transposed = self._factors(i), is_hf_conv1d(m)
        C = reference
        if compute:
            C = factors.coefficients(rows, b, transposed=transposed)
            if reference is not None:
                C = C - reference.to(factors.dtype)
        if skip is not None:
            C = C * (1 - skip.to(C))
        factors.subtract_(rows, b, C, transposed=transposed)
        if rows is not w:
            set_weight_rows_(w, rows, m.groups)

    def _restore_layer_(
        self, tensors: Sequence[Tensor], i: int, reference: Tensor, *, compute: bool, skip: Tensor | None
    ) -> None:
        """Layer ``i`` by the per-layer path: ``D <- D - (C(D) - ref) U^T`` when ``compute``, else
        ``D <- D - ref U^T`` (an embedding's protected rows set to, or reduced by, ``ref``)."""
        w, b = self._views(tensors, i)
        if isinstance(self.layers[i], nn.Embedding):  # a skipped step left the rows unchanged: setting them is exact
            if compute:
                w.index_copy_(0, self.bases[i], reference.to(w.dtype))
            else:
                w.index_put_((self.bases[i],), -reference, accumulate=True)
            return
        self._move_rows_(i, w, b, reference, compute=compute, skip=skip)

    @torch.no_grad()
    def project_(self, tensors: Sequence[Tensor]) -> None:
        """``G <- G - (G U) U^T`` per layer, in place (eq:layerwise_projection); embedding rows of old tokens are
        zeroed.

        A weight shared by an embedding and an LM head ends in the intersection of both complements: the head's
        projector acts on the rows ``[D_W, d_b]`` one at a time, the embedding's zeroes the old tokens' rows, so
        the head goes first, and the embedding then zeroes the whole of those rows, the head's bias entries
        among them (``D U = 0`` allows no other value of a row whose weight part is zero).
        (The grouped kernel takes only the layers whose weights are their own.)
        """
        plan, grouped = self._grouped(tensors)
        if plan is not None:
            plan.run(compute=True, apply=True)
        embeddings = []
        for i, m in enumerate(self.layers):
            if self._size(i) == 0 or i in grouped:
                continue
            if isinstance(m, nn.Embedding):
                embeddings.append(i)
                continue
            w, b = self._views(tensors, i)
            self._move_rows_(i, w, b, None, compute=True, skip=None)
        for i in embeddings:
            rows = self.bases[i]
            self._views(tensors, i)[0].index_fill_(0, rows, 0)
            for j in self._tied_heads(i):
                tensors[self._slots[j][1]].index_fill_(0, rows, 0)
        if self.freeze_uncovered:
            for j in self._uncovered:
                local_shard(tensors[j]).zero_()

    def _tied_heads(self, i: int) -> list[int]:
        """The layers with a basis and a trainable bias that share embedding ``i``'s weight (their bias is in
        the basis: every input carries the 1)."""
        w_i = self._slots[i][0]
        return [j for j, (w, b) in enumerate(self._slots) if j != i and w == w_i and b is not None and self._size(j)]

    def residual(self, tensors: Sequence[Tensor]) -> float:
        """The norm of all per-layer coefficients ``D U``: 0 when ``D`` is orthogonal to every layer's memory."""
        total = sum(
            (c.double().pow(2).sum() for c in self.coefficients(tensors)), start=torch.zeros((), dtype=torch.float64)
        )
        return float(total.sqrt())
