"""Score one probe design on a set of reference trajectories (transition runs and null runs).

A *design* gives, for each trajectory, the probes to watch (its own pool's ids
or indices: a selector's output, a prefix of one, or all of the pool). The
signal (``probekit.eval.signals``) and the alarm rule are the other axes.
Column selection plus one 2RDM series per trajectory: milliseconds per run
(``benchmarks/bench_scoring.py``), no retraining.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from probekit.eval.scoring import Curve, EpisodeScore, episodes, score_episode, sweep
from probekit.eval.signals import SignalSpec, compute_signal

__all__ = ["DesignScore", "score_design", "trajectory_signal"]


def trajectory_signal(traj: Any, probes: Any, spec: SignalSpec) -> tuple[np.ndarray, np.ndarray]:
    """(signal [T], steps [T]) of a probe set on one trajectory, on the strided record grid."""
    spec.check()
    rows = np.arange(0, traj.losses.shape[0], spec.stride)
    steps = np.asarray(traj.steps)[rows]
    grad = traj.baselines.get("grad_norm")
    if spec.statistic == "grad_norm":
        return compute_signal(spec, None, grad_norm=None if grad is None else grad[rows]), steps
    losses = traj.probe_losses(probes)[rows]  # [T, n]
    return compute_signal(spec, losses), steps


@dataclass
class DesignScore:
    """Everything one design scored: fixed-threshold outcomes and the threshold-free curve."""

    spec: SignalSpec
    rule: Any
    curve: Curve
    episodes: list[tuple[str, int, EpisodeScore]] = field(default_factory=list)  # (run, seed, score)
    null_false_alarms: list[tuple[str, int, int]] = field(default_factory=list)  # (run, seed, alarms)

    @property
    def at_5(self) -> dict:
        return self.curve.at_far(0.05)

    def summary(self) -> dict:
        hits = [s for _, _, s in self.episodes if s.outcome == "hit"]
        return {
            "signal": self.spec.label,
            "rule": f"{self.rule.name} {self.rule.get_params()}",
            "fixed_threshold": {
                "episodes": len(self.episodes),
                "hits": len(hits),
                "late": sum(s.outcome == "late" for _, _, s in self.episodes),
                "median_lead": float(np.median([s.lead for s in hits])) if hits else None,
                "false_alarms_quiet": sum(s.false_alarms for _, _, s in self.episodes),
                "false_alarms_null_runs": sum(n > 0 for _, _, n in self.null_false_alarms),
            },
            "at_far_5pct": self.at_5,
            "auc": self.curve.auc,
            "curve": self.curve_points(),
        }

    def curve_points(self, max_points: int = 101) -> dict:
        """The lead-vs-false-alarm curve, thinned to at most ``max_points`` (for the report's figures)."""
        c = self.curve
        keep = np.unique(np.linspace(0, len(c.far) - 1, min(max_points, len(c.far))).round().astype(int))
        return {"far": c.far[keep].tolist(), "detection": c.detection[keep].tolist(),
                "mean_lead_fraction": c.mean_lead_fraction[keep].tolist()}


def score_design(
    transitions: list,
    nulls: list,
    probes_of: Callable[[Any], Any],
    *,
    spec: SignalSpec = SignalSpec(),
    rule: Any = None,
    hit_fraction: float = 0.5,
) -> DesignScore:
    """Score a design on transition trajectories and null trajectories."""
    from probekit.alarms import make_rule

    rule = make_rule() if rule is None else rule
    out = DesignScore(spec, rule, curve=None)  # type: ignore[arg-type]
    pairs = []
    for traj in transitions:
        signal, steps = trajectory_signal(traj, probes_of(traj), spec)
        ps = rule.persistent_scores(signal)
        alarms = rule.alarms(signal)
        defined = np.nonzero(np.isfinite(ps))[0]
        if not defined.size:
            continue
        for ep in episodes(steps, traj.transitions, int(defined[0]), hit_fraction):
            pairs.append((ps, ep))
            out.episodes.append((traj.name, traj.seed, score_episode(alarms, ep)))
    quiet = []
    for traj in nulls:
        signal, _ = trajectory_signal(traj, probes_of(traj), spec)
        quiet.append(rule.persistent_scores(signal))
        out.null_false_alarms.append((traj.name, traj.seed, len(rule.alarms(signal))))
    out.curve = sweep(pairs, quiet)
    return out
