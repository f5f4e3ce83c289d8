"""Detection beside warning, at the same matched threshold; the pilot span; cells of schema 3 reading 1 and 2.

Every answer here is known exactly: persistent scores are planted by hand, or the signal is a step that
the running-minimum rule (persistence 3) turns into one alarm two records after the step.
"""
from __future__ import annotations

import json

import numpy as np
import pytest

from probekit.alarms import make_rule
from probekit.errors import ProbekitUsageError
from probekit.eval.families.base import Transition
from probekit.eval.scoring.design_score import RunSignal, score_signals
from probekit.eval.scoring.lead import Episode, episodes, sweep
from probekit.eval.scoring.signals import SignalSpec

EP = Episode("a", start=20, window_start=40, onset=60, midpoint=70)  # quiet [20, 40), hit window [40, 60]


def _t(name, onset, mid):
    return Transition(name, onset, mid, 0.0, 1.0, "rule")


def _scores(**at):
    """Persistent scores of 100 records: 0, and each given record on raised to the given value."""
    ps = np.zeros(100)
    for record, value in sorted(at.items(), key=lambda kv: int(kv[0][1:])):
        ps[int(record[1:]):] = value
    return ps


NULLS = [np.full(100, 1.0), np.full(100, 2.0)]  # quiet units whose largest score is 2: the 0%-FAR threshold


@pytest.mark.parametrize("planted, lead, latency", [
    (dict(r45=5.0), 15, -15),  # a precursor in the hit window: a warning, and a detection 15 records early
    (dict(r60=5.0), 0, 0),  # at the onset record: a warning with lead 0, a detection with latency 0
    (dict(r64=5.0), None, 4),  # after the onset, before the midpoint: no warning, a detection 4 records late
    (dict(r70=5.0), None, 10),  # at the midpoint record: still detected
    (dict(r71=5.0), None, None),  # after the midpoint: neither
    (dict(r25=5.0, r40=0.0), None, None),  # an alarm only in the quiet period: a false alarm, not a detection
])
def test_warning_and_detection_of_a_planted_alarm(planted, lead, latency):
    curve = sweep([(_scores(**planted), EP)], NULLS)
    point = curve.at_far(0.0)
    quiet_alarm = "r25" in planted  # the episode's own quiet period then alarms at any threshold below 5
    assert point["far"] == 0.0 and point["threshold"] == (5.0 if quiet_alarm else 2.0)
    assert point["leads"] == [lead] and point["detection"] == (lead is not None)
    assert point["latencies"] == [latency] and point["detected"] == (latency is not None)
    if latency is None:
        assert point["median_latency"] is None and point["mean_latency_fraction"] is None
        assert point["latency_fractions"] == [None]
    else:
        assert point["median_latency"] == latency
        assert point["mean_latency_fraction"] == pytest.approx(latency / 10)  # onset to midpoint: 10 records
        assert point["latency_fractions"] == [pytest.approx(latency / 10)]


def test_first_alarms_at_every_threshold_and_the_detection_curve():
    # 3 from record 45 (a weak precursor), 8 from record 65 (after the onset): two thresholds give two answers
    ps = _scores(r45=3.0, r65=8.0)
    curve = sweep([(ps, EP)], [np.full(100, 1.0)])
    k = {float(h): i for i, h in enumerate(curve.thresholds)}
    assert curve.first_alarms[0, k[1.0]] == 45 and curve.first_alarms[0, k[3.0]] == 65
    assert curve.detected[k[3.0]] == 1.0 and curve.detection[k[3.0]] == 0.0  # detected, not warned
    assert curve.median_latency[k[1.0]] == -15 and curve.median_latency[k[3.0]] == 5
    assert curve.first_alarms.shape == curve.episode_leads.shape
    assert 8.0 not in k  # a value after the onset adds no threshold: the curve is the warning sweep's
    # two episodes, one detected: the rate is over episodes, latencies over the detected
    two = sweep([(ps, EP), (np.zeros(100), EP)], [np.full(100, 1.0)])
    assert two.at_far(0.0)["detected"] == 0.5 and two.at_far(0.0)["latencies"] == [-15, None]
    assert two.at_far(0.0)["mean_latency_fraction"] == pytest.approx(-1.5)


def _step_run(name, seed, step, onset=60, mid=70, records=100, with_transition=True):
    """A signal of 1 that jumps to 100 at record ``step`` (never if None); record r is step 10 r."""
    signal = np.ones(records)
    if step is not None:
        signal[step:] = 100.0
    transitions = (_t("x", onset * 10, mid * 10),) if with_transition else ()
    return RunSignal(name, seed, signal, np.arange(records) * 10, transitions)


