"""Cluster coverage: faiss k-means medoids, greedy k-median order, stratified continuation."""
from __future__ import annotations

import logging
import re

import numpy as np
import pytest

from probekit.embedders import ColumnEmbedder
from probekit.errors import ProbekitUsageError
from probekit.pool import Pool
from probekit.selection.faiss_kmeans import kmeans, kmeans_plus_plus, quiet_fds
from probekit.selectors.cluster import ClusterSelector, count_distinct, greedy_kmedian
from probekit.selectors.random_sampling import RandomSelector
from probekit.testing import make_test_pool

K = 24  # ClusterSelector.example().n_clusters


@pytest.fixture(scope="module")
def features(pool):
    """The test pool's embedding in canonical (id) order: what the selector clusters."""
    return ColumnEmbedder().embed(pool.reorder(pool.canonical_order)).astype(np.float64)  # [200, 16]


def mixture_pool(size=1000, centres=30, dim=8, seed=0):
    """Unequal Gaussian clusters (Dirichlet masses): where farthest-first orders lose to random."""
    rng = np.random.default_rng(seed)
    mu = 3.0 * rng.normal(size=(centres, dim))
    which = rng.choice(centres, size=size, p=rng.dirichlet(np.full(centres, 0.5)))
    x = mu[which] + rng.normal(size=(size, dim))
    return Pool.from_dict({"id": [f"m{i:05d}" for i in range(size)],
                           "embedding": x.astype(np.float32).tolist()}, id_field="id")


def brute_force_clusters(x, seed, k=K, max_points_per_centroid=256):
    """faiss's centroids, then assignment, masses and in-cluster medoids in plain float64 numpy."""
    centroids, _, _, _ = kmeans(x, k, seed=seed, max_points_per_centroid=max_points_per_centroid)
    d2 = ((x[:, None, :] - centroids.astype(np.float64)[None]) ** 2).sum(-1)  # [N, k]
    assignment = d2.argmin(axis=1)
    medoid = {c: int(np.flatnonzero(assignment == c)[d2[assignment == c, c].argmin()])
              for c in np.unique(assignment)}
    return d2, assignment, medoid


def positions(pool, ps):
    """Canonical positions of a probe set's ids."""
    canonical = pool.ids[pool.canonical_order]
    where = {v: i for i, v in enumerate(canonical.tolist())}
    return np.array([where[v] for v in ps.ids])


def mean_cover(x, idx):
    """Mean distance from every pool example to its nearest probe."""
    return float(np.sqrt(((x[:, None, :] - x[idx][None]) ** 2).sum(-1)).min(axis=1).mean())


# -- the contract ----------------------------------------------------------------------

def test_constructor_only_stores_keyword_arguments():
    sel = ClusterSelector(n_clusters="lots", n_iter=-1)  # validated at select time, not here
    assert sel.get_params()["n_clusters"] == "lots"
    with pytest.raises(TypeError):
        ClusterSelector(8)  # keyword-only


# -- what is selected ------------------------------------------------------------------

@pytest.mark.parametrize("seed", [0, 3])
def test_medoids_are_the_members_nearest_each_centroid(pool, features, seed):
    d2, assignment, medoid = brute_force_clusters(features, seed)
    ps = ClusterSelector.example().select(pool, K, seed=seed)
    got = positions(pool, ps)
    assert sorted(got.tolist()) == sorted(medoid.values())
    # Prefixes spread out: the first m probes lie in m different clusters.
    assert len(set(assignment[got].tolist())) == len(medoid) == K
    assert len(set(ps.slices)) == K
    # Where a centroid's globally nearest example is one of its own members, that is the medoid.
    for c, m in medoid.items():
        nearest = int(d2[:, c].argmin())
        if assignment[nearest] == c:
            assert m == nearest


def test_weights_are_cluster_fractions_summing_to_one(pool, features):
    _, assignment, medoid = brute_force_clusters(features, seed=0)
    ps = ClusterSelector.example().select(pool, len(pool))
    got = positions(pool, ps)
    expected = np.bincount(assignment, minlength=K)[assignment[got]] / len(pool)
    np.testing.assert_allclose(ps.scores, expected)
    np.testing.assert_allclose(ps.scores[:K].sum(), 1.0)
    # Each probe is labelled with its cluster, named after the rank of the cluster's medoid.
    rank = {assignment[p]: j for j, p in enumerate(got[:K])}
    assert list(ps.slices) == [f"c{rank[assignment[p]]}" for p in got]
    assert ClusterSelector(n_clusters=K, weights=False).select(pool, 5).scores is None


def test_beyond_the_medoids_prefixes_stay_proportional_to_cluster_sizes(pool, features):
    _, assignment, _ = brute_force_clusters(features, seed=0)
    got = positions(pool, ClusterSelector.example().select(pool, len(pool)))
    sizes = np.bincount(assignment, minlength=K)
    for m in range(2 * K, len(pool), 7):
        counts = np.bincount(assignment[got[:m]], minlength=K)
        assert np.abs(counts - m * sizes / len(pool)).max() <= 1.5, m


