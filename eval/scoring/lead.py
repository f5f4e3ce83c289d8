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

Two scores come from the same alarms, at the same threshold:

- **warning**: the first alarm from the hit window's start on falls in the hit
  window (at or before the onset): a hit, lead = onset - alarm;
- **detection**: that first alarm falls at or before the midpoint record (the
  span late alarms count in, so every warning is a detection too); latency =
  alarm - onset, in records and as a fraction of midpoint - onset (negative:
  before the onset).

A **pilot** span (records ``[0, pilot)``, the records a design looked at to select its
probes) is never scored: episodes and quiet periods start at record >= pilot.

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


def check_pilot(pilot: int) -> int:
    if isinstance(pilot, bool) or not isinstance(pilot, (int, np.integer)) or pilot < 0:
        raise ProbekitUsageError(f"pilot must be an int >= 0 (records). Got {pilot!r} instead.")
    return int(pilot)


def episodes(steps: np.ndarray, transitions: list, defined_from: int, hit_fraction: float = 0.5,
             pilot: int = 0) -> list[Episode]:
    """The episodes of one run, in onset order; transitions that did not happen are skipped.

    ``defined_from``: the first record index with a signal value. ``pilot``: the
    records ``[0, pilot)`` (indices of ``steps``) that a design saw when it selected
    its probes; no episode or quiet period starts before it. A transition whose
    onset comes at or before ``max(defined_from, pilot)`` (no room for a warning)
    is skipped too.
    """
    if not 0 < hit_fraction <= 1:
        raise ProbekitUsageError(f"hit_fraction must be in (0, 1]. Got {hit_fraction!r} instead.")
    steps = np.asarray(steps)
    out: list[Episode] = []
    previous_mid = max(defined_from, check_pilot(pilot))
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
    """Warning and detection against false-alarm rate, one point per threshold.

    ``detection`` is the *warning* rate (hits in the hit window; the name predates the
    detection score). The detection fields are None on a curve built without them
    (the peers' checkpoint-grid curves).
    """

    thresholds: np.ndarray  # [K] increasing
    far: np.ndarray  # [K] fraction of quiet units with an alarm (non-increasing in h)
    detection: np.ndarray  # [K] warning rate: fraction of episodes hit
    mean_lead_fraction: np.ndarray  # [K] misses count 0
    median_lead: np.ndarray  # [K] records, over hits (NaN if none)
    n_quiet: int
    n_episodes: int
    episode_leads: np.ndarray  # [episodes, K] lead in records at each threshold, -1 for a miss
    # detection after onset, at the same thresholds
    first_alarms: np.ndarray | None = None  # [episodes, K] first alarm record from the hit window on, up to
    #                                         the midpoint; -1: none (not detected)
    onsets: np.ndarray | None = None  # [episodes] onset records
    spans: np.ndarray | None = None  # [episodes] midpoint - onset, at least 1 (the latency fraction's unit)
    detected: np.ndarray | None = None  # [K] detection rate: fraction of episodes detected
    median_latency: np.ndarray | None = None  # [K] records, alarm - onset, over the detected (NaN if none)
    mean_latency_fraction: np.ndarray | None = None  # [K] latency / span, over the detected (NaN if none)

    @property
    def has_detection(self) -> bool:
        return self.first_alarms is not None

    def index_at_far(self, target: float = 0.05) -> int:
        """The smallest threshold whose false-alarm rate is <= target (the largest if none is)."""
        ok = np.nonzero(self.far <= target + 1e-12)[0]
        return int(ok[0]) if ok.size else len(self.far) - 1

    def at_far(self, target: float = 0.05) -> dict:
        """The point with the smallest threshold whose false-alarm rate is <= target: warning and detection."""
        k = self.index_at_far(target)
        return {
            "threshold": float(self.thresholds[k]),
            "far": float(self.far[k]),
            "detection": float(self.detection[k]),
            "median_lead": None if np.isnan(self.median_lead[k]) else float(self.median_lead[k]),
            "mean_lead_fraction": float(self.mean_lead_fraction[k]),
            "leads": [None if v < 0 else int(v) for v in self.episode_leads[:, k]],  # per episode
            **self.detection_at(k),
        }

    def detection_at(self, k: int) -> dict:
        """Detection at threshold index k: rate, median latency (records), mean latency fraction, per episode."""
        if not self.has_detection:
            return {"detected": None, "median_latency": None, "mean_latency_fraction": None, "latencies": None,
                    "latency_fractions": None}
        first = self.first_alarms[:, k]
        hit = first >= 0
        latency = first - self.onsets
        return {
            "detected": float(self.detected[k]),
            "median_latency": None if np.isnan(self.median_latency[k]) else float(self.median_latency[k]),
            "mean_latency_fraction": (None if np.isnan(self.mean_latency_fraction[k])
                                      else float(self.mean_latency_fraction[k])),
            "latencies": [int(v) if h else None for v, h in zip(latency, hit)],  # per episode, None: not detected
            "latency_fractions": [float(v / s) if h else None for v, s, h in zip(latency, self.spans, hit)],
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


def _running_max(ps: np.ndarray, lo: int, hi: int) -> np.ndarray:
    """Running max of the persistent scores over records [lo, hi] (undefined: never), [NEVER] if empty."""
    seg = ps[lo:hi + 1]
    w = np.where(np.isfinite(seg), seg, NEVER)
    return np.maximum.accumulate(w) if w.size else np.array([NEVER])


def _first_alarms(ps: np.ndarray, ep: Episode, thresholds: np.ndarray, m: np.ndarray) -> np.ndarray:
    """Per threshold h, the offset from the hit window's start of the first record in [window
    start, midpoint] where an alarm *starts* (the persistent score rises above h), ``len(m)`` if none.

    An exceedance that began in the quiet period and lasts into the hit window is that period's false
    alarm, not a warning (the rule, which fires on a rising edge, does not fire again until the
    score has fallen back): for a threshold below the score of the record before the window, the
    alarm counts only once the score has dropped to h or below and risen again.
    """
    first = np.searchsorted(m, thresholds, side="right")  # m is non-decreasing: first offset with a score > h
    if ep.window_start <= ep.start or ep.window_start > ep.midpoint:
        return first  # no record before the window in this episode (or nothing to alarm on)
    before = ps[ep.window_start - 1]
    before = float(before) if np.isfinite(before) else NEVER
    carried = np.nonzero(thresholds < before)[0]
    if carried.size == 0:
        return first
    seg = ps[ep.window_start:ep.midpoint + 1]
    w = np.where(np.isfinite(seg), seg, NEVER)
    drop = np.searchsorted(-np.minimum.accumulate(w), -thresholds[carried], side="left")  # first offset <= h
    out = first.copy()
    for d in np.unique(drop):
        sel = carried[drop == d]
        if d >= len(w) - 1:
            out[sel] = len(m)  # it never falls back (or only at the last record): no new alarm
            continue
        rising = np.maximum.accumulate(w[d + 1:])
        out[sel] = d + 1 + np.searchsorted(rising, thresholds[sel], side="right")
    return out


def _medians(values: np.ndarray, ok: np.ndarray) -> np.ndarray:
    """Per column k, the median of ``values[ok[:, k], k]`` (NaN where none is ok), as ``np.median`` gives it
    (the mean of the two middle values), for every column at once."""
    n = ok.sum(axis=0)  # [K]
    if values.shape[0] == 0:
        return np.full(values.shape[1], np.nan)
    ordered = np.sort(np.where(ok, values, np.inf), axis=0)  # the ok values first, in order
    cols = np.arange(values.shape[1])
    lo, hi = np.maximum(n - 1, 0) // 2, n // 2
    hi = np.minimum(hi, values.shape[0] - 1)
    mid = (ordered[lo, cols] + ordered[hi, cols]) / 2
    return np.where(n > 0, mid, np.nan)


def sweep(
    episode_scores: list[tuple[np.ndarray, Episode]],
    quiet_units: list[np.ndarray],
) -> Curve:
    """Sweep the threshold over persistent scores.

    ``episode_scores``: (persistent scores of the run, episode) per episode;
    ``quiet_units``: the persistent scores of each null run (whole, or from the
    pilot on). The episodes' own quiet periods are added as quiet units.

    The thresholds are the values that change the false-alarm rate or a warning:
    the detection rate is exact at each of them, and, since it only falls as the
    threshold rises, its best value at any false-alarm rate is read at one of them.
    """
    quiet_stats = [_nanmax(ps) for ps in quiet_units]
    quiet_stats += [_nanmax(ps[ep.start:ep.window_start]) for ps, ep in episode_scores]
    # per episode: the running max of the persistent score from the hit window's start to the midpoint;
    # its first n_hit values cover the hit window (the warning's span)
    running = [_running_max(ps, ep.window_start, ep.midpoint) for ps, ep in episode_scores]
    n_hit = [max(ep.onset - ep.window_start + 1, 0) for _, ep in episode_scores]
    hit_running = [m[:n] if n else np.array([NEVER]) for m, n in zip(running, n_hit)]
    values = np.concatenate([np.asarray(quiet_stats, dtype=np.float64)] + hit_running)
    thresholds = np.unique(np.concatenate([[NEVER], values[np.isfinite(values)]]))
    q = np.asarray(quiet_stats, dtype=np.float64)
    far = np.array([(q > h).mean() if q.size else 0.0 for h in thresholds])
    n_ep, n_th = len(episode_scores), len(thresholds)
    leads = np.full((n_ep, n_th), -1, dtype=np.int64)  # -1: no hit
    fracs = np.zeros((n_ep, n_th))
    first_alarms = np.full((n_ep, n_th), -1, dtype=np.int64)  # -1: not detected
    onsets = np.array([ep.onset for _, ep in episode_scores], dtype=np.int64)
    spans = np.array([max(ep.midpoint - ep.onset, 1) for _, ep in episode_scores], dtype=np.int64)
    for e, ((ps, ep), m) in enumerate(zip(episode_scores, running)):
        defined = ep.window_start <= ep.midpoint  # else m is the placeholder [NEVER]: nothing to alarm on
        first = _first_alarms(ps, ep, thresholds, m)
        hit = first < n_hit[e]
        lead = ep.onset - (ep.window_start + first[hit])
        leads[e, hit] = lead
        fracs[e, hit] = lead / max(ep.time_to_onset, 1)
        seen = (first < len(m)) & defined
        first_alarms[e, seen] = ep.window_start + first[seen]
    n = max(n_ep, 1)
    hits = leads >= 0
    det = hits.sum(axis=0) / n
    mean_frac = fracs.sum(axis=0) / n
    detected = first_alarms >= 0
    latency = first_alarms - onsets[:, None]  # [episodes, K], meaningful where detected
    med = _medians(leads, hits)
    med_latency = _medians(latency, detected)
    frac_sum = np.where(detected, latency / spans[:, None], 0.0).sum(axis=0)
    with np.errstate(invalid="ignore"):
        mean_latency_frac = frac_sum / detected.sum(axis=0)  # 0 / 0 = NaN where none is detected
    return Curve(thresholds, far, det, mean_frac, med, len(quiet_stats), n_ep, leads,
                 first_alarms=first_alarms, onsets=onsets, spans=spans, detected=detected.sum(axis=0) / n,
                 median_latency=med_latency, mean_latency_fraction=mean_latency_frac)


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
