"""The monitor's own forward pass over the probes: no grad, eval mode, in chunks, under a chosen autocast."""
from __future__ import annotations

import contextlib
from typing import Any, Callable

import numpy as np

from probekit.errors import ProbekitUsageError
from probekit.monitor.batches import move_batch, slice_batch

__all__ = ["check_autocast", "chunk_count", "forward_losses"]


def forward_losses(model: Any, probes: Any, loss_fn: Callable[[Any, Any], Any], start: int, stop: int,
                   n_chunks: int, *, batch_size: int | None, autocast: Any) -> np.ndarray:
    """Losses of probes [start, stop) in ``n_chunks`` no-grad passes, in eval mode; raises on failure.

    Each module's own train/eval flag is restored afterwards, so frozen submodules
    stay frozen. Every rank runs the same number of passes (a rank with fewer rows,
    or none, repeats a one-row pass and discards it): a wrapped model (DDP buffers,
    FSDP) may run collectives inside its forward, and those must pair up.
    """
    import torch

    flags = [(m, m.training) for m in model.modules()]  # restored exactly, module by module
    chunk = batch_size or max(-(-(stop - start) // max(n_chunks, 1)), 1)
    out = []  # [chunk] float64 tensors
    try:
        model.eval()
        device = next((p.device for p in model.parameters()), torch.device("cpu"))
        with torch.no_grad(), autocast_context(autocast, device):
            for k in range(n_chunks):
                a, b = start + k * chunk, min(start + (k + 1) * chunk, stop)
                if a >= b:  # nothing left on this rank: a discarded pass keeps the ranks in step
                    loss_fn(model, move_batch(slice_batch(probes, 0, 1), device))
                    continue
                losses = loss_fn(model, move_batch(slice_batch(probes, a, b), device))
                if not hasattr(losses, "shape") or tuple(losses.shape) != (b - a,):
                    raise ProbekitUsageError(f"loss_fn must return one loss per probe, shape ({b - a},); got "
                                             f"{getattr(losses, 'shape', type(losses).__name__)}")
                out.append(losses.detach().to("cpu", torch.float64))
    finally:
        for m, flag in flags:
            m.training = flag
    return torch.cat(out).numpy() if out else np.zeros(0)


def autocast_context(autocast: Any, device: Any) -> Any:
    """None: the caller's autocast state; False: autocast off; a dtype: autocast to it on ``device``'s type."""
    import torch

    if autocast is None:
        return contextlib.nullcontext()
    if autocast is False:
        return torch.autocast(device.type, enabled=False)
    return torch.autocast(device.type, dtype=autocast)


def chunk_count(rows: int, batch_size: int | None) -> int:
    """Forward passes for the largest shard: one, or one per ``batch_size`` rows."""
    return 1 if batch_size is None else max(1, -(-rows // batch_size))


def check_autocast(value: Any) -> Any:
    if value is None or value is False:
        return value
    import torch

    if isinstance(value, torch.dtype):
        return value
    raise ProbekitUsageError(f"The 'autocast' parameter of Monitor must be a torch.dtype (e.g. torch.bfloat16), False "
                             f"or None. Got {value!r} instead.")
