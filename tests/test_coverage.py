"""Coverage figures against a brute-force computation."""
from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.distance import cdist

from probekit.probeset.coverage import coverage_report, nearest_probe_distances


def test_nearest_probe_distances_match_brute_force_across_chunks():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(103, 7)).astype(np.float32)
    probes = np.array([5, 17, 90])
    expected = cdist(x.astype(np.float64), x[probes].astype(np.float64)).min(axis=1)
    got = nearest_probe_distances(x, probes, chunk=10)  # several chunks, a ragged last one
    np.testing.assert_allclose(got, expected, atol=1e-5)
    assert np.all(got[probes] < 1e-3)  # a probe is at distance 0 from itself


def test_coverage_report_compares_with_random_sets_of_the_same_size():
    rng = np.random.default_rng(1)
    centres = rng.normal(scale=10, size=(4, 2))
    x = np.concatenate([c + rng.normal(size=(50, 2)) for c in centres])
    one_per_cluster = np.array([0, 50, 100, 150])
    report = coverage_report(x, one_per_cluster, n_random=20, seed=0)
    assert report["mean_distance"] == pytest.approx(nearest_probe_distances(x, one_per_cluster).mean())
    assert report["mean_ratio_to_random"] < 1.0  # one probe per cluster beats random draws
    assert report["random_sets"] == 20
