"""The reference-run contract, the onset rule and the trajectory store (empty_cache, verification, atomicity)."""
from __future__ import annotations

import dataclasses
import json
import re

import numpy as np
import pytest

from probekit.errors import ProbekitUsageError, ProbekitWarning
from probekit.eval.families.base import OrderParameter, Recording, Transition, find_transition, gradient_norm, record_checkpoint_due, selection_checkpoints_due
from probekit.eval.families.deep_linear import DeepLinear, DeepLinearConfig, run_deep_linear
from probekit.eval.store.runner import cache_key, load_or_record, record, trajectory_path
from probekit.eval.store.suite import SuiteRow, problems
from probekit.eval.store.trajectory import (
    FORMAT_VERSION,
    Trajectory,
    TrajectoryCorruptError,
    config_hash,
    default_cache_dir,
)


# -- the onset rule ------------------------------------------------------------------------
def test_onset_and_midpoint_of_a_rising_ramp():
    steps = np.arange(0, 200, 2)
    values = np.clip((steps - 100) / 50.0, 0, 1)  # 0 until step 100, 1 from step 150
    t = find_transition(OrderParameter("x", "", min_change=0.5), steps, values)
    # 10% of the way is reached at step 105, 50% at step 125
    assert (t.onset_step, t.midpoint_step) == (106, 126)  # first record at or past the level
    assert (t.start_value, t.end_value) == (0.0, 1.0)


def test_falling_order_parameter_and_fixed_levels():
    steps = np.arange(100)
    values = np.where(steps < 40, 0.9, 0.1)
    t = find_transition(OrderParameter("acc", "", min_change=0.3), steps, values)
    assert (t.onset_step, t.midpoint_step) == (40, 40)
    fixed = find_transition(OrderParameter("acc", "", min_change=0.3, start=1.0, end=0.0), steps, values)
    assert fixed.onset_step == 0 and fixed.midpoint_step == 40  # 0.9 is already 10% below 1.0


def test_a_single_noisy_record_does_not_set_the_onset():
    steps = np.arange(100)
    values = np.where(steps < 60, 0.0, 1.0)
    values[20] = 0.8  # one spike past both levels, gone the next record
    values[30:32] = 0.8  # two records: still shorter than persist = 3
    t = find_transition(OrderParameter("x", "", min_change=0.5), steps, values)
    assert (t.onset_step, t.midpoint_step) == (60, 60)
    loose = find_transition(OrderParameter("x", "", min_change=0.5, persist=1), steps, values)
    assert loose.onset_step == 20


def test_no_transition_below_min_change_or_with_nan():
    steps = np.arange(50)
    t = find_transition(OrderParameter("x", "", min_change=0.5), steps, np.linspace(0, 0.4, 50))
    assert not t.happened and t.midpoint_step is None and "below 0.5" in t.rule
    bad = np.linspace(0, 1, 50)
    bad[3] = np.nan
    assert not find_transition(OrderParameter("x", "", min_change=0.5), steps, bad).happened


def test_order_parameter_shape_is_checked():
    with pytest.raises(ProbekitUsageError, match=r"order parameter 'x' must be one value per record \(5\)"):
        find_transition(OrderParameter("x", "", min_change=1), np.arange(5), np.zeros(4))


# -- configs and recordings -----------------------------------------------------------------
def test_make_config_presets_seed_and_overrides():
    cfg = DeepLinear.make_config("small", 3, lr=0.01)
    assert (cfg.width, cfg.seed, cfg.lr) == (6, 3, 0.01)
    assert DeepLinear.make_config().steps == 2400
    with pytest.raises(ProbekitUsageError, match=r"Unknown config 'big' for reference run 'deep-linear'\. Available: default, small\."):
        DeepLinear.make_config("big")
    with pytest.raises(ProbekitUsageError, match=r"The seed must be an int >= 0\. Got -1 instead\."):
        DeepLinear.make_config("small", -1)
    with pytest.raises(ProbekitUsageError, match=r"Invalid config field 'lrr' for reference run 'deep-linear'\. Valid fields: .*lr,"):
        DeepLinear.make_config("small", 0, lrr=1)


