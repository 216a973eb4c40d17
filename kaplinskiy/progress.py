"""Progress bars on long work (recording a task, the snapshots' passes), with tqdm, an optional dependency."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator
from typing import Any

__all__ = ["progress_bar", "progress_ticks"]


def _tqdm() -> Any:
    try:
        from tqdm.auto import tqdm
    except ImportError as err:
        raise ImportError("progress=True needs tqdm: pip install tqdm") from err
    return tqdm


def progress_bar(items: Iterable[Any], show: bool, desc: str, unit: str) -> Iterable[Any]:
    """``items``, under a tqdm bar when ``show``."""
    return _tqdm()(items, desc=desc, unit=unit) if show else items


@contextlib.contextmanager
def progress_ticks(total: int, show: bool, desc: str, unit: str) -> Iterator[Callable[[], None]]:
    """A function that advances a tqdm bar of ``total`` steps by one when ``show`` (else it does nothing); the
    bar is closed on leaving the block."""
    if not show:
        yield lambda: None
        return
    bar = _tqdm()(total=total, desc=desc, unit=unit)
    try:
        yield lambda: bar.update(1)
    finally:
        bar.close()
