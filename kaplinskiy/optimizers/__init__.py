"""Recent optimizers that join the forgetting comparison (sec:optimizers), written from
their papers' update rules in the torch.optim API, so that :class:`~kaplinskiy.ForgettingGuard` can wrap them:

* :class:`LionMuon` (LionMuon / SignMuon, arXiv 2605.19811): a Muon step every ``muon_every`` steps, Lion sign
  steps between them, one momentum buffer; ``muon_every=None`` gives Lion, ``betas`` equal give SignMuon;
* :class:`SoftSignum` (arXiv 2605.31371): Signum, then a tanh transition with temperatures fitted once on the
  momentum, towards SGD;
* :class:`SoftMuon` (the same paper): Muon, then the spectral soft sign with temperatures fitted once on the
  gradients' singular values, towards SGD;
* :func:`newton_schulz`: Muon's quintic Newton-Schulz orthogonalisation NS_K;
* :func:`muon_param_groups`: hidden matrices in a ``use_muon=True`` group, the rest (AdamW) in another.

Muon itself is ``torch.optim.Muon`` and Lion is ``lion_pytorch.Lion``; the tests pin the special cases above
to them (SoftMuon without a transition is Muon).

May import: torch, :mod:`kaplinskiy._tensor_lists` and :mod:`kaplinskiy.optim` (AdamW's update for the groups
without Muon, the param-group check).
"""

from .lion_muon import LionMuon, lion_muon_direction
from .muon_groups import muon_param_groups
from .newton_schulz import NS_COEFFICIENTS, aspect_scale, newton_schulz, rms_matching_scale
from .soft_muon import SoftMuon
from .soft_sign_temperatures import (
    cauchy_temperatures,
    folded_cauchy_quantile,
    soft_muon_temperatures,
    soft_sign_temperatures,
)
from .soft_signum import SoftSignum
from .spectral_soft_sign import spectral_soft_sign

__all__ = [
    "NS_COEFFICIENTS",
    "LionMuon",
    "SoftMuon",
    "SoftSignum",
    "aspect_scale",
    "cauchy_temperatures",
    "folded_cauchy_quantile",
    "lion_muon_direction",
    "muon_param_groups",
    "newton_schulz",
    "rms_matching_scale",
    "soft_muon_temperatures",
    "soft_sign_temperatures",
    "spectral_soft_sign",
]
