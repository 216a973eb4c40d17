"""Per-sample gradients with torch.func (vmap over grad), shared by the dense memory and the Fisher.

A per-sample gradient is ``grad_w f(model(x_s), y_s)`` for one sample ``s``; the mean over a batch
is what ``loss.backward()`` gives, but EWC's Fisher (eq. 6) and OGD's memory need them one by one.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn
from torch.func import functional_call, grad, vmap

__all__ = ["ground_truth_logit", "per_sample_gradients", "sample_loss"]


def ground_truth_logit(output: Tensor, target: Tensor) -> Tensor:
    """OGD-GTL: the model output of the true class, ``f_y(x)`` (one sample, ``output`` of shape ``(1, C)``)."""
    return output.reshape(-1).gather(0, target.reshape(1)).squeeze(0)


def sample_loss(output: Tensor, target: Tensor) -> Tensor:
    """Cross-entropy of one sample: ``-log softmax(f(x))_y``."""
    return torch.nn.functional.cross_entropy(output.reshape(1, -1), target.reshape(1))


def _names_of(model: nn.Module, params: Sequence[Tensor]) -> list[str]:
    by_id = {id(p): name for name, p in model.named_parameters()}
    missing = [i for i, p in enumerate(params) if id(p) not in by_id]
    if missing:
        raise ValueError(f"Invalid params: entries {missing} are not parameters of the model")
    return [by_id[id(p)] for p in params]


def per_sample_gradients(
    model: nn.Module,
    fn: Callable[[Tensor, Tensor], Tensor],
    inputs: Tensor,
    targets: Tensor,
    params: Sequence[Tensor] | None = None,
    *,
    chunk_size: int | None = None,
) -> Tensor:
    """The ``(N, n)`` matrix whose row ``s`` is ``grad_w fn(model(x_s), y_s)``, flattened in ``params`` order.

    ``fn(output, target)`` gets one sample's output (with a batch axis of 1) and its target and
    returns a scalar. ``params`` defaults to the parameters that require grad. Buffers are read
    as they are (use ``model.eval()`` for dropout and batch norm). ``chunk_size`` bounds memory.
    """
    if params is None:
        params = [p for p in model.parameters() if p.requires_grad]
    names = _names_of(model, params)
    frozen = {k: v.detach() for k, v in model.named_parameters() if k not in set(names)}
    buffers = dict(model.named_buffers())

    def one(values: tuple[Tensor, ...], x: Tensor, y: Tensor) -> Tensor:
        state = {**frozen, **buffers, **dict(zip(names, values, strict=True))}
        out = functional_call(model, state, (x.unsqueeze(0),))
        return fn(out, y)

    values = tuple(p.detach() for p in params)
    grads = vmap(grad(one), in_dims=(None, 0, 0), chunk_size=chunk_size)(values, inputs, targets)
    return torch.cat([g.reshape(inputs.shape[0], -1) for g in grads], dim=1)
