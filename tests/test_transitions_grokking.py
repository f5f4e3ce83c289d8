"""The grokking reference run (eval/families/grokking.py): small presets, pool invariants, checkpoints."""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from probekit.eval.families.grokking import Grokking, GrokkingNull, all_pairs, pool_rows  # noqa: E402
from probekit.eval.store.runner import record  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def small():
    run = Grokking()
    config = run.make_config("small", seed=0)
    recording, _ = record(run, config, progress=False)  # record() runs recording.check()
    return run, config, recording


@pytest.fixture(scope="module")
def small_null():
    run = GrokkingNull()
    config = run.make_config("small", seed=0)
    recording, _ = record(run, config, progress=False)
    return run, config, recording


def test_small_config_groks_after_a_quiet_plateau(small):
    run, config, recording = small
    recording.check()
    n_records = config.steps // config.record_every + 1
    assert recording.losses.shape == (n_records, len(pool_rows(config, all_pairs(config)[1])))
    assert set(recording.baselines) >= {"train_loss", "grad_norm"}
    (transition,) = run.transitions(config, recording)
    assert transition.happened and transition.end_value - transition.start_value > 0.9
    onset_record = int(np.searchsorted(recording.steps, transition.onset_step))
    assert onset_record >= 20 and transition.onset_step > config.early_step
    assert transition.midpoint_step > transition.onset_step
    assert recording.order_parameters["train_accuracy"][onset_record] == 1.0  # memorised long before


def test_null_small_config_memorises_but_never_groks(small_null):
    run, config, recording = small_null
    assert config.weight_decay == 0.0
    (transition,) = run.transitions(config, recording)
    assert not transition.happened
    assert recording.order_parameters["test_accuracy"].max() < 0.1
    assert recording.order_parameters["train_accuracy"][-1] == 1.0


def test_pool_is_half_the_pairs_with_their_sums_mod_p(small):
    _, config, recording = small
    p, pool = config.p, recording.pool
    pairs, is_train = all_pairs(config)
    rows = pool_rows(config, is_train)
    assert pool["input"] == pairs[rows].tolist()
    assert pool["target"] == [(a + b) % p for a, b in pairs[rows].tolist()]
    assert [[a, b] for a, b in zip(pool["a"], pool["b"])] == pairs[rows].tolist()
    assert pool["probe_id"] == [f"a{a:02d}b{b:02d}" for a, b in pairs[rows].tolist()]
    assert pool["split"] == ["train" if t else "test" for t in is_train[rows]]
    assert set(pool["split"]) == {"train", "test"}
    n_test = int((~is_train).sum())
    assert recording.info["n_eval"] == n_test - pool["split"].count("test") > 0  # the rest: the evaluation set


#: How far the pool's share of train pairs may sit from their share of all pairs (the population):
#: each split is halved with rounding, so at most one pair per split.
PREVALENCE_TOLERANCE = 0.005


@pytest.mark.parametrize("preset", ["small", "default"])
@pytest.mark.parametrize("seed", [0, 1])
def test_the_pool_holds_train_pairs_at_their_population_share(preset, seed):
    config = Grokking().make_config(preset, seed=seed)
    pairs, is_train = all_pairs(config)
    rows = pool_rows(config, is_train)
    assert abs(is_train[rows].mean() - is_train.mean()) <= PREVALENCE_TOLERANCE
    assert is_train.mean() == pytest.approx(config.train_fraction, abs=1 / config.p**2)
    assert len(rows) == pytest.approx(config.pool_fraction * config.p**2, abs=1)
    assert len(set(rows.tolist())) == len(rows)


def test_the_train_split_is_what_the_model_was_trained_on(small_null):
    # Without weight decay the memorised train pairs end far below every held-out pair.
    _, _, recording = small_null
    split = np.asarray(recording.pool["split"])
    final = recording.losses[-1]
    assert final[split == "train"].max() < final[split == "test"].min()


@pytest.mark.parametrize("checkpoint", ["init", "early"])
def test_recorded_losses_and_accuracy_match_the_checkpoints(small, checkpoint):
    # Score the checkpoint with the architecture written out plainly (concatenated embeddings):
    # the recorded losses and test accuracy of that step must be what this model gives.
    run, config, recording = small
    step, state = recording.checkpoints[checkpoint]
    r = int(np.searchsorted(recording.steps, step))
    assert recording.steps[r] == step
    x = torch.tensor(recording.pool["input"])  # [pool, 2]
    y = torch.tensor(recording.pool["target"])  # [pool]
    with torch.no_grad():
        e = state["embed.weight"][x].reshape(len(x), -1)  # [pool, 2 * embed_dim]
        h = torch.relu(e @ state["hidden.weight"].T + state["hidden.bias"])
        logits = h @ state["out.weight"].T + state["out.bias"]  # [pool, p]
        expected = torch.nn.functional.cross_entropy(logits, y, reduction="none").numpy()
    np.testing.assert_allclose(recording.losses[r], expected, rtol=1e-4, atol=1e-5)
    # test accuracy: on the held-out pairs outside the pool
    pairs, is_train = all_pairs(config)
    outside = np.ones(len(pairs), dtype=bool)
    outside[pool_rows(config, is_train)] = False
    held = torch.from_numpy(pairs[outside & ~is_train])  # [eval, 2]
    with torch.no_grad():
        e = state["embed.weight"][held].reshape(len(held), -1)
        h = torch.relu(e @ state["hidden.weight"].T + state["hidden.bias"])
        eval_logits = h @ state["out.weight"].T + state["out.bias"]
    expected_accuracy = (eval_logits.argmax(1) == (held[:, 0] + held[:, 1]) % config.p).double().mean().item()
    assert recording.order_parameters["test_accuracy"][r] == pytest.approx(expected_accuracy)
    model = run.build_model(config)
    model.load_state_dict(state)  # the checkpoint fits the run's own architecture


def test_rerun_is_bit_identical_and_the_seed_matters():
    run = Grokking()
    config = run.make_config("small", seed=0, steps=40, record_every=10)
    first = run.record(config, lambda n: None)
    again = run.record(config, lambda n: None)
    other = run.record(run.make_config("small", seed=1, steps=40, record_every=10), lambda n: None)
    np.testing.assert_array_equal(first.losses, again.losses)
    np.testing.assert_array_equal(first.baselines["grad_norm"], again.baselines["grad_norm"])
    assert first.pool["split"] == again.pool["split"] != other.pool["split"]
    assert not np.array_equal(first.losses, other.losses)


def test_progress_counts_every_training_step():
    run = Grokking()
    config = run.make_config("small", seed=0, steps=30, record_every=7)
    ticks = []
    recording = run.record(config, ticks.append)
    assert sum(ticks) == run.total_steps(config) == 30
    assert recording.steps.tolist() == [0, 7, 14, 21, 28, 30]
