"""Layer-wise projection memory in the style of GPM (Saha et al. 2021), one layer at a time (eq:layerwise_projection).

For a layer ``y = W x + b`` the weight gradient of any loss is ``sum_s delta_s [x_s; 1]^T``: its rows
lie in the span of the layer's (bias-augmented) inputs. If ``U`` is an orthonormal basis of the old
task's input space, projecting ``G <- G - (G U) U^T`` (eq:layerwise_projection) leaves every old input's
pre-activation unchanged to first order and gives ``<grad_W L_A, d_W> = 0`` (eq:orthogonal) for that layer, at the
cost of two ``out x in x r`` matmuls instead of ``r`` full-size dot products. ``U`` comes from the SVD of GPM's
representation matrix (the inputs as rows, kept as a triangular factor of their uncentred covariance),
chosen by an energy threshold (eq:energy_basis). Embedding rows are the one-hot case: the old task's token
rows are frozen.

The pieces, one module each in :mod:`kaplinskiy.memory.layerwise`: which layers are covered (``coverage``), what
their inputs are (``inputs``), recording them (``recording``, ``outside_uses``), growing the bases (``bases``, with
:mod:`kaplinskiy.functional.memory_update`), and projecting with them (``projection``, which this class inherits).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from ..._tensor_lists import any_dtensor
from ..base import ordinary
from .bases import BasisBudget, basis_size, grow_recorded
from .coverage import AttentionInProjection, HeadSpec, check_sharded, covered_layers, layer_names, warn_loose_matrices
from .inputs import input_width
from .projection import LayerwiseProjection
from .recording import record_layer_inputs, recording_passes

__all__ = ["LayerwiseMemory"]


class LayerwiseMemory(LayerwiseProjection):
    """Per-layer bases of old-task inputs that project each layer's steps (eq:layerwise_projection).

    For Linear, Conv1d/2d/3d, ConvTranspose1d/2d/3d, Embedding, HF Conv1D and ``nn.MultiheadAttention`` layers (its
    input projection and ``out_proj``: :func:`~kaplinskiy.memory.layerwise.coverage.covered_layers`).

    Args:
        model: the network; every supported submodule with a trainable weight is covered. A parameter frozen now
            stays uncovered: an optimizer that steps it once it is trainable again is refused.
        threshold: GPM's energy threshold in (0, 1], one float or one per covered layer. With 1, every direction
            of the inputs is kept down to ``d eps`` of the largest singular value for float64 inputs, and down to
            ``sqrt(d eps)`` (float64's ``eps``) for inputs of lower precision, whose rounding fills every direction.
        max_new_per_task: most basis vectors one task adds to one layer (the budget ``k``).
        max_per_layer: most basis vectors (protected rows, for an embedding) a layer holds over all tasks
            (each block of a cross-attention's input projection, for its basis); a task that would go beyond it
            adds only its most energetic directions up to the cap.
        freeze_uncovered: zero the gradient of parameters no covered layer owns (LayerNorm, a raw
            ``nn.Parameter``), so eq:orthogonal holds for the whole model; otherwise they are left free, with a
            warning when some of them have two or more dimensions (a layer's weights, not a scale or a bias).
        heads: embeddings of ``model`` whose weight is also an output head written as a product outside any
            module (``F.linear(h, E.weight)``, ``h @ E.weight.T``): each gets an
            :class:`~kaplinskiy.memory.layerwise.coverage.EmbeddingHead`, a covered layer after it, whose basis
            holds the inputs of those products. A pair ``(embedding, bias)`` gives the head its own bias, a parameter of
            ``model`` added by ``F.linear(h, E.weight, bias)``: covered as a Linear layer's bias (with the input
            of 1 recorded where the product adds it). (A head tied as an ``nn.Linear`` sharing the weight needs
            none.)

    Convolutions are covered with any padding, padding mode, stride, dilation and groups (a grouped layer's
    groups share one basis of the union of their input spaces), batched or not, in one, two or three spatial
    dimensions; so are transposed convolutions (their weight's rows as each output channel reads them,
    :mod:`~kaplinskiy.memory.layerwise.inputs`). Weights computed by a parametrization count as uncovered, with a
    warning (``coverage.covered_layers``). An embedding protects the rows of its weight that the old task's
    forward reads (``F.embedding`` or an index, wherever made), not the argument its module is called with: OPT's,
    BART's and Whisper's learned positions read other rows than that argument. One called without such a read is
    refused.
    The padding row (``padding_idx``) gets no gradient, so it takes no share of the threshold's reads; but
    decoupled weight decay (AdamW) would still shrink it, so once the old task reads it, it is protected too,
    where ``max_per_layer`` or ``max_new_per_task`` leaves room after the other rows. Where they leave none,
    the outputs at positions holding the pad token may move: harmless where attention masks them out.
    Apart from that row, with ``threshold=1`` and ``freeze_uncovered``
    the outputs on the recorded inputs do not move at any order: each covered layer's step is orthogonal to the
    inputs it saw, and every other parameter (LayerNorm, a raw ``nn.Parameter`` such as a CLS token) is frozen.
    Under data parallelism, build the memory from the same old-task batches on every rank, or load one rank's
    ``state_dict()`` everywhere: the projection then commutes with the gradient all-reduce. Under FSDP2's
    ``fully_shard`` (weights split along their output rows; on a 2-D mesh, HSDP's replicas of shards), call
    ``add_task`` on every rank, with each rank's own old-task batches or the same ones: the input covariances are
    summed over the ranks (every dim of the mesh), so every rank holds the same basis and projects the rows it
    holds (:func:`check_sharded` says which shardings are refused).
    On CUDA with Triton installed, the Linear and Conv layers are projected in one grouped launch, and the others
    (embeddings, a weight shared by two layers, a large basis, a cross-attention's input projection, weights in
    float64 or of another dtype or device than the first) layer by layer with BLAS: the same projection.
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        threshold: float | Sequence[float] = 0.97,
        max_new_per_task: int | None = None,
        max_per_layer: int | None = None,
        freeze_uncovered: bool = False,
        heads: Sequence[HeadSpec] = (),
    ) -> None:
        self._backend = "auto"  # "torch": always BLAS; "triton": the grouped kernel or an error (tests, benchmarks)
        self.model = model
        self.layers = covered_layers(model, heads)
        if not self.layers:
            raise ValueError("Invalid model: it has no Linear, Conv or Embedding layer with a trainable weight")
        thresholds = [threshold] * len(self.layers) if isinstance(threshold, (int, float)) else list(threshold)
        if len(thresholds) != len(self.layers):
            raise ValueError(f"Invalid threshold: {len(thresholds)} values for {len(self.layers)} layers")
        for t in thresholds:
            if not 0.0 < t <= 1.0:
                raise ValueError(f"Invalid threshold: {t}")
        if max_new_per_task is not None and max_new_per_task < 1:
            raise ValueError(f"Invalid max_new_per_task: {max_new_per_task}")
        if max_per_layer is not None and max_per_layer < 1:
            raise ValueError(f"Invalid max_per_layer: {max_per_layer}")
        self.thresholds, self.max_new_per_task, self.freeze_uncovered = thresholds, max_new_per_task, freeze_uncovered
        self.max_per_layer = max_per_layer
        names = layer_names(model, self.layers)
        for m in self.layers:
            check_sharded(f"layer {names[id(m)]!r}", m, m.weight, getattr(m, "bias", None))
        self.params = [p for p in model.parameters() if p.requires_grad]
        # what no basis covers, should it be trained later (refused at the optimizers' steps: check_trainable)
        self.frozen_at_build = [(key, p) for key, p in model.named_parameters() if not p.requires_grad]
        self._sharded = any_dtensor(self.params)  # FSDP2: the step's tensors are DTensors, projected by their shards
        index = {id(p): i for i, p in enumerate(self.params)}
        self._slots = [
            (index[id(m.weight)], index.get(id(m.bias)) if getattr(m, "bias", None) is not None else None)
            for m in self.layers
        ]
        slots = [i for pair in self._slots for i in pair if i is not None]
        owned = set(slots)
        self.linear_split = len(owned) == len(slots)  # no parameter shared by two covered layers
        self._shared = {i for i in owned if slots.count(i) > 1}
        right = [w for (w, _), m in zip(self._slots, self.layers, strict=True) if not isinstance(m, nn.Embedding)]
        if len(set(right)) != len(right):  # their projectors act on the same side: they do not commute
            raise ValueError(
                "Invalid model: two Linear/Conv layers share one weight; reuse one module instead (its inputs "
                "from every call then share one basis)"
            )
        self._uncovered = [i for i in range(len(self.params)) if i not in owned]
        if not freeze_uncovered:
            warn_loose_matrices(model, [self.params[i] for i in self._uncovered])
        self.bases: list[Tensor] = []
        for m, (_, bias_slot) in zip(self.layers, self._slots, strict=True):
            w = m.weight
            if isinstance(m, nn.Embedding):
                self.bases.append(ordinary(torch.zeros(0, dtype=torch.long, device=w.device)))
            else:  # a frozen bias is a constant: only a trainable one adds the input of 1
                d_in = input_width(m, bias_slot is not None)
                basis_dtype = torch.promote_types(w.dtype, torch.float32)  # eigh and orthonormality need >= fp32
                self.bases.append(ordinary(torch.zeros(d_in, 0, dtype=basis_dtype, device=w.device)))
        self._forget_plans()
        self.n_tasks = 0

    @torch.no_grad()
    def add_task(
        self,
        batches: Iterable[Any],
        forward: Callable[[nn.Module, Any], Any] | None = None,
        *,
        progress: bool = False,
        max_factor_bytes: int | None = None,
    ) -> list[int]:
        """Record each layer's inputs on the old task's ``batches`` and grow the bases (eq:energy_basis).

        ``forward(model, batch)`` runs the model (default ``model(batch)``); only the inputs matter. A model in
        training mode with dropout or batch norm is refused (masked inputs are not the ones to protect, and
        batch norm would update its statistics): call ``model.eval()`` first. So is a forward that draws random
        numbers while a layer is in training mode (dropout without an ``nn.Dropout`` layer, as Hugging Face's
        BART, OPT and LLaMA draw it, or drop-path), noticed by the random generators' states; the memory is then
        left as it was. Under ``torch.autocast`` the inputs recorded are those the autocast forward computes
        (bfloat16 values after a bfloat16 layer), so the guard keeps the old outputs to that precision: record
        without autocast where the full-precision outputs are the ones to keep.
        A model compiled by ``torch.compile`` is recorded as the eager one: recording runs it eagerly
        (``torch.compiler.set_stance("force_eager")``), since Dynamo does not guard on module hooks and a graph
        compiled before them would skip them. So is one with activation checkpointing (recording runs under
        ``no_grad``: nothing is recomputed). A forward that runs on batches but calls no covered layer is refused.
        A product with a Linear layer's weight outside its call (its ``forward`` called directly, ``F.linear``,
        ``x @ W.T``, ``torch.addmm(b, x, W.t())``) has its input recorded (its input of 1 only where the product
        adds the layer's bias); any other use of a covered weight or trainable bias outside its module's call is
        named in an :class:`~kaplinskiy.UnrecordedUseWarning` (its inputs there are not recorded).
        Recording holds, per covered layer, a float64 factor of its inputs on the weight's device, ``d_in x d_in``
        once it has seen ``d_in`` inputs (three for an attention's input projection), and up to a quarter of that
        in rows of small batches waiting to join it in one QR of the factor's rows plus theirs;
        Linear layers that read one tensor (separate query, key and value projections, a gate and up projection)
        hold one factor, made once, and grow their bases once while those are equal.
        ``max_factor_bytes`` bounds what recording holds at once (``recording.factor_bytes``;
        a large model's factors add up to tens of GB): the covered layers are recorded in runs of consecutive
        layers that hold at most that much, one pass of the forward over ``batches`` per run, so ``batches`` must
        be re-iterable (a list, a ``DataLoader``) and give the same inputs on each pass (no shuffling with
        ``drop_last``, no random augmentation). The bases are the same, bit for bit, as from one pass; a pass that
        sees another number of batches is refused. The budget counts the factors; a layer's QR and SVD take a few
        times its factor on top while it grows, and the forward its activations. Whatever is refused, in any
        pass, leaves the memory as it was.
        ``progress=True`` shows tqdm bars over the batches and over the layers' SVDs.
        ``batches`` that give no batch record nothing, with a warning in one process, and the task is not counted
        (under torch.distributed a rank without old-task batches still joins the others' recording, and counts it).
        Returns the number of basis vectors (or protected rows) each layer gained.
        """
        biased = [bias is not None for _, bias in self._slots]
        passes = recording_passes(self.model, self.layers, biased, max_factor_bytes)
        if len(passes) > 1 and isinstance(batches, Iterator):  # iter() of a DataLoader starts its workers
            raise ValueError(
                f"Invalid batches: max_factor_bytes needs {len(passes)} passes over them, but they are an iterator "
                "(a generator), which gives them once; pass a list or a DataLoader"
            )
        grown: dict[int, Tensor] = {}  # committed once every pass has been recorded and checked
        n_batches = None
        for n, layers in enumerate(passes):
            desc = "LayerwiseMemory: old-task batches" + (f", pass {n + 1}/{len(passes)}" if len(passes) > 1 else "")
            seen = self._grow_pass(layers, biased, batches, forward, progress, desc, grown)
            if n_batches is not None and seen != n_batches:
                raise ValueError(
                    f"Invalid batches: pass {n + 1} of {len(passes)} ran on {seen} batches, pass 1 on {n_batches}; "
                    "max_factor_bytes needs the same batches on every pass; the memory is left as it was"
                )
            n_batches = seen
        alone = not (torch.distributed.is_available() and torch.distributed.is_initialized())
        if not n_batches and alone:
            warnings.warn(  # a rank without old-task batches still joins the others' recording; one process, no
                "LayerwiseMemory.add_task: batches gave no batch (an iterator used up before?), so nothing was "
                "recorded and the task adds no protection (it is not counted in n_tasks)",
                stacklevel=3,  # the caller (through the no_grad wrapper)
            )
            return [0] * len(self.bases)
        if n_batches and not grown:
            raise ValueError(
                f"Invalid forward: it ran on {n_batches} batches but called no covered layer (a forward that returns "
                "before them, or a compiled graph that skips them); the memory is left as it was"
            )
        gained = [basis_size(grown.get(i, U)) - basis_size(U) for i, U in enumerate(self.bases)]
        self.bases[:] = [grown.get(i, U) for i, U in enumerate(self.bases)]
        self.n_tasks += 1
        return gained

    def _grow_pass(
        self,
        layers: list[int],
        biased: list[bool],
        batches: Iterable[Any],
        forward: Callable[[nn.Module, Any], Any] | None,
        progress: bool,
        description: str,
        grown: dict[int, Tensor],
    ) -> int:
        """Record the inputs of the covered layers ``layers`` in one pass over ``batches`` and put their grown bases
        in ``grown``, by layer index; the recorded factors are freed on return. Returns how many batches the pass
        ran on."""
        recorded = record_layer_inputs(
            self.model,
            [self.layers[i] for i in layers],
            [biased[i] for i in layers],
            batches,
            forward,
            progress=progress,
            description=description,
        )
        budget = BasisBudget(self.max_new_per_task, self.max_per_layer)
        bases = grow_recorded(self.layers, self.bases, self.thresholds, budget, layers, recorded, progress=progress)
        grown.update(bases)
        return recorded.n_batches

    def stored_tensors(self) -> list[Tensor]:
        """The per-layer bases; :meth:`add_task` and :meth:`load_state_dict` replace them."""
        return list(self.bases)

    def state_dict(self) -> dict[str, Any]:
        """The per-layer bases and the task counter."""
        return {"bases": [U.clone() for U in self.bases], "n_tasks": self.n_tasks}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore bases saved by :meth:`state_dict` for the same model."""
        bases = state["bases"]
        if len(bases) != len(self.bases):
            raise ValueError(f"Invalid state: {len(bases)} bases for {len(self.bases)} layers")
        for i, (old, new) in enumerate(zip(self.bases, bases, strict=True)):
            blocks = isinstance(self.layers[i], AttentionInProjection)  # one basis, or one per block
            if old.ndim == 1:
                fits, like = new.ndim == 1, "(rows,)"
            else:
                d_in = old.shape[-2]
                fits = (new.ndim == 2 or (blocks and new.ndim == 3 and new.shape[0] == 3)) and new.shape[-2] == d_in
                like = f"({d_in}, r)" + (f" or (3, {d_in}, r)" if blocks else "")
            if not fits:
                raise ValueError(f"Invalid state: layer {i}'s basis of shape {tuple(new.shape)} does not fit {like}")
            size = new.numel() if new.ndim == 1 else new.shape[-1]
            if self.max_per_layer is not None and size > self.max_per_layer:
                raise ValueError(f"Invalid state: layer {i} holds {size} vectors, above max_per_layer")
        self.bases = [
            ordinary(new.to(old.device, old.dtype).clone()) for old, new in zip(self.bases, bases, strict=True)
        ]
        self.n_tasks = int(state["n_tasks"])
