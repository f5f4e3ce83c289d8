"""How well a probe set covers its pool: distance from every example to its nearest probe.

The figures ``probekit inspect`` prints: the mean and the maximum (covering
radius) over the pool of the Euclidean distance to the nearest probe, in the
embedding space the selector used, each compared with random probe sets of the
same size (mean over seeds). A ratio below 1 means better coverage than random.
"""
from __future__ import annotations

import numpy as np


def nearest_probe_distances(features: np.ndarray, probe_idx: np.ndarray, chunk: int = 4096) -> np.ndarray:
    """[N] distance from each row of ``features`` to its nearest probe row (chunked, no N x N)."""
    x = np.asarray(features, dtype=np.float32)
    probes = x[np.asarray(probe_idx, dtype=np.int64)]  # [n, d]
    p_sq = (probes.astype(np.float64) ** 2).sum(axis=1)
    out = np.empty(len(x))
    for start in range(0, len(x), chunk):
        block = x[start : start + chunk].astype(np.float64)
        d2 = (block**2).sum(axis=1)[:, None] - 2.0 * block @ probes.T.astype(np.float64) + p_sq[None, :]
        out[start : start + chunk] = np.sqrt(np.maximum(d2.min(axis=1), 0.0))
    return out


def coverage_report(features: np.ndarray, probe_idx: np.ndarray, n_random: int = 5, seed: int = 0) -> dict:
    """Mean and max nearest-probe distance, and the same for random sets of equal size."""
    dist = nearest_probe_distances(features, probe_idx)
    rng = np.random.default_rng(seed)
    rand_mean, rand_max = [], []
    for _ in range(n_random):
        idx = rng.choice(len(features), size=len(probe_idx), replace=False)
        d = nearest_probe_distances(features, idx)
        rand_mean.append(d.mean())
        rand_max.append(d.max())
    return {
        "mean_distance": float(dist.mean()),
        "max_distance": float(dist.max()),
        "random_mean_distance": float(np.mean(rand_mean)),
        "random_max_distance": float(np.mean(rand_max)),
        "mean_ratio_to_random": float(dist.mean() / np.mean(rand_mean)) if np.mean(rand_mean) > 0 else float("nan"),
        "random_sets": n_random,
    }
