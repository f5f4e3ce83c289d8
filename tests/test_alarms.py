"""Alarm rules: scores against plain-Python references, persistence, online == offline, errors."""
from __future__ import annotations

import json
import math
import pickle
import statistics
import zlib

import numpy as np
import pytest
import scipy.stats

from probekit.alarms import (
    ALARM_RULES,
    DEFAULT_RULE,
    KendallTrend,
    OnlineAlarm,
    RobustZScore,
    RunningMinRatio,
    kendall_trend_alarm,
    make_rule,
    robust_zscore_alarm,
    running_min_ratio_alarm,
)
from probekit.alarms.base import run_alarms
from probekit.alarms.kendall import _phi_bins, _rolling_pair_counts, _tau_b
from probekit.errors import ProbekitUsageError, ProbekitWarning
from probekit.registry import ALARMS

TINY = np.finfo(np.float64).tiny


# --------------------------------------------------------------------------- references
# Written independently of the implementation: loops, statistics.median, scipy's tau-b.


def ref_alarms(exceed, persistence):
    out, run = [], 0
    for t, e in enumerate(exceed):
        run = run + 1 if e else 0
        if run == persistence:
            out.append(t)
    return out


def _ref_transform(series, transform):
    out = []
    for v in series:
        if v is None or not math.isfinite(v):
            out.append(None)
        elif transform == "log":
            out.append(math.log(max(v, TINY)))
        else:
            out.append(float(v))
    return out


def ref_zscore(series, baseline, min_baseline, transform):
    y = _ref_transform(series, transform)
    out = []
    for t in range(len(y)):
        base = [v for v in y[max(0, t - baseline) : t] if v is not None]
        if y[t] is None or len(base) < min_baseline:
            out.append(math.nan)
            continue
        med = statistics.median(base)
        mad = statistics.median([abs(v - med) for v in base])
        scale = max(1.4826 * mad, 1e-6 * abs(med), TINY)
        out.append((y[t] - med) / scale)
    return np.array(out)


def ref_running_min(series, min_history):
    out, m, seen = [], math.inf, 0
    for v in series:
        if v is None or not math.isfinite(v):
            out.append(math.nan)
            continue
        m, seen = min(m, v), seen + 1
        if seen < min_history:
            out.append(math.nan)
        elif v == m:
            out.append(1.0)
        elif m == 0:
            out.append(math.inf)
        else:
            out.append(v / m)
    return np.array(out)


def ref_phi(window):
    w = len(window)
    tbar, ybar = (w - 1) / 2, sum(window) / w
    slope = sum((t - tbar) * (y - ybar) for t, y in enumerate(window)) / sum(
        (t - tbar) ** 2 for t in range(w)
    )
    r = [y - ybar - slope * (t - tbar) for t, y in enumerate(window)]
    den = sum(v * v for v in r)
    return sum(r[i] * r[i + 1] for i in range(w - 1)) / den if den > 0 else 0.0


_REF_NULL = {}


def ref_null(w, phi_bin, n, seed):
    """AR(1) surrogates as documented in kendall.py, taus by scipy."""
    key = (w, phi_bin, n, seed)
    if key not in _REF_NULL:
        phi = phi_bin / 20
        e = np.random.default_rng(seed).standard_normal((n, w))
        taus = []
        for row in e:
            x = [row[0] / math.sqrt(1 - phi * phi)]
            for i in range(1, w):
                x.append(phi * x[-1] + row[i])
            taus.append(scipy.stats.kendalltau(range(w), x).statistic)
        _REF_NULL[key] = taus
    return _REF_NULL[key]


def ref_kendall(series, window, n_surrogates, seed, transform="log"):
    y = _ref_transform(series, transform)
    out = [math.nan] * len(y)
    for t in range(window - 1, len(y)):
        win = y[t - window + 1 : t + 1]
        if any(v is None for v in win) or len(set(win)) == 1:
            continue
        tau = scipy.stats.kendalltau(range(window), win).statistic
        b = round(min(max(ref_phi(win), -0.95), 0.95) * 20)
        null = ref_null(window, b, n_surrogates, seed)
        # tolerance: scipy divides by two square roots, the implementation by one
        n_ge = sum(1 for v in null if v >= tau - 1e-9)
        out[t] = 1 - (1 + n_ge) / (1 + n_surrogates)
    return np.array(out)


