"""Every registered alarm rule passes the conformance suite (found through the registry); a new
rule registered only through an entry point passes it and is usable by name; the suite catches
broken rules; coarser record grids rescale exactly the declared record counts."""
from __future__ import annotations

import inspect
import json
import re
import tomllib
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest

from probekit.alarms import ALARM_RULES, KendallTrend, RobustZScore, RunningMinRatio, make_rule
from probekit.alarms.base import AlarmRule
from probekit.errors import ProbekitUsageError
from probekit.params import Interval
from probekit.registry import ALARMS, BUILTIN_ALARM_RULES
from probekit.testing import ALARM_CHECKS, check_alarm_rule, make_test_series

ROOT = Path(__file__).resolve().parents[1]
SERIES = make_test_series()


@pytest.mark.parametrize("check", ALARM_CHECKS, ids=lambda c: c.__name__.removeprefix("check_"))
@pytest.mark.parametrize("name", ALARMS.names())
def test_registered_rule_conforms(name, check):
    check(ALARMS.load(name).example(), SERIES)


def test_builtin_table_equals_pyproject_entry_points():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["entry-points"]["probekit.alarm_rules"] == BUILTIN_ALARM_RULES
    assert ALARMS.names() == sorted(BUILTIN_ALARM_RULES) == list(ALARM_RULES)


def test_registry_refuses_duplicates_and_suggests_names():
    with pytest.raises(ProbekitUsageError, match=r"^The alarm rule 'zscore' is already registered"):
        ALARMS.register("zscore", RunningMinRatio)
    with pytest.raises(ProbekitUsageError,
                       match=r"^Unknown alarm rule 'running-mn'\. Did you mean: running-min\? "
                             r"Available: kendall, running-min, zscore\.$"):
        make_rule("running-mn")
    with pytest.raises(KeyError):
        ALARM_RULES["running-mn"]
    with pytest.raises(TypeError):
        ALARM_RULES["mine"] = RunningMinRatio  # a read-only view: rules register through the registry


# --------------------------------------------------------------------------- coarser grids


def test_coarse_params_divide_the_declared_record_counts():
    assert RunningMinRatio(memory=64, min_history=12).coarse_params(8) == {
        "ratio": 10.0, "persistence": 1, "min_history": 1, "memory": 8}
    assert RobustZScore(min_baseline=20).coarse_params(4) == {
        "baseline": 12, "threshold": 4.0, "persistence": 1, "transform": "log", "min_baseline": 5}
    assert KendallTrend(persistence=7).coarse_params(2) == {
        "window": 25, "alpha": 0.05, "n_surrogates": 500, "persistence": 3, "transform": "log", "seed": 0}
    assert RobustZScore(baseline=5).coarse_params(2)["baseline"] == 5  # below the minimum: kept, never raised
    assert RunningMinRatio().coarse_params(1) == RunningMinRatio().get_params()
    with pytest.raises(ProbekitUsageError, match=r"^The 'k' parameter of RobustZScore\.coarse_params must be an int "
                                                 r"in the range \[1, inf\)\. Got 0 instead\.$"):
        RobustZScore().coarse_params(0)
    with pytest.raises(ProbekitUsageError, match=r"The 'memory' parameter of RunningMinRatio"):
        RunningMinRatio(memory=0).coarse_params(4)


# The checkpoint rules of the committed benchmark (docs/bench/results.json: default preset, strides
# 8/16/28/48) and of the small preset's strides (4/5/6/10/12), as eval/peers/scoring.py computed them when it
# rescaled by rule name (persistence 1; z-score baseline max(8, 50 // k); memory max(4, memory // k)).
CHECKPOINT_RULES = [
    *[(("running-min", ()), k, (("persistence", 1),)) for k in (4, 5, 6, 8, 10, 12, 16, 28, 48)],
    *[(("running-min", (("memory", 64),)), k, (("memory", m), ("persistence", 1)))
      for k, m in ((4, 16), (5, 12), (6, 10), (8, 8), (10, 6), (12, 5), (16, 4), (28, 4), (48, 4))],
    *[(("zscore", (("transform", t),)), k, (("baseline", b), ("persistence", 1), ("transform", t)))
      for t in ("log", "none")
      for k, b in ((4, 12), (5, 10), (6, 8), (8, 8), (10, 8), (12, 8), (16, 8), (28, 8), (48, 8))],
    (("zscore", ()), 4, (("baseline", 12), ("persistence", 1))),
    (("zscore", (("baseline", 200), ("threshold", 3.0))), 16,
     (("baseline", 12), ("persistence", 1), ("threshold", 3.0))),
]


@pytest.mark.parametrize("rule,stride,expected", CHECKPOINT_RULES, ids=str)
def test_checkpoint_rule_reproduces_the_rescaling_by_name(rule, stride, expected):
    from probekit.eval.bench import RuleSpec
    from probekit.eval.peers.scoring import checkpoint_rule

    assert checkpoint_rule(RuleSpec(*rule), stride) == RuleSpec(rule[0], expected)


