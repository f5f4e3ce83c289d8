"""torch.distributed support: probes sharded across data-parallel ranks, losses gathered on rank 0.

Each rank computes the losses of a contiguous shard of the probes (shard sizes
differ by at most one), the shards are gathered on rank 0, which alone runs
the 2RDM, the alarm and the sinks, so the statistics are computed once; a
small broadcast then gives every rank the alarm decision and the record
interval, so that every rank keeps the same schedule (the collectives must
match) and ``on_alarm`` runs on every rank (a sharded checkpoint needs them
all); after an alarm rank 0's interval is broadcast once more, since
``on_alarm`` may change it. Every rank runs the same collectives on every
path, and the same number of forward passes (a wrapped model may run
collectives in its forward): a rank whose probe pass fails joins with NaN and
a "failed" flag, and a failure on rank 0 still reaches the broadcast, so no
rank is ever left waiting. Under NCCL the buffers are on the rank's GPU.
Pass the unwrapped model (``ddp_model.module``) where you can.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from probekit.errors import ProbekitUsageError
from probekit.monitor.pipeline import consume
from probekit.monitor.sinks import MonitorRecord

__all__ = ["DistContext", "dist_context", "record_distributed", "shard_bounds"]


def shard_bounds(n: int, rank: int, world: int) -> tuple[int, int]:
    """[start, stop) of rank's contiguous shard of n probes (the first n % world ranks get one more)."""
    base, extra = divmod(n, world)
    start = rank * base + min(rank, extra)
    return start, start + base + (1 if rank < extra else 0)


class DistContext:
    """The process group the monitor uses (the default one) and this process's place in it.

    The collectives' buffers live where the backend wants them: on this rank's
    CUDA device under NCCL (which has no CPU path), on the CPU otherwise.
    """

    def __init__(self, rank: int, world: int, device: Any = "cpu") -> None:
        self.rank, self.world, self.device = rank, world, device

    @property
    def main(self) -> bool:
        return self.rank == 0

    def gather(self, local: np.ndarray, failed: bool, n: int) -> tuple[np.ndarray | None, int]:
        """On rank 0: the full loss vector [n] and how many ranks' probe passes failed; (None, 0) elsewhere."""
        import torch
        import torch.distributed as dist

        size = -(-n // self.world)  # shards padded to the largest, plus one slot: "my pass failed"
        buf = torch.full((size + 1,), float("nan"), dtype=torch.float64)
        buf[: len(local)] = torch.from_numpy(np.asarray(local, dtype=np.float64))
        buf[size] = float(failed)
        buf = buf.to(self.device)
        parts = [torch.empty_like(buf) for _ in range(self.world)] if self.main else None
        dist.gather(buf, parts, dst=0)
        if not self.main:
            return None, 0
        parts = [p.cpu() for p in parts]
        bounds = [shard_bounds(n, r, self.world) for r in range(self.world)]
        full = np.concatenate([p[: b - a].numpy() for p, (a, b) in zip(parts, bounds)])
        return full, int(sum(float(p[size]) for p in parts))

    def broadcast(self, values: list[float]) -> list[float]:
        """Rank 0's ``values`` on every rank."""
        import torch
        import torch.distributed as dist

        t = torch.tensor(values, dtype=torch.float64, device=self.device)
        dist.broadcast(t, src=0)
        return t.cpu().tolist()


def dist_context(mode: Any) -> DistContext | None:
    """``mode``: "auto" (use the default process group when one is initialised with world size > 1), True, False."""
    if mode not in ("auto", True, False):
        raise ProbekitUsageError(f"The 'distributed' parameter of Monitor must be 'auto', True or False. Got {mode!r} instead.")
    if mode is False:
        return None
    import torch.distributed as dist

    ready = dist.is_available() and dist.is_initialized()
    if not ready:
        if mode is True:
            raise ProbekitUsageError("Monitor(distributed=True) needs an initialised torch.distributed process group "
                                     "(torch.distributed.init_process_group) before the monitor is built.")
        return None
    world = dist.get_world_size()
    if world == 1 and mode == "auto":
        return None
    device = "cpu"
    if dist.get_backend() == "nccl":
        import torch

        device = torch.device("cuda", torch.cuda.current_device())
    return DistContext(dist.get_rank(), world, device)


def record_distributed(monitor: Any, step: int, local: np.ndarray, failed_here: bool) -> Any:
    """``Monitor.record`` under torch.distributed: every rank runs the same collectives on every path, so that
    none is ever left waiting. Returns the record (rank 0), a record without statistics (other ranks), or None."""
    dist = monitor._dist
    try:
        full, failed_ranks = dist.gather(local, failed_here, monitor.n_probes)
    except Exception as exc:  # the process group itself is broken: nothing to pair up any more
        return monitor._record_failed(step, exc)
    rec = None
    if dist.main:
        if failed_ranks:  # on rank 0 the counters describe every rank's part of the record
            monitor.counters["failed_batches"] += 1
        try:
            rec = consume(monitor, full, step, failed=failed_ranks > 0)
        except Exception as exc:
            monitor._record_failed(step, exc)
    elif failed_here:
        monitor.counters["failed_batches"] += 1
    try:  # always reached: rank 0's alarm decision and record interval for every rank
        fired, every = dist.broadcast([float(bool(rec is not None and rec.alarm)), float(monitor._every)])
    except Exception as exc:
        return monitor._record_failed(step, exc)
    monitor._every = int(every)
    if not dist.main:  # no statistics here: the step, and what rank 0 decided
        if fired:
            monitor.alarm_steps.append(step)
        rec = MonitorRecord(step, -1, monitor.n_probes, math.nan, False, monitor.signal, alarm=bool(fired),
                            n_alarms=len(monitor.alarm_steps), every=monitor._every)
    if fired:
        monitor._call_on_alarm(rec)
        try:  # on_alarm may change `every`: rank 0's value is the one every rank keeps
            (every,) = dist.broadcast([float(monitor._every)])
            monitor._every = int(every)
        except Exception as exc:
            return monitor._record_failed(step, exc)
    return rec
