"""Calibrate an alarm rule's threshold on null runs (runs without a transition).

Thresholds are calibrated, not guessed (docs/design.md §3). Given null series, the
rule's *persistent scores* (the rolling minimum of its score over the last
``persistence`` records, so that persistent_score > h exactly where the rule
with score threshold h has ``persistence`` consecutive exceedances) are compared
with candidate thresholds h, and the smallest h whose false-alarm rate is at
most ``target_rate`` is chosen. What the rate means:

``rate="per_run"`` (default)
    The fraction of null runs with at least one alarm anywhere in the run,
    i.e. the fraction whose maximum persistent score is > h. This is the rate
    the scorecard reports ("false alarms on null runs"). It depends on the run
    length: calibrate on null runs as long as the runs the rule will watch.
``rate="per_record"``
    The fraction of *scored* null records (records with a defined persistent
    score; warm-up records and gaps cannot alarm and are not counted) whose
    persistent score is > h: the chance that the alarm condition holds at a
    given record. Note that one run of exceedances longer than ``persistence``
    counts at each of its records but fires only one alarm.

Both rates are step functions of h that drop only at observed statistic values
(runs whose statistic equals h do not alarm, because exceeding means ">").
With N units (runs or scored records) the chosen h is the (k+1)-th largest
statistic, k = the largest count with k / N <= target_rate. Below 1 / N the
rate cannot be resolved: h is then the largest statistic (no null unit alarms)
and a ``ProbekitWarning`` says so. Runs without any defined score never alarm.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from probekit.alarms.base import AlarmRule
from probekit.errors import ProbekitUsageError, ProbekitWarning
from probekit.params import Interval, Options, validate


@dataclass(frozen=True)
class Calibration:
    """Result of ``calibrate``.

    rule: a new rule, the input's parameters with its threshold parameter set;
    threshold: that rule's threshold in score units (``rule.score_threshold``);
    achieved_rate: the false-alarm rate of ``rule`` on the null runs (<= target
    unless the target was below 1 / N); n_runs: null runs; n_records: records in
    them; rate: "per_run" or "per_record"; n_scored: records with a defined
    persistent score (the per-record denominator).
    """

    rule: AlarmRule
    threshold: float
    achieved_rate: float
    n_runs: int
    n_records: int
    rate: str
    n_scored: int


def _runs(null_series: Any) -> list[Any]:
    if isinstance(null_series, np.ndarray):
        if null_series.ndim == 2:  # rows are runs
            return list(null_series)
        raise ProbekitUsageError(
            "calibrate needs null_series as a list of 1-D arrays (one per null run) or a "
            f"2-D array of runs. Got an array of shape {null_series.shape} instead."
        )
    if isinstance(null_series, (str, bytes)) or not isinstance(null_series, Sequence):
        raise ProbekitUsageError(
            "calibrate needs null_series as a list of 1-D arrays (one per null run). "
            f"Got {type(null_series).__name__} instead."
        )
    if len(null_series) == 0:
        raise ProbekitUsageError("calibrate needs at least one null run. Got an empty list.")
    return list(null_series)


def calibrate(
    rule: AlarmRule,
    null_series: Sequence[Any],
    target_rate: float = 0.05,
    rate: str = "per_run",
) -> Calibration:
    """Smallest threshold of ``rule`` whose false-alarm ``rate`` on ``null_series`` is <= target."""
    if not isinstance(rule, AlarmRule):
        raise ProbekitUsageError(
            f"calibrate needs an alarm rule (an AlarmRule instance). Got {rule!r} instead."
        )
    validate(
        "calibrate",
        {"target_rate": target_rate, "rate": rate},
        {
            "target_rate": Interval(float, 0, 1, closed="left"),
            "rate": Options("per_run", "per_record"),
        },
    )
    runs = _runs(null_series)
    persistent = [rule.persistent_scores(run) for run in runs]  # validates rule and series
    n_records = int(sum(ps.shape[0] for ps in persistent))
    scored = np.concatenate([ps[~np.isnan(ps)] for ps in persistent])
    if scored.size == 0:
        longest = max(ps.shape[0] for ps in persistent)
        raise ProbekitUsageError(
            f"calibrate: no null record has a defined score under {rule!r}; the null runs "
            f"(longest: {longest} records) are too short or too sparse for it."
        )
    if rate == "per_run":
        # max over each run; a run with no score at all can never alarm (-inf).
        stats = np.array([ps[~np.isnan(ps)].max() if (~np.isnan(ps)).any() else -np.inf
                          for ps in persistent])
    else:
        stats = scored
    n_units = stats.shape[0]
    k = _allowed(target_rate, n_units)
    desc = np.sort(stats)[::-1]
    if k == 0:
        unit = "n_runs" if rate == "per_run" else "scored records"
        warnings.warn(
            f"calibrate: target_rate={target_rate!r} is below 1/{unit} = 1/{n_units}; the "
            f"rate cannot be resolved below 1/{n_units}, so the threshold is the largest "
            "null score (no null unit alarms). Use more null runs.",
            ProbekitWarning,
            stacklevel=2,
        )
    h = desc[k]
    if h == -np.inf:
        # Every run that has a score may alarm: any threshold below their statistics
        # works; take the smallest finite one (those at it then do not alarm).
        finite = desc[np.isfinite(desc)]
        h = finite[-1] if finite.size else np.inf
    if h == np.inf:
        raise ProbekitUsageError(
            f"calibrate: the null scores of {rule!r} are infinite at the target quantile "
            "(a running minimum of 0?), so no finite threshold reaches the target rate."
        )
    new_rule = rule.with_score_threshold(float(h))
    threshold = new_rule.score_threshold
    achieved = float(np.count_nonzero(stats > threshold)) / n_units
    return Calibration(
        rule=new_rule,
        threshold=threshold,
        achieved_rate=achieved,
        n_runs=len(runs),
        n_records=n_records,
        rate=rate,
        n_scored=int(scored.size),
    )


def _allowed(target: float, n: int) -> int:
    """Largest k with k / n <= target (guards float rounding of target * n)."""
    k = min(int(math.floor(target * n)), n - 1)
    while k > 0 and k / n > target:
        k -= 1
    while k + 1 < n and (k + 1) / n <= target:
        k += 1
    return k
