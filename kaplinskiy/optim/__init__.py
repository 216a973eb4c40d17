"""The paper's optimizers in the ``torch.optim`` API, one per module: :class:`~kaplinskiy.Kaplinskiy` (the
projected, Armijo-accepted step of sec:method), :class:`~kaplinskiy.HybridAdamW` (AdamW with its update projected,
eq:projected_update) and :class:`~kaplinskiy.ForgettingGuard` (any optimizer's step projected), with the wrapper
they share. The private modules hold a step's acceptance and certificate (``_acceptance``), the check that rejects a
non-finite step (``_finite_check``), the param-group checks (``_checks``) and HybridAdamW's fused step
(``_fused_adamw``).

A line search (``armijo=True``) evaluates its trial points with the user's closure under ``torch.no_grad()``, so
a trial costs one forward pass. The closure must therefore call ``backward()`` only when grad mode is on::

    def closure():
        optimizer.zero_grad()
        phi = potential([loss_B(model)], [1.0], reg)
        if torch.is_grad_enabled():
            phi.backward()
        return phi

May import: torch, :mod:`kaplinskiy._tensor_lists`, :mod:`kaplinskiy._kernels`, :mod:`kaplinskiy.functional` and
:mod:`kaplinskiy.memory`.
"""
