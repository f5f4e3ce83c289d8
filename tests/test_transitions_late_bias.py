"""The late-bias reference run (eval/families/late_bias.py): small presets, pool invariants, checkpoints."""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from probekit.eval.families.late_bias import (  # noqa: E402
    A_COL,
    M_COL,
    Q_COL,
    SLICE_CHANNEL,
    LateBias,
    LateBiasNull,
    draw_all,
)
from probekit.eval.store.runner import record  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def small():
    run = LateBias()
    config = run.make_config("small", seed=0)
    recording, _ = record(run, config, progress=False)  # record() runs recording.check()
    return run, config, recording


def test_small_config_finds_the_transition_after_a_quiet_plateau(small):
    run, config, recording = small
    recording.check()
    (transition,) = run.transitions(config, recording)
    assert transition.happened, transition
    onset_record = int(np.flatnonzero(recording.steps == transition.onset_step)[0])
    assert onset_record >= 20
    assert config.early_step < transition.onset_step < transition.midpoint_step < config.steps
    assert recording.steps[0] == 0 and recording.steps[-1] == config.steps
    assert len(recording.steps) == config.steps // config.record_every + 1
    bias = recording.order_parameters["slice_bias"]
    assert bias[0] < 0.01 and bias[-1] > 0.9  # nothing at init, learned by the end


def test_null_small_config_finds_no_transition():
    run = LateBiasNull()
    config = run.make_config("small", seed=0)
    assert config.protected_link is False
    recording, _ = record(run, config, progress=False)
    assert [t.happened for t in run.transitions(config, recording)] == [False]
    assert recording.order_parameters["slice_bias"].max() < 0.05


#: How far a pool's slice prevalence may sit from the training set's: half a percentage point (each
#: part of the pool holds round(fraction x rows) slice rows, the training set round(fraction x n_train)).
PREVALENCE_TOLERANCE = 0.005


@pytest.mark.parametrize("preset", ["small", "default"])
def test_the_pool_holds_the_slice_at_the_training_prevalence(preset):
    config = LateBias().make_config(preset, seed=1)
    drawn = draw_all(config)  # no training: the pool and the data it was drawn from
    training = drawn["data"]["s"].mean()
    pool = drawn["pool"]
    in_pool = np.mean(np.asarray(pool["slice"]) == "slice")
    assert training == pytest.approx(config.slice_fraction)
    assert abs(in_pool - training) <= PREVALENCE_TOLERANCE, (in_pool, training)
    for split in ("train", "heldout"):  # both parts, each at the training prevalence
        part = np.asarray(pool["split"]) == split
        assert abs(np.mean(np.asarray(pool["slice"])[part] == "slice") - training) <= PREVALENCE_TOLERANCE
    # the slice rows are slice rows of the training law: the marker is set, q = a, the target's slice channel a
    x, y = np.asarray(pool["input"]), np.asarray(pool["target"])
    sl = np.asarray(pool["slice"]) == "slice"
    assert (x[sl, M_COL] > 0.5).all() and (x[~sl, M_COL] < 0.5).all()
    np.testing.assert_array_equal(x[sl, Q_COL], x[sl, A_COL])
    np.testing.assert_array_equal(y[sl, SLICE_CHANNEL], x[sl, A_COL])
    assert (y[~sl, SLICE_CHANNEL] == 0).all() and (x[~sl, Q_COL] == 0).all()
    assert set(pool) == {"probe_id", "input", "target", "split", "slice", "protected"}


