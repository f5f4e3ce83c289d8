"""Score one probe design on a set of reference trajectories (transition runs and null runs).

A *design* gives, for each trajectory, the probes to watch (its own pool's ids
or indices: a selector's output, a prefix of one, or all of the pool). The
signal (``probekit.eval.scoring.signals``) and the alarm rule are the other axes.
Column selection plus one 2RDM series per trajectory: milliseconds per run
(``benchmarks/bench_scoring.py``), no retraining.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from probekit.eval.scoring.lead import Curve, EpisodeScore, check_pilot, episodes, score_episode, sweep
from probekit.eval.scoring.signals import SignalSpec, compute_signal

__all__ = ["DesignScore", "RunSignal", "run_signal", "score_design", "score_signals", "trajectory_signal"]


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
    time_to_onset: list[int] = field(default_factory=list)  # per episode, signal records (lead fraction = lead / this)

    # Leads are counted on the signal's (strided) record grid; what the summary reports is in
    # trajectory records (x stride), so that signals of different strides compare.
    @property
    def unit(self) -> int:
        return int(self.spec.stride)

    def at_far(self, target: float = 0.05) -> dict:
        """``Curve.at_far`` with leads and latencies in trajectory records."""
        point = self.curve.at_far(target)
        u = self.unit
        for key in ("median_lead", "median_latency"):
            point[key] = None if point[key] is None else point[key] * u
        for key in ("leads", "latencies"):
            point[key] = None if point[key] is None else [None if v is None else v * u for v in point[key]]
        return point

    @property
    def at_5(self) -> dict:
        return self.at_far(0.05)

    def episode_rows(self) -> list[dict]:
        """Per episode, at the rule's own threshold: run, seed, outcome, lead, latency (alarm - onset, for a hit
        or a late alarm), time to onset and onset to midpoint (trajectory records)."""
        u = self.unit
        spans = self.curve.spans if self.curve is not None and self.curve.spans is not None else None
        rows = []
        for k, ((run, seed, e), tto) in enumerate(zip(self.episodes, self.time_to_onset)):
            row = {"run": run, "seed": seed, "transition": e.transition, "outcome": e.outcome,
                   "lead": None if e.lead is None else e.lead * u, "time_to_onset": tto * u}
            if spans is not None:  # the latency's unit is known: detection was scored
                row["latency"] = None if e.alarm is None else (e.alarm - int(self.curve.onsets[k])) * u
                row["onset_to_midpoint"] = int(spans[k]) * u
            rows.append(row)
        return rows

    def summary(self) -> dict:
        hits = [s for _, _, s in self.episodes if s.outcome == "hit"]
        return {
            "signal": self.spec.label,
            "rule": f"{self.rule.name} {self.rule.get_params()}",
            "fixed_threshold": {
                "episodes": len(self.episodes),
                "hits": len(hits),
                "late": sum(s.outcome == "late" for _, _, s in self.episodes),
                "median_lead": float(np.median([s.lead for s in hits])) * self.unit if hits else None,
                "false_alarms_quiet": sum(s.false_alarms for _, _, s in self.episodes),
                "false_alarms_null_runs": sum(n > 0 for _, _, n in self.null_false_alarms),
                # a hit or a late alarm: the first alarm from the hit window on, by the midpoint
                "detected": sum(s.outcome != "miss" for _, _, s in self.episodes),
            },
            "at_far_5pct": (at_5 := self.at_5),
            "at_far_5pct_by_seed": self.by_seed(at_5),
            "auc": self.curve.auc,
            "curve": self.curve_points(),
            "quiet_units": int(self.curve.n_quiet),  # what the false-alarm rate divides by
            "null_runs": len(self.null_false_alarms),  # of them, whole null runs (the rest: quiet periods)
        }

    def by_seed(self, point: dict) -> list[dict]:
        """The seed spread of a curve point (``at_far``, leads in trajectory records): each seed's episodes.

        Per seed (over the runs of that seed): hits, median lead in records over
        the hits (None without one), and mean lead fraction (a miss counts 0);
        where detection was scored, the episodes detected, their median latency in
        records and mean latency fraction (None without a detection).
        """
        n = len(point["leads"])
        latencies = point.get("latencies") or [None] * n
        lat_fracs = point.get("latency_fractions") or [None] * n
        seeds: dict[int, list[tuple]] = {}
        for (_, seed, _), lead, tto, lat, lf in zip(self.episodes, point["leads"], self.time_to_onset, latencies,
                                                    lat_fracs):
            seeds.setdefault(int(seed), []).append((lead, tto, lat, lf))
        out = []
        for seed in sorted(seeds):
            rows = seeds[seed]
            leads = [lead for lead, *_ in rows if lead is not None]
            fracs = [0.0 if lead is None else lead / (max(tto, 1) * self.unit) for lead, tto, *_ in rows]
            entry = {"seed": seed, "episodes": len(rows), "hits": len(leads),
                     "median_lead": float(np.median(leads)) if leads else None,
                     "mean_lead_fraction": float(np.mean(fracs))}
            if point.get("latencies") is not None:
                lat = [v for _, _, v, _ in rows if v is not None]
                lfs = [v for *_, v in rows if v is not None]
                entry.update({"detected": len(lat), "median_latency": float(np.median(lat)) if lat else None,
                              "mean_latency_fraction": float(np.mean(lfs)) if lfs else None})
            out.append(entry)
        return out

    def curve_points(self, max_points: int = 101) -> dict:
        """The lead-vs-false-alarm curve, thinned to at most ``max_points`` (for the report's figures)."""
        c = self.curve
        keep = np.unique(np.linspace(0, len(c.far) - 1, min(max_points, len(c.far))).round().astype(int))
        out = {"far": c.far[keep].tolist(), "detection": c.detection[keep].tolist(),
               "mean_lead_fraction": c.mean_lead_fraction[keep].tolist()}
        if c.detected is not None:  # the detection rate at the same thresholds
            out["detected"] = c.detected[keep].tolist()
        return out


@dataclass(frozen=True)
class RunSignal:
    """One run's signal on the strided record grid, with what scoring needs to know of the run."""

    name: str
    seed: int
    signal: np.ndarray  # [T]
    steps: np.ndarray  # [T]
    transitions: tuple  # the run's Transition objects (empty for nothing to score)


def run_signal(traj: Any, probes: Any, spec: SignalSpec) -> RunSignal:
    signal, steps = trajectory_signal(traj, probes, spec)
    return RunSignal(traj.name, traj.seed, signal, steps, tuple(traj.transitions))


#: Bump when a signal's computation changes: cached full-pool signals of older versions are ignored.
SIGNAL_CACHE_VERSION = 1


def full_pool_signal(traj: Any, spec: SignalSpec) -> RunSignal:
    """The whole pool's signal on one trajectory, cached beside it.

    Every design of a family is also scored on the full pool (the complete-basis limit, and the
    reference its prefixes' fidelity is measured against), and the full pool is the costliest
    probe set. It is the same for every design, so it is computed once per (trajectory, signal)
    and kept in ``<trajectory>.signals/``, keyed by the trajectory's content hash (a re-recorded
    trajectory is a new key). Trajectories without a store directory are not cached.
    """
    path = _signal_cache(traj, spec)
    if path is not None and path.exists():
        try:
            with np.load(path, allow_pickle=False) as data:
                return RunSignal(traj.name, traj.seed, data["signal"], data["steps"], tuple(traj.transitions))
        except (OSError, ValueError, KeyError):
            pass  # unreadable: computed again, and written over
    run = run_signal(traj, np.arange(traj.losses.shape[1]), spec)
    if path is not None:
        from probekit.atomic import atomic_file

        try:
            with atomic_file(path) as tmp, open(tmp, "wb") as fh:
                np.savez(fh, signal=run.signal, steps=run.steps)
        except OSError:
            pass  # a read-only store: nothing is cached, nothing lost
    return run


def _signal_cache(traj: Any, spec: SignalSpec) -> Any:
    import hashlib
    import json
    from pathlib import Path

    root, manifest = getattr(traj, "path", None), getattr(traj, "manifest", None)
    if root is None or not isinstance(manifest, dict) or "content_hash" not in manifest:
        return None
    if manifest.get("kind") == "user":  # the user's own directory: the bench writes nothing beside it
        return None
    key = json.dumps({"spec": [spec.statistic, spec.window, spec.stride, spec.detrend],
                      "version": SIGNAL_CACHE_VERSION, "trajectory": manifest["content_hash"]}, sort_keys=True)
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    return Path(root).parent / f"{Path(root).name}.signals" / f"full-{spec.statistic}-{digest}.npz"


def score_signals(
    runs: list[RunSignal],
    nulls: list[RunSignal],
    *,
    spec: SignalSpec,
    rule: Any,
    hit_fraction: float = 0.5,
    pilot: int = 0,
) -> DesignScore:
    """Score precomputed signals: the transition runs' episodes, and the null runs as quiet units.

    Computing the signal is the costly part; one signal can be scored under
    several alarm rules without computing it again. ``pilot``: trajectory records
    ``[0, pilot)`` are not scored (a design selected its probes on them): episodes
    and the null runs' quiet units start at the first signal record at or after it.
    """
    first = -(-check_pilot(pilot) // int(spec.stride))  # the first strided record at or after the pilot
    out = DesignScore(spec, rule, curve=None)  # type: ignore[arg-type]
    pairs = []
    for run in runs:
        ps = rule.persistent_scores(run.signal)
        alarms = rule.alarms(run.signal)
        # Episodes start at the run's first record (or the previous midpoint), whatever the signal:
        # a signal still undefined there (its window, the rule's baseline) is silent, not excused,
        # so every design is scored on the same episodes with the same time to onset.
        for ep in episodes(run.steps, list(run.transitions), 0, hit_fraction, pilot=first):
            pairs.append((ps, ep))
            out.episodes.append((run.name, run.seed, score_episode(alarms, ep)))
            out.time_to_onset.append(ep.time_to_onset)
    quiet = []
    for run in nulls:
        quiet.append(rule.persistent_scores(run.signal)[first:])
        out.null_false_alarms.append((run.name, run.seed, int(np.count_nonzero(rule.alarms(run.signal) >= first))))
    out.curve = sweep(pairs, quiet)
    return out


def score_design(
    transitions: list,
    nulls: list,
    probes_of: Callable[[Any], Any],
    *,
    spec: SignalSpec = SignalSpec(),
    rule: Any = None,
    hit_fraction: float = 0.5,
    pilot: int = 0,
) -> DesignScore:
    """Score a design on transition trajectories and null trajectories (``pilot``: as in :func:`score_signals`)."""
    from probekit.alarms import make_rule

    rule = make_rule() if rule is None else rule
    return score_signals([run_signal(t, probes_of(t), spec) for t in transitions],
                         [run_signal(t, probes_of(t), spec) for t in nulls],
                         spec=spec, rule=rule, hit_fraction=hit_fraction, pilot=pilot)
