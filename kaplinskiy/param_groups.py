"""Checks on param groups shared by the optimizers whose groups carry a ``project`` flag (Muon's ``use_muon`` idea)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from .memory import ProjectionMemory

__all__ = ["check_group_keys", "check_memory_covers_projected_groups"]


def check_group_keys(param_group: Mapping[str, Any], defaults: Mapping[str, Any]) -> None:
    """Raise ``ValueError`` naming a key of ``param_group`` that is neither ``params`` nor a default."""
    unknown = set(param_group) - {"params", *defaults}
    if unknown:
        raise ValueError(f"Invalid param group key: {sorted(unknown)[0]}")


def check_memory_covers_projected_groups(
    param_groups: Iterable[Mapping[str, Any]], memory: ProjectionMemory | None
) -> None:
    """Raise ``ValueError`` if ``memory`` holds a parameter that no group with ``project=True`` updates."""
    if memory is None:
        return
    projected = {id(p) for g in param_groups if g["project"] for p in g["params"]}
    if any(id(p) not in projected for p in memory.params):
        raise ValueError("Invalid memory: it covers parameters outside the groups with project=True")
