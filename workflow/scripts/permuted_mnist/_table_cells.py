"""Cells the permuted-MNIST tables share: a metric over seeds in percent, and the mark of a selected setting at
an end of its ladder."""

from typing import Any

from common.latex_format import pm

EDGE_MARK = r"$^\dagger$"  # the selected setting is an end of its ladder: a wider one might do better


def percent(stats: dict[str, Any]) -> str:
    """A metric's mean and standard deviation over seeds, in percent."""
    return pm(100 * stats["mean"], 100 * stats["sd"])
