"""The live monitor: watch a training run with a probe set (docs/design.md §3, "Monitor").

- :class:`Monitor` (``core``): every k steps, the probes' per-sample losses from
  its own no-grad pass -> the streaming 2RDM -> an online alarm -> sinks (``pipeline``:
  what one record of losses goes through on the main rank).
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

from probekit._lazy import lazy_names

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
__getattr__, __dir__ = lazy_names(__name__, _LAZY)