def noisy_series(rng, n, nan_frac=0.1, zeros=False, decimals=None):
    """Log-normal AR(1) noise with a planted jump, NaN holes, optional zeros and ties."""
    y = np.zeros(n)
    for t in range(1, n):
        y[t] = 0.6 * y[t - 1] + 0.3 * rng.standard_normal()
    jump = rng.integers(n // 3, n)
    y[jump:] += rng.choice([0.0, 1.5, 3.0])
    x = np.exp(y)
    if decimals is not None:
        x = np.round(x, decimals)
    x[rng.random(n) < nan_frac] = np.nan
    start = rng.integers(0, n)
    x[start : start + rng.integers(0, 12)] = np.nan
    if zeros:
        x[rng.random(n) < 0.02] = 0.0
    return x


def planted(n=300, t0=200, kind="jump", seed=1):
    rng = np.random.default_rng(seed)
    y = np.zeros(n)
    for t in range(1, n):
        y[t] = 0.5 * y[t - 1] + 0.1 * rng.standard_normal()
    if kind == "jump":
        y[t0:] += 3.0
    else:
        y[t0:] += 0.08 * np.arange(1, n - t0 + 1)
    return np.exp(y)


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


# --------------------------------------------------------------------------- online == offline


# Parameters that reach each rule's code paths on these gappy series, by registry name (Kendall's
# default window is never free of gaps here; probekit.alarms.testing runs every example). Every
# registered rule runs, with each persistence: its example where it is not listed.
VARIANTS = {
    "running-min": [{}, {"min_history": 4}, {"memory": 7}],
    "zscore": [{"baseline": 15}, {"baseline": 8, "transform": "none", "min_baseline": 3}],
    "kendall": [{"window": 8, "n_surrogates": 49}],
}


def _online_rules():
    for name in ALARMS.names():
        for params in VARIANTS.get(name, [{}]):
            for p in (1, 2, 3, 5):
                yield ALARMS.load(name).example().set_params(**params, persistence=p)


def test_variants_name_registered_rules():
    assert set(VARIANTS) <= set(ALARMS.names())


@pytest.mark.parametrize("rule", list(_online_rules()), ids=repr)
def test_online_decisions_equal_offline(rule):
    rng = np.random.default_rng(zlib.crc32(repr(rule).encode()))
    runs = []
    for i in range(6):
        x = noisy_series(rng, 200, nan_frac=0.15, zeros=i % 2 == 0, decimals=2 if i % 3 else None)
        if isinstance(rule, RobustZScore) and rule.transform == "none":
            x = np.log(np.maximum(x, 1e-3))  # a signed signal
        runs.append(x)
    # The threshold: the median distinct score (below the largest), so that every rule fires.
    scores = np.concatenate([rule.scores(x) for x in runs])
    distinct = np.unique(scores[np.isfinite(scores)])[:-1]
    assert distinct.size, f"{rule!r} gives fewer than two distinct scores on these series"
    rule = rule.with_score_threshold(float(distinct[distinct.size // 2]))
    fired = 0
    for x in runs:
        online = rule.online()
        decisions, scores = [], []
        for v in x:
            decisions.append(online.update(v))
            scores.append(online.last_score)
        offline = rule.alarms(x)
        assert online.alarms == offline.tolist()
        assert np.flatnonzero(decisions).tolist() == offline.tolist()
        np.testing.assert_array_equal(scores, rule.scores(x))  # bit-identical
        fired += len(offline)
    assert fired > 0  # the comparison is not vacuous


def test_online_default_kendall_window_equals_offline():
    rule = KendallTrend(persistence=2)
    x = planted(n=400, kind="ramp", seed=4)
    x[[60, 61, 150]] = np.nan
    online = rule.online()
    for v in x:
        online.update(v)
    assert online.alarms == rule.alarms(x).tolist() and online.alarms


def test_online_state_is_bounded_and_roundtrips():
    rule = RobustZScore(baseline=12, threshold=2.0, persistence=2)
    x = noisy_series(np.random.default_rng(9), 300)
    whole = rule.online()
    for v in x:
        whole.update(v)
    assert len(whole.state_dict()["rule_state"]["buffer"]) == 12
    assert whole.run <= 2

    first = rule.online()
    for v in x[:137]:
        first.update(v)
    saved = json.loads(json.dumps(first.state_dict()))  # plain data, NaN included
    second = rule.online()
    second.load_state_dict(saved)
    for v in x[137:]:
        second.update(v)
    assert second.alarms == rule.alarms(x).tolist() == whole.alarms

    restored = pickle.loads(pickle.dumps(first))
    for v in x[137:]:
        restored.update(v)
    assert restored.alarms == whole.alarms

    second.reset()
    assert second.n_records == 0 and second.alarms == []
    for v in x:
        second.update(v)
    assert second.alarms == whole.alarms


def test_online_running_min_state_is_a_scalar():
    online = RunningMinRatio().online()
    for v in [5.0, 3.0, np.nan, 4.0, None]:
        online.update(v)
    assert online.state_dict()["rule_state"] == {"minimum": 3.0, "seen": 3}
    assert online.n_records == 5


def test_online_running_min_with_memory_resumes_from_its_state():
    # Its `recent` list starts empty and grows to `memory`: the layout check refused every saved state.
    rule = RunningMinRatio(ratio=2.0, persistence=1, memory=5)
    x = noisy_series(np.random.default_rng(4), 80)
    whole = rule.online()
    for v in x:
        whole.update(v)
    first = rule.online()
    for v in x[:23]:
        first.update(v)
    second = rule.online()
    second.load_state_dict(json.loads(json.dumps(first.state_dict())))
    for v in x[23:]:
        second.update(v)
    assert second.alarms == whole.alarms == rule.alarms(x).tolist()
    bad = first.state_dict()
    bad["rule_state"]["recent"] = 3.0
    with pytest.raises(ProbekitUsageError, match="'rule_state' does not match the rule's state layout"):
        rule.online().load_state_dict(bad)


def test_online_copies_the_rule():
    rule = RunningMinRatio(ratio=2.0, persistence=1)
    online = rule.online()
    rule.set_params(ratio=100.0)
    online.update(1.0)
    assert online.update(3.0) is True


# --------------------------------------------------------------------------- contract


def test_registry_and_default():
    assert sorted(ALARM_RULES) == ["kendall", "running-min", "zscore"]
    assert DEFAULT_RULE == "running-min"
    for name, cls in ALARM_RULES.items():
        assert cls.name == name
        rule = make_rule(name)
        assert type(rule) is cls
        assert rule == pickle.loads(pickle.dumps(rule))
    assert make_rule("zscore", baseline=20).baseline == 20
    assert isinstance(make_rule(), RunningMinRatio)


def test_constructor_only_stores_and_set_params_behaves_the_same():
    rule = RobustZScore(baseline=-1)  # no validation yet
    assert rule.baseline == -1
    with pytest.raises(ProbekitUsageError, match=r"The 'baseline' parameter of RobustZScore"):
        rule.alarms([1.0, 2.0])
    rule.set_params(baseline=5)
    assert rule.alarms([1.0] * 10).tolist() == []
    assert repr(RunningMinRatio()) == "RunningMinRatio(ratio=10.0, persistence=3, min_history=1, memory=None)"


def test_missing_values_empty_and_integer_series():
    rule = RunningMinRatio(ratio=2.0, persistence=1)
    assert rule.alarms([]).tolist() == []
    assert rule.scores(np.array([], dtype=np.float64)).shape == (0,)
    np.testing.assert_array_equal(
        rule.scores([1, None, np.inf, -np.inf, 3]), [1.0, np.nan, np.nan, np.nan, 3.0]
    )
    assert rule.alarms(np.array([2, 1, 5], dtype=np.int32)).tolist() == [2]
    assert np.isnan(KendallTrend(window=10).scores([1.0] * 5)).all()


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    "series,match",
    [
        (np.ones((3, 4)), r"1-D numeric series \(one value per record\)\. Got an array of shape \(3, 4\)"),
        (5.0, r"Got an array of shape \(\)"),
        (np.array(["a", "b"]), r"Got dtype <U1 instead"),
        (["1.5", 2.0], r"Got dtype <U32 instead"),
        ([None, "a", 1.0], r"non-numeric entries"),
        ([True, False], r"Got dtype bool instead"),
        ([[1.0], [1.0, 2.0]], r"could not read it as an array"),
    ],
)
def test_bad_series_raise_one_line(series, match):
    for rule in (RunningMinRatio(), RobustZScore(), KendallTrend()):
        with pytest.raises(ProbekitUsageError, match=match) as info:
            rule.alarms(series)
        assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    "rule,match",
    [
        (RobustZScore(baseline=1), r"'baseline' parameter of RobustZScore must be an int in the range \[2, inf\)\. Got 1"),
        (RobustZScore(threshold=np.nan), r"'threshold' parameter of RobustZScore must be a float\. Got nan"),
        (RobustZScore(persistence=0), r"'persistence' parameter of RobustZScore"),
        (RobustZScore(transform="sqrt"), r"'transform' parameter of RobustZScore must be one of 'log', 'none'\. Got 'sqrt'"),
        (RobustZScore(baseline=10, min_baseline=11), r"'min_baseline' parameter of RobustZScore must be None or an int in the range \[2, 10\]\. Got 11"),
        (RunningMinRatio(ratio=0), r"'ratio' parameter of RunningMinRatio must be a float in the range \(0, inf\)\. Got 0"),
        (RunningMinRatio(persistence=1.5), r"'persistence' parameter of RunningMinRatio"),
        (RunningMinRatio(min_history=0), r"'min_history' parameter of RunningMinRatio"),
        (RunningMinRatio(memory=0), r"'memory' parameter of RunningMinRatio must be None or an int in the range \[1, inf\)\. Got 0"),
        (KendallTrend(window=3), r"'window' parameter of KendallTrend must be an int in the range \[4, inf\)"),
        (KendallTrend(alpha=0.0), r"'alpha' parameter of KendallTrend must be a float in the range \(0, 1\]"),
        (KendallTrend(n_surrogates=0), r"'n_surrogates' parameter of KendallTrend"),
        (KendallTrend(persistence=0), r"'persistence' parameter of KendallTrend"),
        (KendallTrend(transform=None), r"'transform' parameter of KendallTrend"),
        (KendallTrend(seed=-1), r"'seed' parameter of KendallTrend"),
    ],
    ids=repr,
)
def test_bad_parameters_raise_on_use(rule, match):
    with pytest.raises(ProbekitUsageError, match=match):
        rule.alarms([1.0, 2.0, 3.0])
    with pytest.raises(ProbekitUsageError, match=match):
        rule.online()


def test_registry_errors():
    with pytest.raises(
        ProbekitUsageError,
        match=r"^Unknown alarm rule 'zscor'\. Did you mean: zscore\? Available: kendall, running-min, zscore\.$",
    ):
        make_rule("zscor")
    with pytest.raises(ProbekitUsageError, match=r"^Unknown alarm rule 'xyz'\. Available: kendall"):
        make_rule("xyz")
    with pytest.raises(ProbekitUsageError, match=r"^Unknown alarm rule 3\. Available"):
        make_rule(3)
    with pytest.raises(ProbekitUsageError, match=r"Invalid parameter 'ratio' for alarm rule 'zscore'"):
        make_rule("zscore", ratio=3)
    with pytest.raises(ProbekitUsageError, match=r"Invalid parameter 'window' for RunningMinRatio\. Valid parameters: ratio, persistence, min_history"):
        RunningMinRatio().set_params(window=3)


def test_running_min_rejects_negative_values():
    with pytest.raises(ProbekitUsageError, match=r"non-negative series .* Got -0\.5 at record 2\."):
        RunningMinRatio().alarms([1.0, np.nan, -0.5])
    online = RunningMinRatio().online()
    online.update(2.0)
    with pytest.raises(ProbekitUsageError, match=r"non-negative series .* Got -1\.0\.$"):
        online.update(-1.0)
    assert online.n_records == 1 and online.state_dict()["rule_state"]["minimum"] == 2.0


def test_online_errors():
    online = RobustZScore().online()
    with pytest.raises(ProbekitUsageError, match=r"OnlineAlarm\.update needs one real number .* Got 'x' instead"):
        online.update("x")
    with pytest.raises(ProbekitUsageError, match=r"Got array\(\[1\., 2\.\]\) instead"):
        online.update(np.array([1.0, 2.0]))
    with pytest.raises(ProbekitUsageError, match=r"OnlineAlarm needs an alarm rule"):
        OnlineAlarm("zscore")
    state = online.state_dict()
    with pytest.raises(ProbekitUsageError, match=r"state was saved by RobustZScore\(baseline=50.*but this alarm runs RobustZScore\(baseline=20"):
        RobustZScore(baseline=20).online().load_state_dict(state)
    with pytest.raises(ProbekitUsageError, match=r"state was saved by RobustZScore.*this alarm runs RunningMinRatio"):
        RunningMinRatio().online().load_state_dict(state)
    with pytest.raises(ProbekitUsageError, match=r"got a state without 'run', 'alarms'"):
        online.load_state_dict({k: v for k, v in state.items() if k not in ("run", "alarms")})
    bad = dict(state, rule_state={"buffer": [1.0]})
    with pytest.raises(ProbekitUsageError, match=r"'rule_state' does not match the rule's state layout"):
        online.load_state_dict(bad)
