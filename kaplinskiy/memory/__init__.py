"""Projection memories G_A (eq:projected): the interface the optimizers use (:mod:`~kaplinskiy.memory.base`), OGD's
dense memory of per-sample gradients (:mod:`~kaplinskiy.memory.dense`, with its Gram-matrix snapshots) and GPM's
layer-wise memory of each layer's old inputs (:mod:`kaplinskiy.memory.layerwise`).

May import: torch, :mod:`kaplinskiy._tensor_lists`, :mod:`kaplinskiy._kernels`, :mod:`kaplinskiy.functional` and
:mod:`kaplinskiy.regularizers.per_sample` (per-sample gradients, the eval-mode check); not the optimizers.
"""
