"""The paper's optimizers in the ``torch.optim`` API, one per module: :class:`~kaplinskiy.Kaplinskiy` (the
projected, Armijo-accepted step), :class:`~kaplinskiy.HybridAdamW` (AdamW with its update projected), and
:class:`~kaplinskiy.ForgettingGuard` (any optimizer's step projected), with the wrapper they share; the private
modules hold the step's acceptance and certificate, the finite check, the group checks and the fused AdamW step.

May import: torch, :mod:`kaplinskiy._tensor_lists`, :mod:`kaplinskiy._kernels`, :mod:`kaplinskiy.functional` and
:mod:`kaplinskiy.memory`.
"""
