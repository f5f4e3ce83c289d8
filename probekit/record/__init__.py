"""``probekit record``: a user's own training run recorded as a trajectory (docs/record.md).

The per-sample loss of every pool example at every checkpoint, written in the reference store's
format (``probekit.eval.store.trajectory``), so everything that reads a reference trajectory
reads it:

- ``sources``: the checkpoints (a Trainer output, model directories, state-dict files with a
  factory, models in memory), how each is loaded, its content hash;
- ``batches``: the pool's columns as forward chunks (tokenized once);
- ``order``: the transition, given by hand or read off an order parameter;
- ``recorder``: :func:`record` (resumable, torch.distributed-aware); ``ranks``: the ranks;
- ``store`` and ``assemble``: the trajectory on disk, the staging directory, reloading the
  selection checkpoint.

Names load lazily, so ``import probekit.record`` imports neither torch nor transformers.
"""
from __future__ import annotations

from probekit._lazy import lazy_names

_LAZY = {
    "record": "probekit.record.recorder",
    "record_run": "probekit.record.recorder",
    "Outcome": "probekit.record.recorder",
    "Checkpoint": "probekit.record.sources",
    "find_checkpoints": "probekit.record.sources",
    "TransitionSpec": "probekit.record.order",
    "CheckpointGoneError": "probekit.record.store",
}

__all__ = sorted(_LAZY)
__getattr__, __dir__ = lazy_names(__name__, _LAZY)
