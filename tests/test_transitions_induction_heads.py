"""The induction-heads reference run and its null control, on their small configs.

The expected values are computed here independently of the module: the pool's
repeat structure from the token lists, the per-sample loss from a plain
log-softmax, the first record's losses from the stored init checkpoint.
"""
from __future__ import annotations

import dataclasses
import pickle

import numpy as np
import pytest
import torch

from probekit.eval.families.induction_heads import (
    InductionHeads,
    InductionHeadsNull,
    make_sequences,
    sequence_loss,
    training_batch,
)
from probekit.eval.store.runner import record

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def small(one_torch_thread):
    run = InductionHeads()
    config = run.make_config("small", seed=0)
    recording, _ = record(run, config, progress=False)
    return run, config, recording


@pytest.fixture(scope="module")
def small_null(one_torch_thread):
    run = InductionHeadsNull()
    config = run.make_config("small", seed=0)
    recording, _ = record(run, config, progress=False)
    return run, config, recording


def test_small_recording_is_well_formed(small):
    run, config, rec = small
    rec.check()
    n_pool = config.n_pool
    expected_steps = np.arange(0, config.steps + 1, config.record_every)
    if expected_steps[-1] != config.steps:
        expected_steps = np.append(expected_steps, config.steps)
    np.testing.assert_array_equal(rec.steps, expected_steps)
    assert rec.losses.shape == (len(expected_steps), n_pool)
    assert rec.losses.dtype == np.float32
    assert set(rec.baselines) == {"train_loss", "grad_norm"}
    assert {spec.name for spec in run.order_parameters(config)} <= set(rec.order_parameters)
    assert rec.checkpoints["init"][0] == 0 and rec.checkpoints["early"][0] == config.early_step
    # at initialisation every prediction is near uniform: loss ~ log(vocab)
    assert abs(float(rec.losses[0].mean()) - np.log(config.vocab)) < 0.5


def test_small_transition_found_with_room_before_onset(small):
    run, config, rec = small
    (transition,) = run.transitions(config, rec)
    assert transition.happened
    onset_record = int(np.searchsorted(rec.steps, transition.onset_step))
    assert onset_record >= 20
    assert transition.midpoint_step > transition.onset_step
    assert transition.end_value - transition.start_value > 0.5  # copying switched on
    assert config.early_step < transition.onset_step


def test_small_null_has_no_transition(small_null):
    run, config, rec = small_null
    rec.check()
    assert all(not t.happened for t in run.transitions(config, rec))
    assert np.abs(rec.order_parameters["induction_accuracy"]).max() < 0.1


def _has_repeat(seq: list[int], period_range: range) -> bool:
    return any(all(seq[t] == seq[t - p] for t in range(p, len(seq))) for p in period_range)


def test_pool_structure(small):
    _, config, rec = small
    pool = rec.pool
    assert len(set(pool["probe_id"])) == len(pool["probe_id"])
    for x, y, kind, period, has_repeat, n_copy in zip(pool["input"], pool["target"], pool["slice"], pool["period"],
                                                       pool["has_repeat"], pool["n_copyable"]):
        assert len(x) == len(y) == config.seq_len
        assert x[1:] == y[:-1]  # the target is the input shifted by one token
        seq = x + y[-1:]
        if kind == "repeat":
            assert has_repeat and config.min_period <= period <= config.max_period
            assert all(seq[t] == seq[t - period] for t in range(period, len(seq)))
            assert n_copy == config.seq_len - period
        else:
            assert kind == "random" and not has_repeat and period == 0 and n_copy == 0
    assert set(pool["slice"]) == {"repeat", "random"}  # the training law's two kinds; no shuffled controls


@pytest.mark.parametrize("preset", ["small", "default"])
def test_the_pool_holds_repeat_sequences_at_the_training_share(preset):
    config = InductionHeads().make_config(preset, seed=0)
    pool, _, _ = InductionHeads()._pool(config)
    share = np.mean(np.asarray(pool["slice"]) == "repeat")
    assert abs(share - config.repeat_fraction) <= 1 / config.n_pool  # tolerance: one sequence of the pool
    # the training batches: each sequence repeats its block with probability repeat_fraction
    gen = torch.Generator().manual_seed(0)
    periods = range(config.min_period, config.max_period + 1)
    drawn = [_has_repeat(row.tolist(), periods) for _ in range(40) for row in training_batch(config, gen)]
    n = len(drawn)  # 40 batches; a random row repeating by chance is negligible at these vocab sizes
    assert abs(np.mean(drawn) - config.repeat_fraction) <= 4 * np.sqrt(0.25 / n)
    null = InductionHeadsNull().make_config(preset, seed=0)
    assert not any(_has_repeat(row.tolist(), periods) for row in training_batch(null, gen))