def test_checkpoint_rule_rescales_every_declared_record_count():
    from probekit.eval.bench import RuleSpec
    from probekit.eval.peers.scoring import checkpoint_rule

    # Kendall's window counts records too; the rescaling by name kept it at 50 checkpoints, more
    # than a run has (~25), so Kendall never scored a peer. Persistence 1 is its default already.
    assert checkpoint_rule(RuleSpec("kendall"), 16) == RuleSpec("kendall", (("window", 8),))
    # An explicit min_baseline follows its baseline down (it was kept, above the new baseline).
    assert checkpoint_rule(RuleSpec("zscore", (("min_baseline", 10),)), 8) == RuleSpec(
        "zscore", (("baseline", 8), ("min_baseline", 2), ("persistence", 1)))


# --------------------------------------------------------------------------- a new rule
# The example of CONTRIBUTING.md ("Adding an alarm rule"), verbatim; a test keeps the two equal.


class ExceedsFirst(AlarmRule):
    """Alarm when the signal exceeds ``factor`` times its first value."""

    name: ClassVar[str] = "exceeds-first"
    threshold_param: ClassVar[str] = "factor"          # calibrate() sweeps it; score > factor exceeds
    _constraints: ClassVar[dict[str, Any]] = {          # every parameter, checked when work starts
        "factor": Interval(float, 0, None, closed="neither"),
        "persistence": Interval(int, 1, None),
    }
    record_params: ClassVar[dict[str, int]] = {"persistence": 1}  # counts records (minimum on a coarser grid)

    def __init__(self, *, factor: float = 5.0, persistence: int = 2) -> None:   # only store
        self.factor = factor
        self.persistence = persistence

    def _scores(self, x: np.ndarray, p: dict[str, Any]) -> np.ndarray:   # x: [records] float64, NaN = missing
        seen = np.flatnonzero(~np.isnan(x))
        first = x[seen[0]] if seen.size else np.nan
        with np.errstate(divide="ignore", invalid="ignore"):
            return x / first

    def _online_state(self, p: dict[str, Any]) -> dict[str, Any]:   # bounded, plain data (state_dict is JSON)
        return {"first": float("nan")}

    def _online_score(self, state: dict[str, Any], x: float, p: dict[str, Any]) -> float:
        if np.isnan(state["first"]):
            state["first"] = x                       # stays NaN while the records are missing
        with np.errstate(divide="ignore", invalid="ignore"):
            return float(np.float64(x) / state["first"])   # the offline division, on one value


class _EntryPoint:
    def __init__(self, name: str, value: str, dist: str) -> None:
        self.name, self.value = name, value
        self.dist = type("Dist", (), {"name": dist})()


@pytest.fixture()
def exceeds_first(monkeypatch):
    """ExceedsFirst installed the way a third-party package installs it: one entry point."""
    from importlib import metadata

    real = metadata.entry_points
    ep = _EntryPoint("exceeds-first", f"{__name__}:ExceedsFirst", "my-alarm-rules")
    monkeypatch.setattr(metadata, "entry_points",
                        lambda **kw: [*real(**kw), ep] if kw.get("group") == ALARMS.group else real(**kw))
    monkeypatch.setattr(ALARMS, "_targets", None)  # discover again, with the new entry point
    monkeypatch.setattr(ALARMS, "_loaded", {})
    return ExceedsFirst


def test_new_rule_is_found_through_its_entry_point(exceeds_first):
    assert "exceeds-first" in ALARMS.names() and ALARM_RULES["exceeds-first"] is exceeds_first
    assert ALARMS.names() == sorted([*BUILTIN_ALARM_RULES, "exceeds-first"])  # the built-ins still there
    assert make_rule("exceeds-first", factor=3.0) == exceeds_first(factor=3.0)
    with pytest.raises(ProbekitUsageError,
                       match=r"^Unknown alarm rule 'exceeds-frist'\. Did you mean: exceeds-first\?"):
        make_rule("exceeds-frist")


def test_new_rule_passes_the_suite(exceeds_first):
    check_alarm_rule(exceeds_first.example())


def test_new_rule_scores_against_a_plain_loop():
    x = [np.nan, 2.0, 3.0, np.nan, 11.0, 12.0, 1.0]
    expected = [np.nan, 1.0, 1.5, np.nan, 5.5, 6.0, 0.5]
    np.testing.assert_array_equal(ExceedsFirst().scores(x), expected)
    assert ExceedsFirst().alarms(x).tolist() == [5]  # 5.5 and 6.0 exceed 5, two records running
    assert ExceedsFirst().coarse_params(4) == {"factor": 5.0, "persistence": 1}


