"""CPU processes joined by torch.distributed (gloo), for the tests of data-parallel and sharded training."""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from typing import Any

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run(rank: int, world: int, port: int, out: str, work: Callable[[int, int], Any]) -> None:
    os.environ["MASTER_ADDR"], os.environ["MASTER_PORT"] = "127.0.0.1", str(port)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        torch.save(work(rank, world), f"{out}.{rank}")
    finally:
        dist.destroy_process_group()


def run_on_processes(work: Callable[[int, int], Any], out: str, world: int = 2) -> list[Any]:
    """``work(rank, world)`` in ``world`` spawned processes of one gloo group; each rank's result, in rank order.

    ``work`` must be a module-level function (the processes are spawned); ``out`` is a path prefix for the results.
    """
    if not dist.is_available() or not dist.is_gloo_available():
        pytest.skip("torch.distributed with gloo is not available")
    mp.spawn(_run, args=(world, _free_port(), out, work), nprocs=world, join=True)
    return [torch.load(f"{out}.{rank}") for rank in range(world)]


def run_on_two_processes(work: Callable[[int, int], Any], out: str) -> list[Any]:
    """:func:`run_on_processes` with two processes."""
    return run_on_processes(work, out, 2)
