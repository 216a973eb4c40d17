"""Diagonal Fisher information (eq:fisher) for EWC's weight F_A in eq:ewc_penalty, from per-sample gradients.

The Fisher is an expectation of squared per-sample score functions, not the square of a mean gradient:
``F_ii = E_x E_y [ (d/dw_i log p(y | x, w))^2 ]``. The *true* Fisher draws ``y`` from the model itself (here the
exact sum over classes, weighted by ``p(y | x)``); the *empirical* Fisher uses the observed labels.
Online EWC (Schwarz et al. 2018) accumulates ``F <- gamma F + F_task`` across tasks. Their penalty weights the
accumulated Fisher by one more ``gamma`` (``||w - w*||^2`` in the metric ``gamma F``); eq:ewc_penalty here uses ``F``
itself, the same penalty with ``lam`` in place of their ``gamma lam``.

Squares and sums are taken in at least float32, and so is the Fisher returned: a per-sample gradient of 1e-5 in a
float16 model squares to 0 in float16, so its Fisher would be 0 where it is not.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn
from torch.func import functional_call, jacrev, vmap

from .._tensor_lists import at_least_float32
from .per_sample import SINGLE_LOGIT, _names_of, check_eval_mode, per_sample_gradients, sample_loss

__all__ = ["empirical_fisher_diagonal", "online_fisher", "true_fisher_diagonal"]


def _split(flat: Tensor, params: Sequence[Tensor]) -> list[Tensor]:
    out, start = [], 0
    for p in params:
        out.append(flat[start : start + p.numel()].view_as(p))
        start += p.numel()
    return out


def _chunked_mean(sums: Callable[[slice], Tensor], n: int, chunk_size: int | None) -> Tensor:
    """``(1/n) sum_chunks sums(rows)`` over consecutive row slices of at most ``chunk_size`` samples."""
    if n < 1:
        raise ValueError("Invalid inputs: no samples")
    if chunk_size is not None and chunk_size < 1:
        raise ValueError(f"Invalid chunk_size: {chunk_size}")
    step = n if chunk_size is None else chunk_size
    total = sums(slice(0, step))
    for start in range(step, n, step):
        total = total.add_(sums(slice(start, start + step)))
    return total / n


def empirical_fisher_diagonal(
    model: nn.Module,
    inputs: Tensor,
    targets: Tensor,
    params: Sequence[Tensor] | None = None,
    *,
    loss: Callable[[Tensor, Tensor], Tensor] = sample_loss,
    chunk_size: int | None = None,
) -> list[Tensor]:
    """``F_ii = (1/N) sum_s (d/dw_i loss(f(x_s), y_s))^2`` (eq:fisher): the empirical Fisher.

    For a token model a sample is a sequence and its loss the mean over counted positions (:func:`sample_loss`).
    ``chunk_size`` bounds memory: at most that many samples' gradients are held at once (``None``: all ``N``).
    """
    params = list(params) if params is not None else [p for p in model.parameters() if p.requires_grad]

    def squares(rows: slice) -> Tensor:
        return at_least_float32(per_sample_gradients(model, loss, inputs[rows], targets[rows], params)).pow(2).sum(0)

    return _split(_chunked_mean(squares, inputs.shape[0], chunk_size), params)


def true_fisher_diagonal(
    model: nn.Module,
    inputs: Tensor,
    params: Sequence[Tensor] | None = None,
    *,
    chunk_size: int | None = None,
) -> list[Tensor]:
    """``F_ii = (1/N) sum_s sum_c p(c | x_s) (d/dw_i log p(c | x_s))^2`` (eq:fisher): a classifier's true Fisher.

    The expectation over the model's own labels is exact (one Jacobian of ``log_softmax`` per sample), so
    the cost is ``C`` per-sample gradients; use the empirical Fisher when the label space is large.
    ``chunk_size`` bounds memory: at most that many samples' Jacobians are held at once (``None``: all ``N``).
    """
    check_eval_mode(model)
    params = list(params) if params is not None else [p for p in model.parameters() if p.requires_grad]
    names = _names_of(model, params)
    frozen = {k: v.detach() for k, v in model.named_parameters() if k not in set(names)}
    buffers = dict(model.named_buffers())

    def log_probs(values: tuple[Tensor, ...], x: Tensor) -> Tensor:
        state = {**frozen, **buffers, **dict(zip(names, values, strict=True))}
        out = functional_call(model, state, (x.unsqueeze(0),))
        logits = getattr(out, "logits", out)
        if logits.ndim != 2:
            raise ValueError(
                f"Invalid model output: true_fisher_diagonal needs class logits of shape (1, C), got "
                f"{tuple(logits.shape)}; for a token model use empirical_fisher_diagonal (one sequence per sample)"
            )
        if logits.shape[-1] < 2:
            raise ValueError(SINGLE_LOGIT)
        return torch.log_softmax(logits.reshape(-1), dim=0)

    def one(values: tuple[Tensor, ...], x: Tensor) -> tuple[Tensor, ...]:
        jac = jacrev(log_probs)(values, x)  # per parameter: (C, *shape)
        p = at_least_float32(log_probs(values, x).exp().detach())
        return tuple((p.view(-1, *([1] * (j.ndim - 1))) * at_least_float32(j).pow(2)).sum(0) for j in jac)

    values = tuple(p.detach() for p in params)

    def squares(rows: slice) -> Tensor:
        per_sample = vmap(one, in_dims=(None, 0))(values, inputs[rows])
        return torch.cat([f.sum(0).reshape(-1) for f in per_sample])

    return _split(_chunked_mean(squares, inputs.shape[0], chunk_size), params)


def online_fisher(previous: Sequence[Tensor] | None, new: Sequence[Tensor], gamma: float = 1.0) -> list[Tensor]:
    """Online EWC's ``F <- gamma F_prev + F_task`` (eq:fisher): ``gamma = 1`` sums the tasks' Fishers."""
    if not 0.0 <= gamma <= 1.0:
        raise ValueError(f"Invalid gamma: {gamma}")
    if previous is None:
        return [f.clone() for f in new]
    return [gamma * a + b for a, b in zip(previous, new, strict=True)]
