"""Online alarms: the streaming twin decides exactly as the offline rule, and its state is bounded and resumes."""
from __future__ import annotations

import json
import pickle
import zlib

import numpy as np
import pytest

from probekit.alarms import KendallTrend, RobustZScore, RunningMinRatio
from probekit.errors import ProbekitUsageError
from probekit.registry import ALARMS

from alarm_references import noisy_series, planted


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