@pytest.mark.parametrize("make", [make_test_pool, mixture_pool], ids=["test_pool", "mixture"])
@pytest.mark.parametrize("n", [5, 10, 20])
def test_covers_the_pool_better_than_random(make, n):
    pool = make()
    x = ColumnEmbedder().embed(pool.reorder(pool.canonical_order)).astype(np.float64)
    cluster = np.mean([mean_cover(x, positions(pool, ClusterSelector(n_clusters=K).select(pool, n, seed=s)))
                       for s in range(3)])
    random = np.mean([mean_cover(x, positions(pool, RandomSelector().select(pool, n, seed=s)))
                      for s in range(20)])
    assert cluster < 0.85 * random


def test_greedy_kmedian_matches_plain_greedy():
    rng = np.random.default_rng(5)
    points, weights = rng.normal(size=(60, 5)), rng.dirichlet(np.ones(60))
    dist = np.sqrt(((points[:, None] - points[None]) ** 2).sum(-1))  # [60, 60]
    expected, cost = [], np.full(60, np.inf)
    for _ in range(60):  # exact greedy: the pick that leaves the lowest weighted cost
        totals = [np.inf if j in expected else weights @ np.minimum(cost, dist[j]) for j in range(60)]
        expected.append(int(np.argmin(totals)))
        cost = np.minimum(cost, dist[expected[-1]])
    assert greedy_kmedian(points, weights).tolist() == expected


def test_count_distinct_is_exact():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 3)).astype(np.float32)[rng.integers(0, 25, size=300)]
    x[:5, 0] = 0.0
    x[5:10, 0] = -0.0
    x[:10, 1:] = 1.0
    expected = np.unique(x + np.float32(0.0), axis=0).shape[0]
    assert count_distinct(x) == expected


def test_kmeans_plus_plus_seeds_one_centre_per_separated_blob():
    rng = np.random.default_rng(0)
    blobs = 100.0 * np.eye(8)  # 8 far-apart blobs of 30 points each
    x = (np.repeat(blobs, 30, axis=0) + rng.normal(size=(240, 8))).astype(np.float32)
    centres = kmeans_plus_plus(x, 8, np.random.default_rng(1))
    assert sorted(np.linalg.norm(centres[:, None] - blobs[None], axis=-1).argmin(axis=1).tolist()) == list(range(8))
    assert all((x == c).all(axis=1).any() for c in centres)  # real rows of x


@pytest.mark.parametrize("init", ["k-means++", "random"])
def test_init_is_recorded(pool, init):
    info = ClusterSelector(n_clusters=K, init=init).select(pool, 5).provenance.info
    assert info["init"] == init
    assert info["init_sample"] == (len(pool) if init == "k-means++" else 0)  # min(N, 32 k) = 200


# -- faiss facts in the provenance; faiss kept quiet -----------------------------------

def test_provenance_records_what_faiss_trained_on(pool, features):
    info = ClusterSelector(n_clusters=K, max_points_per_centroid=3).select(pool, 4, seed=9).provenance.info
    assert info["trained_on"] == K * 3 and info["subsampled"] is True
    assert info["seed"] == 9 and info["faiss_seed"] == 9
    assert info["max_points_per_centroid"] == 3 and info["k"] == K and info["n_iter"] == 20
    d2, _, medoid = brute_force_clusters(features, seed=9, max_points_per_centroid=3)
    np.testing.assert_allclose(info["inertia"], d2.min(axis=1).sum(), rtol=1e-5)  # on all 200, not 72
    assert info["n_medoids"] == len(medoid)
    full = ClusterSelector.example().select(pool, 4).provenance.info
    assert full["trained_on"] == len(pool) and full["subsampled"] is False


def test_trained_on_is_what_faiss_itself_reports(features, capfd):
    import faiss

    # faiss's own log line ("Sampling a subset of S / N for training") confirms the rule min(N, k * mppc).
    for mppc, expected in [(3, K * 3), (5, K * 5)]:
        km = faiss.Kmeans(features.shape[1], K, niter=2, seed=1, max_points_per_centroid=mppc, verbose=True)
        km.train(np.ascontiguousarray(features, dtype=np.float32))
        said = capfd.readouterr()
        match = re.search(r"Sampling a subset of (\d+) / (\d+)", said.out + said.err)
        assert match and int(match.group(1)) == expected
        assert kmeans(features, K, max_points_per_centroid=mppc)[3]["trained_on"] == expected


def test_faiss_chatter_is_silenced(pool, features, capfd, caplog):
    import faiss

    km = faiss.Kmeans(features.shape[1], K, niter=2, seed=0)  # 200 points for 24 centroids: faiss warns
    km.train(np.ascontiguousarray(features, dtype=np.float32))
    assert "WARNING clustering" in "".join(capfd.readouterr())  # the chatter exists without the wrapper
    with caplog.at_level(logging.DEBUG, logger="probekit.selection.faiss_kmeans"):
        ClusterSelector.example().select(pool, 10)
    said = capfd.readouterr()
    assert said.out == "" and said.err == ""
    assert "WARNING clustering" in caplog.text  # kept for debugging, not printed


