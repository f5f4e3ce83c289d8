"""The live monitor: watch a training run with a probe set (docs/design.md §3, "Monitor").

- :class:`Monitor` (``core``): every k steps, the probes' per-sample losses from
  its own no-grad pass -> the streaming 2RDM -> an online alarm -> sinks.
- Sinks (``sinks``): :class:`JSONLSink`, :class:`TensorBoardSink` (needs
  ``pip install "probekit[monitor]"``).
- State across a resume (``state``): ``Monitor.state_dict()`` loads with a plain ``torch.load``.
- Per-sample losses (``losses``): classification, regression, causal LM.
- torch.distributed (``distributed``): probes sharded, losses gathered on rank 0.
- Hugging Face (``hf``): ``from probekit.monitor import ProbekitCallback``, imported
  on first use (it imports transformers). User's guide: docs/monitor.md.

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
    "MissingExtraError": "probekit.monitor.sinks",
    "MonitorStateError": "probekit.monitor.state",
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


def __dir__() -> list[str]:
    # PEP 562: without this, dir() and tab completion show none of the lazy names above
    return sorted({*globals(), *__all__})