def test_end_to_end_detection_latency_per_episode_and_per_seed():
    rule = make_rule("running-min")  # ratio to the running minimum, persistence 3: alarm 2 records after a step
    runs = [_step_run("fam", 0, 52), _step_run("fam", 1, 62), _step_run("fam", 2, 80)]  # early, late, after mid
    nulls = [_step_run("fam-null", s, None, with_transition=False) for s in range(3)]
    score = score_signals(runs, nulls, spec=SignalSpec("shc", window=16), rule=rule)
    s = score.summary()
    at = s["at_far_5pct"]
    assert at["far"] == 0.0 and at["leads"] == [6, None, None] and at["latencies"] == [-6, 4, None]
    assert at["detected"] == pytest.approx(2 / 3) and at["detection"] == pytest.approx(1 / 3)
    assert at["median_latency"] == -1.0 and at["mean_latency_fraction"] == pytest.approx((-0.6 + 0.4) / 2)
    assert [(b["seed"], b["hits"], b["detected"], b["median_latency"]) for b in s["at_far_5pct_by_seed"]] == [
        (0, 1, 1, -6.0), (1, 0, 1, 4.0), (2, 0, 0, None)]
    assert s["at_far_5pct_by_seed"][1]["mean_latency_fraction"] == pytest.approx(0.4)
    assert (s["quiet_units"], s["null_runs"]) == (6, 3)  # 3 null runs + 3 quiet periods
    assert s["fixed_threshold"]["detected"] == 2  # the rule's own threshold: the same alarms
    rows = score.episode_rows()
    assert [(r["outcome"], r["lead"], r["latency"], r["onset_to_midpoint"]) for r in rows] == [
        ("hit", 6, -6, 10), ("late", None, 4, 10), ("miss", None, None, 10)]
    assert "detected" in s["curve"] and len(s["curve"]["detected"]) == len(s["curve"]["far"])


def test_latencies_are_in_trajectory_records_whatever_the_stride():
    rule = make_rule("running-min")
    runs = [_step_run("fam", 0, 32, onset=30, mid=35)]  # on a stride-2 grid: record r is trajectory record 2 r
    nulls = [_step_run("fam-null", 0, None, with_transition=False)]
    score = score_signals(runs, nulls, spec=SignalSpec("shc", window=16, stride=2), rule=rule)
    at = score.at_5
    assert at["latencies"] == [(34 - 30) * 2] and at["median_latency"] == 8
    assert at["latency_fractions"] == [pytest.approx(4 / 5)]  # a fraction: the same on either grid
    assert score.episode_rows()[0]["onset_to_midpoint"] == 10


# -- the pilot span ------------------------------------------------------------------------------
def test_episodes_start_after_the_pilot():
    steps = np.arange(0, 200, 2)  # record i is step 2i
    ts = [_t("a", 120, 140), _t("b", 160, 180)]  # onsets at records 60 and 80, midpoints 70 and 90
    assert episodes(steps, ts, defined_from=20, pilot=0) == episodes(steps, ts, defined_from=20)
    assert episodes(steps, ts, defined_from=20, pilot=5) == episodes(steps, ts, defined_from=20)  # inside defined_from
    assert episodes(steps, ts, 0, pilot=30) == [Episode("a", 30, 45, 60, 70), Episode("b", 70, 75, 80, 90)]
    # an onset inside the pilot is not scored; its midpoint still starts the next episode
    assert episodes(steps, ts, 0, pilot=60) == [Episode("b", 70, 75, 80, 90)]
    assert episodes(steps, ts, 0, pilot=75) == [Episode("b", 75, 77, 80, 90)]  # the hit window: ceil(5 / 2) = 3
    with pytest.raises(ProbekitUsageError, match=r"pilot must be an int >= 0 \(records\)\. Got -1 instead\."):
        episodes(steps, ts, 0, pilot=-1)


def test_a_pilot_is_never_scored_quiet_units_included():
    rule = make_rule("running-min")
    spike = np.ones(100)
    spike[10:14] = 100.0  # a null run that alarms only inside a 20-record pilot
    nulls = [RunSignal("fam-null", 0, spike, np.arange(100) * 10, ()),
             _step_run("fam-null", 1, None, with_transition=False)]
    runs = [_step_run("fam", 0, 52)]
    spec = SignalSpec("shc", window=16)
    plain = score_signals(runs, nulls, spec=spec, rule=rule)
    piloted = score_signals(runs, nulls, spec=spec, rule=rule, pilot=20)
    assert plain.at_5["far"] == 0.0 and plain.at_5["threshold"] == 100.0  # set above the spike: no detection
    assert plain.at_5["detected"] == 0.0
    assert piloted.at_5["threshold"] == 1.0 and piloted.at_5["latencies"] == [-6]  # the spike is not a quiet unit's
    assert plain.time_to_onset == [60] and piloted.time_to_onset == [40]  # the episode starts at the pilot
    assert [n for *_, n in plain.null_false_alarms] == [1, 0] and [n for *_, n in piloted.null_false_alarms] == [0, 0]
    # on a stride-2 grid the pilot (trajectory records) starts at the first strided record at or after it
    strided = score_signals([RunSignal("fam", 0, np.ones(50), np.arange(50) * 20, (_t("x", 600, 700),))], [],
                            spec=SignalSpec("shc", window=16, stride=2), rule=rule, pilot=21)
    assert strided.time_to_onset == [30 - 11]


