"""How the paper names an R of the potential (eq. 10): its kind from the config's Fisher, and the prefix of its
in-text macros from the config's name for it (``ewc`` -> ``PmnistEwc``)."""

from typing import Any

from paper_numbers import macro_key

KINDS = {"identity": "L2-SP", "empirical": "EWC", "true": "EWC (true Fisher)"}


def potential_kind(potential: dict[str, Any]) -> str:
    """``L2-SP`` for ``F = I``, ``EWC`` for the empirical diagonal Fisher, ``EWC (true Fisher)`` for the true one."""
    return KINDS[potential["fisher"]]


def macro_prefix(name: str) -> str:
    """The prefix of the macros of the R the config calls ``name``: ``l2sp`` -> ``PmnistLTwosp``."""
    return "Pmnist" + macro_key(name)
