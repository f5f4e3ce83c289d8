"""Scoring logic on planted episodes (lead known exactly) and null runs (false-alarm rate)."""
from __future__ import annotations

import numpy as np
import pytest

from probekit.alarms import make_rule
from probekit.errors import ProbekitUsageError
from probekit.eval.families.base import Transition
from probekit.eval.scoring.design_score import score_design
from probekit.eval.scoring.lead import Episode, episodes, fidelity, score_episode, sweep
from probekit.eval.scoring.signals import SignalSpec, compute_signal


def _t(name, onset, mid):
    return Transition(name, onset, mid, 0.0, 1.0, "rule")


def test_episodes_split_quiet_period_and_hit_window():
    steps = np.arange(0, 200, 2)  # record i is step 2i
    eps = episodes(steps, [_t("b", 160, 180), _t("a", 120, 140), _t("never", None, None)], defined_from=20)
    assert eps == [
        Episode("a", start=20, window_start=40, onset=60, midpoint=70),  # half of 60 - 20 records
        Episode("b", start=70, window_start=75, onset=80, midpoint=90),  # starts at a's midpoint
    ]
    with pytest.raises(ProbekitUsageError, match=r"hit_fraction must be in \(0, 1\]\. Got 0 instead\."):
        episodes(steps, [], 0, hit_fraction=0)


@pytest.mark.parametrize(
    "alarms, outcome, lead, false",
    [([30, 45, 50], "hit", 15, 1), ([60], "hit", 0, 0), ([65], "late", None, 0), ([], "miss", None, 0),
     ([75], "miss", None, 0), ([10, 25, 39], "miss", None, 2)],
)
def test_score_episode(alarms, outcome, lead, false):
    ep = Episode("a", start=20, window_start=40, onset=60, midpoint=70)
    s = score_episode(np.array(alarms), ep)
    assert (s.outcome, s.lead, s.false_alarms) == (outcome, lead, false)
    if lead is not None:
        assert s.lead_fraction == pytest.approx(lead / 40)


def _planted():
    ps = np.zeros(100)
    ps[25] = 1.0  # in the episode's quiet period
    ps[45] = 5.0  # precursor: lead 15 records
    ps[50:] = 8.0  # stronger, later: lead 10
    ep = Episode("a", start=20, window_start=40, onset=60, midpoint=70)
    nulls = [np.r_[np.full(50, np.nan), np.full(50, 3.0)], np.full(100, 6.0)]
    return [(ps, ep)], nulls


def test_sweep_on_planted_precursor_gives_the_exact_leads():
    curve = sweep(*_planted())
    point = {float(h): (f, d, m) for h, f, d, m in zip(curve.thresholds, curve.far, curve.detection, curve.median_lead)}
    assert point[3.0][:2] == (pytest.approx(1 / 3), 1.0) and point[3.0][2] == 15  # only the 6.0 null alarms
    assert point[5.0][2] == 10  # the 5.0 precursor no longer exceeds
    assert point[8.0][1] == 0.0  # nothing exceeds 8
    # detection at the same threshold: the first alarm (record 50) is 10 records before the onset, and the
    # onset-to-midpoint span is 10 records
    assert curve.at_far(0.0) == {"threshold": 6.0, "far": 0.0, "detection": 1.0, "median_lead": 10.0,
                                 "mean_lead_fraction": 0.25, "leads": [10], "detected": 1.0, "median_latency": -10.0,
                                 "mean_latency_fraction": -1.0, "latencies": [-10], "latency_fractions": [-1.0]}
    assert curve.at_far(0.34)["median_lead"] == 15.0
    # area under the best lead at each FAR: 0.25 on [0, 1/3), 0.375 on [1/3, 1]
    assert curve.auc == pytest.approx(0.25 / 3 + 0.375 * 2 / 3)
    assert (curve.n_quiet, curve.n_episodes) == (3, 1)


def test_a_unit_never_defined_never_alarms():
    curve = sweep([], [np.full(10, np.nan), np.full(10, 1.0)])
    assert curve.far[0] == 0.5 and curve.at_far(0.05)["threshold"] == 1.0


