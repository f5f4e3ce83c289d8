"""Calibration of alarm thresholds on null runs: chosen threshold, achieved and fresh rates."""
from __future__ import annotations

import numpy as np
import pytest

from probekit.alarms import (
    Calibration,
    KendallTrend,
    RobustZScore,
    RunningMinRatio,
    calibrate,
)
from probekit.errors import ProbekitUsageError, ProbekitWarning


def null_run(rng, n=300, phi=0.5, sd=0.1):
    """exp of AR(1) noise: a signal with no transition."""
    e = rng.standard_normal(n) * sd
    y = np.zeros(n)
    for t in range(1, n):
        y[t] = phi * y[t - 1] + e[t]
    return np.exp(y)


def with_ramp(x, t0=200, slope=0.05):
    y = np.log(x).copy()
    y[t0:] += slope * np.arange(1, len(x) - t0 + 1)
    return np.exp(y)


@pytest.fixture(scope="module")
def null_sets():
    rng = np.random.default_rng(2024)
    calib = [null_run(rng) for _ in range(200)]
    fresh = [null_run(rng) for _ in range(200)]
    return calib, fresh


def ref_smallest_threshold(stats, target):
    """Scan every candidate h (each observed value): the smallest with mean(stats > h) <= target."""
    stats = np.sort(np.asarray(stats, dtype=float))
    candidates = np.unique(stats)
    n_above = stats.size - np.searchsorted(stats, candidates, side="right")  # #(stats > h)
    return candidates[n_above / stats.size <= target][0]


RULES = [
    RunningMinRatio(),
    RobustZScore(),
    # Per-run rates need persistence here: p-values of overlapping windows are strongly
    # correlated, and with persistence 1 nearly every 300-record null run reaches p_min.
    KendallTrend(window=30, n_surrogates=999, persistence=20),
]


@pytest.mark.parametrize("rule", RULES, ids=lambda r: r.name)
def test_per_run_calibration_holds_on_fresh_null_runs(rule, null_sets):
    calib, fresh = null_sets
    result = calibrate(rule, calib, target_rate=0.05)

    maxima = [np.nanmax(rule.persistent_scores(x)) for x in calib]
    expected = ref_smallest_threshold(maxima, 0.05)
    assert result.threshold == pytest.approx(expected, rel=1e-12)
    assert result.rule.score_threshold == result.threshold
    # achieved rate, counted the slow way: runs with at least one alarm
    expected_rate = np.mean([len(result.rule.alarms(x)) > 0 for x in calib])
    assert result.achieved_rate == expected_rate <= 0.05
    assert (result.n_runs, result.n_records, result.rate) == (200, 200 * 300, "per_run")

    fresh_rate = np.mean([len(result.rule.alarms(x)) > 0 for x in fresh])
    assert fresh_rate <= 0.12

    alarms = result.rule.alarms(with_ramp(fresh[0]))
    assert alarms.size and 200 <= alarms[0] <= 240
    assert rule.get_params() != result.rule.get_params()  # a new rule; the input is unchanged
    assert rule.score_threshold != result.threshold


def test_per_record_calibration_matches_brute_force(null_sets):
    calib, _ = null_sets
    rule = RobustZScore(persistence=2)
    runs = calib[:40]
    pooled = np.concatenate([rule.persistent_scores(x) for x in runs])
    pooled = pooled[~np.isnan(pooled)]
    thresholds = []
    for target in (0.001, 0.01, 0.05, 0.2):
        result = calibrate(rule, runs, target_rate=target, rate="per_record")
        assert result.threshold == ref_smallest_threshold(pooled, target)
        assert result.achieved_rate == np.mean(pooled > result.threshold) <= target
        exceed = np.concatenate([result.rule.persistent_scores(x) > result.threshold for x in runs])
        assert result.achieved_rate == exceed.sum() / pooled.size
        assert result.n_scored == pooled.size
        thresholds.append(result.threshold)
    assert thresholds == sorted(thresholds, reverse=True)  # monotone in the target


