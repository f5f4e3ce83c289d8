"""The alarm-rule conformance suite (what ``probekit.testing`` does for selectors, for alarm rules).

Every registered rule must pass it (``tests/test_alarm_conformance.py`` discovers them
through ``probekit.registry.ALARMS``, so a new one cannot skip it), and a third-party rule
can run it in its own tests::

    import pytest
    from probekit.testing import ALARM_CHECKS, make_test_series

    @pytest.mark.parametrize("check", ALARM_CHECKS, ids=lambda c: c.__name__)
    def test_my_rule(check):
        check(MyRule.example(), make_test_series())

or all at once with ``check_alarm_rule(MyRule.example())``. A failing check raises
``AssertionError`` naming the rule and what broke.

The series (``make_test_series``) are non-negative, as every 2RDM statistic is: log-normal
AR(1) noise, the same with a ramp or a step, with NaN and inf gaps, and rounded with a flat
stretch (ties), for several seeds. Thresholds are not the rule's defaults but values swept
over the scores the rule gives on them (as ``calibrate`` sweeps), so every rule alarms.
"""
from __future__ import annotations

import json
import pickle
import re
import warnings
from typing import Any, Callable

import numpy as np

from probekit.alarms.base import AlarmRule
from probekit.errors import ProbekitUsageError, ProbekitWarning

__all__ = ["ALARM_CHECKS", "check_alarm_rule", "make_test_series"]

KINDS = ("noise", "ramp", "step", "gaps", "ties")


