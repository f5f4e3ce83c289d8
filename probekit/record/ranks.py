"""torch.distributed for ``probekit record``: checkpoints shared round-robin across ranks, rank 0 writes.

Every rank records the checkpoints whose index i has ``i % world == rank`` into the shared
staging directory (ranks must share the output's filesystem); the ranks then agree (an
all-reduce of "did this rank fail"), so that a failure on any rank stops every rank with an
error instead of leaving the others waiting; rank 0 assembles and writes the trajectory, and a
second agreement tells the other ranks whether it is there to open.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Callable

from probekit.errors import ProbekitError, ProbekitUsageError

__all__ = ["Ranks"]


@dataclass(frozen=True)
class Ranks:
    rank: int = 0
    world: int = 1
    collective_device: Any = "cpu"  # where the agreement's tensor lives: the rank's GPU under NCCL

    @classmethod
    def of(cls, mode: Any, device: Any) -> "Ranks":
        """``mode``: "auto" (the default process group when one is initialised with world size > 1), True, False."""
        if mode not in ("auto", True, False):
            raise ProbekitUsageError(f"The 'distributed' parameter of record must be 'auto', True or False. "
                                     f"Got {mode!r} instead.")
        if mode is False:
            return cls()
        import torch
        import torch.distributed as dist

        if not (dist.is_available() and dist.is_initialized()):
            if mode is True:
                raise ProbekitUsageError("distributed recording needs an initialised torch.distributed process group "
                                         "(run under torchrun; the CLI's --distributed initialises it from torchrun's "
                                         "environment).")
            return cls()
        world = dist.get_world_size()
        if world == 1:
            return cls()
        where = "cpu"
        if dist.get_backend() == "nccl":
            where = torch.device("cuda", torch.cuda.current_device())
        return cls(dist.get_rank(), world, where)

    @property
    def main(self) -> bool:
        return self.rank == 0

    def device(self, device: Any) -> Any:
        """The torch device this rank records on: a bare "cuda" becomes this rank's GPU (LOCAL_RANK)."""
        import torch

        from probekit.torch_params import torch_device

        device = torch_device(device, "--device")
        if device.type == "cuda":
            if device.index is None and self.world > 1:
                local = int(os.environ.get("LOCAL_RANK", self.rank))
                device = torch.device("cuda", local % torch.cuda.device_count())
        return device

    def agree(self, failure: BaseException | None) -> None:
        """Re-raise this rank's failure; with several ranks, first make sure every rank knows whether any failed."""
        if self.world > 1:
            import torch
            import torch.distributed as dist

            flag = torch.tensor([0.0 if failure is None else 1.0], device=self.collective_device)
            dist.all_reduce(flag)
            if failure is None and float(flag.item()) > 0:
                raise ProbekitError(f"rank {self.rank}: another rank's recording failed (its error says why); "
                                    "the staged losses are kept, rerun to continue.")
        if failure is not None:
            raise failure

    def total(self, n: int) -> int:
        """The sum of ``n`` over the ranks (checkpoints computed by all of them)."""
        if self.world == 1:
            return n
        import torch
        import torch.distributed as dist

        t = torch.tensor([float(n)], device=self.collective_device)
        dist.all_reduce(t)
        return int(t.item())

    def on_main(self, write: Callable[[], Any], out: Any) -> Any:
        """``write()`` on rank 0 (it returns the trajectory); the other ranks open what it wrote at ``out``."""
        if self.world == 1:
            return write()
        result, failure = None, None
        if self.main:
            try:
                result = write()
            except BaseException as exc:  # noqa: BLE001 - re-raised after the other ranks know
                failure = exc
        self.agree(failure)
        if self.main:
            return result
        from probekit.eval.store.trajectory import Trajectory

        return Trajectory(out)
