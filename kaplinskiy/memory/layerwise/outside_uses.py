"""Uses of a covered weight or trainable bias outside a call of its module. The layer-wise memory records a layer's
inputs where its module is called; a product with a Linear layer's weight elsewhere (its ``forward`` called directly,
``F.linear(x, W, b)``, ``x @ W.T``, ``torch.addmm(b, x, W.t())``) has its input recorded too, with the input of 1 that
the layer's bias multiplies only where the product adds that bias, and an embedding's lookups of its rows are recorded
wherever they are made (:class:`~kaplinskiy.memory.layerwise.inputs.RowReads`); so is a product with an embedding's
weight given a head (:class:`~kaplinskiy.memory.layerwise.coverage.EmbeddingHead`). Any other use (a language model's
head written as ``h @ embedding.weight.T`` for an embedding without one, an einsum, the bias added on its own) feeds the
old task's outputs through inputs no basis holds, so a guarded step may move those outputs: it is named in an
:class:`UnrecordedUseWarning`.
"""

from __future__ import annotations

import warnings
import weakref
from collections.abc import Callable, Sequence
from typing import Any

from torch import Tensor, nn
from torch.nn import functional as F  # noqa: N812 (the torch idiom)
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_leaves

from ..._tensor_lists import is_dtensor
from .inputs import looked_up

__all__ = ["OutsideUses", "UnrecordedUseWarning", "parameter_owners"]

_FACTORIES = frozenset(
    {"new_empty", "new_zeros", "new_ones", "new_full", "new_tensor", "empty_like", "zeros_like", "ones_like"}
    | {"full_like", "rand_like", "randn_like", "randint_like"}
)


class UnrecordedUseWarning(UserWarning):
    """A covered weight or bias was used where recording does not see its inputs: that use is not protected."""


class OutsideUses(TorchFunctionMode):
    """Notes, while the old task's forward runs, each use of a covered weight (or trainable bias) outside a call of
    a module that owns it (the layer, a layer sharing its weight, or the attention that reads it): an op that takes
    the tensor and gives a tensor (reading its shape or dtype is no use). ``owners``: per weight or bias, the
    modules whose calls are recorded. ``linear``: per Linear layer's weight, a function that records an input of
    the layer (given the input and whether the layer's bias is added to its product), and the layer's trainable
    bias; ``F.linear`` on that weight outside the layer's call (its ``forward`` called directly, or the functional
    form), or a ``matmul``, ``mm`` or ``addmm`` taking the weight's transpose as its second factor, has its input
    recorded there, as the layer's own call would: with the input of 1 that the bias multiplies only where the
    product adds the layer's bias (``F.linear(h, layer.weight)`` without it computes ``W h``, which a step moves by
    ``D_W h``, not by ``D_W h + d_b``). A transpose is no use until something other than such a product takes it.
    Enter :meth:`hooks` for the duration, and :meth:`warn` after."""

    def __init__(
        self,
        owners: dict[int, tuple[str, Tensor, Sequence[nn.Module]]],
        embeddings: set[int],
        linear: dict[int, tuple[Callable[[Tensor, bool], None], Tensor | None]] | None = None,
    ) -> None:
        super().__init__()
        self._owners = owners  # weight or bias id -> (layer name, tensor, owning modules)
        self._embeddings = embeddings  # weight ids whose lookups are recorded anywhere
        self._linear = linear or {}  # weight id -> (records an input of its Linear layer, the layer's bias)
        self._active: dict[int, int] = {}  # module id -> calls in progress
        self.found: dict[str, str] = {}  # layer name -> the first op that used its weight outside
        self._transposes: dict[int, tuple[weakref.ref[Tensor], Tensor]] = {}  # view id -> (view, Linear weight)

    def hooks(self) -> list[Any]:
        """Forward hooks that mark each owning module's calls (first before any other pre-hook, last after)."""

        def enter(module: nn.Module, *_: Any) -> None:
            self._active[id(module)] = self._active.get(id(module), 0) + 1

        def leave(module: nn.Module, *_: Any) -> None:
            self._active[id(module)] -= 1

        modules = {id(m): m for _, _, owners in self._owners.values() for m in owners}.values()
        handles = [m.register_forward_pre_hook(enter, prepend=True) for m in modules]
        return handles + [m.register_forward_hook(leave, always_call=True) for m in modules]

    def __torch_function__(
        self, func: Callable[..., Any], types: Any, args: Sequence[Any] = (), kwargs: dict[str, Any] | None = None
    ) -> Any:
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        if getattr(func, "__name__", None) in _FACTORIES:
            return out  # a new tensor of the weight's shape, dtype or device, not of its values
        if not isinstance(out, Tensor) and not any(isinstance(t, Tensor) for t in tree_leaves(out)):
            return out  # a shape, a dtype, a flag: no use of the values
        recorded = self._recorded_product(func, args, kwargs)
        for t in tree_leaves((args, kwargs)):
            weight = self._weight_of(t) if isinstance(t, Tensor) else None
            entry = self._owners.get(id(weight)) if weight is not None else self._owners.get(id(t))
            if entry is None or (weight is None and entry[1] is not t) or any(r is t for r in recorded):
                continue
            if id(t) in self._embeddings and looked_up(func, args, kwargs) is t:
                continue
            if self._inside(entry):
                continue
            if weight is None and id(t) in self._linear and _is_transpose(out, t):
                self._transposes[id(out)] = (weakref.ref(out), t)  # recorded where a product takes it, else named
                continue
            self.found.setdefault(entry[0], _op_name(func))
        return out

    def _inside(self, entry: tuple[str, Tensor, Sequence[nn.Module]]) -> bool:
        """Whether a call of a module that owns the entry's tensor is in progress."""
        return any(self._active.get(id(m), 0) for m in entry[2])

    def _weight_of(self, t: Tensor) -> Tensor | None:
        """The Linear layer's weight ``t`` is a transpose of, made outside the layer's call; else None."""
        made = self._transposes.get(id(t))
        return made[1] if made is not None and made[0]() is t else None

    def _recorded_product(
        self, func: Callable[..., Any], args: Sequence[Any], kwargs: dict[str, Any]
    ) -> tuple[Tensor, ...]:
        """Record the input of a product with a Linear layer's weight outside the layer's call, as the input a
        call of the layer would see, with its input of 1 only where the product adds the layer's bias:
        ``F.linear(x, W, b)``, and ``x @ W.T``, ``torch.mm``, ``torch.addmm(b, x, W.T)`` on a transpose of ``W``.
        Returns the tensors whose use here was so recorded: none where it is no such product."""
        name = getattr(func, "__name__", None)
        if func is F.linear:
            x, weight, bias = _operands(args, kwargs, ("input", "weight", "bias"))
        elif name in ("matmul", "mm", "__matmul__") and len(args) == 2 and not kwargs:
            (x, weight), bias = args, None
        elif name == "addmm" and all(kwargs.get(k, 1) == 1 for k in ("beta", "alpha")):
            bias, x, weight = _operands(args, kwargs, ("input", "mat1", "mat2"))
        else:
            return ()
        transpose = self._weight_of(weight) if isinstance(weight, Tensor) else None
        if (transpose is None) == (func is not F.linear):  # F.linear takes W itself, the products its transpose
            return ()
        w = weight if transpose is None else transpose
        entry, linear = self._owners.get(id(w)), self._linear.get(id(w))
        if linear is None or entry is None or entry[1] is not w or self._inside(entry):
            return ()
        record, layer_bias = linear
        added = layer_bias is not None and bias is layer_bias
        record(x, added)
        return (weight, bias) if added else (weight,)

    def warn(self) -> None:
        """One :class:`UnrecordedUseWarning` naming each layer whose weight or bias was used outside, and by what."""
        if self.found:
            uses = ", ".join(f"{name!r} (by {op})" for name, op in self.found.items())
            warnings.warn(
                f"LayerwiseMemory: the weights or biases of {uses} were used outside a call of their module, where "
                "recording does not see the inputs, so a guarded step may move the old outputs through that use; call "
                "them through a module (a head tied to an embedding as an nn.Linear sharing its weight, as Hugging "
                "Face's lm_head does; a layer's bias added by the layer), pass an embedding whose weight is a head "
                "written as h @ E.weight.T or F.linear(h, E.weight) in LayerwiseMemory(heads=[...]), or freeze them",
                UnrecordedUseWarning,
                stacklevel=7,  # the caller of LayerwiseMemory.add_task (through two no_grad wrappers)
            )