def test_quiet_fds_restores_the_descriptors(capfd):
    import os

    with quiet_fds():
        os.write(2, b"hidden\n")
    os.write(2, b"shown\n")
    assert capfd.readouterr().err == "shown\n"


def test_same_seed_same_ranking_whatever_faiss_threads(pool):
    import faiss

    before = faiss.omp_get_max_threads()
    expected = ClusterSelector.example().select(pool, 40, seed=2)
    try:
        faiss.omp_set_num_threads(1)
        got = ClusterSelector.example().select(pool, 40, seed=2)
    finally:
        faiss.omp_set_num_threads(before)
    assert got == expected


# -- defaults and other embedders ------------------------------------------------------

def test_auto_clusters_a_small_pool_into_its_own_examples(pool):
    ps = ClusterSelector().select(pool, 10)
    assert ps.provenance.info["k"] == len(pool) and ps.provenance.info["n_clusters"] == "auto"
    np.testing.assert_allclose(ps.scores, 1 / len(pool))


def test_auto_stops_at_the_number_of_distinct_examples():
    x = np.repeat(np.eye(6, dtype=np.float32), 5, axis=0)  # 30 rows, 6 distinct
    dup = Pool.from_dict({"id": [f"d{i:02d}" for i in range(30)], "embedding": x.tolist()}, id_field="id")
    ps = ClusterSelector().select(dup, 30)
    assert ps.provenance.info["k"] == 6
    chosen = np.array([row["embedding"] for row in dup.rows(ps.indices[:6])], dtype=np.float32)
    assert count_distinct(chosen) == 6  # the first 6 probes are the 6 distinct points
    np.testing.assert_allclose(ps.scores[:6], 1 / 6)


def test_text_pools_are_embedded_with_tfidf(pool):
    ps = ClusterSelector(text_field="text", n_clusters=10).select(pool, 12)
    assert ps.provenance.info["embedder"]["class"] == "TfidfSvdEmbedder"
    assert len(set(ps.slices[:10])) == 10


# -- errors: one line, naming the parameter --------------------------------------------

def test_more_clusters_than_examples(pool):
    with pytest.raises(ProbekitUsageError, match=re.escape(
            "The 'n_clusters' parameter of ClusterSelector must be at most the number of examples "
            "in the pool (200). Got 201 instead.")):
        ClusterSelector(n_clusters=201).select(pool, 3)


def test_more_clusters_than_distinct_examples():
    x = np.repeat(np.eye(6, dtype=np.float32), 5, axis=0)
    dup = Pool.from_dict({"id": [f"d{i:02d}" for i in range(30)], "embedding": x.tolist()}, id_field="id")
    with pytest.raises(ProbekitUsageError, match=re.escape(
            "The 'n_clusters' parameter of ClusterSelector must be at most the number of distinct "
            "feature vectors in the pool (6). Got 8 instead.")):
        ClusterSelector(n_clusters=8).select(dup, 3)


def test_nan_embeddings():
    x = np.random.default_rng(0).normal(size=(20, 4))
    x[7, 2] = np.nan
    bad = Pool.from_dict({"id": [f"r{i:02d}" for i in range(20)], "embedding": x.tolist()}, id_field="id")
    with pytest.raises(ProbekitUsageError, match=r"^ClusterSelector cannot cluster the 'embedding_field' "
                                                 r"column 'embedding': .*NaN or inf .*example 'r07'"):
        ClusterSelector(n_clusters=3).select(bad, 3)


def test_missing_columns(pool):
    for name in ("embedding_field", "text_field"):
        with pytest.raises(ProbekitUsageError, match=rf"^The '{name}' parameter of ClusterSelector names "
                                                     r"column 'nope', which the pool does not have"):
            ClusterSelector(**{name: "nope"}).select(pool, 3)


def test_bad_parameter_values(pool):
    with pytest.raises(ProbekitUsageError, match=re.escape(
            "The 'n_clusters' parameter of ClusterSelector must be one of 'auto' or an int in the range "
            "[1, inf). Got 'lots' instead.")):
        ClusterSelector(n_clusters="lots").select(pool, 3)
    with pytest.raises(ProbekitUsageError, match=r"The 'embedder' parameter of ClusterSelector"):
        ClusterSelector(embedder="tfidf").select(pool, 3)


def test_kmeans_boundary_refuses_bad_input():
    x = np.ones((5, 2))
    with pytest.raises(ProbekitUsageError, match=r"kmeans needs 1 <= k <= N = 5\. Got k=6 instead\."):
        kmeans(x, 6)
    x[3, 1] = np.inf
    with pytest.raises(ProbekitUsageError, match=r"kmeans needs finite features; .*row 3"):
        kmeans(x, 2)
    with pytest.raises(ProbekitUsageError, match=r"kmeans needs a non-empty \[N, d\] matrix"):
        kmeans(np.ones(5), 2)
    with pytest.raises(ProbekitUsageError, match=r"kmeans init must be 'k-means\+\+' or 'random'\. Got 'pp'"):
        kmeans(np.ones((5, 2)), 2, init="pp")
