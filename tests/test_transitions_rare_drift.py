"""The rare-drift reference run and its null control, on their small configs (a few seconds each)."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

pytest.importorskip("torch")

from probekit.errors import ProbekitUsageError  # noqa: E402
from probekit.eval.families.rare_drift import DRIFTING, RARE, _geometry, RareDrift, RareDriftNull  # noqa: E402
from probekit.eval.store.runner import record  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def small():
    run = RareDrift()
    config = run.make_config("small", seed=0)
    recording, _ = record(run, config, progress=False)
    return run, config, recording


@pytest.fixture(scope="module")
def small_null():
    run = RareDriftNull()
    config = run.make_config("small", seed=0)
    recording, _ = record(run, config, progress=False)
    return run, config, recording


def test_small_recording_layout(small):
    run, config, recording = small
    recording.check()
    expected_records = config.steps // config.record_every + 1
    assert recording.steps.tolist() == list(range(0, config.steps + 1, config.record_every))
    assert recording.losses.shape == (expected_records, 2 * config.pool_per_phase)
    assert recording.losses.dtype == np.float32
    assert set(recording.baselines) == {"train_loss", "grad_norm"}
    assert recording.checkpoints["init"][0] == 0
    assert recording.checkpoints["early"][0] == config.early_step
    assert sorted(recording.pool) == ["class", "drifting", "input", "phase", "probe_id", "rare", "split", "target"]


def test_small_transition_found_with_room(small):
    run, config, recording = small
    (transition,) = run.transitions(config, recording)
    assert transition.happened
    assert transition.start_value > 0.9 and transition.end_value < 0.1  # the rare class is learned, then lost
    onset_record = int(np.searchsorted(recording.steps, transition.onset_step))
    assert onset_record >= 20
    assert transition.onset_step > config.drift_start  # nothing falls before the stream starts to move
    # silent: the expected accuracy on the current stream stays high throughout
    assert recording.order_parameters["stream_accuracy"].min() > 0.9


def test_small_null_has_no_transition(small_null):
    run, config, recording = small_null
    recording.check()
    assert [t.happened for t in run.transitions(config, recording)] == [False]
    assert recording.order_parameters["rare_accuracy"].min() > 0.9


def test_pool_columns_match_the_stream(small):
    run, config, recording = small
    pool = recording.pool
    classes = np.asarray(pool["class"])
    assert pool["target"] == pool["class"]
    assert pool["rare"] == (classes == RARE).tolist()
    assert pool["drifting"] == (classes == DRIFTING).tolist()
    phase = np.asarray(pool["phase"])
    assert (phase == "initial").sum() == (phase == "shifted").sum() == config.pool_per_phase
    # class counts follow the phase's class rates (2% rare at the start, 1% after the drift), to within one
    for p, rate in (("initial", config.rare_rate), ("shifted", config.rare_rate_final)):
        expected = np.full(config.n_classes, (1 - rate) / (config.n_classes - 1) * config.pool_per_phase)
        expected[RARE] = rate * config.pool_per_phase
        counts = np.bincount(classes[phase == p], minlength=config.n_classes)
        assert np.abs(counts - expected).max() < 1, (p, counts, expected)
    # Between the phases only the drifting class moved: by drift_fraction of its distance to the rare mean
    # (separation * sqrt(2): the means are orthonormal), towards it; other classes' means move by noise only.
    x = np.asarray(pool["input"])
    mean = {(p, c): x[(phase == p) & (classes == c)].mean(0)
            for p in ("initial", "shifted") for c in range(config.n_classes)}
    moved = mean["shifted", DRIFTING] - mean["initial", DRIFTING]
    towards = mean["initial", RARE] - mean["initial", DRIFTING]
    expected_move = config.drift_fraction * config.separation * np.sqrt(2)
    assert np.linalg.norm(moved) == pytest.approx(expected_move, rel=0.2)
    assert moved @ towards / (np.linalg.norm(moved) * np.linalg.norm(towards)) > 0.9
    bystanders = [c for c in range(config.n_classes) if c not in (RARE, DRIFTING)]
    assert max(np.linalg.norm(mean["shifted", c] - mean["initial", c]) for c in bystanders) < 2.0


def test_orthogonal_control_moves_as_far_but_away_from_every_class():
    run = RareDriftNull()
    rare_cfg = run.make_config("small", seed=2, drift_fraction=0.95)
    away_cfg = run.make_config("orthogonal", seed=2)
    base, towards = _geometry(np.random.default_rng(2), rare_cfg)
    base_away, away = _geometry(np.random.default_rng(2), away_cfg)
    np.testing.assert_allclose(base_away, base)  # same class means, same seed
    expected = 0.95 * rare_cfg.separation * np.sqrt(2)  # 95% of the distance between two orthonormal means
    assert np.linalg.norm(towards[DRIFTING]) == pytest.approx(expected)
    assert np.linalg.norm(away[DRIFTING]) == pytest.approx(expected)
    np.testing.assert_allclose(base @ away[DRIFTING], 0.0, atol=1e-9)  # orthogonal to every class mean
    assert np.count_nonzero(np.linalg.norm(away, axis=1)) == 1  # only the drifting class moves


def test_record_is_deterministic_and_seeded():
    run = RareDrift()
    config = run.make_config("small", seed=3, steps=60, pretrain_steps=20, record_every=20)
    first = run.record(config, lambda n: None)
    second = run.record(config, lambda n: None)
    np.testing.assert_array_equal(first.losses, second.losses)
    other = run.record(run.make_config("small", seed=4, steps=60, pretrain_steps=20, record_every=20), lambda n: None)
    assert not np.array_equal(first.losses, other.losses)


def test_progress_counts_every_training_step():
    run = RareDrift()
    config = run.make_config("small", steps=30, pretrain_steps=10, record_every=10)
    ticks = []
    run.record(config, ticks.append)
    assert sum(ticks) == run.total_steps(config) == 40


def test_unknown_drift_target_is_refused():
    run = RareDrift()
    with pytest.raises(ProbekitUsageError, match=r"^The 'drift_target' field of RareDriftConfig must be one of rare, "
                                                 r"orthogonal\. Got 'sideways' instead\.$"):
        run.make_config("small", steps=10, pretrain_steps=0, drift_target="sideways")
    config = dataclasses.replace(run.make_config("small", steps=10, pretrain_steps=0), drift_target="sideways")
    with pytest.raises(ProbekitUsageError, match=r"The 'drift_target' field of RareDriftConfig must be one of"):
        run.record(config, lambda n: None)  # a config built around make_config is still refused


def test_the_pool_holds_the_rare_class_at_the_stream_prevalence(small):
    # The stream's rare share, averaged over the recorded span (2% falling to 1% during the drift), is
    # the pool's within one example of the small pool (1 / 512 ~ 0.2 percentage points); each half at its
    # phase's rate within one example of the half. The order parameter's rare set is outside the pool.
    from probekit.eval.families.rare_drift import _alpha, _class_rates

    run, config, recording = small
    rare = np.asarray(recording.pool["rare"])
    phase = np.asarray(recording.pool["phase"])
    stream = np.mean([_class_rates(config, _alpha(config, s))[RARE] for s in range(config.steps)])
    assert abs(rare.mean() - stream) <= 1 / len(rare), (rare.mean(), stream)
    for name, rate in (("initial", config.rare_rate), ("shifted", config.rare_rate_final)):
        assert abs(rare[phase == name].mean() - rate) <= 1 / (phase == name).sum()
    assert config.n_rare_eval > rare.sum()  # the evaluation set: its own draws, far more rare examples
