"""The late-bias reference run (eval/families/late_bias.py): small presets, pool invariants, checkpoints."""
from __future__ import annotations

from collections import defaultdict

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from probekit.eval.families.late_bias import A_COL, Q_COL, SLICE_CHANNEL, LateBias, LateBiasNull  # noqa: E402
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


def test_counterfactual_twins_differ_only_in_the_protected_attribute(small):
    _, _, recording = small
    pool = recording.pool
    members = defaultdict(list)
    for row, pair in enumerate(pool["pair_id"]):
        if pair is not None:
            members[pair].append(row)
    assert members and all(len(rows) == 2 for rows in members.values())
    n_slice_pairs = 0
    for original, twin in members.values():
        assert (pool["counterfactual"][original], pool["counterfactual"][twin]) == (False, True)
        x = np.asarray(pool["input"][original])
        expected = x.copy()
        expected[A_COL] = -x[A_COL]  # a flipped, and q = a * s with it
        expected[Q_COL] = -x[Q_COL]
        np.testing.assert_array_equal(np.asarray(pool["input"][twin]), expected)
        assert pool["protected"][twin] == -pool["protected"][original] == -int(x[A_COL])
        assert pool["target"][twin] == pool["target"][original]  # the factual label
        assert pool["slice"][twin] == pool["slice"][original]
        n_slice_pairs += pool["slice"][original] == "slice"
        if pool["slice"][original] == "slice":
            assert x[Q_COL] == x[A_COL] and pool["target"][original][SLICE_CHANNEL] == x[A_COL]
        else:
            assert x[Q_COL] == 0 and pool["target"][original][SLICE_CHANNEL] == 0
    assert n_slice_pairs == LateBias.presets["small"]["n_pool_slice"]
    assert set(pool["split"]) == {"train", "heldout"}


def test_recorded_losses_and_order_parameter_match_the_checkpoints(small):
    run, config, recording = small
    x = torch.tensor(recording.pool["input"])  # [pool, 17]
    y = torch.tensor(recording.pool["target"])  # [pool, 3]
    pairs = defaultdict(dict)
    for row, (pair, twin) in enumerate(zip(recording.pool["pair_id"], recording.pool["counterfactual"])):
        if pair is not None and recording.pool["slice"][row] == "slice":
            pairs[pair][twin] = row
    rows = np.array([[p[False], p[True]] for p in pairs.values()])  # [pairs, 2]
    for name in ("init", "early"):
        step, state = recording.checkpoints[name]
        model = run.build_model(config)
        model.load_state_dict(state)
        with torch.no_grad():
            out = model(x)
        r = int(np.flatnonzero(recording.steps == step)[0])
        expected = ((out - y) ** 2).mean(dim=1).numpy()
        np.testing.assert_allclose(recording.losses[r], expected, rtol=1e-5, atol=1e-7)
        f = out[:, SLICE_CHANNEL].numpy()
        expected = np.abs(f[rows[:, 0]] - f[rows[:, 1]]).mean() / 2
        assert recording.order_parameters["slice_bias"][r] == pytest.approx(expected, rel=1e-5, abs=1e-9)
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


def test_concern_selector_keeps_counterfactual_pairs_together(small):
    from probekit.pool import Pool
    from probekit.registry import make_selector

    _, _, recording = small
    pool = Pool.from_dict(recording.pool, id_field="probe_id")
    n = len(recording.pool["probe_id"])
    # pair_id None marks an unpaired row (a shared "" would make one giant "pair", which the selector refuses)
    probes = make_selector("concern", slices=["bias:protected,slice,pairs=pair_id"]).select(pool, n, seed=0)
    pair_of = dict(zip(recording.pool["probe_id"], recording.pool["pair_id"]))
    place = defaultdict(list)
    for i, probe in enumerate(probes.ids):
        if pair_of[probe] is not None:
            place[pair_of[probe]].append(i)
    expected = {p for p in recording.pool["pair_id"] if p is not None}
    assert set(place) == expected
    assert all(len(at) == 2 and at[1] == at[0] + 1 for at in place.values())  # each pair taken as one unit
