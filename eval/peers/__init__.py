"""Peer signals in the benchmark: the local learning coefficient (LLC) beside the 2RDM.

- ``llc``: devinterp's SGLD estimate of the LLC at a run's checkpoints, cached per settings;
- ``scoring``: the peer cells, scored on the checkpoint grid like every other signal, with costs.

The package took over the path of the module that is now ``scoring``: its public names load
lazily from here, so ``from probekit.eval.peers import checkpoint_every`` keeps working.
"""
from __future__ import annotations

from probekit._lazy import lazy_names

_LAZY = {
    "PEER_SIGNALS": "probekit.eval.scoring.signals",
    **{n: "probekit.eval.peers.scoring" for n in ("base_settings", "checkpoint_every", "checkpoint_rule", "family_of",
                                                   "peer_signal", "settings_for", "score_on_checkpoints")},
}

__all__ = sorted(_LAZY)
__getattr__, __dir__ = lazy_names(__name__, _LAZY)