def _tiny_recording(**changes) -> Recording:
    base = dict(
        steps=np.array([0, 1, 2]),
        losses=np.ones((3, 2), np.float32),
        pool={"probe_id": ["a", "b"], "input": [[0.0], [1.0]], "target": [0, 1], "split": ["x", "x"]},
        order_parameters={"op": np.zeros(3)},
        baselines={"train_loss": np.zeros(3), "grad_norm": np.zeros(3)},
        checkpoints={"init": (0, {}), "early": (1, {})},
    )
    base.update(changes)
    return Recording(**base)


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"steps": np.array([0, 2, 1])}, r"steps must increase; record 2 \(step 1\) follows step 2"),
        ({"steps": np.array([0])}, r"steps must be a 1-D array of >= 2 records; got shape \(1,\)"),
        ({"losses": np.ones((2, 2), np.float32)}, r"losses must be \[records=3, pool\]"),
        ({"pool": {"probe_id": ["a"], "input": [[0.0]], "target": [0], "split": ["x"]}}, "pool column 'probe_id' has 1 rows"),
        ({"pool": {"probe_id": ["a", "b"], "input": [[0.0], [1.0]], "target": [0, 1]}}, "the pool needs a 'split' column"),
        ({"pool": {"probe_id": ["a", "a"], "input": [[0.0], [1.0]], "target": [0, 1], "split": ["x", "x"]}}, "must be unique"),
        ({"order_parameters": {"op": np.zeros(2)}}, r"order parameter 'op' must have one value per record \(3\)"),
        ({"losses": np.full((3, 2), np.nan, np.float32)}, "NaN or inf"),
        ({"steps": np.array([1, 2, 3])}, r"record 0 must be step 0"),
        ({"steps": np.array([0, 5, 5])}, r"steps must increase; record 2 \(step 5\) follows step 5"),
        ({"baselines": {"train_loss": np.zeros(3)}}, r"the baselines need \['grad_norm'\]"),
        ({"order_parameters": {"op": np.array([0.0, np.nan, 1.0])}}, r"order parameter 'op' holds NaN or inf values"),
        ({"checkpoints": {"init": (0, {})}}, r"checkpoints must include 'init' at step 0 and 'early' inside \(0, 2\]"),
        ({"checkpoints": {"init": (0, {}), "early": (9, {})}}, r"'early' inside \(0, 2\]; got \{'init': 0, 'early': 9\}"),
    ],
)
def test_malformed_recordings_are_refused(changes, message):
    with pytest.raises(ValueError, match=message):
        _tiny_recording(**changes).check()


# -- the store ------------------------------------------------------------------------------
@pytest.fixture
def empty_cache(tmp_path):
    """An empty store per test: these tests record, damage and rebuild trajectories (the shared
    ``trajectory_cache`` of conftest.py is for tests that only read them)."""
    return tmp_path / "cache"


def test_small_run_is_stored_and_reloads_identically(empty_cache):
    run = DeepLinear()
    cfg = run.make_config("small", 0)
    expected = run_deep_linear(cfg)  # an independent in-memory run of the same config
    traj = load_or_record("deep-linear", "small", 0, cache_dir=empty_cache)
    assert traj.path == trajectory_path(empty_cache, "deep-linear", run, cfg)
    assert isinstance(traj.losses, np.memmap) and traj.losses.dtype == np.float32
    np.testing.assert_array_equal(traj.losses, expected.losses)
    np.testing.assert_array_equal(traj.steps, expected.steps)
    np.testing.assert_array_equal(traj.order_parameters["mode_2"], expected.mode_strength[:, 1])
    np.testing.assert_array_equal(traj.baselines["grad_norm"], expected.grad_norm)
    assert [t.onset_step for t in traj.transitions] == expected.onset_steps.tolist()
    assert traj.config == json.loads(json.dumps(dataclasses.asdict(cfg)))
    expected_key = config_hash("deep-linear", run.version, cfg, run.order_parameters(cfg))
    assert traj.manifest["versions"]["torch"] and traj.manifest["config_hash"] == expected_key
    assert traj.pool.ids.tolist()[:2] == ["x0000", "x0001"] and len(traj.pool) == cfg.n_pool
    np.testing.assert_allclose(np.asarray(traj.pool.rows([5])[0]["input"]), expected.pool_inputs[5], rtol=1e-6)
    assert traj.checkpoints == {"init": 0, "early": cfg.early_step}
    w1 = expected.checkpoints["early"][1]
    np.testing.assert_allclose(traj.model("early")[0].weight.detach().numpy(), w1, rtol=1e-6)


def test_valid_cache_is_reused_without_training(empty_cache, monkeypatch):
    first = load_or_record("deep-linear", "small", 1, cache_dir=empty_cache)
    mtime = (first.path / "losses.npy").stat().st_mtime_ns

    def no_training(*args, **kwargs):
        raise AssertionError("a valid cache must not be recorded again")

    monkeypatch.setattr(DeepLinear, "record", no_training)
    again = load_or_record("deep-linear", "small", 1, cache_dir=empty_cache)
    assert again.path == first.path and (again.path / "losses.npy").stat().st_mtime_ns == mtime


