"""Response-space selection: k-means medoids of pilot loss trajectories."""
from __future__ import annotations

import itertools
import math
import warnings
from collections import Counter

import numpy as np
import pytest

from probekit.errors import ProbekitUsageError
from probekit.pool import Pool
from probekit.selectors.response import ResponseSelector, response_features


def trajectories(pool):
    return np.stack([np.asarray(v, dtype=np.float64) for v in pool.column("pilot_losses")])


def small_pool(losses, **extra):
    ids = [f"e{i:02d}" for i in range(len(losses))]
    return Pool.from_dict({"id": ids, "pilot_losses": losses, **extra}, id_field="id")


def test_first_probes_cover_distinct_topics_more_often_than_random(pool):
    # make_test_pool gives each topic its own learning rate: response space separates topics.
    k, seeds = 5, range(10)
    topics = pool.column("topic")
    hits = 0
    for seed in seeds:
        head = ResponseSelector.example().select(pool, k, seed=seed).indices
        hits += len({topics[i] for i in head}) == k
    # Random baseline, computed exactly: P(k draws without replacement hit k distinct topics).
    sizes = list(Counter(topics.tolist()).values())
    expected_random = sum(math.prod(c) for c in itertools.combinations(sizes, k)) / math.comb(len(pool), k)
    assert expected_random < 0.25
    assert hits / len(seeds) >= 0.8


def test_medoids_come_first_farthest_first_and_scores_are_cluster_masses(pool):
    selector = ResponseSelector(n_clusters=6)
    full = selector.select(pool, len(pool), seed=2)
    labels = np.array(full.slices)
    x = trajectories(pool)
    clusters = sorted(set(labels.tolist()))
    assert len(clusters) == 6
    # The first 6 probes are one per cluster: the member nearest its cluster's mean.
    head = full.indices[:6]
    assert sorted(labels[:6].tolist()) == clusters
    for pos, lab in zip(head, labels[:6]):
        members = full.indices[labels == lab]
        centre = x[members].mean(axis=0)
        expected = members[np.argmin(np.linalg.norm(x[members] - centre, axis=1))]
        assert pos == expected
    # Farthest-first: each medoid is the one farthest from those before it.
    for j in range(1, 6):
        chosen, left = head[:j], head[j:]
        gaps = [min(np.linalg.norm(x[m] - x[c]) for c in chosen) for m in left]
        assert int(np.argmax(gaps)) == 0
    # The heaviest cluster starts, and every score is its cluster's share of the pool.
    mass = {lab: cnt / len(pool) for lab, cnt in Counter(labels.tolist()).items()}
    assert mass[labels[0]] == max(mass.values())
    np.testing.assert_allclose(full.scores, [mass[lab] for lab in labels])
    assert full.provenance.info["cluster_mass"] == pytest.approx(mass)


def test_tail_tracks_cluster_masses(pool):
    full = ResponseSelector(n_clusters=6).select(pool, len(pool), seed=0)
    labels = list(full.slices)
    sizes = Counter(labels)
    for k in (20, 60, 120):
        counts = Counter(labels[:k])
        for lab, size in sizes.items():
            expected = 1 + (size - 1) * (k - 6) / (len(pool) - 6)  # the medoid, then its share of the rest
            assert abs(counts[lab] - expected) <= 1.0 + 1e-9, (k, lab)


def test_features():
    traj = np.array([[4.0, 2.0, 1.0, 1.0], [3.0, 3.0, 3.0, 3.0]])
    np.testing.assert_array_equal(response_features(traj, "none"), traj)
    expected_z = (traj[0] - 2.0) / np.sqrt(1.5)  # mean 2, population variance 1.5
    np.testing.assert_allclose(response_features(traj, "zscore"), [expected_z, [0, 0, 0, 0]])
    np.testing.assert_allclose(response_features(traj, "drop"), [[0, 2 / 3, 1, 1], [0, 0, 0, 0]])


@pytest.mark.parametrize("normalize", ["none", "zscore", "drop"])
def test_normalizations_run_and_stay_nested(pool, normalize):
    selector = ResponseSelector(normalize=normalize, n_clusters=8)
    full = list(selector.select(pool, 30, seed=1).ids)
    assert list(selector.select(pool, 11, seed=1).ids) == full[:11]


def test_losses_file_is_aligned_by_id(pool, tmp_path):
    x = trajectories(pool)  # [examples, records], pool row order
    perm = np.random.default_rng(3).permutation(len(pool))
    path = tmp_path / "pilot.npz"
    extra = np.full((x.shape[1], 1), 9.0)  # a probe the pool does not have: ignored
    np.savez(path, losses=np.hstack([x[perm].T, extra]),
             probe_ids=np.array(pool.ids[perm].tolist() + ["not-in-pool"]))
    from_file = ResponseSelector(losses_file=str(path), n_clusters=10).select(pool, 25, seed=4)
    expected = ResponseSelector(n_clusters=10).select(pool, 25, seed=4)
    assert list(from_file.ids) == list(expected.ids)
    assert from_file.provenance.info["source"].startswith("losses_file")


def test_max_records_uses_only_the_first_records(pool):
    x = trajectories(pool)
    truncated = Pool.from_dict({"id": pool.ids.tolist(), "pilot_losses": x[:, :8].tolist()}, id_field="id")
    got = ResponseSelector(max_records=8, n_clusters=10).select(pool, 20, seed=0)
    expected = ResponseSelector(n_clusters=10).select(truncated, 20, seed=0)
    assert list(got.ids) == list(expected.ids)
    assert got.provenance.info["records"] == 8