def test_shuffled_blocks_differ_from_repeats():
    config = InductionHeads().make_config("small", seed=0)
    tokens, period = make_sequences("shuffled", 200, config, torch.Generator().manual_seed(5))
    copied = [bool(torch.equal(row[p:2 * p], row[:p])) for row, p in zip(tokens, period.tolist())]
    assert sum(copied) < 10  # a shuffle of 6-12 tokens rarely reproduces the order


def test_unknown_sequence_kind_is_refused():
    config = InductionHeads().make_config("small")
    with pytest.raises(ValueError, match="unknown sequence kind 'bogus'"):
        make_sequences("bogus", 4, config, torch.Generator().manual_seed(0))


def test_sequence_loss_matches_plain_log_softmax():
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 5, 7, generator=gen)
    targets = torch.randint(0, 7, (3, 5), generator=gen)
    logp = logits.double().log_softmax(-1).numpy()
    expected = -np.take_along_axis(logp, targets.numpy()[..., None], -1)[..., 0].mean(1)
    np.testing.assert_allclose(sequence_loss(logits, targets).numpy(), expected, rtol=1e-5)
    # a list column arrives as float targets
    np.testing.assert_allclose(sequence_loss(logits, targets.float()).numpy(), expected, rtol=1e-5)


def test_model_pickles_with_its_weights(small):
    run, config, rec = small
    model = run.build_model(config)
    model.load_state_dict(rec.checkpoints["early"][1])
    clone = pickle.loads(pickle.dumps(model))
    x = torch.tensor(rec.pool["input"][:4])
    with torch.no_grad():
        torch.testing.assert_close(clone(x), model(x), rtol=0, atol=0)
    assert pickle.loads(pickle.dumps(InductionHeads.loss)) is sequence_loss


def test_checkpoints_reproduce_recorded_losses(small):
    run, config, rec = small
    x = torch.tensor(rec.pool["input"])
    y = torch.tensor(rec.pool["target"])
    for name in ("init", "early"):
        step, state = rec.checkpoints[name]
        model = run.build_model(config)
        model.load_state_dict(state)
        with torch.no_grad():
            expected = -model(x).log_softmax(-1).gather(-1, y[..., None])[..., 0].mean(1).numpy()
        r = int(np.searchsorted(rec.steps, step))
        assert rec.steps[r] == step
        np.testing.assert_allclose(rec.losses[r], expected, rtol=1e-5, atol=1e-6)


def test_rerun_is_bit_identical(one_torch_thread):
    run = InductionHeads()
    config = dataclasses.replace(run.make_config("small", seed=3), steps=12, early_step=6)
    first = run.record(config, lambda n: None)
    second = run.record(config, lambda n: None)
    np.testing.assert_array_equal(first.losses, second.losses)
    np.testing.assert_array_equal(first.baselines["grad_norm"], second.baselines["grad_norm"])
    other = run.record(dataclasses.replace(config, seed=4), lambda n: None)
    assert not np.array_equal(first.losses, other.losses)


def test_progress_counts_every_training_step(one_torch_thread):
    run = InductionHeads()
    config = dataclasses.replace(run.make_config("small"), steps=7, record_every=3, early_step=3)
    ticks = []
    rec = run.record(config, ticks.append)
    assert sum(ticks) == run.total_steps(config) == 7
    np.testing.assert_array_equal(rec.steps, [0, 3, 6, 7])  # the final step is always recorded


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0])
def test_default_transition_and_null(seed, one_torch_thread):
    run = InductionHeads()
    config = run.make_config("default", seed=seed)
    rec, _ = record(run, config, progress=False)
    (transition,) = run.transitions(config, rec)
    onset_record = int(np.searchsorted(rec.steps, transition.onset_step))
    assert onset_record >= 60 and transition.onset_step >= 0.15 * config.steps
    null = InductionHeadsNull()
    null_config = null.make_config("default", seed=seed)
    null_rec, _ = record(null, null_config, progress=False)
    assert all(not t.happened for t in null.transitions(null_config, null_rec))
