"""Per-sample gradients with torch.func (vmap over grad), shared by the dense memory and the Fisher.

A per-sample gradient is ``grad_w f(model(x_s), y_s)`` for one sample ``s``; the mean over a batch
is what ``loss.backward()`` gives, but EWC's Fisher (eq:fisher) and OGD's memory need them one by one.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn
from torch.func import functional_call, grad, vmap

__all__ = [
    "IGNORE_INDEX",
    "causal_lm_targets",
    "check_samples",
    "ground_truth_logit",
    "per_sample_gradients",
    "sample_loss",
]

IGNORE_INDEX = -100
"""A target position that counts in no loss or logit (the torch and Hugging Face convention)."""

SINGLE_LOGIT = (
    "Invalid model output: a single logit; a softmax over one class is constant, so its cross-entropy and "
    "log-probability have no gradient (for a one-logit binary classifier, output two logits)"
)


def _logits_and_targets(output: Tensor | object, target: Tensor) -> tuple[Tensor, Tensor]:
    """One sample's ``(positions, classes)`` logits and ``(positions,)`` targets.

    ``output`` is a tensor of shape ``(1, C)`` (a classifier) or ``(1, T, V)`` (a token model), or a Hugging Face
    ``ModelOutput`` with ``.logits``; ``target`` holds one class per position, ``IGNORE_INDEX`` for positions
    that do not count.
    """
    logits = getattr(output, "logits", output)
    logits = logits.reshape(-1, logits.shape[-1])
    target = target.reshape(-1)
    if target.is_floating_point() or target.is_complex() or target.dtype == torch.bool:
        raise ValueError(f"Invalid target: class indices are integers, not {target.dtype}")
    if target.shape[0] != logits.shape[0]:
        raise ValueError(f"Invalid target: {target.shape[0]} positions for an output with {logits.shape[0]} positions")
    return logits, target


def ground_truth_logit(output: Tensor | object, target: Tensor) -> Tensor:
    """OGD-GTL: the model output of the true class, ``f_y(x)``.

    For a classifier (``output`` of shape ``(1, C)``) this is one logit. For a token model (``(1, T, V)``, or a
    Hugging Face output with ``.logits``) it is the mean, over the positions whose target is not
    :data:`IGNORE_INDEX`, of the true token's logit: one direction per sequence, as OGD stores one per sample.
    """
    logits, target = _logits_and_targets(output, target)
    valid = target != IGNORE_INDEX
    picked = logits.gather(1, target.clamp_min(0)[:, None]).squeeze(1)
    return (picked * valid).sum() / valid.sum().clamp_min(1)


def sample_loss(output: Tensor | object, target: Tensor) -> Tensor:
    """Cross-entropy of one sample, ``-log softmax(f(x))_y``, averaged over its counted positions.

    A single logit is refused: a softmax over one class is constant, so the loss and its gradient would be 0.
    """
    logits, target = _logits_and_targets(output, target)
    if logits.shape[-1] < 2:
        raise ValueError(SINGLE_LOGIT)
    valid = target != IGNORE_INDEX
    nll = torch.nn.functional.cross_entropy(logits, target.clamp_min(0), reduction="none")
    return (nll * valid).sum() / valid.sum().clamp_min(1)


def causal_lm_targets(input_ids: Tensor, attention_mask: Tensor | None = None) -> Tensor:
    """Next-token targets aligned with a causal LM's output positions: ``y[:, t] = x[:, t + 1]``.

    The last position, padded positions (``attention_mask == 0``) and the positions whose next token is padding
    get :data:`IGNORE_INDEX`. Pass them with ``input_ids`` to :func:`per_sample_gradients` or
    ``DenseMemory.add_task`` for a Hugging Face causal LM (whose ``labels`` argument shifts internally; here the
    shift is explicit). Padding must be on the right: the model is then called without the mask, and no real
    token attends to a pad (left padding is refused).
    """
    if attention_mask is not None and attention_mask.shape != input_ids.shape:
        raise ValueError(
            f"Invalid attention_mask: shape {tuple(attention_mask.shape)} for input_ids {tuple(input_ids.shape)}"
        )
    targets = torch.full_like(input_ids, IGNORE_INDEX)
    targets[..., :-1] = input_ids[..., 1:]
    if attention_mask is not None:
        if bool((attention_mask[..., 1:] > attention_mask[..., :-1]).any()):
            raise ValueError("Invalid attention_mask: padding must be on the right (a pad precedes a real token)")
        pad = (attention_mask[..., 1:] == 0) | (attention_mask[..., :-1] == 0)
        targets[..., :-1] = targets[..., :-1].masked_fill(pad, IGNORE_INDEX)
    return targets


def check_eval_mode(model: nn.Module) -> None:
    """Raise ``ValueError`` for a dropout or batch-norm layer in training mode, and for a batch norm without
    running statistics (it normalises by the batch in eval mode too): per-sample gradients of a random mask, or
    of one sample's batch statistics, are not what a Fisher or a memory needs. Each layer's own mode counts, not
    the root's: a layer left in training mode under a root in eval mode is refused, a batch norm frozen in eval
    mode inside a model in training mode is not."""
    for key, m in model.named_modules():
        name = f"layer {key!r}" if key else "root layer"
        if isinstance(m, (nn.modules.dropout._DropoutNd, nn.modules.batchnorm._BatchNorm)) and m.training:
            raise ValueError(
                f"Invalid model: its {name} is in training mode with dropout or batch norm; call model.eval() first"
            )
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.running_mean is None and m.running_var is None:
            raise ValueError(
                f"Invalid model: its {name}, a batch norm, has no running statistics (track_running_stats=False), "
                "so it normalises by the batch even in eval mode"
            )


def _names_of(model: nn.Module, params: Sequence[Tensor]) -> list[str]:
    by_id = {id(p): name for name, p in model.named_parameters()}
    missing = [i for i, p in enumerate(params) if id(p) not in by_id]
    if missing:
        raise ValueError(f"Invalid params: entries {missing} are not parameters of the model")
    return [by_id[id(p)] for p in params]


# What torch.func's per-sample gradients cannot run through, by a phrase of torch's error, and what to do instead.
_PER_SAMPLE_LIMITS = (
    (
        "saved tensor hooks",
        RuntimeError,
        "the forward runs activation checkpointing (torch.utils.checkpoint) or other saved-tensor hooks, which "
        "torch.func's per-sample gradients do not run through; turn them off while they are computed (Hugging Face "
        "models checkpoint in training mode only: call model.eval())",
    ),
    (
        "setup_context",
        RuntimeError,
        "the forward runs an autograd.Function that torch.func cannot transform (reentrant activation "
        "checkpointing, torch.utils.checkpoint(use_reentrant=True), or a custom kernel); turn it off while they are "
        "computed",
    ),
    (
        "requires_grad_",
        RuntimeError,
        "the forward calls requires_grad_() or torch.autograd, which torch.func's per-sample gradients refuse; "
        "Hugging Face's activation checkpointing installs such a hook: call model.disable_input_require_grads() "
        "before they are computed (add_task, the Fisher), and enable_input_require_grads() after",
    ),
    (
        "called random operation",
        ValueError,
        "Invalid model: the forward draws random numbers (in training mode, dropout without an nn.Dropout layer, "
        "as in Hugging Face's BART, OPT or LLaMA, or drop-path: call model.eval() first)",
    ),
    (
        "out of bounds for dimension",
        ValueError,
        "Invalid targets or inputs: an index is out of range in the forward or in fn (a target class not below the "
        "number of the model's outputs, or a token id not below the vocabulary's size)",
    ),
)


def check_samples(inputs: Tensor, targets: Tensor) -> None:
    """Refuse no samples, and a number of targets other than the inputs' (the first axis of each)."""
    if inputs.shape[0] == 0:
        raise ValueError("Invalid inputs: no samples")
    if targets.shape[0] != inputs.shape[0]:
        raise ValueError(
            f"Invalid targets: {targets.shape[0]} for {inputs.shape[0]} inputs (a target, or a row of them, per input)"
        )


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
    as they are; a dropout or batch-norm layer in training mode is refused (per-sample gradients of a
    random mask, or of batch statistics of one sample, are not what a Fisher or a memory needs; see
    :func:`check_eval_mode`): call ``model.eval()`` first. ``chunk_size`` bounds memory. What torch.func cannot
    run through (activation checkpointing, a hook that calls ``requires_grad_``, random numbers drawn in training
    mode) is refused with what to do instead.
    """
    check_eval_mode(model)
    check_samples(inputs, targets)
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
    try:
        grads = vmap(grad(one), in_dims=(None, 0, 0), chunk_size=chunk_size)(values, inputs, targets)
    except RuntimeError as err:
        known = next((k for k in _PER_SAMPLE_LIMITS if k[0] in str(err)), None)
        if known is None:
            raise
        _, error, message = known
        raise error(f"{message} (torch.func: {err})") from err
    return torch.cat([g.reshape(inputs.shape[0], -1) for g in grads], dim=1)