def parameter_owners(
    model: nn.Module, layers: Sequence[nn.Module], names: dict[int, str], biases: Sequence[Tensor | None]
) -> dict[int, tuple[str, Tensor, Sequence[nn.Module]]]:
    """Per weight of ``layers`` and per trainable bias ``biases`` (by id): its layer's name, the tensor, and the
    modules of ``model`` whose calls use it as recorded: those holding it as their ``weight`` or ``bias`` (a head
    tied to an embedding shares its weight), and an attention that reads it as its input projection's or
    ``out_proj``'s. Sharded tensors (DTensors) are left out: FSDP2 gathers them outside their modules' calls, and
    its forward uses other tensors."""
    held_by_layers = [(m, m.weight) for m in layers]
    held_by_layers += [(m, b) for m, b in zip(layers, biases, strict=True) if b is not None]
    tensors = {id(t): (names[id(m)], t) for m, t in held_by_layers if not is_dtensor(t)}
    owners: dict[int, tuple[str, Tensor, list[nn.Module]]] = {k: (*v, []) for k, v in tensors.items()}
    for module in model.modules():
        held = [getattr(module, "weight", None), getattr(module, "bias", None)]
        if isinstance(module, nn.MultiheadAttention):
            held += [module.in_proj_weight, module.out_proj.weight, module.in_proj_bias, module.out_proj.bias]
        for t in held:
            if isinstance(t, Tensor) and id(t) in owners and owners[id(t)][1] is t:
                owners[id(t)][2].append(module)
    return owners


def _operands(args: Sequence[Any], kwargs: dict[str, Any], names: tuple[str, ...]) -> tuple[Any, ...]:
    """An op's operands ``names``, however they were passed (None where absent)."""
    named = dict(zip(names, args, strict=False)) | kwargs
    return tuple(named.get(n) for n in names)


def _is_transpose(out: Any, w: Tensor) -> bool:
    """Whether ``out`` is ``w``'s transpose as a view (``w.T``, ``w.t()``, ``w.mT``, ``w.transpose(0, 1)``)."""
    return (
        isinstance(out, Tensor)
        and w.ndim == 2
        and out.shape == w.shape[::-1]
        and out.stride() == w.stride()[::-1]
        and out.data_ptr() == w.data_ptr()
    )


def _op_name(func: Callable[..., Any]) -> str:
    """``linear``, ``matmul``; a property's name (``T``) rather than its getter's (``__get__``)."""
    name = getattr(func, "__name__", repr(func))
    if name == "__get__":
        name = getattr(getattr(func, "__self__", None), "__name__", name)
    return name