def _planted_losses(records=160, probes=24, onset=100):
    """Quiet noise, then a third of the probes drift together from ``onset``: SHC rises."""
    rng = np.random.default_rng(0)
    x = 2.0 + 0.01 * rng.normal(size=(records, probes))
    x[:, : probes // 3] += 0.05 * np.clip(np.arange(records) - onset, 0, None)[:, None]
    return x


def test_new_rule_by_name_in_probekit_analyze(exceeds_first, tmp_path, capsys):
    from probekit.cli import main
    from probekit.rdm import rdm_series

    x = _planted_losses()
    np.save(tmp_path / "losses.npy", x)
    out = tmp_path / "out"
    code = main(["analyze", str(tmp_path / "losses.npy"), "--alarm", "exceeds-first", "--alarm-param", "factor=50",
                 "--window", "16", "--no-plot", "--out-dir", str(out)])
    assert code == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["alarm_rule"] == "exceeds-first" and summary["alarm_params"]["factor"] == 50
    shc = rdm_series(x, window=16).shc
    first = shc[np.isfinite(shc)][0]
    run, expected = 0, []
    for t, v in enumerate(shc):  # an alarm where two records running first exceed 50x the first value
        run = run + 1 if v > 50 * first else 0
        if run == 2:
            expected.append(t)
    assert [a["record"] for a in summary["alarms"]] == expected and len(expected) == 1
    assert "alarm rule exceeds-first" in capsys.readouterr().out


def test_new_rule_by_name_in_the_monitor(exceeds_first):
    torch = pytest.importorskip("torch")
    from probekit.monitor import Monitor

    script = _planted_losses()
    calls = {"i": 0}

    def scripted(model, batch):  # the probes' losses are read from the script, not the model
        calls["i"] += 1
        return torch.as_tensor(script[calls["i"] - 1])

    records = []
    sink = type("Sink", (), {"write": lambda self, r: records.append(r)})()
    mon = Monitor(torch.nn.Linear(1, 1), torch.zeros(script.shape[1], 1), scripted, every=1, window=16,
                  alarm="exceeds-first", sinks=[sink])
    assert isinstance(mon.alarm_rule, exceeds_first)
    for step in range(len(script)):
        mon.step(step)
    signal = [r.shc if r.ready else None for r in records]
    expected = exceeds_first().alarms(signal).tolist()
    assert [i for i, r in enumerate(records) if r.alarm] == expected and expected
    assert mon.alarm_steps == expected  # one record per step


def test_contributing_shows_the_tested_rule():
    text = (ROOT / "CONTRIBUTING.md").read_text()
    section = text[text.index("## Adding an alarm rule"):]
    code = next(b for b in re.findall(r"```python\n(.*?)```", section, re.S) if "class ExceedsFirst" in b)
    assert inspect.getsource(ExceedsFirst) in code
    namespace: dict = {"__name__": "contributing_alarm_example"}
    exec(compile(code, "CONTRIBUTING.md", "exec"), namespace)  # its imports are complete
    assert namespace["ExceedsFirst"]().alarms([1.0, 6.0, 7.0]).tolist() == [2]
    assert 'exceeds-first = "my_package.exceeds_first:ExceedsFirst"' in section


# --------------------------------------------------------------------------- the suite catches


class _ThresholdLeaks(ExceedsFirst):
    def _scores(self, x, p):  # the score depends on the threshold
        return super()._scores(x, p) - 0.1 * self.factor


class _OnlineDrifts(ExceedsFirst):
    def _online_score(self, state, x, p):  # rounds differently from the offline division
        return super()._online_score(state, x, p) * (1 + 1e-15)


class _StateForgets(ExceedsFirst):
    def _online_state(self, p):
        return {}

    def _online_score(self, state, x, p):  # keeps the first value outside the saved state
        if not hasattr(self, "_first") or np.isnan(self._first):
            self._first = x
        return float(np.float64(x) / self._first)


class _Unchecked(ExceedsFirst):
    def _check(self):  # declares its table but never checks it
        return self.get_params()


class _OwnMessage(ExceedsFirst):
    def _check(self):
        if isinstance(self.factor, (int, float)) and self.factor <= 0:
            raise ProbekitUsageError("factor must be positive")
        return super()._check()


class _NoRecordParams(ExceedsFirst):
    record_params: ClassVar[dict[str, int]] = {}


@pytest.mark.parametrize("broken,check,match", [
    (_ThresholdLeaks, "threshold_monotonicity", "the scores change with the threshold"),
    (_OnlineDrifts, "online_equals_offline", "online scores differ"),
    (_StateForgets, "state_round_trip", "changed the decisions that follow"),
    (_Unchecked, "parameter_validation", r"factor=-1000000000 was accepted by scores\(\)"),
    (_OwnMessage, "parameter_validation", "not the one error template"),
    (_NoRecordParams, "declarations", "record_params must name constructor parameters, persistence among them"),
], ids=lambda v: v.__name__ if isinstance(v, type) else None)
def test_the_suite_catches_a_broken_rule(broken, check, match):
    by_name = {c.__name__.removeprefix("check_"): c for c in ALARM_CHECKS}
    with pytest.raises(AssertionError, match=rf"^{broken.__name__} fails .*{match}"):
        by_name[check](broken(), SERIES)
