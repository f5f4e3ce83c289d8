"""Score a probe design on reference trajectories: alarm time, lead, hits, false alarms.

The unit of scoring is an **episode**: one transition of one run. Its records
(on the strided record grid, from the first record where the signal is
defined, or from the previous transition's midpoint) split into

- a **quiet period** ``[start, window_start)``: any alarm there is a false
  alarm (too early to be a warning of this transition);
- the **hit window** ``[window_start, onset]``, the last ``hit_fraction`` (default
  half) of the time from ``start`` to the onset: the first alarm there is a hit,
  with lead = onset - alarm (in records, and as a fraction of onset - start).
  An alarm only after the onset (up to the midpoint) is *late*; none is a *miss*.

A null run is one quiet period, whole. The false-alarm rate is the fraction of
quiet units (null runs and the episodes' quiet periods) with at least one alarm.

Fixed threshold (:func:`score_episode`): the rule's own threshold, its alarms.
Threshold-free (:func:`sweep`): the threshold swept over every value the
rule's persistent scores take (``persistent_score > h`` holds exactly where the
rule with threshold ``h`` has ``persistence`` consecutive exceedances), giving a
curve of (false-alarm rate, detection rate, mean lead); designs are compared at
a matched false-alarm rate (:meth:`Curve.at_far`, default 5%) and by the area
under the lead curve, never at a hand-picked threshold.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from probekit.errors import ProbekitUsageError

__all__ = ["Curve", "Episode", "EpisodeScore", "episodes", "fidelity", "score_episode", "sweep"]

NEVER = -np.inf  # the statistic of a unit whose persistent score is never defined: it never alarms


@dataclass(frozen=True)
class Episode:
    """One transition of one run, in record indices of the (strided) signal."""

    transition: str
    start: int  # first record the episode watches
    window_start: int  # first record of the hit window
    onset: int  # the onset record (last record of the hit window)
    midpoint: int  # late alarms count up to here

    @property
    def time_to_onset(self) -> int:
        return self.onset - self.start


def _index(steps: np.ndarray, step: int) -> int:
    """Index of the first record at or after ``step``."""
    return int(min(np.searchsorted(steps, step, side="left"), len(steps) - 1))


def episodes(steps: np.ndarray, transitions: list, defined_from: int, hit_fraction: float = 0.5) -> list[Episode]:
    """The episodes of one run, in onset order; transitions that did not happen are skipped.

    ``defined_from``: the first record index with a signal value. A transition
    whose onset comes before it (no room for a warning) is skipped too.
    """
    if not 0 < hit_fraction <= 1:
        raise ProbekitUsageError(f"hit_fraction must be in (0, 1]. Got {hit_fraction!r} instead.")
    steps = np.asarray(steps)
    out: list[Episode] = []
    previous_mid = defined_from
    for t in sorted((t for t in transitions if t.onset_step is not None), key=lambda t: t.onset_step):
        onset = _index(steps, t.onset_step)
        mid = _index(steps, t.midpoint_step) if t.midpoint_step is not None else len(steps) - 1
        start = max(defined_from, previous_mid)
        if onset > start:
            window_start = onset - max(1, math.ceil(hit_fraction * (onset - start)))
            out.append(Episode(t.name, start, max(start, window_start), onset, max(mid, onset)))
        previous_mid = max(previous_mid, mid)
    return out


@dataclass(frozen=True)
class EpisodeScore:
    """A fixed-threshold alarm rule on one episode."""

    transition: str
    outcome: str  # "hit", "late" or "miss"
    alarm: int | None  # record index of the first alarm in the hit window (or late)
    lead: int | None  # onset - alarm, records (hits only)
    lead_fraction: float | None  # lead / (onset - start)
    false_alarms: int  # alarms in the quiet period


def score_episode(alarms: np.ndarray, ep: Episode) -> EpisodeScore:
    """Classify a rule's alarm records (increasing indices) against one episode."""
    alarms = np.asarray(alarms, dtype=np.int64)
    false = int(np.count_nonzero((alarms >= ep.start) & (alarms < ep.window_start)))
    in_window = alarms[(alarms >= ep.window_start) & (alarms <= ep.onset)]
    if in_window.size:
        a = int(in_window[0])
        lead = ep.onset - a
        return EpisodeScore(ep.transition, "hit", a, lead, lead / max(ep.time_to_onset, 1), false)
    late = alarms[(alarms > ep.onset) & (alarms <= ep.midpoint)]
    if late.size:
        return EpisodeScore(ep.transition, "late", int(late[0]), None, None, false)
    return EpisodeScore(ep.transition, "miss", None, None, None, false)


def _nanmax(values: np.ndarray) -> float:
    finite = values[np.isfinite(values)]
    return float(finite.max()) if finite.size else NEVER


