"""Probe batches: nested tensors (a tensor, a tuple/list of them, a dict such as a tokenizer's output).

The monitor slices a probe batch along dim 0 (into forward chunks, and into
per-rank shards under torch.distributed) and moves it to the model's device.
Tensor and numpy leaves are sliced; lists, tuples and mappings are walked;
any other leaf (None, a number, a string option) is passed through unchanged.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from probekit.errors import ProbekitUsageError

__all__ = ["batch_len", "move_batch", "slice_batch"]


def _is_array(x: Any) -> bool:
    return hasattr(x, "shape") and hasattr(x, "__getitem__") and len(getattr(x, "shape", ())) > 0


def _leaves(batch: Any, path: str = "probes"):
    if _is_array(batch):
        yield path, batch
    elif isinstance(batch, Mapping):
        for k, v in batch.items():
            yield from _leaves(v, f"{path}[{k!r}]")
    elif isinstance(batch, (list, tuple)):
        for i, v in enumerate(batch):
            yield from _leaves(v, f"{path}[{i}]")


def batch_len(batch: Any) -> int:
    """The number of probes: the common dim-0 length of every tensor in the batch."""
    sizes = {path: int(x.shape[0]) for path, x in _leaves(batch)}
    if not sizes:
        raise ProbekitUsageError(
            "The probe batch must hold at least one tensor (a tensor, a tuple/list of tensors or a dict "
            f"of them, dim 0 = probes). Got {type(batch).__name__} instead."
        )
    if len(set(sizes.values())) > 1:
        detail = ", ".join(f"{p}: {n}" for p, n in sizes.items())
        raise ProbekitUsageError(f"Every tensor of the probe batch must have the same dim 0 (one row per probe). Got {detail}.")
    n = next(iter(sizes.values()))
    if n == 0:
        raise ProbekitUsageError("The probe batch is empty (dim 0 is 0); a monitor needs at least one probe.")
    return n


def slice_batch(batch: Any, start: int, stop: int) -> Any:
    """Rows [start, stop) of every tensor leaf."""
    if _is_array(batch):
        return batch[start:stop]
    if isinstance(batch, Mapping):  # a plain dict out (a BatchEncoding's extras are not needed)
        return {k: slice_batch(v, start, stop) for k, v in batch.items()}
    if isinstance(batch, tuple):
        return tuple(slice_batch(v, start, stop) for v in batch)
    if isinstance(batch, list):
        return [slice_batch(v, start, stop) for v in batch]
    return batch


def move_batch(batch: Any, device: Any) -> Any:
    """Every torch tensor leaf on ``device`` (others unchanged)."""
    if hasattr(batch, "to") and hasattr(batch, "device"):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, Mapping):
        return {k: move_batch(v, device) for k, v in batch.items()}
    if isinstance(batch, tuple):
        return tuple(move_batch(v, device) for v in batch)
    if isinstance(batch, list):
        return [move_batch(v, device) for v in batch]
    return batch
