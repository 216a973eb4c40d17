"""kaplinskiy: potential-function optimization against catastrophic forgetting, for PyTorch.

Equation numbers refer to the technical note the paper grows from (sections 4-5):
the potential Phi = sum_i a_i L_i + R (eq. 10), the projected direction d = -P_perp(G_A) g
(eqs. 11-12) and the Armijo acceptance Phi(w+) <= Phi(w) - delta (eq. 13).
"""

from .line_search import ArmijoResult, armijo_backtrack, armijo_condition
from .potential import l2sp_penalty, potential
from .potential_descent import StepCertificate, potential_descent_step
from .projection import complement_projector, orthonormal_basis, project_out, projected_direction

__version__ = "0.1.0"

__all__ = [
    "ArmijoResult",
    "StepCertificate",
    "__version__",
    "armijo_backtrack",
    "armijo_condition",
    "complement_projector",
    "l2sp_penalty",
    "orthonormal_basis",
    "potential",
    "potential_descent_step",
    "project_out",
    "projected_direction",
]