@dataclass(frozen=True)
class Curve:
    """Detection and lead against false-alarm rate, one point per threshold."""

    thresholds: np.ndarray  # [K] increasing
    far: np.ndarray  # [K] fraction of quiet units with an alarm (non-increasing in h)
    detection: np.ndarray  # [K] fraction of episodes hit
    mean_lead_fraction: np.ndarray  # [K] misses count 0
    median_lead: np.ndarray  # [K] records, over hits (NaN if none)
    n_quiet: int
    n_episodes: int
    episode_leads: np.ndarray  # [episodes, K] lead in records at each threshold, -1 for a miss

    def at_far(self, target: float = 0.05) -> dict:
        """The point with the smallest threshold whose false-alarm rate is <= target."""
        ok = np.nonzero(self.far <= target + 1e-12)[0]
        k = int(ok[0]) if ok.size else len(self.far) - 1
        return {
            "threshold": float(self.thresholds[k]),
            "far": float(self.far[k]),
            "detection": float(self.detection[k]),
            "median_lead": None if np.isnan(self.median_lead[k]) else float(self.median_lead[k]),
            "mean_lead_fraction": float(self.mean_lead_fraction[k]),
            "leads": [None if v < 0 else int(v) for v in self.episode_leads[:, k]],  # per episode
        }

    @property
    def auc(self) -> float:
        """Area under mean lead fraction against false-alarm rate, FAR in [0, 1] (0 = never early)."""
        # the curve is a step function of FAR: at each FAR level, the best lead reachable at or below it
        order = np.argsort(self.far, kind="stable")
        far, lead = self.far[order], self.mean_lead_fraction[order]
        best = np.maximum.accumulate(lead)
        edges = np.append(far, 1.0)
        return float(np.sum(best * np.diff(edges)))


def sweep(
    episode_scores: list[tuple[np.ndarray, Episode]],
    quiet_units: list[np.ndarray],
) -> Curve:
    """Sweep the threshold over persistent scores.

    ``episode_scores``: (persistent scores of the run, episode) per episode;
    ``quiet_units``: the persistent scores of each null run (whole). The
    episodes' own quiet periods are added as quiet units.
    """
    quiet_stats = [_nanmax(ps) for ps in quiet_units]
    quiet_stats += [_nanmax(ps[ep.start:ep.window_start]) for ps, ep in episode_scores]
    running = []  # per episode: running max of the persistent score over the hit window
    for ps, ep in episode_scores:
        w = np.where(np.isfinite(ps[ep.window_start:ep.onset + 1]), ps[ep.window_start:ep.onset + 1], NEVER)
        running.append(np.maximum.accumulate(w) if w.size else np.array([NEVER]))
    values = np.concatenate([np.asarray(quiet_stats, dtype=np.float64)] + running)
    thresholds = np.unique(np.concatenate([[NEVER], values[np.isfinite(values)]]))
    q = np.asarray(quiet_stats, dtype=np.float64)
    far = np.array([(q > h).mean() if q.size else 0.0 for h in thresholds])
    det = np.zeros(len(thresholds))
    mean_frac = np.zeros(len(thresholds))
    med = np.full(len(thresholds), np.nan)
    leads = np.full((len(episode_scores), len(thresholds)), -1, dtype=np.int64)  # -1: no hit
    fracs = np.zeros((len(episode_scores), len(thresholds)))
    for e, ((ps, ep), m) in enumerate(zip(episode_scores, running)):
        first = np.searchsorted(m, thresholds, side="right")  # m is non-decreasing: first index with m > h
        hit = first < len(m)
        lead = ep.onset - (ep.window_start + first[hit])
        leads[e, hit] = lead
        fracs[e, hit] = lead / max(ep.time_to_onset, 1)
    n = max(len(episode_scores), 1)
    hits = leads >= 0
    det = hits.sum(axis=0) / n
    mean_frac = fracs.sum(axis=0) / n
    with np.errstate(invalid="ignore"):
        med = np.array([np.median(leads[hits[:, k], k]) if hits[:, k].any() else np.nan for k in range(len(thresholds))])
    return Curve(thresholds, far, det, mean_frac, med, len(quiet_stats), len(episode_scores), leads)


def fidelity(signal: np.ndarray, reference: np.ndarray) -> float:
    """Spearman rank correlation over the records where both are defined (NaN if < 3).

    Ordinal ranks (ties broken by position): the series are continuous, so ties are rare.
    """
    a, b = np.asarray(signal, dtype=np.float64), np.asarray(reference, dtype=np.float64)
    ok = np.isfinite(a) & np.isfinite(b)
    if ok.sum() < 3:
        return float("nan")
    ra = np.argsort(np.argsort(a[ok], kind="stable"), kind="stable").astype(np.float64)
    rb = np.argsort(np.argsort(b[ok], kind="stable"), kind="stable").astype(np.float64)
    ra -= ra.mean()
    rb -= rb.mean()
    den = math.sqrt(float((ra * ra).sum() * (rb * rb).sum()))
    return float((ra * rb).sum() / den) if den > 0 else float("nan")
