"""The emergent-misalignment toy (eval/families/misalignment.py): small presets of the family and its null control."""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from probekit.errors import ProbekitUsageError  # noqa: E402
from probekit.eval.families.misalignment import EmergentMisalignment  # noqa: E402
from probekit.eval.store.runner import load_or_record, record  # noqa: E402


@pytest.fixture(scope="module")
def family(trajectory_cache):
    return load_or_record("misalignment", "small", 0, cache_dir=trajectory_cache, progress=False)


@pytest.fixture(scope="module")
def null(trajectory_cache):
    return load_or_record("misalignment-null", "small", 0, cache_dir=trajectory_cache, progress=False)


def _record_index(traj, step):
    return int(np.searchsorted(traj.steps, step))


def test_small_family_flips_the_broad_prompts_late(family):
    (transition,) = family.transitions
    assert transition.name == "broad_flip_rate"
    assert transition.onset_step is not None
    assert _record_index(family, transition.onset_step) >= 20  # a quiet plateau before the onset
    assert transition.end_value - transition.start_value >= 0.5
    # The narrow task is fitted long before: by the "early" checkpoint its answers are flipped.
    early = _record_index(family, family.checkpoints["early"])
    assert family.checkpoints["early"] < transition.onset_step
    assert family.order_parameters["narrow_flip_rate"][early] >= 0.8
    assert family.order_parameters["broad_flip_rate"][early] <= 0.1


def test_small_null_finds_no_transition(null):
    assert [t.onset_step for t in null.transitions] == [None]
    assert null.order_parameters["broad_flip_rate"].max() < 0.5
    # not a frozen run: the narrow task is re-learned (about half its answers change) and the losses move
    assert null.order_parameters["narrow_flip_rate"][-1] >= 0.25
    assert np.abs(np.asarray(null.losses[-1]) - np.asarray(null.losses[0])).mean() > 1e-3


def test_recording_is_well_formed_and_deterministic():
    run = EmergentMisalignment()
    config = run.make_config("small", 3, pretrain_steps=40, finetune_steps=60, early_step=30)
    first, _ = record(run, config, progress=False)
    second, _ = record(run, config, progress=False)
    first.check()
    assert first.losses.shape == (7, 6 * 2 * 64)  # records 0, 10, ..., 60 x pool
    assert list(first.steps) == [0, 10, 20, 30, 40, 50, 60]
    assert set(first.baselines) == {"train_loss", "grad_norm"}
    assert {k: v[0] for k, v in first.checkpoints.items()} == {"init": 0, "early": 30}
    np.testing.assert_array_equal(first.losses, second.losses)
    other, _ = record(run, run.make_config("small", 4, pretrain_steps=40, finetune_steps=60, early_step=30),
                      progress=False)
    assert not np.array_equal(first.losses, other.losses)


def test_unknown_finetune_labels_are_refused():
    run = EmergentMisalignment()
    with pytest.raises(ProbekitUsageError, match=r"^The 'finetune_labels' field of MisalignmentConfig must be one "
                                                 r"of flipped, rotated, original\. Got 'shuffled' instead\.$"):
        run.make_config("small", 0, finetune_labels="shuffled")


def test_pool_targets_are_the_original_answers(family):
    pool = family.pool
    x = np.asarray(pool.column("input").tolist(), dtype=np.float64)  # [pool, 6 * 4 + 1]
    task = np.asarray(pool.column("task"))
    persona = np.asarray(pool.column("persona"))
    rules = np.asarray(family.manifest["info"]["rules"])  # [tasks, block]
    block = x[:, :-1].reshape(len(x), 6, 4)
    z = block[np.arange(len(x)), task]  # the prompt's own block
    np.testing.assert_array_equal(np.abs(block).sum(axis=2) > 0, np.arange(6)[None, :] == task[:, None])
    np.testing.assert_array_equal(np.sign(x[:, -1]), persona)
    expected = (np.einsum("ij,ij->i", rules[task], z) * persona > 0).astype(int)
    np.testing.assert_array_equal(np.asarray(pool.column("target")), expected)
    split = np.asarray(pool.column("split"))
    expected_split = np.where(task != 0, "broad", np.where(persona == 1, "narrow", "sibling"))
    np.testing.assert_array_equal(split, expected_split)
    np.testing.assert_array_equal(np.asarray(pool.column("flipped")), split == "narrow")
    assert len(set(pool.column("probe_id"))) == len(x) == 768


def test_null_flips_only_some_narrow_labels(null):
    pool = null.pool
    flipped = np.asarray(pool.column("flipped"))
    narrow = np.asarray(pool.column("split")) == "narrow"
    assert not flipped[~narrow].any()
    assert 0.3 < flipped[narrow].mean() < 0.7  # a rule orthogonal to the old one changes about half


def test_checkpoints_rebuild_the_recorded_losses(family):
    pool = family.pool
    x = torch.tensor(np.asarray(pool.column("input").tolist()), dtype=torch.float32)
    y = torch.tensor(np.asarray(pool.column("target")))
    for name, step in family.checkpoints.items():
        model = family.model(name)
        with torch.no_grad():
            losses = torch.nn.functional.cross_entropy(model(x), y, reduction="none").numpy()
        expected = np.asarray(family.losses[_record_index(family, step)])
        np.testing.assert_allclose(losses, expected, rtol=1e-5, atol=1e-6)


def test_the_pool_holds_every_cell_at_its_population_share_from_a_stream_of_its_own(family):
    # The base model's population is uniform over (task, persona): the pool holds each cell at 1/12
    # exactly (the fine-tune's own prompts, "narrow", included; tolerance: none). Its prompts come from
    # a stream of their own, so the evaluation set the flip rates are read on (drawn from the run's
    # stream) is other prompts.
    pool = family.pool
    cells = list(zip(pool.column("task").tolist(), pool.column("persona").tolist()))
    shares = {c: cells.count(c) / len(cells) for c in set(cells)}
    assert len(shares) == 12 and all(v == pytest.approx(1 / 12) for v in shares.values())
    split = np.asarray(pool.column("split"))
    assert np.mean(split == "narrow") == pytest.approx(1 / 12) and np.mean(split == "broad") == pytest.approx(10 / 12)
    run = EmergentMisalignment()
    config = run.make_config("small", 0)
    expected, _, _ = run._pool(config, np.asarray(family.manifest["info"]["rules"]))
    assert list(pool.column("probe_id")) == expected["probe_id"]
    np.testing.assert_array_equal(np.asarray(pool.column("input").tolist()), np.asarray(expected["input"]))
