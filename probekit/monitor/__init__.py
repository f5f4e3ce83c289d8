"""The live monitor: watch a training run with a probe set (DESIGN.md §3, "Monitor").

- :class:`Monitor` (``core``): every k steps, the probes' per-sample losses from
  its own no-grad pass -> the streaming 2RDM -> an online alarm -> sinks.
- Sinks (``sinks``): :class:`JSONLSink`, :class:`TensorBoardSink`.
- Per-sample losses (``losses``): classification, regression, causal LM.
- torch.distributed (``distributed``): probes sharded, losses gathered on rank 0.
- Hugging Face (``hf``): :class:`ProbekitCallback`, imported on first use
  (it imports transformers).

Names load lazily, so ``import probekit.monitor`` imports neither torch nor transformers.
"""
from __future__ import annotations

_LAZY = {
    "Monitor": "probekit.monitor.core",
    "AlarmEvent": "probekit.monitor.core",
    "MonitorWarning": "probekit.monitor.core",
    "SIGNALS": "probekit.monitor.core",
    "MonitorRecord": "probekit.monitor.sinks",
    "JSONLSink": "probekit.monitor.sinks",
    "TensorBoardSink": "probekit.monitor.sinks",
    "Sink": "probekit.monitor.sinks",
    "classification_loss": "probekit.monitor.losses",
    "regression_loss": "probekit.monitor.losses",
    "causal_lm_loss": "probekit.monitor.losses",
    "ProbekitCallback": "probekit.monitor.hf",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'probekit.monitor' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)
