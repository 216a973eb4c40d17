"""Kaplinskii-Propoi nonlocal potential methods, clean-room from the 1993-94 papers, and minpy's variants
(sec:kp_benchmark).

"1993" is Kaplinskii & Propoi, *Avtomat. i Telemekh.* 1993 no. 7 (English in ARC); "1994b" their
second-order paper, ARC 55(8) 1994; "Part III" Kaplinskii, Pesin & Propoi, ARC 55(11) 1994. The paper's
sec:kp_benchmark restates the step (eq:kp_beam) and describes minpy's variants. Every method takes a batched
objective ``f: (..., n) -> (...)`` (or a ``CountedObjective``), a start ``x0`` and a ``torch.Generator``, and
returns an ``OptimizeResult`` with its exact number of function and gradient evaluations and the
trace of the best value against them.

Modules: ``nonlocal_gradient`` (the potential gradient, 1993 eqs. 14-16, 28, 32), ``level`` (c, the perspective
set, D_k), ``sampling`` (p_U, Part III's radial importance sampling), ``descent`` (acceptance with
contraction), ``beam`` (first-order methods), ``second_order`` (dilatation operators with memory),
``gradient_hybrid`` (1993 eq. 44), ``minpy_nm`` and ``minpy_potential`` (minpy's algorithms with their
defects behind flags), ``objectives`` (the test functions), ``counting`` (cost accounting).

May import: torch only; nothing else of the library.
"""

from .beam import minimize_beam, minimize_one_sample
from .counting import CountedObjective, OptimizeResult, TracePoint
from .descent import DescentOptions, Proposal, Trial, contract_step, descend
from .gradient_hybrid import hybrid_gradient, minimize_gradient_hybrid
from .level import LEVELS, dispersion, mean_level, median_level, perspective_centroid, perspective_set, record_level
from .minpy_nm import MinpyDefects, minimize_nm_nonlocal, minimize_nm_stochastic
from .minpy_potential import PotentialDefects, minimize_potential_nonlocal, potential_force, softmax_weights
from .nonlocal_gradient import PotentialGradient, kernel_log_weights, one_sample_step, potential_gradient, vertex_steps
from .objectives import OBJECTIVES, SHOR_F_STAR, Objective
from .sampling import SAMPLERS, radial_log_weight, radial_sample
from .second_order import (
    apply_dilations,
    dilation_operator,
    memory_coefficient,
    minimize_second_order,
    sample_charges,
)

__all__ = [
    "LEVELS",
    "OBJECTIVES",
    "SAMPLERS",
    "SHOR_F_STAR",
    "CountedObjective",
    "DescentOptions",
    "MinpyDefects",
    "Objective",
    "OptimizeResult",
    "PotentialDefects",
    "PotentialGradient",
    "Proposal",
    "TracePoint",
    "Trial",
    "apply_dilations",
    "contract_step",
    "descend",
    "dilation_operator",
    "dispersion",
    "hybrid_gradient",
    "kernel_log_weights",
    "mean_level",
    "median_level",
    "memory_coefficient",
    "minimize_beam",
    "minimize_gradient_hybrid",
    "minimize_nm_nonlocal",
    "minimize_nm_stochastic",
    "minimize_one_sample",
    "minimize_potential_nonlocal",
    "minimize_second_order",
    "one_sample_step",
    "perspective_centroid",
    "perspective_set",
    "potential_force",
    "potential_gradient",
    "radial_log_weight",
    "radial_sample",
    "record_level",
    "sample_charges",
    "softmax_weights",
    "vertex_steps",
]
