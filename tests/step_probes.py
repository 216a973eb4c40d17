"""Probes shared by the integration tests: one optimizer step taken and undone, and the first-order change of a
model's outputs along it (the quantity eq. (12) promises to keep at zero on the old task's inputs)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn
from torch.func import functional_call, jvp


def first_order_change(model: nn.Module, inputs: dict[str, Tensor], steps: list[Tensor]) -> float:
    """``||J d||``: the exact first-order change of the model's outputs (``.logits`` of a Hugging Face output) on
    ``inputs`` along the step ``d`` over its trainable parameters."""
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    fixed = {n: p.detach() for n, p in model.named_parameters() if not p.requires_grad} | dict(model.named_buffers())
    values = dict(model.named_parameters())

    def outputs(*weights: Tensor) -> Tensor:
        out = functional_call(model, {**fixed, **dict(zip(names, weights, strict=True))}, kwargs=inputs)
        return getattr(out, "logits", out)

    _, change = jvp(outputs, tuple(values[n].detach() for n in names), tuple(steps))
    return float(change.norm())


def step_and_restore(
    model: nn.Module, opt: Any, loss: Callable[[], Tensor], seed: int | None = None
) -> tuple[list[Tensor], list[Tensor]]:
    """One step of ``opt`` on ``loss()`` (from ``seed``, when given: the same dropout masks for every optimizer);
    returns the step ``w1 - w0`` and the gradient over the trainable parameters, and puts the parameters back."""
    params = [p for p in model.parameters() if p.requires_grad]
    w0 = [p.detach().clone() for p in params]
    if seed is not None:
        torch.manual_seed(seed)
    opt.zero_grad()
    loss().backward()
    grads = [p.grad.clone() for p in params]
    opt.step()
    with torch.no_grad():
        steps = [p - w for p, w in zip(params, w0, strict=True)]
        for p, w in zip(params, w0, strict=True):
            p.copy_(w)
    return steps, grads


def dot(a: list[Tensor], b: list[Tensor]) -> float:
    """``sum_i <a_i, b_i>`` over two lists of tensors."""
    return float(sum((x * y).sum() for x, y in zip(a, b, strict=True)))