def test_runs_whose_maximum_equals_the_threshold_do_not_alarm():
    # run i = [1, r_i]: with persistence 1 its maximum score is r_i
    r = [5, 5, 5, 5, 2, 2, 2, 2, 2, 2]
    runs = [np.array([1.0, v]) for v in r]
    rule = RunningMinRatio(persistence=1)
    result = calibrate(rule, runs, target_rate=0.2)
    # any h < 5 lets 4 runs (40 %) alarm, so h = 5 and no run alarms
    assert result.threshold == 5.0 and result.rule.ratio == 5.0
    assert result.achieved_rate == 0.0
    assert [len(result.rule.alarms(x)) for x in runs] == [0] * 10

    result = calibrate(rule, [np.array([1.0, v]) for v in range(2, 12)], target_rate=0.3)
    assert result.threshold == 8.0 and result.achieved_rate == 0.3  # 9, 10, 11 alarm


def test_target_below_one_over_n_runs_warns_and_takes_the_maximum():
    runs = [np.array([1.0, v]) for v in range(2, 12)]
    with pytest.warns(ProbekitWarning, match=r"cannot be resolved below 1/10"):
        result = calibrate(RunningMinRatio(persistence=1), runs, target_rate=0.05)
    assert result.threshold == 11.0 and result.achieved_rate == 0.0


def test_kendall_threshold_is_one_minus_alpha():
    rng = np.random.default_rng(1)
    runs = [null_run(rng, n=80) for _ in range(30)]
    result = calibrate(KendallTrend(window=12, n_surrogates=99, persistence=8), runs, 0.1)
    assert isinstance(result, Calibration)
    assert result.rule.alpha == pytest.approx(1 - result.threshold)
    assert result.rule.score_threshold == result.threshold


def test_two_dimensional_array_of_runs_is_accepted():
    rng = np.random.default_rng(3)
    stacked = np.stack([null_run(rng, n=60) for _ in range(20)])
    a = calibrate(RunningMinRatio(), stacked, target_rate=0.1)
    b = calibrate(RunningMinRatio(), list(stacked), target_rate=0.1)
    assert a == b


def test_runs_without_scores_never_alarm():
    runs = [np.array([1.0, 3.0, 4.0])] + [np.array([np.nan, np.nan])] * 9
    result = calibrate(RunningMinRatio(persistence=1), runs, target_rate=0.2)
    # 2 of 10 may alarm and only one run has scores: any threshold below 4 works,
    # the smallest statistic is used
    assert result.threshold == 4.0 and result.achieved_rate == 0.0


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"rule": "running-min"}, r"calibrate needs an alarm rule .* Got 'running-min' instead"),
        ({"target_rate": 1.0}, r"The 'target_rate' parameter of calibrate must be a float in the range \[0, 1\)\. Got 1\.0"),
        ({"target_rate": -0.1}, r"'target_rate' parameter of calibrate"),
        ({"rate": "per_step"}, r"The 'rate' parameter of calibrate must be one of 'per_run', 'per_record'\. Got 'per_step'"),
        ({"null_series": np.ones(10)}, r"list of 1-D arrays .* Got an array of shape \(10,\)"),
        ({"null_series": "abc"}, r"list of 1-D arrays \(one per null run\)\. Got str instead"),
        ({"null_series": []}, r"at least one null run\. Got an empty list"),
        ({"null_series": [np.ones((2, 2))]}, r"RunningMinRatio needs a 1-D numeric series"),
        ({"null_series": [np.ones(2)] * 3, "rule": RunningMinRatio(persistence=3)}, r"no null record has a defined score .*\(longest: 2 records\)"),
        ({"null_series": [np.array([0.0, 1.0, 1.0])] * 5}, r"infinite at the target quantile"),
        ({"rule": RunningMinRatio(ratio=-1)}, r"'ratio' parameter of RunningMinRatio"),
    ],
)
def test_calibration_errors(kwargs, match):
    args = {"rule": RunningMinRatio(persistence=1), "null_series": [np.arange(1.0, 6.0)] * 5,
            "target_rate": 0.2, "rate": "per_run"}
    args.update(kwargs)
    with pytest.raises(ProbekitUsageError, match=match):
        calibrate(**args)
