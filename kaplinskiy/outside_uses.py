"""Uses of a covered weight outside a call of its module. The layer-wise memory records a layer's inputs where its
module is called; ``F.linear`` on a Linear layer's weight elsewhere (its ``forward`` called directly, or the
functional form) has its input recorded too, and an embedding's lookups of its rows are recorded wherever they are
made (:class:`~kaplinskiy.layer_inputs.RowReads`). Any other use (a language model's head written as
``h @ embedding.weight.T``, a matmul on ``weight.t()``) feeds the old task's outputs through inputs no basis holds,
so a guarded step may move those outputs: it is named in an :class:`UnrecordedUseWarning`.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from typing import Any

from torch import Tensor, nn
from torch.nn import functional as F  # noqa: N812 (the torch idiom)
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_leaves

from .layer_inputs import looked_up
from .tensor_lists import is_dtensor

__all__ = ["OutsideUses", "UnrecordedUseWarning", "weight_owners"]

_FACTORIES = frozenset(
    {"new_empty", "new_zeros", "new_ones", "new_full", "new_tensor", "empty_like", "zeros_like", "ones_like"}
    | {"full_like", "rand_like", "randn_like", "randint_like"}
)


class UnrecordedUseWarning(UserWarning):
    """A covered weight was used where recording does not see its inputs: that use is not protected."""


class OutsideUses(TorchFunctionMode):
    """Notes, while the old task's forward runs, each use of a covered weight outside a call of a module that owns
    it (the layer, a layer sharing its weight, or the attention that reads it): an op that takes the weight and
    gives a tensor (reading its shape or dtype is no use). ``owners``: per weight, the modules whose calls are
    recorded. ``linear``: per Linear layer's weight, a function that records an input of the layer; ``F.linear``
    on that weight outside the layer's call (its ``forward`` called directly, or the functional form) has its input
    recorded there, as the layer's own call would. Enter :meth:`hooks` for the duration, and :meth:`warn` after."""

    def __init__(
        self,
        owners: dict[int, tuple[str, Tensor, Sequence[nn.Module]]],
        embeddings: set[int],
        linear: dict[int, Callable[[Tensor], None]] | None = None,
    ) -> None:
        super().__init__()
        self._owners = owners  # weight id -> (layer name, weight, owning modules)
        self._embeddings = embeddings  # weight ids whose lookups are recorded anywhere
        self._linear = linear or {}  # weight id -> records an input of its Linear layer
        self._active: dict[int, int] = {}  # module id -> calls in progress
        self.found: dict[str, str] = {}  # layer name -> the first op that used its weight outside

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
        for t in tree_leaves((args, kwargs)):
            entry = self._owners.get(id(t)) if isinstance(t, Tensor) else None
            if entry is None or entry[1] is not t:
                continue
            if id(t) in self._embeddings and looked_up(func, args, kwargs) is t:
                continue
            if any(self._active.get(id(m), 0) for m in entry[2]):
                continue
            if func is F.linear and id(t) in self._linear:
                x, weight = _linear_operands(args, kwargs)
                if weight is t:
                    self._linear[id(t)](x)  # the input a call of the layer would see
                    continue
            self.found.setdefault(entry[0], _op_name(func))
        return out

    def warn(self) -> None:
        """One :class:`UnrecordedUseWarning` naming each layer whose weight was used outside, and by what."""
        if self.found:
            uses = ", ".join(f"{name!r} (by {op})" for name, op in self.found.items())
            warnings.warn(
                f"LayerwiseMemory: the weights of {uses} were used outside a call of their module, where recording "
                "does not see the inputs, so a guarded step may move the old outputs through that use; call them "
                "through a module (a head tied to an embedding as an nn.Linear sharing its weight, as Hugging Face's "
                "lm_head does), or freeze them",
                UnrecordedUseWarning,
                stacklevel=7,  # the caller of LayerwiseMemory.add_task (through two no_grad wrappers)
            )


def weight_owners(
    model: nn.Module, layers: Sequence[nn.Module], names: dict[int, str]
) -> dict[int, tuple[str, Tensor, Sequence[nn.Module]]]:
    """Per weight of ``layers`` (by id): its layer's name, the weight, and the modules of ``model`` whose calls
    use it as recorded: those holding it as their ``weight`` (a head tied to an embedding shares its weight), and
    an attention that reads it as its input projection's or ``out_proj``'s weight. Sharded weights (DTensors) are
    left out: FSDP2 gathers them outside their modules' calls, and its forward uses other tensors."""
    weights = {id(m.weight): (names[id(m)], m.weight) for m in layers if not is_dtensor(m.weight)}
    owners: dict[int, tuple[str, Tensor, list[nn.Module]]] = {k: (*v, []) for k, v in weights.items()}
    for module in model.modules():
        held = [getattr(module, "weight", None)]
        if isinstance(module, nn.MultiheadAttention):
            held += [module.in_proj_weight, module.out_proj.weight]
        for w in held:
            if isinstance(w, Tensor) and id(w) in owners and owners[id(w)][1] is w:
                owners[id(w)][2].append(module)
    return owners


def _linear_operands(args: Sequence[Any], kwargs: dict[str, Any]) -> tuple[Any, Any]:
    """``F.linear``'s input and weight, however they were passed."""
    named = dict(zip(("input", "weight"), args, strict=False)) | kwargs
    return named.get("input"), named.get("weight")


def _op_name(func: Callable[..., Any]) -> str:
    """``linear``, ``matmul``; a property's name (``T``) rather than its getter's (``__get__``)."""
    name = getattr(func, "__name__", repr(func))
    if name == "__get__":
        name = getattr(getattr(func, "__self__", None), "__name__", name)
    return name