def test_a_well_formed_recording_passes_check():
    _tiny_recording().check()  # the baseline the malformed cases above differ from


def test_config_options_are_checked_before_any_training():
    from probekit.eval.families.grokking import Grokking

    with pytest.raises(ProbekitUsageError, match=r"^The 'activation' field of GrokkingConfig must be one of relu, square\. Got 'gelu' instead\.$"):
        Grokking.make_config("small", 0, activation="gelu")


@pytest.mark.parametrize("damage", ["flip_byte", "delete_file", "extra_file", "bad_manifest", "not_an_object",
                                    "edited_onset", "missing_key", "old_format"])
def test_corrupt_cache_is_detected_and_rebuilt(empty_cache, damage):
    traj = load_or_record("deep-linear", "small", 2, cache_dir=empty_cache)
    expected = np.array(traj.losses)
    path = traj.path
    del traj
    if damage == "flip_byte":
        data = bytearray((path / "losses.npy").read_bytes())
        data[-7] ^= 0xFF
        (path / "losses.npy").write_bytes(bytes(data))
    elif damage == "delete_file":
        (path / "checkpoints" / "early.pt").unlink()
    elif damage == "extra_file":
        (path / "stray.txt").write_text("x")
    elif damage == "bad_manifest":
        (path / "manifest.json").write_text("{not json")
    elif damage == "not_an_object":
        (path / "manifest.json").write_text("[]")
    else:
        manifest = json.loads((path / "manifest.json").read_text())
        if damage == "edited_onset":
            manifest["transitions"][0]["onset_step"] = 5  # the data files are untouched
        elif damage == "missing_key":
            del manifest["n_records"]
        else:
            manifest["format_version"] = FORMAT_VERSION + 1
        (path / "manifest.json").write_text(json.dumps(manifest))
    messages = {"edited_onset": "fails its content hash", "missing_key": "missing or malformed 'n_records'",
                "old_format": f"format version {FORMAT_VERSION + 1}, this probekit reads {FORMAT_VERSION}",
                "not_an_object": "not a JSON object", "bad_manifest": "unreadable manifest",
                "flip_byte": "losses.npy fails its sha256 check", "delete_file": r"missing files \['checkpoints/early.pt'\]",
                "extra_file": r"unexpected files \['stray.txt'\]"}
    with pytest.raises(TrajectoryCorruptError, match=messages[damage]):
        Trajectory(path)
    with pytest.warns(ProbekitWarning, match="rebuilding the cached trajectory"):
        rebuilt = load_or_record("deep-linear", "small", 2, cache_dir=empty_cache)
    np.testing.assert_array_equal(rebuilt.losses, expected)


def test_a_trajectory_under_another_key_is_rebuilt(empty_cache):
    import shutil

    run = DeepLinear()
    seed0 = load_or_record("deep-linear", "small", 0, cache_dir=empty_cache)
    target = trajectory_path(empty_cache, "deep-linear", run, run.make_config("small", 1))
    shutil.copytree(seed0.path, target)  # valid files, wrong key
    with pytest.warns(ProbekitWarning, match=r"holds config hash .*, not " + cache_key(run, run.make_config("small", 1))[:16]):
        seed1 = load_or_record("deep-linear", "small", 1, cache_dir=empty_cache)
    assert seed1.seed == 1 and seed1.path == target


def test_a_file_in_place_of_the_cache_directory_is_a_usage_error(empty_cache):
    run = DeepLinear()
    path = trajectory_path(empty_cache, "deep-linear", run, run.make_config("small", 0))
    path.parent.mkdir(parents=True)
    path.write_text("not a trajectory")
    with pytest.raises(ProbekitUsageError, match=r"exists and is not a directory; remove it or pick another --cache-dir\."):
        load_or_record("deep-linear", "small", 0, cache_dir=empty_cache)