class FakeTrajectory:
    """Duck-typed Trajectory: what score_design reads."""

    def __init__(self, losses, transitions, seed, name="fake"):
        self.losses = losses
        self.steps = np.arange(losses.shape[0]) * 10
        self.baselines = {"grad_norm": np.ones(losses.shape[0])}
        self.transitions = transitions
        self.seed = seed
        self.name = name

    def probe_losses(self, probes):
        return self.losses[:, probes]


def _noise_run(seed, records=300, n=16, precursor=None):
    rng = np.random.default_rng(seed)
    x = 1.0 + 0.01 * rng.normal(size=(records, n))
    if precursor is not None:  # from this record on, half the probes fluctuate 30x more, together
        x[precursor:, : n // 2] += 0.3 * rng.normal(size=(records - precursor, 1))
    return x


def test_planted_precursor_alarms_inside_the_window_end_to_end():
    onset_record, precursor = 200, 150
    traj = FakeTrajectory(_noise_run(0, precursor=precursor), [_t("x", onset_record * 10, onset_record * 10 + 100)], 0)
    nulls = [FakeTrajectory(_noise_run(s), [_t("x", None, None)], s, "null") for s in range(1, 4)]
    spec = SignalSpec("shc", window=20)
    score = score_design([traj], nulls, lambda t: np.arange(16), spec=spec, rule=make_rule("running-min"))
    (_, _, ep_score), = score.episodes
    # the window holds the first perturbed record at `precursor`; 3 records of persistence later it fires
    assert ep_score.outcome == "hit" and precursor <= ep_score.alarm <= precursor + 20
    assert ep_score.lead == onset_record - ep_score.alarm
    assert score.at_5["detection"] == 1.0 and score.at_5["far"] == 0.0
    assert all(n == 0 for _, _, n in score.null_false_alarms)


def test_false_alarm_rate_holds_on_fresh_null_runs():
    rule = make_rule("running-min", memory=30)
    spec = SignalSpec("shc", window=20)

    def persistent(seed):
        return rule.persistent_scores(compute_signal(spec, _noise_run(seed, records=200)))

    calibration = sweep([], [persistent(s) for s in range(40)])
    h = calibration.at_far(0.05)["threshold"]
    fresh = np.array([np.nanmax(persistent(s)) > h for s in range(100, 160)])
    # 60 fresh runs at a true rate of <= 5%: more than 10 alarms has probability < 0.5%
    assert fresh.mean() <= 10 / 60


def test_signals_rise_and_scalar_baselines_are_defined():
    x = _noise_run(0, records=100)
    x[60:] *= np.linspace(1.0, 0.5, 40)[:, None]  # the mean loss drops from record 60
    drop = compute_signal(SignalSpec("mean_drop", window=10), x)
    assert drop[:60].max() < 1.05 and drop[-1] == pytest.approx(x[:60].mean(axis=1).max() / x[-1].mean())
    var = compute_signal(SignalSpec("mean_var", window=10), x)
    expected = x[:10].mean(axis=1).var(ddof=1)
    assert np.isnan(var[:9]).all() and var[9] == pytest.approx(expected)
    ar1 = compute_signal(SignalSpec("mean_ar1", window=10), x)
    assert np.nanmin(ar1) >= 0 and np.nanmax(ar1) <= 1
    shc = compute_signal(SignalSpec("shc", window=10), x)
    assert np.isnan(shc[:9]).all() and np.isfinite(shc[9:]).all()
    with pytest.raises(ProbekitUsageError, match=r"The 'statistic' field of SignalSpec must be one of shc, .*Got 'pr' instead\."):
        compute_signal(SignalSpec("pr"), x)
    with pytest.raises(ProbekitUsageError, match=r"The 'window' field of SignalSpec must be an int >= 3\. Got 2 instead\."):
        compute_signal(SignalSpec("shc", window=2), x)
    with pytest.raises(ProbekitUsageError, match=r"the 'grad_norm' signal needs the trajectory's stored gradient norms"):
        compute_signal(SignalSpec("grad_norm"), x)


def test_2rdm_signals_of_the_bench_on_windows_worked_by_hand():
    x = np.array([[0.0, 0.0], [1.0, 2.0], [2.0, 4.0], [2.0, 3.0]])
    # Window of records 0-2: Xc = [[-1, -2], [0, 0], [1, 2]], C = Xc^T Xc / 2 = [[1, 2], [2, 4]],
    # eigenvalues 5 and 0. Window of records 1-3: C = [[1/3, 1/2], [1/2, 1]], trace 4/3,
    # det 1/12, eigenvalues (4 +- sqrt(13)) / 6, ||C||_F^2 = 16/9 - 2/12 = 29/18.
    root = np.sqrt(13.0)
    expected = {
        "shc": [6.25, 13 / 36],  # Var of the two eigenvalues: ((l1 - l2) / 2)^2
        "inv_pr": [1.0, 29 / 32],  # ||C||_F^2 / (tr C)^2
        "leading_share": [1.0, (4 + root) / 8],
        "trace": [5.0, 4 / 3],
        "lambda_1": [5.0, (4 + root) / 6],
    }
    for statistic, values in expected.items():
        got = compute_signal(SignalSpec(statistic, window=3), x)
        assert np.isnan(got[:2]).all(), statistic  # the window is not full yet
        np.testing.assert_allclose(got[2:], values, rtol=1e-12, err_msg=statistic)


def test_fidelity_is_rank_correlation():
    a = np.array([np.nan, 1.0, 2.0, 3.0, 4.0])
    assert fidelity(a, a * 10 + 1) == pytest.approx(1.0)
    assert fidelity(a, -a) == pytest.approx(-1.0)
    assert np.isnan(fidelity(a[:3], a[:3]))
    assert fidelity(np.array([1.0, 2, 3, 4]), np.array([1.0, 3, 2, 4])) == pytest.approx(0.8)  # 1 - 6*2/(4*15)


def test_convergence_over_nested_prefixes_reaches_the_full_pool():
    from probekit.eval.scoring.convergence import FULL_POOL, convergence

    onset_record, precursor = 200, 150
    runs = [FakeTrajectory(_noise_run(s, precursor=precursor), [_t("x", onset_record * 10, 2100)], s) for s in range(3)]
    nulls = [FakeTrajectory(_noise_run(10 + s), [_t("x", None, None)], s, "null") for s in range(12)]
    # a ranking that puts the quiet probes (8..15) first: small prefixes see no precursor
    ranking = list(range(8, 16)) + list(range(8))
    points = convergence(runs, nulls, lambda t: ranking, [4, 8, 12], spec=SignalSpec("shc", window=20))
    assert [p.size for p in points] == [4, 8, 12, FULL_POOL]
    detection = {p.size: p.score.at_5["detection"] for p in points}
    assert detection[4] <= 1 / 3 and detection[8] <= 1 / 3  # only quiet probes: at most a chance hit
    assert detection[12] == detection[FULL_POOL] == 1.0  # 4 precursor probes are enough
    assert points[0].fidelity < 0.5 < points[2].fidelity
    with pytest.raises(ProbekitUsageError, match=r"sizes must be a list of ints >= 1\. Got \[0\] instead\."):
        convergence(runs, nulls, lambda t: ranking, [0])


def test_several_rules_score_one_signal_computed_once(monkeypatch):
    from probekit.eval.scoring import design_score
    from probekit.eval.scoring.convergence import FULL_POOL, convergence

    runs = [FakeTrajectory(_noise_run(s, precursor=150), [_t("x", 2000, 2100)], s) for s in range(2)]
    nulls = [FakeTrajectory(_noise_run(10 + s), [_t("x", None, None)], s, "null") for s in range(2)]
    spec = SignalSpec("shc", window=20)
    computed = []
    real = design_score.trajectory_signal  # what computes a signal, whichever path asks for it
    monkeypatch.setattr(design_score, "trajectory_signal", lambda t, p, s: computed.append(len(p)) or real(t, p, s))
    rules = [make_rule("running-min"), make_rule("zscore", transform="log"), make_rule("zscore", transform="none")]
    points = convergence(runs, nulls, lambda t: list(range(16)), [8], spec=spec, rules=rules)
    assert len(computed) == 2 * 4  # (prefix 8, full pool) x 4 trajectories, whatever the number of rules
    assert [(p.size, p.score.rule.name) for p in points] == [
        (8, "running-min"), (FULL_POOL, "running-min"), (8, "zscore"), (FULL_POOL, "zscore"), (8, "zscore"),
        (FULL_POOL, "zscore")]
    assert points[2].score.rule.transform == "log" and points[4].score.rule.transform == "none"
    for k, rule in enumerate(rules):  # each rule's points are what the rule alone gives
        alone = convergence(runs, nulls, lambda t: list(range(16)), [8], spec=spec, rule=rule)
        for a, b in zip(alone, points[2 * k:2 * k + 2]):
            assert a.score.summary() == b.score.summary() and a.fidelity == b.fidelity
    with pytest.raises(ProbekitUsageError, match=r"either rule= or rules=, not both"):
        convergence(runs, nulls, lambda t: [], [8], spec=spec, rule=rules[0], rules=rules)
    only_full = convergence(runs, nulls, lambda t: pytest.fail("no ranking is needed"), [], spec=spec)
    assert [p.size for p in only_full] == [FULL_POOL] and only_full[0].fidelity == pytest.approx(1.0)


def test_seed_spread_of_a_curve_point():
    # runs 0 and 1 carry a precursor, runs 2 and 3 do not; seeds alternate, so each seed has a hit and a miss
    runs = [FakeTrajectory(_noise_run(s, precursor=150 if s < 2 else None), [_t("x", 2000, 2100)], s % 2, f"r{s}")
            for s in range(4)]
    nulls = [FakeTrajectory(_noise_run(10 + s), [_t("x", None, None)], s, "null") for s in range(20)]
    score = score_design(runs, nulls, lambda t: np.arange(16), spec=SignalSpec("shc", window=20),
                         rule=make_rule("running-min"))
    leads = score.at_5["leads"]
    assert leads[0] is not None and leads[1] is not None and leads[2] is None and leads[3] is None
    by_seed = score.by_seed(score.at_5)  # runs 0, 2 are seed 0; runs 1, 3 are seed 1
    assert [(s["seed"], s["episodes"], s["hits"]) for s in by_seed] == [(0, 2, 1), (1, 2, 1)]
    assert by_seed[0]["median_lead"] == leads[0] and by_seed[1]["median_lead"] == leads[1]
    assert by_seed[0]["mean_lead_fraction"] == pytest.approx(leads[0] / score.time_to_onset[0] / 2)
    assert score.summary()["at_far_5pct_by_seed"] == by_seed


def test_leads_are_in_trajectory_records_whatever_the_stride():
    onset_record, precursor = 200, 150
    traj = FakeTrajectory(_noise_run(0, precursor=precursor), [_t("x", onset_record * 10, onset_record * 10 + 100)], 0)
    nulls = [FakeTrajectory(_noise_run(s), [_t("x", None, None)], s, "null") for s in range(1, 4)]
    every, strided = (score_design([traj], nulls, lambda t: np.arange(16), spec=SignalSpec("shc", window=w, stride=k),
                                   rule=make_rule("running-min")) for w, k in ((20, 1), (10, 2)))
    lead_1, lead_2 = every.at_5["median_lead"], strided.at_5["median_lead"]
    assert lead_2 % 2 == 0 and abs(lead_1 - lead_2) <= 4  # stride 2 counts two trajectory records per signal record
    rows = strided.episode_rows()
    assert rows[0]["time_to_onset"] == onset_record and rows[0]["lead"] == strided.episodes[0][2].lead * 2


def test_a_signal_undefined_before_the_onset_misses_the_episode_it_is_not_excused():
    traj = FakeTrajectory(_noise_run(0, records=120, precursor=60), [_t("x", 800, 900)], 0)  # onset: record 80
    score = score_design([traj], [], lambda t: np.arange(16), spec=SignalSpec("shc", window=90),
                         rule=make_rule("running-min"))
    assert len(score.episodes) == 1 and score.episodes[0][2].outcome in ("miss", "late")
    assert score.time_to_onset == [80] and score.at_5["detection"] == 0.0
