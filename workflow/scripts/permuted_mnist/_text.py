"""How the permuted-MNIST text names and writes what the aggregations computed: an arm (``guarded Muon``), an R
of the potential (eq:potential; its kind from the config's Fisher, its macros' prefix from the config's name for
it: ``ewc`` -> ``PmnistEwc``), percentages, ranges, and where an effect raised or lowered the test ACC."""

from typing import Any

from common.latex_format import escape, fmt, listing, macro_key

KINDS = {"identity": "L2-SP", "empirical": "EWC", "true": "EWC (true Fisher)"}


def potential_kind(potential: dict[str, Any]) -> str:
    """``L2-SP`` for ``F = I``, ``EWC`` for the empirical diagonal Fisher, ``EWC (true Fisher)`` for the true one."""
    return KINDS[potential["fisher"]]


def macro_prefix(name: str) -> str:
    """The prefix of the macros of the R the config calls ``name``: ``l2sp`` -> ``PmnistLTwosp``."""
    return "Pmnist" + macro_key(name)


def pct(x: float) -> str:
    """A fraction in percent, three significant digits, in math mode (a minus sign, not a hyphen, in the text)."""
    return rf"\ensuremath{{{fmt(100 * x, 3)}}}"


def span(values: list[float]) -> str:
    """``min to max`` of ``values`` in percent, or ``--`` for none."""
    return f"{pct(min(values))} to {pct(max(values))}" if values else "--"


def arm_name(arm: dict[str, Any]) -> str:
    """An arm as the text names it: ``Muon`` or ``guarded Muon``."""
    return ("guarded " if arm["guard"] == "guarded" else "") + escape(arm["label"])


def variant_name(arm: dict[str, Any], potential: str | None) -> str:
    """An arm as the text names it: ``Muon``, ``guarded Muon``, or with R named ``potential``: ``Muon with EWC``."""
    return arm_name(arm) + ("" if potential is None else f" with {potential}")


def direction_sentence(subject: str, direction: dict[str, list[str]]) -> str:
    """Where ``subject`` raised the test ACC on every seed, lowered it on every seed, or changed it both ways: the
    names in ``direction`` (see :func:`permuted_mnist._grid.direction`), already as the text writes them."""
    verbs = [
        ("raised {} on every seed", direction["raised"]),
        ("lowered {} on every seed", direction["lowered"]),
        ("changed {} in both directions across seeds", direction["mixed"]),
    ]
    verbs = [(v, names) for v, names in verbs if names]
    if not verbs:
        return ""
    phrases = [
        v.format("it" if i else "the test ACC") + f" for {escape(listing(names))}" for i, (v, names) in enumerate(verbs)
    ]
    sentence = f"{subject} {listing(phrases)}"
    return sentence[:1].upper() + sentence[1:] + "."