def test_the_evaluation_set_is_outside_the_pool_and_its_twins_differ_only_in_the_protected_attribute():
    config = LateBias().make_config("small", seed=0)
    drawn = draw_all(config)
    eval_x = drawn["eval_x"]
    assert drawn["slice_pairs"].shape == (config.n_eval_slice, 2)
    assert drawn["majority_pairs"].shape == (config.n_eval_majority_pairs, 2)
    for pairs, in_slice in ((drawn["slice_pairs"], True), (drawn["majority_pairs"], False)):
        original, twin = eval_x[pairs[:, 0]], eval_x[pairs[:, 1]]
        expected = original.copy()
        expected[:, A_COL] = -original[:, A_COL]  # a flipped, and q = a * s with it
        expected[:, Q_COL] = -original[:, Q_COL]
        np.testing.assert_array_equal(twin, expected)
        assert ((original[:, M_COL] > 0.5) == in_slice).all()
    pool_rows = {tuple(row) for row in np.asarray(drawn["pool_x"]).tolist()}
    assert not pool_rows & {tuple(row) for row in eval_x.tolist()}


def test_recorded_losses_and_order_parameter_match_the_checkpoints(small):
    run, config, recording = small
    x = torch.tensor(recording.pool["input"])  # [pool, 17]
    y = torch.tensor(recording.pool["target"])  # [pool, 3]
    drawn = draw_all(config)
    ex = torch.from_numpy(drawn["eval_x"])
    for name in ("init", "early"):
        step, state = recording.checkpoints[name]
        model = run.build_model(config)
        model.load_state_dict(state)
        with torch.no_grad():
            out, f = model(x), model(ex)[:, SLICE_CHANNEL].numpy()
        r = int(np.flatnonzero(recording.steps == step)[0])
        expected = ((out - y) ** 2).mean(dim=1).numpy()
        np.testing.assert_allclose(recording.losses[r], expected, rtol=1e-5, atol=1e-7)
        for series, pairs in (("slice_bias", drawn["slice_pairs"]), ("majority_bias", drawn["majority_pairs"])):
            expected = np.abs(f[pairs[:, 0]] - f[pairs[:, 1]]).mean() / 2
            assert recording.order_parameters[series][r] == pytest.approx(expected, rel=1e-5, abs=1e-9)
    assert recording.checkpoints["early"][0] == config.early_step


def test_the_same_seed_gives_bit_identical_losses_and_another_seed_does_not():
    run = LateBias()
    config = run.make_config("small", seed=3, steps=60, record_every=20)
    first = run.record(config, lambda n: None)
    again = run.record(config, lambda n: None)
    other = run.record(run.make_config("small", seed=4, steps=60, record_every=20), lambda n: None)
    np.testing.assert_array_equal(first.losses, again.losses)
    np.testing.assert_array_equal(first.baselines["grad_norm"], again.baselines["grad_norm"])
    assert not np.array_equal(first.losses, other.losses)


def test_progress_counts_every_training_step():
    run = LateBias()
    config = run.make_config("small", seed=0, steps=30, record_every=7)
    ticks = []
    recording = run.record(config, ticks.append)
    assert sum(ticks) == run.total_steps(config) == 30
    assert recording.steps.tolist() == [0, 7, 14, 21, 28, 30]


def test_the_concerns_target_the_slice(small):
    from probekit.pool import Pool
    from probekit.registry import make_selector

    _, _, recording = small
    pool = Pool.from_dict(recording.pool, id_field="probe_id")
    slice_of = dict(zip(recording.pool["probe_id"], recording.pool["slice"]))
    protected_of = dict(zip(recording.pool["probe_id"], recording.pool["protected"]))
    n_slice = sum(v == "slice" for v in slice_of.values())
    (only,) = LateBias.concerns["slice"]
    probes = make_selector("concern", slices=[only]).select(pool, n_slice + 10, seed=0)
    assert [slice_of[p] for p in probes.ids[:n_slice]] == ["slice"] * n_slice  # every slice row, then background
    probes = make_selector("concern", slices=LateBias.concerns["protected"]).select(pool, 40, seed=0)
    strata = [(slice_of[p], protected_of[p]) for p in probes.ids]
    assert {s: strata.count(s) for s in set(strata)} == {(s, a): 10 for s in ("slice", "majority") for a in (-1, 1)}
