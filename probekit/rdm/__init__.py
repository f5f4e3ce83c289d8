"""The dynamical 2RDM and what is read from it.

- ``spectral``: the shared kernel, window Gram matrices -> spectral statistics; every derived
  statistic (log-SHC, 1 / PR, leading share, spectral entropy) is defined there, once;
- ``streaming``: :class:`DynamicalRDM`, the streaming statistic (``inputs``: the parameter and
  loss checks it shares with the offline twin);
- ``offline``: :func:`rdm_series`, the same numbers for a whole ``[records, probes]`` matrix;
- ``gaussian``: the Gaussian 2RDM, parameter draws around one checkpoint (imports torch);
- ``signal_table``: the 2RDM signals an alarm can watch, each declared once;
- ``indicators``: the classical early-warning indicators of a scalar series (the baselines);
- ``analysis`` and ``loss_files``: ``probekit analyze``, a recorded loss matrix -> series,
  alarms, co-moving probes.

``from probekit.rdm import DynamicalRDM`` (the path of the module this package replaced) keeps
working; the names load lazily, so ``import probekit.rdm`` imports neither numpy nor torch.
"""
from __future__ import annotations

from probekit._lazy import lazy_names

_LAZY = {
    "DynamicalRDM": "probekit.rdm.streaming",
    "RDMStats": "probekit.rdm.spectral",
    "as_loss_vector": "probekit.rdm.inputs",
    "check_rdm_params": "probekit.rdm.inputs",
    "RDMSeries": "probekit.rdm.offline",
    "rdm_series": "probekit.rdm.offline",
    "window_stats": "probekit.rdm.offline",
    "gaussian_rdm": "probekit.rdm.gaussian",
    "gaussian_loss_matrix": "probekit.rdm.gaussian",
}

__all__ = sorted(_LAZY)
__getattr__, __dir__ = lazy_names(__name__, _LAZY)