def test_convergence_passes_the_pilot_to_every_size():
    from probekit.eval.scoring.convergence import convergence
    from probekit.eval.scoring.design_score import score_design

    from test_scoring import FakeTrajectory, _noise_run

    runs = [FakeTrajectory(_noise_run(s, precursor=150), [_t("x", 2000, 2100)], s) for s in range(2)]
    nulls = [FakeTrajectory(_noise_run(10 + s), [_t("x", None, None)], s, "null") for s in range(3)]
    spec = SignalSpec("shc", window=20)
    points = convergence(runs, nulls, lambda t: list(range(16)), [8], spec=spec, pilot=120)
    for p in points:
        probes = (lambda t: np.arange(16)) if p.size == 0 else (lambda t: np.arange(8))
        assert p.score.summary() == score_design(runs, nulls, probes, spec=spec, pilot=120).summary()
        assert p.score.time_to_onset == [200 - 120] * 2
    with pytest.raises(ProbekitUsageError, match=r"pilot must be an int >= 0 \(records\)\. Got 1\.5 instead\."):
        convergence(runs, nulls, lambda t: list(range(16)), [8], spec=spec, pilot=1.5)


# -- cells: schema 3 reads 1 and 2 ---------------------------------------------------------------
def _v2_point():
    return {"size": 8, "fidelity": 0.5, "signal": "s", "rule": "r", "auc": 0.1, "curve": {"far": [0.0]},
            "fixed_threshold": {"episodes": 2}, "episodes": [{"seed": 0, "lead": 4}, {"seed": 1, "lead": None}],
            "at_far_5pct": {"detection": 0.5, "far": 0.0, "mean_lead_fraction": 0.2, "median_lead": 4.0,
                            "threshold": 1.0, "leads": [4, None]},
            "at_far_5pct_by_seed": [
                {"seed": 0, "episodes": 1, "hits": 1, "median_lead": 4.0, "mean_lead_fraction": 0.4},
                {"seed": 1, "episodes": 1, "hits": 0, "median_lead": None, "mean_lead_fraction": 0.0}]}


@pytest.mark.parametrize("version", [None, 2])
def test_cells_of_schema_1_and_2_read_without_detection(version):
    from probekit.eval.bench.cells import SCHEMA_VERSION, Cell

    data = {"family": "f", "design": "random", "signal": {"statistic": "shc", "window": 16, "stride": 1,
                                                          "detrend": "none"},
            "rule": {"name": "running-min", "params": {}}, "points": [_v2_point()], "error": None}
    if version is not None:
        data["schema_version"] = version
    cell = Cell.from_json(json.loads(json.dumps(data)))
    p = cell.points[0]
    assert SCHEMA_VERSION == 3 and cell.schema_version == 3
    assert not p.has_detection and p.at_far_5pct.detected is None and p.at_far_5pct.latencies is None
    assert p.at_far_5pct.detection == 0.5 and p.at_far_5pct.leads == (4, None)  # the warning, as it was
    assert [(s.detected, s.detection_rate, s.warning_rate) for s in p.at_far_5pct_by_seed] == [
        (None, None, 1.0), (None, None, 0.0)]
    assert p.quiet_units is None and p.null_runs is None and p.n_episodes == 2
    again = Cell.from_json(cell.to_json())  # written back as version 3, with the detection fields null
    assert again == cell and cell.to_json()["schema_version"] == 3
    assert cell.to_json()["points"][0]["at_far_5pct"]["detected"] is None


