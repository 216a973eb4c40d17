"""LionMuon (Bolatov et al. 2026, arXiv 2605.19811, Algorithm 1): Muon and Lion steps alternating on one
momentum buffer.

For a matrix ``W`` with gradient ``G`` and momentum ``M``, at its ``t``-th update (``t = 0, 1, ...``):

1. ``G^ = beta1 M + (1 - beta1) G`` (Lion's interpolation);
2. if ``t mod P = 0``: ``W <- (1 - eta_M wd) W - eta_M s NS_K(G^)`` with ``s = 0.2 sqrt(max(m, n))``;
3. else: ``W <- (1 - eta_L wd) W - eta_L sign(G^)``, with ``eta_L = lion_lr_ratio * eta_M``;
4. always ``M <- beta2 M + (1 - beta2) G``.

``P = muon_every``: ``P = 1`` is Muon with EMA momentum, ``P = None`` is Lion (Signum when ``beta1 = beta2``),
and ``beta1 = beta2`` is SignMuon. Groups with ``use_muon=False`` (embeddings, biases, norms: Muon's steps are
for hidden matrices) take AdamW steps with their own ``lr``, ``adamw_betas``, ``adamw_eps`` and ``weight_decay``,
as Keller Jordan's ``MuonWithAuxAdam`` does; :func:`~kaplinskiy.optimizers.muon_param_groups` builds the two groups.

Departures from the authors' code, none of which changes a step when every matrix gets a gradient at every step:
the counter ``t`` is each matrix's own (its state's ``step``, as torch.optim keeps it), not a global one; the
Lion rate is a ratio to the group's ``lr``, so a scheduler scales both rates (the code does the same); and the
step is taken in the parameter's dtype, not through a bfloat16 buffer (NS_K itself runs in ``ns_dtype``, bfloat16 by
default). As there, the first update of a matrix (``t = 0``) is a Muon step.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from .group_optimizer import check_hyperparameters
from .muon_groups import MuonGroupOptimizer
from .newton_schulz import newton_schulz, rms_matching_scale

__all__ = ["LionMuon", "lion_muon_direction"]


def lion_muon_direction(
    momentum: Tensor,
    grad: Tensor,
    beta1: float,
    muon_step: bool,
    ns_steps: int = 5,
    ns_dtype: torch.dtype = torch.bfloat16,
) -> Tensor:
    """Algorithm 1, steps 1-3: the direction ``s NS_K(G^)`` (a Muon step, NS_K in ``ns_dtype``) or ``sign(G^)``
    (a Lion step) of ``G^ = beta1 M + (1 - beta1) G``, in ``grad``'s dtype; the step subtracts it times the step's
    rate."""
    interpolated = torch.lerp(grad, momentum, beta1)  # G + beta1 (M - G)
    if not muon_step:
        return interpolated.sign_()
    orthogonal = newton_schulz(interpolated, ns_steps, dtype=ns_dtype)
    return orthogonal.to(grad.dtype).mul_(rms_matching_scale(grad.shape))


class LionMuon(MuonGroupOptimizer):
    """LionMuon: ``muon_every``-periodic Muon steps between Lion steps, one momentum (Algorithm 1; module
    docstring). ``lr`` is the Muon rate ``eta_M``; ``lion_lr_ratio`` gives ``eta_L = lion_lr_ratio * lr``.
    The defaults are the paper's best runs at 124M parameters (P = 2, betas (0.9, 0.99), eta_M 1e-3,
    eta_L 5e-5, weight decay 0.1, K = 5; AdamW groups with betas (0.8, 0.999)). ``ns_dtype``: the dtype NS_K
    runs in, bfloat16 as in the paper and torch.optim.Muon; on a CPU, ``torch.float32`` is some 75 to 100
    times faster (:func:`~kaplinskiy.optimizers.newton_schulz`).
    """

    def __init__(
        self,
        params: Any,
        lr: float = 1e-3,
        lion_lr_ratio: float = 0.05,
        betas: tuple[float, float] = (0.9, 0.99),
        weight_decay: float = 0.1,
        muon_every: int | None = 2,
        ns_steps: int = 5,
        *,
        use_muon: bool = True,
        adamw_betas: tuple[float, float] = (0.8, 0.999),
        adamw_eps: float = 1e-8,
        ns_dtype: torch.dtype = torch.bfloat16,
        maximize: bool = False,
    ) -> None:
        defaults = dict(
            lr=lr,
            lion_lr_ratio=lion_lr_ratio,
            betas=betas,
            weight_decay=weight_decay,
            muon_every=muon_every,
            ns_steps=ns_steps,
            use_muon=use_muon,
            adamw_betas=adamw_betas,
            adamw_eps=adamw_eps,
            ns_dtype=ns_dtype,
            maximize=maximize,
        )
        super().__init__(params, defaults)

    def _matrix_step(self, group: dict[str, Any], params: list[Tensor]) -> None:
        beta1, beta2 = group["betas"]
        every = group["muon_every"]
        for p in params:
            grad = -p.grad if group["maximize"] else p.grad
            state = self.state[p]
            if len(state) == 0:
                state["step"] = 0
                state["momentum_buffer"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            muon_step = every is not None and state["step"] % every == 0
            lr = group["lr"] if muon_step else group["lr"] * group["lion_lr_ratio"]
            direction = lion_muon_direction(
                state["momentum_buffer"], grad, beta1, muon_step, group["ns_steps"], group["ns_dtype"]
            )
            p.mul_(1 - lr * group["weight_decay"]).add_(direction, alpha=-lr)
            state["momentum_buffer"].lerp_(grad, 1 - beta2)
            state["step"] += 1

    @staticmethod
    def _check_hyperparameters(h: dict[str, Any]) -> None:
        """``ValueError(f"Invalid {name}: {value}")`` for the first hyperparameter out of its range."""
        check_hyperparameters(
            h,
            nonnegative=("lr", "lion_lr_ratio", "weight_decay", "adamw_eps"),
            betas=("betas", "adamw_betas"),
            counts=(("ns_steps", 0),),
            dtypes=("ns_dtype",),
        )
        if h["muon_every"] is not None and not (isinstance(h["muon_every"], int) and h["muon_every"] >= 1):
            raise ValueError(f"Invalid muon_every: {h['muon_every']} (a period of at least 1, or None for Lion)")
