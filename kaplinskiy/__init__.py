"""kaplinskiy: potential-function optimization against catastrophic forgetting, for PyTorch.

Docstrings cite the paper's equations by label (sec:method): the potential Phi = sum_i a_i L_i + R
(eq:potential), the projected direction d = -P_perp(G_A) grad Phi (eq:projected), which is orthogonal to the
memory (eq:orthogonal), and the Armijo acceptance of a step (eq:armijo); the subsection sec:library displays the
rest (the regularisers, GPM's memory, the projected update, the continual-learning metrics).

The public API is exported here; the subpackages hold the paper's equations on tensors (``functional``), the
optimizers (``optim``), the projection memories (``memory``), the regularisers (``regularizers``), the baselines
(``baselines``), recent optimizers (``optimizers``), the Kaplinskii-Propoi methods (``kaplinskii_propoi``) and
the continual-learning metrics (``metrics``).
"""

from .functional.armijo import ArmijoResult, armijo_backtrack, armijo_condition
from .functional.memory_update import energy_basis_update, energy_basis_update_rows
from .functional.potential import l2sp_penalty, potential
from .functional.potential_descent import StepCertificate, potential_descent_step
from .functional.projection import complement_projector, orthonormal_basis, project_out, projected_direction
from .memory.base import ProjectionMemory
from .memory.dense import DenseMemory, orthonormal_extension
from .memory.layerwise.memory import LayerwiseMemory
from .memory.layerwise.outside_uses import UnrecordedUseWarning
from .optim._acceptance import Certificate, NonFiniteStepWarning
from .optim.forgetting_guard import ForgettingGuard, GradientModeWarning
from .optim.hybrid_adamw import HybridAdamW, adamw_update
from .optim.kaplinskiy import Kaplinskiy
from .optim.wrapper import OptimizerWrapper
from .regularizers.elastic_anchor import ElasticAnchor, ewc_penalty, ewc_penalty_grad
from .regularizers.fisher import empirical_fisher_diagonal, online_fisher, true_fisher_diagonal
from .regularizers.per_sample import (
    IGNORE_INDEX,
    causal_lm_targets,
    ground_truth_logit,
    per_sample_gradients,
    sample_loss,
)
from .regularizers.replay import ReplayBuffer, replay_term

__version__ = "0.1.0"

__all__ = [
    "IGNORE_INDEX",
    "ArmijoResult",
    "Certificate",
    "DenseMemory",
    "ElasticAnchor",
    "ForgettingGuard",
    "GradientModeWarning",
    "HybridAdamW",
    "Kaplinskiy",
    "LayerwiseMemory",
    "NonFiniteStepWarning",
    "OptimizerWrapper",
    "ProjectionMemory",
    "ReplayBuffer",
    "StepCertificate",
    "UnrecordedUseWarning",
    "__version__",
    "adamw_update",
    "armijo_backtrack",
    "armijo_condition",
    "causal_lm_targets",
    "complement_projector",
    "empirical_fisher_diagonal",
    "energy_basis_update",
    "energy_basis_update_rows",
    "ewc_penalty",
    "ewc_penalty_grad",
    "ground_truth_logit",
    "l2sp_penalty",
    "online_fisher",
    "orthonormal_basis",
    "orthonormal_extension",
    "per_sample_gradients",
    "potential",
    "potential_descent_step",
    "project_out",
    "projected_direction",
    "replay_term",
    "sample_loss",
    "true_fisher_diagonal",
]
