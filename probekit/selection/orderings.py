"""Orderings of a pool on vectors (gradient sketches): each probe the farthest from, or drawn by its
distance to, the probes before it, so the first m of an ordering of n are the ordering of m.

- ``farthest_first``: greedy k-center (the 2-approximation), distances to the taken set updated in
  O(N * dim) per step, no N x N matrix;
- ``kmeans_pp``: seeded D^2 sampling (Arthur & Vassilvitskii, 2007).

Used by the gradient strategy (``probekit.selectors.gradient``, which re-exports both).
"""
from __future__ import annotations

import logging

import numpy as np

from probekit.progress import Progress

__all__ = ["farthest_first", "kmeans_pp"]

log = logging.getLogger("probekit.selectors.gradient")  # the strategy's progress lines, as before


def farthest_first(x: np.ndarray, n: int, start: int) -> tuple[np.ndarray, np.ndarray]:
    """Greedy k-center from ``start``: (order [n], distance of each pick to the earlier ones [n]).

    Ties go to the lowest row. The first score is the start's norm.
    """
    x = np.asarray(x, dtype=np.float64)
    sq = np.einsum("ij,ij->i", x, x)  # [N]
    order = np.empty(n, dtype=np.int64)
    score = np.empty(n, dtype=np.float64)
    d2 = np.full(len(x), np.inf)  # squared distance to the nearest taken probe
    j, score[0] = int(start), float(np.sqrt(sq[start]))
    bar = Progress(n, "k-center order", unit="probe", logger=log, every=10.0, line="{desc}: {n}/{total} probes")
    for k in range(n):
        order[k] = j
        d2[j] = -1.0  # taken: never the argmax again (np.minimum keeps it at -1)
        bar.update()
        if k + 1 == n:
            break
        d2 = np.minimum(d2, np.maximum(sq - 2.0 * (x @ x[j]) + sq[j], 0.0))
        j = int(np.argmax(d2))
        score[k + 1] = float(np.sqrt(max(d2[j], 0.0)))
    bar.close()
    return order, score


def kmeans_pp(x: np.ndarray, n: int, start: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """k-means++ seeding from ``start``: each next probe drawn with probability ~ D^2.

    One uniform draw per step, so prefixes do not depend on n. When every
    remaining example duplicates a taken one (D^2 = 0), the draw is uniform
    over the remaining ones. Returns (order [n], D at the draw [n]).
    """
    x = np.asarray(x, dtype=np.float64)
    sq = np.einsum("ij,ij->i", x, x)
    order = np.empty(n, dtype=np.int64)
    score = np.empty(n, dtype=np.float64)
    d2 = np.full(len(x), np.inf)
    taken = np.zeros(len(x), dtype=bool)
    j, score[0] = int(start), float(np.sqrt(sq[start]))
    bar = Progress(n, "k-means++ order", unit="probe", logger=log, every=10.0, line="{desc}: {n}/{total} probes")
    for k in range(n):
        order[k] = j
        taken[j] = True
        bar.update()
        if k + 1 == n:
            break
        d2 = np.minimum(d2, np.maximum(sq - 2.0 * (x @ x[j]) + sq[j], 0.0))
        w = np.where(taken, 0.0, d2)
        u = rng.random()
        total = w.sum()
        if total > 0:
            cum = np.cumsum(w)
            j = int(np.searchsorted(cum, u * cum[-1], side="right"))
            j = min(j, int(np.flatnonzero(w > 0)[-1]))  # rounding at the top end
        else:
            free = np.flatnonzero(~taken)
            j = int(free[min(int(u * len(free)), len(free) - 1)])
        score[k + 1] = float(np.sqrt(d2[j]))
    bar.close()
    return order, score
