"""Alarm rules offline: persistence and re-arming, and each rule's scores against a plain-Python reference."""
from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.stats

from probekit.alarms import (
    KendallTrend,
    RobustZScore,
    RunningMinRatio,
    kendall_trend_alarm,
    robust_zscore_alarm,
    running_min_ratio_alarm,
)
from probekit.alarms.base import run_alarms
from probekit.alarms.kendall import _phi_bins, _rolling_pair_counts, _tau_b
from probekit.errors import ProbekitWarning

from alarm_references import (
    noisy_series,
    planted,
    ref_alarms,
    ref_kendall,
    ref_phi,
    ref_running_min,
    ref_zscore,
)

# --------------------------------------------------------------------------- persistence


def test_persistence_fires_once_per_run_and_rearms_after_a_gap():
    exceed = np.array([1, 1, 1, 1, 0, 1, 1, 1, 0, 1, 1], dtype=bool)
    assert run_alarms(exceed, 3).tolist() == [2, 7]
    assert run_alarms(exceed, 1).tolist() == [0, 5, 9]
    assert run_alarms(exceed, 4).tolist() == [3]
    assert run_alarms(exceed, 5).tolist() == []
    assert run_alarms(exceed[:2], 3).tolist() == []


@pytest.mark.parametrize("persistence", [1, 2, 3, 5])
def test_run_alarms_match_loop(persistence):
    rng = np.random.default_rng(persistence)
    for _ in range(20):
        exceed = rng.random(200) < rng.uniform(0.2, 0.9)
        expected = ref_alarms(exceed, persistence)
        assert run_alarms(exceed, persistence).tolist() == expected


def test_rule_persistence_and_rearming_on_a_series():
    # ratio 2 over a minimum of 1: exceed at values > 2
    series = [1, 3, 3, 3, 3, 1.5, 3, 3, 3, np.nan, 3, 3, 3]
    rule = RunningMinRatio(ratio=2.0, persistence=3)
    assert rule.exceedances(series).tolist() == [
        False, True, True, True, True, False, True, True, True, False, True, True, True
    ]
    # a missing record breaks the run like a non-exceeding one
    assert rule.alarms(series).tolist() == [3, 8, 12]
    assert RunningMinRatio(ratio=2.0, persistence=1).alarms(series).tolist() == [1, 6, 10]


@pytest.mark.parametrize(
    "rule",
    [
        RunningMinRatio(ratio=1.5, persistence=3),
        RobustZScore(baseline=20, threshold=1.0, persistence=2),
        KendallTrend(window=10, alpha=0.2, n_surrogates=49, persistence=3),
    ],
    ids=["running-min", "zscore", "kendall"],
)
def test_persistent_scores_are_equivalent_to_persistent_exceedances(rule):
    rng = np.random.default_rng(3)
    x = noisy_series(rng, 300)
    p = rule.persistence
    exceed = rule.scores(x) > rule.score_threshold
    expected = np.array(
        [t >= p - 1 and all(exceed[t - p + 1 : t + 1]) for t in range(len(x))]
    )
    np.testing.assert_array_equal(rule.persistent_scores(x) > rule.score_threshold, expected)
    assert expected.any()
    assert rule.alarms(x).tolist() == ref_alarms(exceed, p)


# --------------------------------------------------------------------------- robust z-score


@pytest.mark.parametrize("transform", ["log", "none"])
@pytest.mark.parametrize("baseline,min_baseline", [(10, None), (25, 3), (7, 7)])
def test_zscore_matches_reference(transform, baseline, min_baseline):
    rng = np.random.default_rng(baseline)
    x = noisy_series(rng, 250, nan_frac=0.2)
    rule = RobustZScore(baseline=baseline, transform=transform, min_baseline=min_baseline)
    mb = max(2, baseline // 2) if min_baseline is None else min_baseline
    expected = ref_zscore(list(x), baseline, mb, transform)
    got = rule.scores(x)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(expected))
    np.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-9)


def test_zscore_flat_baseline_uses_the_relative_scale_floor():
    x = np.array([2.0] * 10 + [2.0, 2.0 * (1 + 1e-4), 2.0 * (1 - 1e-9)])
    z = RobustZScore(baseline=10, transform="none").scores(x)
    # scale = 1e-6 * |median| = 2e-6
    expected = np.array([0.0, 2.0e-4 / 2e-6, -2.0e-9 / 2e-6])
    np.testing.assert_allclose(z[10:], expected, rtol=1e-6)
    # a baseline of exact zeros still gives a finite scale (TINY)
    z0 = RobustZScore(baseline=5, transform="none").scores([0.0] * 5 + [0.0, 1e-300])
    assert z0[5] == 0.0 and z0[6] > 1e6


def test_zscore_first_records_have_no_score_until_min_baseline():
    z = RobustZScore(baseline=10, min_baseline=4).scores(np.arange(1.0, 8.0))
    assert np.isnan(z[:4]).all() and np.isfinite(z[4:]).all()


def test_zscore_detects_a_planted_jump_not_before():
    x = planted(kind="jump")
    assert RobustZScore().alarms(x).tolist() == [202]  # jump at 200, persistence 3
    assert robust_zscore_alarm(x, persistence=1).tolist() == [200]


