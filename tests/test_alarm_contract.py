"""The alarm-rule contract: the registry and the default, parameters stored until used, and the one-line errors."""
from __future__ import annotations

import pickle

import numpy as np
import pytest

from probekit.alarms import (
    ALARM_RULES,
    DEFAULT_RULE,
    KendallTrend,
    OnlineAlarm,
    RobustZScore,
    RunningMinRatio,
    make_rule,
)
from probekit.errors import ProbekitUsageError


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
