"""Uniform and stratified random selection."""
from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from probekit.errors import ProbekitUsageError
from probekit.apportionment import apportion, chairman_next
from probekit.selectors.random_sampling import RandomSelector
from probekit.testing import make_test_pool


@pytest.fixture(scope="module")
def pool():
    return make_test_pool()


def test_uniform_is_a_seeded_permutation_of_the_canonical_pool(pool):
    ps = RandomSelector().select(pool, 30, seed=4)
    canonical = np.sort(pool.ids)
    expected = canonical[np.random.default_rng(4).permutation(len(pool))[:30]]
    assert list(ps.ids) == list(expected)


def test_proportional_prefixes_track_pool_shares(pool):
    n = len(pool)
    ps = RandomSelector(stratify="topic", mode="proportional").select(pool, n, seed=1)
    topics = pool.column("topic")
    sizes = Counter(topics.tolist())
    labels = [topics[i] for i in ps.indices]
    assert list(ps.slices) == labels  # each probe labelled with its stratum
    for k in (5, 17, 40, 80, 150):
        counts = Counter(labels[:k])
        for topic, size in sizes.items():
            assert abs(counts.get(topic, 0) - size / n * k) <= 1.0 + 1e-9, (k, topic)


def test_balanced_prefixes_are_level_until_a_stratum_runs_out(pool):
    ps = RandomSelector(stratify="topic", mode="balanced").select(pool, len(pool), seed=1)
    sizes = Counter(pool.column("topic").tolist())
    for k in (5, 17, 40, 80, 150):
        counts = Counter(ps.slices[:k])
        open_counts = [counts.get(t, 0) for t, size in sizes.items() if counts.get(t, 0) < size]
        exhausted = [t for t, size in sizes.items() if counts.get(t, 0) == size]
        assert max(open_counts) - min(open_counts) <= 1, k
        assert all(min(open_counts) >= sizes[t] for t in exhausted), k


def test_balanced_oversamples_the_rare_slice(pool):
    rare = int(np.sum(pool.column("slice") == "rare"))
    assert 2 <= rare < 0.1 * len(pool)
    ps = RandomSelector(stratify="slice", mode="balanced").select(pool, 2 * rare)
    assert Counter(ps.slices) == {"common": rare, "rare": rare}


def test_apportion_skips_exhausted_strata():
    idx, labels = apportion({"a": np.array([0]), "b": np.array([1, 2, 3])}, {"a": 1.0, "b": 1.0}, 4)
    assert idx.tolist() == [0, 1, 2, 3] and labels == ["a", "b", "b", "b"]


def test_missing_stratify_column(pool):
    with pytest.raises(ProbekitUsageError, match=r"names column 'colour', which the pool does not have"):
        RandomSelector(stratify="colour").select(pool, 3)


def test_chairman_rule_keeps_every_prefix_within_one_where_largest_lag_drifts():
    # Skewed shares over six strata (found by a random search): the plain
    # largest-lag rule drifts past 1 here.
    raw = [9, 314, 142, 17, 98, 354]
    shares = [w / sum(raw) for w in raw]
    bound = 1 - 1 / (2 * len(shares) - 2)

    def worst(rule):
        count = [0] * len(shares)
        dev = 0.0
        for k in range(1, 2001):
            j = rule(shares, count, k)
            count[j] += 1
            dev = max(dev, max(abs(c - s * k) for c, s in zip(count, shares)))
        return dev

    def largest_lag(shares, count, k):
        return max(range(len(shares)), key=lambda j: (shares[j] * k - count[j], -j))

    assert worst(chairman_next) <= bound + 1e-9
    assert worst(largest_lag) > 1.0  # why the chairman rule is used
