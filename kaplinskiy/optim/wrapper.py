"""The delegation every optimizer wrapper shares (schedule_free's ``ScheduleFreeWrapper`` pattern).

A wrapper is a ``torch.optim.Optimizer`` (so LR schedulers and trainers accept it) that owns no groups or
state of its own: ``param_groups``, ``state``, ``defaults``, ``zero_grad`` and ``add_param_group`` are the base
optimizer's, and ``state_dict`` nests the wrapper's own small record under one key.
"""

from __future__ import annotations

import copy
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, ClassVar

import torch
from torch import Tensor
from torch.optim import Optimizer

from ._acceptance import skip_step

__all__ = ["OptimizerWrapper", "copied_state"]

_HOOKS = (
    "_optimizer_step_pre_hooks",
    "_optimizer_step_post_hooks",
    "_optimizer_state_dict_pre_hooks",
    "_optimizer_state_dict_post_hooks",
    "_optimizer_load_state_dict_pre_hooks",
    "_optimizer_load_state_dict_post_hooks",
)
_NOT_COPIED = frozenset({*_HOOKS, "step", "_opt_called"})


def copied_state(optimizer: Optimizer) -> dict[str, Any]:
    """The attributes ``copy.deepcopy`` and ``pickle`` keep of an optimizer that holds more than ``torch.optim``'s
    defaults, state and groups (its settings, memory, record): all of them but what ``torch.optim`` leaves out
    too, the registered hooks and the instance's ``step`` that an LR scheduler wraps (bound to the original, it
    would step the original from the copy; a local function does not pickle)."""
    return {k: v for k, v in optimizer.__dict__.items() if k not in _NOT_COPIED}


class OptimizerWrapper(Optimizer):
    """Base class: subclasses implement ``step`` as pre-process, ``self.base.step()``, post-process."""

    state_key: ClassVar[str] = "wrapper"

    def __init__(self, base: Optimizer) -> None:
        if not isinstance(base, Optimizer):
            raise ValueError(f"Invalid base: {type(base).__name__} is not a torch.optim.Optimizer")
        self.base = base
        self.wrapper_state: dict[str, Any] = {"step": 0}
        for name in _HOOKS:
            setattr(self, name, OrderedDict())
        self._patch_step_function()

    @property
    def param_groups(self) -> list[dict[str, Any]]:
        """The base optimizer's groups (so LR schedulers set its learning rates)."""
        return self.base.param_groups

    @property
    def state(self) -> Any:
        """The base optimizer's per-parameter state."""
        return self.base.state

    @property
    def defaults(self) -> dict[str, Any]:
        """The base optimizer's defaults."""
        return self.base.defaults

    def __getstate__(self) -> dict[str, Any]:
        """What ``copy.deepcopy`` and ``pickle`` keep (:func:`copied_state`)."""
        return copied_state(self)

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        for name in _HOOKS:
            self.__dict__.setdefault(name, OrderedDict())
        self._patch_step_function()

    def zero_grad(self, set_to_none: bool = True) -> None:
        """The base optimizer's ``zero_grad``."""
        self.base.zero_grad(set_to_none=set_to_none)

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Add a group to the base optimizer."""
        self.base.add_param_group(param_group)

    def state_dict(self) -> dict[str, Any]:
        """The base optimizer's state dict, with the wrapper's own record under ``state_key``; the hooks
        registered on the wrapper run as ``torch.optim`` runs them."""
        for pre_hook in self._optimizer_state_dict_pre_hooks.values():
            pre_hook(self)
        state_dict = {**self.base.state_dict(), self.state_key: copy.deepcopy(self.wrapper_state)}
        for post_hook in self._optimizer_state_dict_post_hooks.values():
            state_dict = post_hook(self, state_dict) or state_dict
        return state_dict

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned (a plain base-optimizer state dict also loads); the hooks
        registered on the wrapper run as ``torch.optim`` runs them."""
        state_dict = dict(state_dict)
        for pre_hook in self._optimizer_load_state_dict_pre_hooks.values():
            state_dict = dict(pre_hook(self, state_dict) or state_dict)
        own = state_dict.pop(self.state_key, None)
        self.base.load_state_dict(state_dict)
        if own is not None:  # a copy: the caller's dict is not written to by later steps; a key an older
            # checkpoint lacks (a counter added since) keeps this wrapper's value
            self.wrapper_state = {**self.wrapper_state, **copy.deepcopy(own)}
        for post_hook in self._optimizer_load_state_dict_post_hooks.values():
            post_hook(self)

    def _begin_step(self, closure: Callable[[], Tensor | float] | None) -> tuple[Any, bool]:
        """Evaluate ``closure`` with grad enabled; ``True`` means skip: a loss or gradient is non-finite.

        A skipped step raises :class:`~kaplinskiy.NonFiniteStepWarning` and touches nothing. A zero gradient is
        not skipped here: a wrapper may add its own term (a penalty, a replay gradient) to it.
        """
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        grads = [p.grad for p in self._params() if p.grad is not None]
        return loss, skip_step(loss, grads, type(self).__name__, skip_zero=False)

    def _params(self) -> list[Any]:
        return [p for g in self.param_groups for p in g["params"]]
