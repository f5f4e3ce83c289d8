"""Spawn torch.distributed worker processes for a test and wait for them, failing instead of hanging."""
from __future__ import annotations

import time

import pytest


def spawn_ranks(worker, args: tuple, world: int, timeout: float, what: str) -> None:
    """Run ``worker(rank, *args)`` in ``world`` spawned processes; a hung collective fails the test."""
    import torch.multiprocessing as mp

    ctx = mp.start_processes(worker, args=args, nprocs=world, join=False, start_method="spawn")
    deadline = time.monotonic() + timeout
    while not ctx.join(timeout=1):
        if time.monotonic() > deadline:  # a hung collective must fail the test, not hang the suite
            for p in ctx.processes:
                p.kill()
            pytest.fail(f"{what} did not finish in {timeout} s")