def test_n_clusters_is_clipped_to_distinct_trajectories():
    p = small_pool([[1.0, 0.5]] * 6 + [[2.0, 2.0]] * 4)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no k-means warning about duplicate points
        ps = ResponseSelector(n_clusters=32).select(p, 10)
    assert ps.provenance.info["n_clusters"] == 2
    assert Counter(ps.slices) == {"cluster-0": 6, "cluster-1": 4}
    assert ps.slices[:2] == ("cluster-0", "cluster-1")  # medoid of the heavier cluster first


def test_a_numeric_column_is_a_one_record_pilot():
    p = Pool.from_dict({"id": ["a", "b", "c", "d"], "loss": [0.1, 0.2, 5.0, 5.1]}, id_field="id")
    ps = ResponseSelector(trajectory_field="loss", n_clusters=2).select(p, 2)
    assert {ps.ids[0], ps.ids[1]} in ({"a", "c"}, {"a", "d"}, {"b", "c"}, {"b", "d"})


# -- errors -----------------------------------------------------------------------


def test_missing_ids_in_losses_file(pool, tmp_path):
    x = trajectories(pool)
    keep = np.arange(3, len(pool))  # drop the first three rows
    path = tmp_path / "pilot.npz"
    np.savez(path, losses=x[keep].T, probe_ids=np.array(pool.ids[keep].tolist()))
    first = ", ".join(repr(v) for v in pool.ids[:3].tolist())
    with pytest.raises(ProbekitUsageError,
                       match=rf"^3 of the pool's 200 ids are missing from losses_file 'pilot.npz': {first}\.$"):
        ResponseSelector(losses_file=str(path)).select(pool, 5)


def test_losses_file_without_probe_ids(pool, tmp_path):
    path = tmp_path / "pilot.npz"
    np.savez(path, losses=trajectories(pool).T)
    with pytest.raises(ProbekitUsageError, match=r"losses_file 'pilot.npz' does not name its probes; it needs an array 'probe_ids'"):
        ResponseSelector(losses_file=path).select(pool, 5)


def test_losses_file_with_a_repeated_probe_id(pool, tmp_path):
    x = trajectories(pool)
    path = tmp_path / "pilot.npz"
    ids = pool.ids.tolist()
    np.savez(path, losses=np.hstack([x.T, x[:1].T]), probe_ids=np.array(ids + ids[:1]))
    with pytest.raises(ProbekitUsageError, match=rf"losses_file 'pilot.npz' names probe '{ids[0]}' twice"):
        ResponseSelector(losses_file=str(path)).select(pool, 5)


def test_unreadable_losses_file(pool, tmp_path):
    with pytest.raises(ProbekitUsageError, match=r"^ResponseSelector losses_file: loss file '.*nope.npz' does not exist"):
        ResponseSelector(losses_file=str(tmp_path / "nope.npz")).select(pool, 5)


def test_missing_trajectory_column(pool):
    with pytest.raises(ProbekitUsageError,
                       match=r"The 'trajectory_field' parameter of ResponseSelector names column 'pilot', which the pool does not have"):
        ResponseSelector(trajectory_field="pilot").select(pool, 5)


def test_trajectories_must_be_complete_equal_length_finite_numbers(pool):
    with pytest.raises(ProbekitUsageError, match=r"column 'topic' .* does not hold lists of numbers"):
        ResponseSelector(trajectory_field="topic").select(pool, 5)
    flags = Pool.from_dict({"id": ["a", "b"], "flag": [True, False]}, id_field="id")
    with pytest.raises(ProbekitUsageError, match=r"column 'flag' .* holds bool values, not loss trajectories"):
        ResponseSelector(trajectory_field="flag").select(flags, 1)
    with pytest.raises(ProbekitUsageError, match=r"has 1 missing trajectories \(ids 'e01'\)"):
        ResponseSelector().select(small_pool([[1.0, 2.0], None, [1.0, 1.0]]), 2)
    with pytest.raises(ProbekitUsageError, match=r"trajectories of different lengths \(2 to 3 records; e.g. ids 'e01'\)"):
        ResponseSelector().select(small_pool([[1.0, 2.0], [1.0, 2.0, 3.0], [1.0, 1.0]]), 2)
    with pytest.raises(ProbekitUsageError, match=r"hold 2 non-finite losses \(ids 'e00', 'e02'\)"):
        ResponseSelector().select(small_pool([[1.0, float("nan")], [1.0, 2.0], [float("inf"), 1.0]]), 2)


def test_normalizing_needs_two_records(pool):
    with pytest.raises(ProbekitUsageError, match=r"normalize='zscore' needs at least 2 records per trajectory; the pilot has 1"):
        ResponseSelector(normalize="zscore", max_records=1).select(pool, 5)


@pytest.mark.parametrize("param, bad, message", [
    ("normalize", "log", r"The 'normalize' parameter of ResponseSelector must be one of 'none', 'zscore', 'drop'\. Got 'log'"),
    ("n_clusters", 0, r"The 'n_clusters' parameter of ResponseSelector must be an int in the range \[1, inf\)\. Got 0"),
    ("max_records", 0, r"The 'max_records' parameter of ResponseSelector must be None or an int in the range \[1, inf\)"),
    ("losses_file", 3, r"The 'losses_file' parameter of ResponseSelector must be None or an instance of str or an instance of PathLike"),
    ("trajectory_field", None, r"The 'trajectory_field' parameter of ResponseSelector must be an instance of str\. Got None"),
])
def test_parameter_errors(pool, param, bad, message):
    with pytest.raises(ProbekitUsageError, match=message):
        ResponseSelector(**{param: bad}).select(pool, 5)
