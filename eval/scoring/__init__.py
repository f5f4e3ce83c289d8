"""Scoring a probe design against the known transitions.

- ``signals``: what an alarm rule watches (a 2RDM signal of the probes' losses, or a scalar
  baseline), as a :class:`~probekit.eval.scoring.signals.SignalSpec`;
- ``lead``: episodes around each onset, an alarm's lead and hit (warning) and its latency
  (detection), false alarms, the threshold sweep;
- ``design_score``: one design on a set of trajectories and their null controls;
- ``convergence``: every prefix of one nested selection, towards the full pool;
- ``paired``: each design against random at the same size, paired by seed, Holm-corrected.

The package took over the path of the module that is now ``lead``: its public names load
lazily from here, so ``from probekit.eval.scoring import sweep`` keeps working.
"""
from __future__ import annotations

from probekit._lazy import lazy_names

_LAZY = {n: "probekit.eval.scoring.lead"
         for n in ("Curve", "Episode", "EpisodeScore", "episodes", "fidelity", "score_episode", "sweep")}

__all__ = sorted(_LAZY)
__getattr__, __dir__ = lazy_names(__name__, _LAZY)
