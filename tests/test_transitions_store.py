"""The reference-run contract, the onset rule and the trajectory store (cache, verification, atomicity)."""
from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from probekit.errors import ProbekitUsageError, ProbekitWarning
from probekit.eval.deep_linear import DeepLinear, DeepLinearConfig, run_deep_linear
from probekit.eval.reference import OrderParameter, Recording, find_transition
from probekit.eval.runner import load_or_record, record, trajectory_path
from probekit.eval.trajectory import Trajectory, TrajectoryCorruptError, config_hash, default_cache_dir


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
        baselines={"train_loss": np.zeros(3)},
    )
    base.update(changes)
    return Recording(**base)


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"steps": np.array([0, 2, 1])}, "steps must be an increasing 1-D array"),
        ({"losses": np.ones((2, 2), np.float32)}, r"losses must be \[records=3, pool\]"),
        ({"pool": {"probe_id": ["a"], "input": [[0.0]], "target": [0], "split": ["x"]}}, "pool column 'probe_id' has 1 rows"),
        ({"pool": {"probe_id": ["a", "b"], "input": [[0.0], [1.0]], "target": [0, 1]}}, "the pool needs a 'split' column"),
        ({"pool": {"probe_id": ["a", "a"], "input": [[0.0], [1.0]], "target": [0, 1], "split": ["x", "x"]}}, "must be unique"),
        ({"order_parameters": {"op": np.zeros(2)}}, r"order parameter 'op' must have one value per record \(3\)"),
        ({"losses": np.full((3, 2), np.nan, np.float32)}, "NaN or inf"),
    ],
)
def test_malformed_recordings_are_refused(changes, message):
    with pytest.raises(ValueError, match=message):
        _tiny_recording(**changes).check()


# -- the store ------------------------------------------------------------------------------
@pytest.fixture
def cache(tmp_path):
    return tmp_path / "cache"


def test_small_run_is_stored_and_reloads_identically(cache):
    run = DeepLinear()
    cfg = run.make_config("small", 0)
    expected = run_deep_linear(cfg)  # an independent in-memory run of the same config
    traj = load_or_record("deep-linear", "small", 0, cache_dir=cache)
    assert traj.path == trajectory_path(cache, "deep-linear", run, cfg)
    assert isinstance(traj.losses, np.memmap) and traj.losses.dtype == np.float32
    np.testing.assert_array_equal(traj.losses, expected.losses)
    np.testing.assert_array_equal(traj.steps, expected.steps)
    np.testing.assert_array_equal(traj.order_parameters["mode_2"], expected.mode_strength[:, 1])
    np.testing.assert_array_equal(traj.baselines["grad_norm"], expected.grad_norm)
    assert [t.onset_step for t in traj.transitions] == expected.onset_steps.tolist()
    assert traj.config == json.loads(json.dumps(dataclasses.asdict(cfg)))
    assert traj.manifest["versions"]["torch"] and traj.manifest["config_hash"] == config_hash("deep-linear", run.version, cfg)
    assert traj.pool.ids.tolist()[:2] == ["x0000", "x0001"] and len(traj.pool) == cfg.n_pool
    np.testing.assert_allclose(np.asarray(traj.pool.rows([5])[0]["input"]), expected.pool_inputs[5], rtol=1e-6)
    assert traj.checkpoints == {"init": 0, "early": cfg.early_step}
    w1 = expected.checkpoints["early"][1]
    np.testing.assert_allclose(traj.model("early")[0].weight.detach().numpy(), w1, rtol=1e-6)


def test_valid_cache_is_reused_without_training(cache, monkeypatch):
    first = load_or_record("deep-linear", "small", 1, cache_dir=cache)
    mtime = (first.path / "losses.npy").stat().st_mtime_ns

    def no_training(*args, **kwargs):
        raise AssertionError("a valid cache must not be recorded again")

    monkeypatch.setattr(DeepLinear, "record", no_training)
    again = load_or_record("deep-linear", "small", 1, cache_dir=cache)
    assert again.path == first.path and (again.path / "losses.npy").stat().st_mtime_ns == mtime


@pytest.mark.parametrize("damage", ["flip_byte", "delete_file", "extra_file", "bad_manifest"])
def test_corrupt_cache_is_detected_and_rebuilt(cache, damage):
    traj = load_or_record("deep-linear", "small", 2, cache_dir=cache)
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
    else:
        (path / "manifest.json").write_text("{not json")
    with pytest.raises(TrajectoryCorruptError):
        Trajectory(path)
    with pytest.warns(ProbekitWarning, match="rebuilding the cached trajectory"):
        rebuilt = load_or_record("deep-linear", "small", 2, cache_dir=cache)
    np.testing.assert_array_equal(rebuilt.losses, expected)


def test_failed_recording_leaves_nothing_in_the_cache(cache, monkeypatch):
    def broken(self, config, progress):
        raise RuntimeError("out of memory")

    monkeypatch.setattr(DeepLinear, "record", broken)
    with pytest.raises(RuntimeError, match="out of memory"):
        load_or_record("deep-linear", "small", 0, cache_dir=cache)
    assert not cache.exists() or not any(p.is_file() for p in cache.rglob("*"))


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


def test_default_cache_dir_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("PROBEKIT_CACHE_DIR", str(tmp_path / "mine"))
    assert default_cache_dir() == tmp_path / "mine"
    monkeypatch.delenv("PROBEKIT_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setattr("sys.platform", "linux")
    assert default_cache_dir() == tmp_path / "xdg" / "probekit" / "trajectories"


def test_probe_losses_by_id_index_and_probeset(cache):
    from probekit.selectors.random_sampling import RandomSelector

    traj = load_or_record("deep-linear", "small", 0, cache_dir=cache)
    full = np.array(traj.losses)
    np.testing.assert_array_equal(traj.probe_losses(["x0003", "x0001"]), full[:, [3, 1]])
    np.testing.assert_array_equal(traj.probe_losses(np.array([5, 0])), full[:, [5, 0]])
    probes = RandomSelector().select(traj.pool, 8, seed=0)
    expected = full[:, traj.pool.index_of(list(probes.ids))]
    np.testing.assert_array_equal(traj.probe_losses(probes), expected)
    with pytest.raises(IndexError, match=r"pool indices must be in \[0, 64\)"):
        traj.probe_losses([0, 64])


def test_record_uses_one_thread_and_restores_it():
    import torch

    before = torch.get_num_threads()
    seen = []

    class Spy(DeepLinear):
        def record(self, config, progress):
            seen.append(torch.get_num_threads())
            return super().record(config, progress)

    recording, wall = record(Spy(), Spy.make_config("small", 0), progress=False)
    assert seen == [1] and torch.get_num_threads() == before and wall > 0
    recording.check()