def test_a_schema_3_cell_round_trips_and_a_newer_one_is_refused():
    from probekit.eval.bench.cells import Cell

    rule = make_rule("running-min")
    score = score_signals([_step_run("fam", 0, 52), _step_run("fam", 1, 62)],
                          [_step_run("fam-null", 0, None, with_transition=False)],
                          spec=SignalSpec("shc", window=16), rule=rule)
    point = {"size": 8, "fidelity": None, **score.summary(), "episodes": score.episode_rows()}
    data = {"family": "f", "design": "random", "signal": {"statistic": "shc", "window": 16, "stride": 1,
                                                          "detrend": "none"},
            "rule": {"name": "running-min", "params": {}}, "points": [point], "error": None}
    cell = Cell.from_json(json.loads(json.dumps(data)))
    p = cell.points[0]
    assert p.has_detection and p.at_far_5pct.latencies == (-6, 4) and p.at_far_5pct.detected == 1.0
    assert [s.detection_rate for s in p.at_far_5pct_by_seed] == [1.0, 1.0] and p.seed_median_latencies == [-6.0, 4.0]
    assert (p.quiet_units, p.null_runs) == (3, 1)
    assert Cell.from_json(json.loads(json.dumps(cell.to_json()))) == cell
    with pytest.raises(ProbekitUsageError, match=r"a bench cell of schema version 4: this probekit reads up to 3"):
        Cell.from_json({**data, "schema_version": 4})


@pytest.mark.parametrize("rule_name", ["running-min", "zscore"])
def test_the_sweep_agrees_with_the_rule_at_every_threshold(rule_name):
    # The sweep finds each threshold's first alarm from the persistent scores; the rule fires on a
    # rising edge. They must agree at every threshold, also when an exceedance that began in the quiet
    # period lasts into the hit window (that is the quiet period's false alarm, not a warning).
    from probekit.alarms import make_rule
    from probekit.eval.families.base import Transition
    from probekit.eval.scoring.design_score import RunSignal, score_signals
    from probekit.eval.scoring.lead import score_episode
    from probekit.eval.scoring.signals import SignalSpec

    rng = np.random.default_rng(11)
    rule = make_rule(rule_name)
    runs = []
    for seed in range(12):
        x = np.exp(np.cumsum(rng.normal(0, 0.4, 120)))  # a positive random walk: alarms come and go
        if seed % 3 == 0:
            x[40:75] *= 50  # an exceedance from the quiet period into the hit window
        runs.append(RunSignal("fam", seed, x, np.arange(120) * 10, (Transition("t", 700, 900, 0.0, 1.0, "r"),)))
    nulls = [RunSignal("null", s, np.exp(np.cumsum(rng.normal(0, 0.4, 120))), np.arange(120) * 10, ())
             for s in range(12)]
    score = score_signals(runs, nulls, spec=SignalSpec("shc", window=16), rule=rule)
    curve = score.curve
    eps = [ep for run in runs for ep in _episodes_of(run)]
    checked = 0
    for k in range(0, len(curve.thresholds), max(1, len(curve.thresholds) // 40)):
        h = curve.thresholds[k]
        if not np.isfinite(h):
            continue
        fixed = rule.with_score_threshold(h)
        for e, (run, ep) in enumerate(zip(runs, eps)):
            alarms = fixed.alarms(run.signal)
            in_span = alarms[(alarms >= ep.window_start) & (alarms <= ep.midpoint)]
            expected = int(in_span[0]) if in_span.size else -1
            assert curve.first_alarms[e, k] == expected, (rule_name, k, e)
            hit = score_episode(alarms, ep)
            assert (curve.episode_leads[e, k] >= 0) == (hit.outcome == "hit")
            checked += 1
    assert checked > 100


def _episodes_of(run):
    from probekit.eval.scoring.lead import episodes

    return episodes(run.steps, list(run.transitions), 0, 0.5)


def test_the_full_pool_signal_is_computed_once_per_trajectory(trajectory_cache, monkeypatch):
    # Every design is scored on the full pool too; it is the same for all of them, so it is cached
    # beside the trajectory (outside its verified directory) and read back identically.
    from probekit.eval.scoring import design_score
    from probekit.eval.scoring.design_score import full_pool_signal, run_signal
    from probekit.eval.scoring.signals import SignalSpec
    from probekit.eval.store.runner import load_or_record

    traj = load_or_record("deep-linear", "small", 0, cache_dir=trajectory_cache, progress=False)
    spec = SignalSpec("shc", window=8)
    expected = run_signal(traj, np.arange(traj.losses.shape[1]), spec)
    first = full_pool_signal(traj, spec)
    np.testing.assert_array_equal(first.signal, expected.signal)

    def no_compute(*args, **kwargs):
        raise AssertionError("the full pool's signal should come from the cache")

    monkeypatch.setattr(design_score, "trajectory_signal", no_compute)
    again = full_pool_signal(traj, spec)
    np.testing.assert_array_equal(again.signal, expected.signal)
    np.testing.assert_array_equal(again.steps, expected.steps)
    assert list(traj.path.parent.glob(f"{traj.path.name}.signals/full-shc-*.npz"))
    traj.verify()  # the trajectory's own directory is untouched
    monkeypatch.undo()
    other = full_pool_signal(traj, SignalSpec("shc", window=12))  # another signal: another entry
    assert not np.array_equal(np.nan_to_num(other.signal), np.nan_to_num(again.signal))
