"""kaplinskiy: potential-function optimization against catastrophic forgetting, for PyTorch.

Equation numbers refer to the technical note the paper grows from (sections 4-5):
the potential Phi = sum_i a_i L_i + R (eq. 10), the projected direction d = -P_perp(G_A) g
(eqs. 11-12) and the Armijo acceptance Phi(w+) <= Phi(w) - delta (eq. 13).
"""

from .acceptance import Certificate, NonFiniteStepWarning
from .anchor_penalty import ElasticAnchor, ewc_penalty, ewc_penalty_grad
from .fisher import empirical_fisher_diagonal, online_fisher, true_fisher_diagonal
from .forgetting_guard import ForgettingGuard, GradientModeWarning
from .hybrid_adamw import HybridAdamW, adamw_update
from .kaplinskiy_optimizer import Kaplinskiy
from .line_search import ArmijoResult, armijo_backtrack, armijo_condition
from .memory import ProjectionMemory
from .memory_dense import DenseMemory, orthonormal_extension
from .memory_layerwise import LayerwiseMemory, energy_basis_update, energy_basis_update_rows
from .outside_uses import UnrecordedUseWarning
from .per_sample import IGNORE_INDEX, causal_lm_targets, ground_truth_logit, per_sample_gradients, sample_loss
from .potential import l2sp_penalty, potential
from .potential_descent import StepCertificate, potential_descent_step
from .projection import complement_projector, orthonormal_basis, project_out, projected_direction
from .replay import ReplayBuffer, replay_term
from .wrapper import OptimizerWrapper

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