# --------------------------------------------------------------------------- running minimum


@pytest.mark.parametrize("min_history", [1, 5])
def test_running_min_matches_reference(min_history):
    rng = np.random.default_rng(min_history)
    x = noisy_series(rng, 300, zeros=True)
    expected = ref_running_min(list(x), min_history)
    got = RunningMinRatio(min_history=min_history).scores(x)
    np.testing.assert_array_equal(got, expected)  # one division: exact


@pytest.mark.parametrize("memory", [1, 4, 25, 1000])
def test_running_min_with_memory_matches_a_trailing_loop(memory):
    rng = np.random.default_rng(memory)
    x = noisy_series(rng, 300, zeros=True)
    expected = []
    for t, v in enumerate(x):
        past = [u for u in x[max(0, t - memory + 1) : t + 1] if not math.isnan(u)]
        if math.isnan(v):
            expected.append(math.nan)
        elif v == min(past):
            expected.append(1.0)
        else:
            expected.append(math.inf if min(past) == 0 else v / min(past))
    np.testing.assert_array_equal(RunningMinRatio(memory=memory).scores(x), expected)


def test_running_min_memory_rearms_between_transitions():
    # Two rises separated by a fall: all-history minimum stays low after the
    # first rise, so only a trailing minimum sees the second.
    quiet = np.full(30, 1.0)
    rise = np.geomspace(1.0, 1e3, 20)
    fall = np.geomspace(1e3, 20.0, 20)  # stays above 10x the first minimum
    x = np.concatenate([quiet, rise, fall, np.full(30, 20.0), np.geomspace(20.0, 2e4, 20)])
    assert len(RunningMinRatio().alarms(x)) == 1
    second_rise = 100
    got = RunningMinRatio(memory=20).alarms(x)
    assert len(got) == 2 and got[0] < 50 and got[1] > second_rise


def test_running_min_zero_minimum_convention():
    got = RunningMinRatio().scores([np.nan, 0.0, 0.0, 2.0, np.nan, 0.0])
    np.testing.assert_array_equal(got, [np.nan, 1.0, 1.0, np.inf, np.nan, 1.0])


def test_running_min_detects_a_planted_jump_not_before():
    x = planted(kind="jump")  # x 20x its minimum after the jump
    assert RunningMinRatio().alarms(x).tolist() == [202]
    assert running_min_ratio_alarm(x, ratio=5.0, persistence=1).tolist() == [200]


# --------------------------------------------------------------------------- Kendall


def test_rolling_tau_b_matches_scipy_with_ties():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 4, 60).astype(float)  # many ties
    y[10:22] = 1.0  # one constant window: tau undefined
    w = 12
    s, ties = _rolling_pair_counts(y, w)
    tau = _tau_b(s, ties, w)
    expected = []
    for a in range(len(y) - w + 1):
        win = y[a : a + w]
        expected.append(
            math.nan if len(set(win)) == 1 else scipy.stats.kendalltau(range(w), win).statistic
        )
    np.testing.assert_allclose(tau, expected, rtol=1e-12, atol=1e-12)
    assert np.isnan(tau[10])


def test_phi_bins_match_reference():
    rng = np.random.default_rng(1)
    rows = np.cumsum(rng.standard_normal((300, 15)), axis=1) * rng.uniform(0.1, 3, (300, 1))
    expected = [round(min(max(ref_phi(list(r)), -0.95), 0.95) * 20) for r in rows]
    assert _phi_bins(np.ascontiguousarray(rows)).tolist() == expected


@pytest.mark.parametrize("decimals", [None, 1])
def test_kendall_scores_match_reference(decimals):
    rng = np.random.default_rng(5)
    x = noisy_series(rng, 120, nan_frac=0.03, decimals=decimals)
    x[x == 0] = 0.1  # keep the log of a rounded value finite-ish and distinct from 0
    expected = ref_kendall(list(x), 10, 49, 7)
    got = KendallTrend(window=10, n_surrogates=49, seed=7).scores(x)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(expected))
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12)
    assert np.isfinite(got).sum() > 50


def test_kendall_detects_a_planted_ramp_not_before():
    x = planted(kind="ramp")
    rule = KendallTrend(window=30, alpha=0.01, n_surrogates=199, persistence=5)
    alarms = rule.alarms(x)
    assert alarms.size >= 1 and 200 <= alarms[0] <= 225
    assert kendall_trend_alarm(x, window=30, alpha=0.01, n_surrogates=199, persistence=5
                               ).tolist() == alarms.tolist()


def test_kendall_threshold_maps_to_alpha():
    rule = KendallTrend(alpha=0.05)
    assert rule.score_threshold == 1 - 0.05
    assert rule.with_score_threshold(0.99).alpha == pytest.approx(0.01)
    assert RunningMinRatio().with_score_threshold(3.0).ratio == 3.0
    assert RobustZScore().with_score_threshold(2.5).threshold == 2.5


def test_kendall_alpha_below_smallest_p_warns():
    rule = KendallTrend(window=10, alpha=0.01, n_surrogates=99)  # p >= 0.01
    with pytest.warns(ProbekitWarning, match="can never alarm"):
        assert rule.alarms(planted(kind="ramp")).tolist() == []
