"""Per-record checkpoints in the trajectory store, the peer signals and rules, and the missing-extra message.

None of this needs devinterp: the default suite runs it. The LLC itself is
tested in ``test_peers_llc.py`` (``-m peers``).
"""
from __future__ import annotations

import sys
import warnings

import numpy as np
import pytest

from probekit.errors import ProbekitUsageError
from probekit.eval.bench import BenchGrid, RuleSpec
from probekit.eval.bench.run import _cell_name, run_grid
from probekit.eval.peers.llc import LLCSeries, LLCSettings, require_devinterp
from probekit.eval.peers.scoring import checkpoint_every, checkpoint_rule, peer_signal
from probekit.eval.store.runner import load_or_record


def test_checkpoints_every_k_records_with_the_same_losses(tmp_path):
    plain = load_or_record("deep-linear", "small", 0, cache_dir=tmp_path, progress=False)
    losses = np.array(plain.losses)
    digest = plain.manifest["files"]["losses.npy"]
    assert plain.checkpoint_every == 0 and plain.record_checkpoints() == {}
    plain.close()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # recorded again: identical losses, so no warning
        traj = load_or_record("deep-linear", "small", 0, cache_dir=tmp_path, progress=False, checkpoint_every=50)
    assert traj.checkpoint_every == 50
    assert traj.manifest["files"]["losses.npy"] == digest
    np.testing.assert_array_equal(np.array(traj.losses), losses)
    kept = traj.record_checkpoints()
    assert sorted(kept) == list(range(0, traj.losses.shape[0], 50))
    steps = np.asarray(traj.steps)
    for record, name in kept.items():
        assert traj.checkpoints[name] == steps[record]
    # the record-0 checkpoint is the initialisation, and a later one differs from it
    init, first, later = traj.state_dict("init"), traj.state_dict(kept[0]), traj.state_dict(kept[100])
    assert all(np.array_equal(init[k].numpy(), first[k].numpy()) for k in init)
    assert not all(np.array_equal(init[k].numpy(), later[k].numpy()) for k in init)
    # the pool losses at that record are the model's: 0.5 * |W2 W1 x - y|^2
    model = traj.model(kept[100])
    x = np.asarray(traj.pool.column("input").tolist(), dtype=np.float32)
    y = np.asarray(traj.pool.column("target").tolist(), dtype=np.float32)
    import torch

    with torch.no_grad():
        pred = model(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(0.5 * ((pred - y) ** 2).sum(1), traj.losses[100], rtol=1e-4, atol=1e-6)
    path = traj.path
    traj.close()
    # a multiple of the kept stride is served from the cache; another stride records again
    again = load_or_record("deep-linear", "small", 0, cache_dir=tmp_path, progress=False, checkpoint_every=100)
    assert again.checkpoint_every == 50 and again.path == path
    again.close()
    other = load_or_record("deep-linear", "small", 0, cache_dir=tmp_path, progress=False, checkpoint_every=30)
    assert other.checkpoint_every == 10  # gcd(30, 50): both strides served
    assert other.manifest["files"]["losses.npy"] == digest


@pytest.mark.parametrize("bad", [-1, 2.5, True, "10"])
def test_checkpoint_every_must_be_a_non_negative_int(tmp_path, bad):
    with pytest.raises(ProbekitUsageError, match="checkpoint_every must be an int >= 0"):
        load_or_record("deep-linear", "small", 0, cache_dir=tmp_path, progress=False, checkpoint_every=bad)
    assert not any(tmp_path.iterdir())  # refused before any recording


def _series(values):
    n = len(values)
    return LLCSeries(records=list(range(0, 4 * n, 4)), steps=list(range(0, 40 * n, 40)), llc=list(values),
                     llc_std=[0.0] * n, below_init=[0.0] * n, flat=[0.0] * n, seconds=1.0, stride=4, settings={},
                     source="test")


def test_peer_signals():
    s = _series([1.0, -0.5, 2.0, 2.0, 3.0, 10.0, 3.0])
    llc = peer_signal(s, "llc")
    np.testing.assert_array_equal(np.isnan(llc), [False, True, False, False, False, False, False])
    assert llc[5] == 10.0
    dev = peer_signal(s, "llc_dev", window=4)
    assert np.isnan(dev[:4]).all()
    assert dev[4] == pytest.approx(abs(3.0 - np.median([1.0, -0.5, 2.0, 2.0])))  # 3 - 1.5
    assert dev[5] == pytest.approx(abs(10.0 - np.median([-0.5, 2.0, 2.0, 3.0])))  # 10 - 2
    with pytest.raises(ValueError, match="unknown peer signal"):
        peer_signal(s, "shc")


def test_rules_count_checkpoints_on_the_coarse_grid():
    z = checkpoint_rule(RuleSpec("zscore", (("transform", "log"),)), 16)
    assert dict(z.params) == {"transform": "log", "persistence": 1, "baseline": 8}
    assert dict(checkpoint_rule(RuleSpec("zscore"), 4).params)["baseline"] == 12
    m = checkpoint_rule(RuleSpec("running-min", (("memory", 64),)), 8)
    assert dict(m.params) == {"memory": 8, "persistence": 1}
    assert dict(checkpoint_rule(RuleSpec("running-min"), 48).params) == {"persistence": 1}
    m.make()._check()  # valid parameters for the rule


def test_checkpoint_strides_per_preset():
    assert checkpoint_every("grokking", "default") == checkpoint_every("grokking-null", "default") == 16
    assert checkpoint_every("grokking", "small") == 5
    with pytest.raises(ProbekitUsageError, match="no LLC checkpoint stride"):
        checkpoint_every("grokking", "tiny")


# The built-in families' LLC settings, as calibrated (benchmarks/calibrate_llc.py, docs/bench/llc_calibration.md).
BUILTIN_STRIDES = {"deep-linear": (48, 12), "grokking": (16, 5), "induction-heads": (8, 4), "late-bias": (16, 10),
                   "misalignment": (16, 8), "rare-drift": (28, 6)}  # (default, small)
CALIBRATION_FAILED = {"misalignment", "rare-drift"}  # no step size passed: the fallback is the sweep's largest


def test_llc_settings_come_from_the_registered_family():
    from types import SimpleNamespace

    from probekit.eval.peers.scoring import family_of, peer_cells, settings_for
    from probekit.registry import TRANSITIONS

    for name in TRANSITIONS.names():  # a null control is scored with its family's settings
        family = family_of(name)
        if family in BUILTIN_STRIDES:
            assert (checkpoint_every(name, "default"), checkpoint_every(name, "small")) == BUILTIN_STRIDES[family]
            assert settings_for(name).lr == 1e-2
    grid = SimpleNamespace(families=tuple(BUILTIN_STRIDES), peers=("llc",), rules=(RuleSpec("running-min"),),
                           preset="small")
    calibrated = {c["family"]: c["llc"]["calibrated"] for c in peer_cells(grid)}
    assert calibrated == {f: f not in CALIBRATION_FAILED for f in BUILTIN_STRIDES}


def test_a_registered_family_declares_its_own_llc_settings():
    from probekit.eval.families.deep_linear import DeepLinear
    from probekit.eval.peers.scoring import base_settings, settings_for
    from probekit.registry import TRANSITIONS

    class Declared(DeepLinear):
        name = "declared"
        llc_checkpoint_every = {"small": 3}
        llc_lr = 5e-3

    class Undeclared(DeepLinear):
        name = "undeclared"
        llc_checkpoint_every = {}
        llc_lr = None

    TRANSITIONS.register("declared", Declared)
    TRANSITIONS.register("undeclared", Undeclared)
    try:
        assert checkpoint_every("declared", "small") == 3 and settings_for("declared").lr == 5e-3
        with pytest.raises(ProbekitUsageError, match=r"under preset 'default'; the peers run on presets small\.$"):
            checkpoint_every("declared", "default")
        assert settings_for("undeclared") == base_settings()
        with pytest.raises(ProbekitUsageError, match=r"'undeclared' under preset 'small'; .* no llc_checkpoint_every"):
            checkpoint_every("undeclared", "small")
    finally:
        TRANSITIONS.unregister("declared")
        TRANSITIONS.unregister("undeclared")


def test_llc_cost_accounting():
    s = LLCSettings(lr=1e-4, batch_size=32, num_chains=4, num_draws=100, num_burnin_steps=20,
                    num_init_loss_batches=4)
    assert s.cost() == {"forward_backward_examples": 4 * 120 * 32, "forward_examples": 4 * 4 * 32}
    assert s.n_beta == pytest.approx(32 / np.log(32))
    with pytest.raises(ProbekitUsageError, match="'num_chains' field of LLCSettings"):
        LLCSettings(lr=1e-4, num_chains=0).check()
    for bad in ({"lr": 0.0}, {"lr": True}, {"nbeta": -1.0}, {"num_burnin_steps": -1}):
        field = next(iter(bad))
        with pytest.raises(ProbekitUsageError, match=f"'{field}' field of LLCSettings"):
            LLCSettings(**{"lr": 1e-4, **bad}).check()


def test_peers_leave_the_grid_key_and_other_cells_alone():
    grid = BenchGrid(families=("deep-linear",), seeds=(0,), sizes=(8,))
    with_peers = BenchGrid(families=("deep-linear",), seeds=(0,), sizes=(8,), peers=("llc", "llc_dev"))
    assert grid.key() == with_peers.key()
    peer = [c for c in with_peers.cells() if c["design"] == "peer"]
    assert with_peers.cells()[:len(grid.cells())] == grid.cells()
    assert len(peer) == 2 * len(grid.rules)
    assert all(c["signal"]["stride"] == 12 for c in peer)  # the small preset's deep-linear stride
    names = {_cell_name(c) for c in peer}
    assert len(names) == len(peer)
    assert all(n.endswith(f"llc-{peer[0]['llc']['key']}") for n in names)
    with pytest.raises(ProbekitUsageError, match="'peers' field of BenchGrid"):
        BenchGrid(families=("deep-linear",), peers=("lcc",)).check()


def test_a_missing_devinterp_is_one_clear_error_before_any_work(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "devinterp", None)  # import devinterp -> ImportError
    monkeypatch.setitem(sys.modules, "devinterp.slt", None)
    monkeypatch.setitem(sys.modules, "devinterp.slt.llc", None)
    with pytest.raises(ProbekitUsageError, match=r'pip install "probekit\[peers\]"'):
        require_devinterp()
    grid = BenchGrid(families=("deep-linear",), seeds=(0,), sizes=(8,), peers=("llc",))
    with pytest.raises(ProbekitUsageError, match=r"probekit\[peers\]"):
        run_grid(grid, tmp_path / "out", cache_dir=tmp_path / "cache")
    assert not (tmp_path / "out").exists() and not (tmp_path / "cache").exists()


# -- the report's peer section, on synthetic cells ------------------------------------------
def _point(frac, auc, size=0, leads=(4, None)):
    hits = [v for v in leads if v is not None]
    return {"size": size, "auc": auc, "fidelity": None, "signal": "s", "rule": "r", "fixed_threshold": {},
            "curve": {}, "episodes": [{"seed": i, "run": "x", "transition": "t", "outcome": "hit",
                                       "lead": None, "time_to_onset": 10} for i in range(len(leads))],
            "at_far_5pct": {"mean_lead_fraction": frac, "detection": len(hits) / len(leads), "far": 0.0,
                            "median_lead": float(np.median(hits)) if hits else None, "leads": list(leads),
                            "threshold": 1.0},
            "at_far_5pct_by_seed": [{"seed": i, "median_lead": v, "episodes": 1, "hits": int(v is not None),
                                     "mean_lead_fraction": frac} for i, v in enumerate(leads)]}


def _cell(fam, design, stat, points, **extra):
    from probekit.eval.bench.cells import Cell

    return Cell.from_json({"family": fam, "design": design, "error": None, "points": points,
                           "signal": {"statistic": stat, "window": 16, "stride": 4 if design == "peer" else 1,
                                      "detrend": "none"},
                           "rule": {"name": "running-min", "params": {}}, **extra})


def _synthetic(tmp_path):
    from probekit.eval.bench import GridResult

    costs = {"probes:8": {"forward_examples": 8, "forward_backward_examples": 0, "seconds": 1e-4},
             "probes:64": {"forward_examples": 64, "forward_backward_examples": 0, "seconds": 2e-4},
             "llc": {"forward_examples": 1024.0, "forward_backward_examples": 3200.0, "seconds": 0.5},
             "grad_norm": {"forward_examples": 0, "forward_backward_examples": 0, "seconds": 0.0}}
    llc = {**LLCSettings(lr=1e-2).as_dict(), "key": "k"}
    cells = []
    # family a: cluster 8 is best on a; random 8 is the better pick by area on b (what a's LOFO row uses)
    for fam, (r_auc, c_auc), peer_frac in (("a", (0.2, 0.9), 0.1), ("b", (0.8, 0.1), 0.7)):
        cells.append(_cell(fam, "random", "shc", [_point(0.2, r_auc, size=8)]))
        cells.append(_cell(fam, "cluster", "shc", [_point(0.5 if fam == "a" else 0.1, c_auc, size=8)]))
        cells.append(_cell(fam, "scalar", "mean_var", [_point(0.0, 0.0, leads=(None, None))]))
        cells.append(_cell(fam, "peer", "llc_dev", [_point(peer_frac, 0.3, leads=(8, 12))], costs=costs, llc=llc,
                           checkpoint_rule={"name": "running-min", "params": {"persistence": 1}}))
    grid = BenchGrid(families=("a", "b"), peers=("llc_dev",))
    return GridResult(grid, cells)


def test_peer_rows_verdicts_and_figure(tmp_path):
    from probekit.eval.reports.peer_report import peer_figures, peer_rows, render_peers

    result = _synthetic(tmp_path)
    rows = {r["name"]: r for r in peer_rows(result.cells, "a")}
    assert rows["2RDM, best design"]["cell"].design == "cluster"
    assert rows["2RDM, chosen on the other families"]["cell"].design == "random"  # the better area on b
    assert rows["2RDM, random probes"]["cost"]["forward_examples"] == 8
    assert rows["rolling variance"]["cost"]["forward_examples"] == 64  # the full pool: the largest measured
    assert rows["LLC change"]["cost"]["forward_backward_examples"] == 3200.0
    text = "\n".join(render_peers(result))
    stride = 4  # the synthetic peer cells' checkpoint stride; 4 chains x 100 draws, 32 init batches
    assert (f"| LLC change | 10 (100%, seeds 8-12) | 10% | {4 * 32 / stride:.1f} fwd + {4 * 100 / stride:.1f} fwd+bwd, "
            "batch 32 | 1,024 + 3,200 fwd+bwd | 500.00 |") in text
    assert "| 2RDM, random probes | 4 (50%) | 20% | 1 fwd | 8 |" in text
    assert "- **a**: the 2RDM warns earliest: mean lead fraction 50% (median lead 4 records at 50%)" in text
    assert ("- **b**: a peer wins: LLC change, mean lead fraction 70% (median lead 10 records at 100%) against the "
            "2RDM's best 20% (median lead 4 records at 50%), at 5,000x its wall time per record.") in text
    assert "| rolling variance | no warning | 0% |" in text
    # every best-of says how many configurations it was picked from, beside the pick made on the other family
    assert rows["2RDM, best design"]["picked_from"] == 2
    assert rows["2RDM, chosen on the other families"]["picked_from"] == 2
    assert rows["2RDM, random probes"]["picked_from"] == 1 and rows["LLC change"]["picked_from"] == 1
    assert "| configuration | picked from |" in text and "| cluster 8 probes, shc W=16, `running-min` | 2 |" in text
    assert ("the best peer, LLC change: 10%. The 2RDM's best is picked from 2 configurations; the one picked on the "
            "other families (of 2) reaches 20% (median lead 4 records at 50%).") in text
    import dataclasses

    for k, c in enumerate(result.cells):  # the peer on b as early as the 2RDM's best: a tie, said as one
        if c.family == "b" and c.design == "peer":
            point = c.points[0]
            at = dataclasses.replace(point.at_far_5pct, mean_lead_fraction=0.2)
            result.cells[k] = dataclasses.replace(c, points=(dataclasses.replace(point, at_far_5pct=at),))
    assert ("- **b**: a tie: the 2RDM's best and LLC change both reach a mean lead fraction of 20% (median lead 4 "
            "records at 50% against median lead 10 records at 100%, at 5,000x its wall time per record).") \
        in "\n".join(render_peers(result))
    paths = peer_figures(result, tmp_path)
    assert [p.name for p in paths] == ["peers-a.png", "peers-b.png"] and all(p.stat().st_size > 0 for p in paths)


def test_no_peer_section_without_peer_cells(tmp_path):
    from probekit.eval.reports.peer_report import peer_figures, render_peers

    result = _synthetic(tmp_path)
    result.cells = [c for c in result.cells if c.design != "peer"]
    assert render_peers(result) == [] and peer_figures(result, tmp_path) == []


class _FakeRun:
    def __init__(self, name, seed, onset_record=None):
        from probekit.eval.families.base import Transition

        self.name, self.seed = name, seed
        self.steps = np.arange(100) * 10  # record r is step 10 r
        self.transitions = [] if onset_record is None else [
            Transition("x", int(self.steps[onset_record]), int(self.steps[onset_record + 10]), 0.0, 1.0, "test")]


@pytest.mark.parametrize("jump, hit, lead", [(4, True, 50 - 32), (6, True, 50 - 48), (7, False, None)])
def test_checkpoint_grid_leads_are_exact_in_records(jump, hit, lead):
    from probekit.eval.peers.scoring import score_on_checkpoints
    from probekit.eval.scoring.signals import SignalSpec

    k = 8  # checkpoints at records 0, 8, ..., 96; the onset (record 50) falls between 48 and 56
    run, null = _FakeRun("fam", 0, onset_record=50), _FakeRun("fam-null", 0)
    grid = np.arange(0, 100, k)
    signal = np.where(np.arange(grid.size) >= jump, 100.0, 1.0)
    signals = {id(run): (signal, run.steps[grid]), id(null): (np.ones(grid.size), null.steps[grid])}
    rule = RuleSpec("running-min", (("persistence", 1),)).make()
    score = score_on_checkpoints([run], [null], signals, k, spec=SignalSpec("llc", window=4, stride=k), rule=rule,
                                 hit_fraction=0.5)
    point = score.at_5
    assert score.time_to_onset == [50]  # records, from record 0 to the true onset
    if hit:
        # alarm at record 8 * jump: its lead is counted to the true onset, not to a checkpoint
        assert point["leads"] == [lead] and point["median_lead"] == lead
        assert point["mean_lead_fraction"] == pytest.approx(lead / 50)
        assert score.episode_rows()[0]["lead"] == lead
    else:  # record 56 is after the onset: late, even though it is the onset's checkpoint rounded up
        assert point["leads"] == [None] and point["detection"] == 0
        assert score.episode_rows()[0]["outcome"] == "late"


def test_grid_episodes_keep_the_record_grid_boundaries():
    from probekit.eval.peers.scoring import _grid_episodes

    run = _FakeRun("fam", 0, onset_record=50)  # midpoint at record 60
    (ep, onset, tto), = _grid_episodes(run, 8, 13, 0.5)
    # records: quiet [0, 25), hit window [25, 50], late (50, 60]; checkpoints every 8 records
    assert (onset, tto) == (50, 50)
    assert (ep.start, ep.window_start, ep.onset, ep.midpoint) == (0, 4, 6, 7)  # records 0, 32, 48, 56
    short = _FakeRun("fam", 0, onset_record=5)  # hit window [2, 5]: no checkpoint in it
    (ep, onset, tto), = _grid_episodes(short, 8, 13, 0.5)
    assert ep.window_start > ep.onset and (onset, tto) == (5, 5)


def test_llc_series_needs_the_checkpoints_at_its_stride(tmp_path):
    from probekit.eval.peers.llc import llc_series

    plain = load_or_record("deep-linear", "small", 0, cache_dir=tmp_path, progress=False)
    with pytest.raises(ProbekitUsageError, match=r"keeps checkpoints every no records, not at every 12-th record"):
        llc_series(plain, LLCSettings(lr=1e-2), stride=12)
    plain.close()
    kept = load_or_record("deep-linear", "small", 0, cache_dir=tmp_path, progress=False, checkpoint_every=10)
    with pytest.raises(ProbekitUsageError, match=r"checkpoint_every=25\)"):  # 25 is not a multiple of 10
        llc_series(kept, LLCSettings(lr=1e-2), stride=25)
    assert not list(tmp_path.glob("*/*.peers"))  # refused before any estimate or cache file


def test_probe_losses_do_not_make_a_peer_signal():
    from probekit.eval.scoring.signals import SignalSpec, compute_signal

    with pytest.raises(ProbekitUsageError, match="'llc' signal comes from a run's LLC series"):
        compute_signal(SignalSpec("llc"), np.ones((40, 4)))


def test_peer_scoring_skips_the_pilot_span_like_the_designs():
    """The peers are scored on the designs' episodes: nothing in the pilot span counts, in a
    transition run (episode start) or a null run (quiet unit, false alarms)."""
    from probekit.eval.peers.scoring import _grid_episodes, score_on_checkpoints
    from probekit.eval.scoring.signals import SignalSpec

    run = _FakeRun("fam", 0, onset_record=50)
    (ep, onset, tto), = _grid_episodes(run, 8, 13, 0.5, pilot=20)
    # records: pilot [0, 20), quiet [20, 35), hit window [35, 50]: checkpoints 3 (24), 5 (40), 6 (48)
    assert (onset, tto) == (50, 30)
    assert (ep.start, ep.window_start, ep.onset) == (3, 5, 6)
    assert _grid_episodes(run, 8, 13, 0.5, pilot=50) == []  # no room before the onset

    k, null = 8, _FakeRun("fam-null", 0)
    grid = np.arange(0, 100, k)
    spike = np.where(np.arange(grid.size) == 1, 100.0, 1.0)  # an alarm at record 8 only
    signals = {id(run): (np.ones(grid.size), run.steps[grid]), id(null): (spike, null.steps[grid])}
    rule = RuleSpec("running-min", (("persistence", 1),)).make()
    kwargs = dict(spec=SignalSpec("llc", window=4, stride=k), rule=rule, hit_fraction=0.5)
    before = score_on_checkpoints([run], [null], signals, k, **kwargs)
    after = score_on_checkpoints([run], [null], signals, k, pilot=16, **kwargs)
    def far_above_any_finite_threshold(score):
        return score.curve.far[np.isfinite(score.curve.thresholds)].max()

    assert before.null_false_alarms == [("fam-null", 0, 1)] and far_above_any_finite_threshold(before) > 0
    assert after.null_false_alarms == [("fam-null", 0, 0)] and far_above_any_finite_threshold(after) == 0
    assert (before.time_to_onset, after.time_to_onset) == ([50], [34])
    with pytest.raises(Exception, match="pilot must be an int"):
        score_on_checkpoints([run], [null], signals, k, pilot=-1, **kwargs)