def make_test_series(length: int = 240, seeds: tuple[int, ...] = (0, 1, 2)) -> list[np.ndarray]:
    """Non-negative float64 series, ``len(KINDS)`` per seed (see the module docstring)."""
    out = []
    for seed in seeds:
        rng = np.random.default_rng(seed)
        t0 = int(rng.integers(length // 3, 2 * length // 3))  # where the ramp or the step starts
        for kind in KINDS:
            y = np.zeros(length)
            for t in range(1, length):
                y[t] = 0.6 * y[t - 1] + 0.3 * rng.standard_normal()
            if kind == "ramp":
                y[t0:] += 0.05 * np.arange(1, length - t0 + 1)
            elif kind == "step":
                y[t0:] += 2.0
            x = np.exp(y)
            if kind == "gaps":
                x[rng.random(length) < 0.1] = np.nan
                x[t0 : t0 + 9] = np.nan  # a long gap
                x[rng.integers(0, length, 2)] = np.inf  # inf means "no value" too
            elif kind == "ties":
                x = np.round(x, 1)
                x[t0 : t0 + 20] = x[t0]  # a flat stretch
            out.append(x)
    return out


def _fail(rule: Any, check: str, message: str) -> None:
    raise AssertionError(f"{type(rule).__name__} fails {check}: {message}")


def _same(a: Any, b: Any) -> bool:
    """Equal arrays, NaN equal to NaN (scores are compared bit for bit)."""
    return np.array_equal(np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64), equal_nan=True)


def _thresholds(rule: AlarmRule, series: list[np.ndarray]) -> list[float]:
    """Score thresholds at the 10th, 50th and 90th percentile of the distinct finite scores.

    All below the largest score, so that every one of them lets some record exceed (and a
    p-value threshold never sits at the smallest attainable p).
    """
    scores = np.concatenate([rule.scores(x) for x in series])
    distinct = np.unique(scores[np.isfinite(scores)])
    if distinct.size < 2:
        _fail(rule, "threshold sweep", f"{distinct.size} distinct finite score(s) on the test series; "
                                       "the rule never scores them")
    below = distinct[:-1]
    return sorted({float(below[int(q * (below.size - 1))]) for q in (0.1, 0.5, 0.9)})


def _run_online(rule: AlarmRule, x: np.ndarray, online: Any = None) -> tuple[list[bool], list[float], Any]:
    online = rule.online() if online is None else online
    decisions, scores = [], []
    for i, v in enumerate(x):
        decisions.append(online.update(None if i % 2 and np.isnan(v) else v))  # None means missing too
        scores.append(online.last_score)
    return decisions, scores, online


def check_declarations(rule: AlarmRule, series: list[np.ndarray]) -> None:
    cls, names = type(rule), type(rule)._param_names()
    if not isinstance(cls.name, str) or not cls.name:
        _fail(rule, "declarations", "no registry name (class attribute `name`)")
    if cls.threshold_param not in names:
        _fail(rule, "declarations", f"threshold_param {cls.threshold_param!r} is not a constructor parameter")
    if set(cls._constraints) != set(names):
        _fail(rule, "declarations", f"_constraints must declare every constructor parameter ({', '.join(names)}); "
                                    f"it declares {', '.join(cls._constraints) or 'none'}")
    if "persistence" not in cls.record_params or not set(cls.record_params) <= set(names):
        _fail(rule, "declarations", f"record_params must name constructor parameters, persistence among them; "
                                    f"got {cls.record_params!r}")
    if any(isinstance(m, bool) or not isinstance(m, int) or m < 1 for m in cls.record_params.values()):
        _fail(rule, "declarations", f"record_params minimums must be ints >= 1; got {cls.record_params!r}")
    if rule._check().get("persistence") != rule.persistence:
        _fail(rule, "declarations", "_check() does not return the persistence")


def check_params_round_trip(rule: AlarmRule, series: list[np.ndarray]) -> None:
    params = rule.get_params()
    if list(params) != type(rule)._param_names():
        _fail(rule, "get/set_params", "get_params does not return the constructor parameters")
    rebuilt = type(rule)(**params)
    if rebuilt.get_params() != params or rebuilt != rule:
        _fail(rule, "get/set_params", "the constructor changed the parameters it was given")
    other = type(rule)()
    if other.set_params(**params) is not other or other != rule:
        _fail(rule, "get/set_params", "set_params(**get_params()) does not give an equal rule (or return it)")
    copy = rule.clone()
    if copy is rule or copy != rule or not _same(copy.scores(series[0]), rule.scores(series[0])):
        _fail(rule, "get/set_params", "clone() is not an equal, separate rule")
    try:
        rule.clone().set_params(__not_a_parameter__=1)
    except ProbekitUsageError as exc:
        if "Invalid parameter '__not_a_parameter__'" not in str(exc):
            _fail(rule, "get/set_params", f"an unknown parameter gave {exc}")
    else:
        _fail(rule, "get/set_params", "set_params accepted an unknown parameter")


def check_parameter_validation(rule: AlarmRule, series: list[np.ndarray]) -> None:
    from probekit.testing import _bad_values

    owner, params = type(rule).__name__, rule.get_params()
    for name, constraint in type(rule)._constraints.items():
        for bad in _bad_values(constraint):
            broken = type(rule)(**params).set_params(**{name: bad})  # construction only stores
            template = rf"The '{name}' parameter of {owner} must be .+\. Got {re.escape(repr(bad))} instead\."
            for where, use in (("scores", lambda r: r.scores(series[0])), ("online", lambda r: r.online())):
                try:
                    use(broken)
                except ProbekitUsageError as exc:
                    if not re.fullmatch(template, str(exc)):
                        _fail(rule, "parameter validation", f"{name}={bad!r} in {where}() raised {str(exc)!r}, "
                                                            "not the one error template (probekit/params.py)")
                else:
                    _fail(rule, "parameter validation", f"{name}={bad!r} was accepted by {where}()")


def check_missing_values(rule: AlarmRule, series: list[np.ndarray]) -> None:
    for x in series:
        before = x.copy()
        s = rule.scores(x)
        if not np.array_equal(x, before, equal_nan=True):
            _fail(rule, "missing values", "scores() changed its input")
        if s.shape != x.shape or s.dtype != np.float64 or not _same(rule.scores(x), s):
            _fail(rule, "missing values", "scores() is not one float64 per record, the same on every call")
        missing = ~np.isfinite(x)
        if not np.isnan(s[missing]).all() or rule.exceedances(x)[missing].any():
            _fail(rule, "missing values", "a missing record (NaN or inf) has a score")
        as_nan = np.where(missing, np.nan, x)
        as_none = [None if m else v for m, v in zip(missing, x)]
        if not _same(rule.scores(as_nan), s) or not _same(rule.scores(as_none), s):
            _fail(rule, "missing values", "NaN, inf and None do not all mean 'no value at this record'")
    if rule.scores([]).shape != (0,) or rule.alarms([]).tolist() != []:
        _fail(rule, "missing values", "an empty series does not give empty scores and no alarm")
    try:
        rule.scores(np.ones((3, 2)))
    except ProbekitUsageError:
        pass
    else:
        _fail(rule, "missing values", "a 2-D array was accepted as a series")


def check_online_equals_offline(rule: AlarmRule, series: list[np.ndarray]) -> None:
    fired = 0
    for h in [rule.score_threshold, *_thresholds(rule, series)]:
        at_h = rule.with_score_threshold(h)
        for i, x in enumerate(series):
            decisions, scores, online = _run_online(at_h, x)
            expected = at_h.alarms(x).tolist()
            if not _same(scores, at_h.scores(x)):
                _fail(rule, "online = offline", f"online scores differ from scores() on series {i} (h={h!r})")
            if online.alarms != expected or np.flatnonzero(decisions).tolist() != expected:
                _fail(rule, "online = offline", f"online alarms {online.alarms} != offline {expected} "
                                                f"on series {i} (h={h!r})")
            fired += len(expected)
    if not fired:
        _fail(rule, "online = offline", "no alarm fired at any threshold: the comparison was vacuous")


def check_threshold_monotonicity(rule: AlarmRule, series: list[np.ndarray]) -> None:
    """Raising the threshold never adds alarm time: the scores do not depend on it, the records in
    alarm condition (``persistence`` records running above it) shrink, every alarm falls where the
    condition held at the lower threshold, and the first alarm never comes earlier. (The *count*
    of alarms may grow: a higher threshold can split one long run into two.)"""
    hs = _thresholds(rule, series)
    for i, x in enumerate(series):
        base_scores, base_persistent = rule.scores(x), rule.persistent_scores(x)
        previous = None
        for h in hs:
            at_h = rule.with_score_threshold(h)
            if not np.isclose(at_h.score_threshold, h, rtol=1e-12, atol=1e-12):
                _fail(rule, "threshold monotonicity", f"with_score_threshold({h!r}).score_threshold is "
                                                      f"{at_h.score_threshold!r}")
            s, ps = at_h.scores(x), at_h.persistent_scores(x)
            if not _same(s, base_scores) or not _same(ps, base_persistent):
                _fail(rule, "threshold monotonicity", f"the scores change with the threshold (series {i})")
            with np.errstate(invalid="ignore"):
                exceed, condition = s > at_h.score_threshold, ps > at_h.score_threshold
            starts = np.flatnonzero(condition & ~np.r_[False, condition[:-1]]).tolist()
            if not np.array_equal(at_h.exceedances(x), exceed) or at_h.alarms(x).tolist() != starts:
                _fail(rule, "threshold monotonicity", "alarms are not where `persistence` consecutive scores "
                                                      f"first exceed the threshold (series {i}, h={h!r}), which "
                                                      "calibrate needs")
            if previous is not None:
                cond_lo, starts_lo = previous
                if (condition & ~cond_lo).any() or not cond_lo[np.asarray(starts, dtype=np.int64)].all():
                    _fail(rule, "threshold monotonicity", f"raising the threshold to {h!r} added alarm time "
                                                          f"(series {i})")
                if starts and (not starts_lo or starts[0] < starts_lo[0]):
                    _fail(rule, "threshold monotonicity", f"raising the threshold to {h!r} made the first alarm "
                                                          f"earlier (series {i})")
            previous = (condition, starts)


def check_calibration(rule: AlarmRule, series: list[np.ndarray]) -> None:
    from probekit.alarms.calibrate import calibrate

    with warnings.catch_warnings():  # e.g. a p-value threshold that can never alarm: still a valid result
        warnings.simplefilter("ignore", ProbekitWarning)
        result = calibrate(rule, series, target_rate=0.5)
        rate = np.mean([result.rule.alarms(x).size > 0 for x in series])
    expected = {**rule.get_params(), rule.threshold_param: result.rule.get_params()[rule.threshold_param]}
    if type(result.rule) is not type(rule) or result.rule.get_params() != expected:
        _fail(rule, "calibration", "calibrate changed more than the threshold parameter")
    if result.achieved_rate != rate or rate > 0.5:
        _fail(rule, "calibration", f"calibrate reports a rate of {result.achieved_rate}, the calibrated rule "
                                   f"alarms on {rate} of the runs (target 0.5)")


def check_state_round_trip(rule: AlarmRule, series: list[np.ndarray]) -> None:
    at_h = rule.with_score_threshold(_thresholds(rule, series)[1])
    for i, x in enumerate(series[: len(KINDS)]):
        whole_decisions, whole_scores, whole = _run_online(at_h, x)
        for cut in (1, len(x) // 3, 2 * len(x) // 3):
            _, _, first = _run_online(at_h, x[:cut])
            saved = json.loads(json.dumps(first.state_dict()))  # plain data, NaN included
            second = at_h.online()
            second.load_state_dict(saved)
            decisions, scores, _ = _run_online(at_h, x[cut:], second)
            same = decisions == whole_decisions[cut:] and _same(scores, whole_scores[cut:])
            if not same or second.alarms != whole.alarms:
                _fail(rule, "state round trip", f"state_dict -> json -> load_state_dict at record {cut} changed the "
                                                f"decisions that follow (series {i})")
        whole.reset()
        if whole.n_records or whole.alarms or _run_online(at_h, x, whole)[0] != whole_decisions:
            _fail(rule, "state round trip", "reset() does not give a fresh online alarm")


def check_picklable(rule: AlarmRule, series: list[np.ndarray]) -> None:
    x, cut = series[1], len(series[1]) // 2
    clone = pickle.loads(pickle.dumps(rule))
    if clone != rule or not _same(clone.scores(x), rule.scores(x)):
        _fail(rule, "picklable", "a pickled copy scores differently")
    whole_decisions, _, _ = _run_online(rule, x)
    _, _, first = _run_online(rule, x[:cut])
    decisions, _, _ = _run_online(rule, x[cut:], pickle.loads(pickle.dumps(first)))
    if decisions != whole_decisions[cut:]:
        _fail(rule, "picklable", "a pickled online alarm decides differently")


def check_coarse_params(rule: AlarmRule, series: list[np.ndarray]) -> None:
    params, declared = rule.get_params(), type(rule).record_params
    if rule.coarse_params(1) != params:
        _fail(rule, "coarse params", "coarse_params(1) changed the parameters")
    for k in (2, 3, 8, 48, 10**6):
        coarse = rule.coarse_params(k)
        for name, value in params.items():
            new = coarse[name]
            if name not in declared or value is None:
                ok = new == value
            else:  # a count of records: divided by k, down to the declared minimum, never raised
                ok = isinstance(new, int) and min(value, declared[name]) <= new <= value
            if not ok:
                _fail(rule, "coarse params", f"coarse_params({k}) gives {name}={new!r} from {value!r}")
        type(rule)(**coarse)._check()  # the coarse rule is valid
    try:
        rule.coarse_params(0)
    except ProbekitUsageError as exc:
        expected = (f"The 'k' parameter of {type(rule).__name__}.coarse_params must be an int in the range "
                    "[1, inf). Got 0 instead.")
        if str(exc) != expected:
            _fail(rule, "coarse params", f"coarse_params(0) gave {str(exc)!r}")
    else:
        _fail(rule, "coarse params", "coarse_params(0) was accepted")


def check_registry_round_trip(rule: AlarmRule, series: list[np.ndarray]) -> None:
    from probekit.alarms import ALARM_RULES, make_rule
    from probekit.registry import ALARMS

    name = type(rule).name
    if name not in ALARMS.names():
        _fail(rule, "registry round trip", f"{name!r} is not registered")
    if ALARMS.load(name) is not type(rule) or ALARM_RULES[name] is not type(rule):
        _fail(rule, "registry round trip", f"the registry maps {name!r} to another class")
    rebuilt = make_rule(name, **rule.get_params())
    if rebuilt != rule or rebuilt.alarms(series[1]).tolist() != rule.alarms(series[1]).tolist():
        _fail(rule, "registry round trip", "make_rule(name, **get_params()) gives another rule")


ALARM_CHECKS: list[Callable[[AlarmRule, list[np.ndarray]], None]] = [
    check_declarations,
    check_params_round_trip,
    check_parameter_validation,
    check_missing_values,
    check_online_equals_offline,
    check_threshold_monotonicity,
    check_calibration,
    check_state_round_trip,
    check_picklable,
    check_coarse_params,
    check_registry_round_trip,
]


def check_alarm_rule(rule: AlarmRule, series: list[np.ndarray] | None = None) -> None:
    """Run every check; the first failure raises AssertionError."""
    series = make_test_series() if series is None else series
    for check in ALARM_CHECKS:
        check(rule, series)