def test_failure_while_writing_leaves_nothing_behind(empty_cache, monkeypatch):
    import probekit.eval.store.runner as runner

    def half_written(directory, **kwargs):
        (directory / "losses.npy").write_bytes(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(runner, "write_trajectory", half_written)
    with pytest.raises(OSError, match="disk full"):
        load_or_record("deep-linear", "small", 0, cache_dir=empty_cache)
    assert not any(p.suffix in (".npy", ".tmp") or p.is_dir() for p in (empty_cache / "deep-linear").iterdir())


def test_failed_recording_leaves_nothing_in_the_cache(empty_cache, monkeypatch):
    def broken(self, config, progress, checkpoint_every=0):
        raise RuntimeError("out of memory")

    monkeypatch.setattr(DeepLinear, "record", broken)
    with pytest.raises(RuntimeError, match="out of memory"):
        load_or_record("deep-linear", "small", 0, cache_dir=empty_cache)
    # only the (empty) lock file that serialises recorders of this key remains
    assert [p.suffix for p in empty_cache.rglob("*") if p.is_file()] == [".lock"]


def test_config_hash_changes_with_everything_that_changes_the_recording():
    base = DeepLinearConfig()
    h = config_hash("deep-linear", 1, base)
    assert len(h) == 64 and h == config_hash("deep-linear", 1, DeepLinearConfig())
    others = {
        config_hash("deep-linear", 1, dataclasses.replace(base, seed=1)),
        config_hash("deep-linear", 1, dataclasses.replace(base, lr=0.006)),
        config_hash("deep-linear", 2, base),
        config_hash("deep-linear-null", 1, base),
    }
    assert h not in others and len(others) == 4
    run = DeepLinear()
    specs = run.order_parameters(base)
    looser = [dataclasses.replace(op, min_change=0.4) for op in specs]
    assert config_hash("deep-linear", 1, base, specs) != config_hash("deep-linear", 1, base, looser)


def test_default_cache_dir_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("PROBEKIT_CACHE_DIR", str(tmp_path / "mine"))
    assert default_cache_dir() == tmp_path / "mine"
    monkeypatch.delenv("PROBEKIT_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setattr("sys.platform", "linux")
    assert default_cache_dir() == tmp_path / "xdg" / "probekit" / "trajectories"


def test_probe_losses_by_id_index_and_probeset(empty_cache):
    from probekit.selectors.random_sampling import RandomSelector

    traj = load_or_record("deep-linear", "small", 0, cache_dir=empty_cache)
    full = np.array(traj.losses)
    np.testing.assert_array_equal(traj.probe_losses(["x0003", "x0001"]), full[:, [3, 1]])
    np.testing.assert_array_equal(traj.probe_losses(np.array([5, 0])), full[:, [5, 0]])
    probes = RandomSelector().select(traj.pool, 8, seed=0)
    expected = full[:, traj.pool.index_of(list(probes.ids))]
    np.testing.assert_array_equal(traj.probe_losses(probes), expected)
    with pytest.raises(IndexError, match=r"pool indices must be in \[0, 64\)"):
        traj.probe_losses([0, 64])
    with pytest.raises(TypeError, match=r"got bool values \(for a boolean mask pass np.flatnonzero\(mask\)\)"):
        traj.probe_losses(np.arange(64) < 2)
    with pytest.raises(TypeError, match=r"got float64 values"):
        traj.probe_losses([0.0, 1.0])
    with pytest.raises(KeyError, match=r"no checkpoint 'late'; this trajectory has early, init"):
        traj.state_dict("late")


def test_close_releases_the_maps_and_reopens_on_use(empty_cache):
    with load_or_record("deep-linear", "small", 0, cache_dir=empty_cache) as traj:
        expected = np.array(traj.losses)
    assert traj._losses is None and traj._pool is None
    np.testing.assert_array_equal(traj.losses, expected)  # reopened lazily


def test_the_callers_random_state_does_not_depend_on_the_cache(empty_cache, monkeypatch):
    import torch

    plain = DeepLinear.record

    def seeds_globally(self, config, progress, checkpoint_every=0):  # as the torch families do
        torch.manual_seed(config.seed)
        np.random.seed(config.seed)
        return plain(self, config, progress, checkpoint_every)

    monkeypatch.setattr(DeepLinear, "record", seeds_globally)

    def draws_after(rebuild: bool) -> tuple:
        np.random.seed(7)
        torch.manual_seed(7)
        load_or_record("deep-linear", "small", 0, cache_dir=empty_cache, rebuild=rebuild)
        return np.random.random(), float(torch.rand(1))

    expected = draws_after(rebuild=False)  # recorded (first call) or loaded
    assert draws_after(rebuild=True) == expected  # recorded again
    assert draws_after(rebuild=False) == expected  # loaded from the cache


def _row(kind="transition", onset=1200, early=100, wall=10.0):
    t = Transition("op", onset, None if onset is None else onset + 50, 0.0, 1.0, "rule")
    return SuiteRow(name="x", kind=kind, seed=3, preset="default", path="/p", n_records=301, n_pool=8, span=3000,
                    wall_seconds=wall, early_step=early, transitions=(t,),
                    onset_records=(None if onset is None else onset // 10,))


@pytest.mark.parametrize(
    "row, message",
    [
        (_row(onset=None), r"x seed 3: no transition in op \(0 -> 1\)"),
        (_row(kind="null"), r"x seed 3: null control shows a transition in op \(onset 1200\)"),
        (_row(early=1300), r"op onset at step 1200 is not after the early checkpoint \(1300\)"),
        (_row(onset=250, early=100), r"onset at step 250 \(record 25\) leaves too little quiet plateau \(need >= 60 records"),
        (_row(wall=200.0), r"x seed 3: took 200 s \(budget 180 s\)"),
    ],
)
def test_suite_rules_name_each_violation(row, message):
    found = problems(row)
    assert len(found) == 1 and re.search(message, found[0])


def test_suite_rules_pass_a_good_row():
    assert problems(_row(onset=1200)) == [] and problems(_row(kind="null", onset=None)) == []


def test_record_uses_one_thread_and_restores_it():
    import torch

    before = torch.get_num_threads()
    seen = []

    class Spy(DeepLinear):
        def record(self, config, progress, checkpoint_every=0):
            seen.append(torch.get_num_threads())
            return super().record(config, progress, checkpoint_every)

    recording, wall = record(Spy(), Spy.make_config("small", 0), progress=False)
    assert seen == [1] and torch.get_num_threads() == before and wall > 0
    recording.check()


def test_the_checkpoint_schedule_is_an_argument_of_record():
    seen = []

    class Spy(DeepLinear):
        def record(self, config, progress, checkpoint_every=0):
            seen.append(checkpoint_every)
            return super().record(config, progress, checkpoint_every)

    run = Spy()
    recording, _ = record(run, run.make_config("small", 0), progress=False, checkpoint_every=100)
    assert seen == [100] and "checkpoint_every" not in vars(run)  # passed, never set on the run
    kept = {name: step for name, (step, _) in recording.checkpoints.items() if name.startswith("record-")}
    assert kept == {"record-00000": 0, "record-00100": 500, "record-00200": 1000, "record-00300": 1500}


def test_checkpoint_schedule_helpers():
    config = DeepLinear.make_config("small", 0)  # early_step 100
    assert [selection_checkpoints_due(s, config) for s in (0, 1, 100, 101)] == [["init"], [], ["early"], []]
    assert [record_checkpoint_due(r, 10) for r in (0, 5, 20)] == ["record-00000", None, "record-00020"]
    assert record_checkpoint_due(0, 0) is None  # 0: no per-record checkpoints
    kept = {}
    DeepLinear().keep_selection_checkpoints(kept, 100, config, lambda: "state")
    DeepLinear().keep_record_checkpoint(kept, 30, 150, 15, lambda: "later")
    assert kept == {"early": (100, "state"), "record-00030": (150, "later")}


def test_gradient_norm_is_the_float64_norm_of_the_trained_gradients():
    import math

    import torch

    # 4097^2 + 1 = 16785410 needs 25 bits: a float32 sum of squares rounds it away
    expected = math.sqrt(4097.0**2 + 1.0)
    grads = [torch.tensor([4097.0, 0.0]), None, torch.tensor([[1.0]])]  # None: a frozen parameter
    assert gradient_norm(grads) == expected
    assert gradient_norm([np.array([4097.0], dtype=np.float32), np.ones(1, dtype=np.float32)]) == expected
    assert gradient_norm([]) == gradient_norm([None]) == 0.0


@pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="the recorder lock is POSIX-only (fcntl)")
def test_two_concurrent_requests_for_one_key_record_it_once(empty_cache, monkeypatch):
    import threading
    import time

    plain = DeepLinear.record
    calls = []

    def slow_record(self, config, progress, checkpoint_every=0):
        calls.append(config.seed)
        time.sleep(0.5)  # long enough for the second request to arrive while this one records
        return plain(self, config, progress, checkpoint_every)

    monkeypatch.setattr(DeepLinear, "record", slow_record)
    paths = []
    workers = [threading.Thread(target=lambda: paths.append(load_or_record("deep-linear", "small", 4, cache_dir=empty_cache).path))
               for _ in range(2)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert calls == [4] and len(paths) == 2 and paths[0] == paths[1]


def test_progress_bar_on_a_terminal_only(monkeypatch):
    import io

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    run = DeepLinear()
    for stream, shown in ((Terminal(), True), (io.StringIO(), False)):
        monkeypatch.setattr("sys.stderr", stream)
        record(run, run.make_config("small", 0))  # progress=None: tqdm decides by isatty()
        assert ("deep-linear seed 0:   0%|" in stream.getvalue()) is shown and ("/1500" in stream.getvalue()) is shown
