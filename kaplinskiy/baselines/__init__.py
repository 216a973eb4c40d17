"""Continual-learning baselines in the torch.optim API, for a fair comparison with the potential method.

SGD (+momentum) and AdamW are torch's own. The others wrap a base optimizer:

* :class:`Anchored` with an :class:`~kaplinskiy.ElasticAnchor`: EWC (Fisher) or L2-SP (identity), eq. (6);
* :class:`Replay`: adds the gradient of eq. (7)'s replay term from a buffer;
* :class:`AGEM`: A-GEM's rank-one projection against the buffer's reference gradient when they conflict;
* :class:`OGD` and :class:`GPM`: SGD with its gradient projected against a dense or a layer-wise memory.
"""

from .agem import AGEM, agem_project
from .anchored import Anchored
from .projected_sgd import GPM, OGD
from .replay import Replay

__all__ = ["AGEM", "GPM", "OGD", "Anchored", "Replay", "agem_project"]
