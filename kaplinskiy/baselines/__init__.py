"""Continual-learning baselines in the torch.optim API, for a fair comparison with the potential method.

SGD (+momentum) and AdamW are torch's own. The others wrap a base optimizer:

* :class:`Anchored` with an :class:`~kaplinskiy.ElasticAnchor`: EWC (Fisher) or L2-SP (identity), eq:ewc_penalty;
* :class:`Replay`: adds the gradient of the replay term (eq:replay) from a buffer;
* :class:`AGEM`: A-GEM's rank-one projection against the buffer's reference gradient when they conflict;
* :class:`OGD` and :class:`GPM`: SGD with its gradient projected against a dense or a layer-wise memory.

May import: the rest of the library (:mod:`kaplinskiy.optim`, :mod:`kaplinskiy.memory`,
:mod:`kaplinskiy.regularizers`, :mod:`kaplinskiy._tensor_lists`); nothing imports the baselines.
"""

from .agem import AGEM, agem_project
from .anchored import Anchored
from .projected_sgd import GPM, OGD
from .replay import Replay

__all__ = ["AGEM", "GPM", "OGD", "Anchored", "Replay", "agem_project"]
