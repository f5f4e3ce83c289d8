"""The one boundary to faiss: seeded, quiet k-means and nearest-centroid search.

Everything probekit asks of faiss goes through here (docs/style.md, "wrap foreign
libraries at one boundary"), so its habits are handled once:

- inputs become C-contiguous float32 (faiss reads raw memory and would
  otherwise copy silently or refuse);
- the seed is passed explicitly (faiss's own default is a fixed 1234, which
  would hide seed sensitivity); seeds beyond a C ``int`` are mapped into it;
- faiss *subsamples* silently: with more than ``k * max_points_per_centroid``
  points it trains on a random subset of that size. :func:`kmeans` reports how
  many points actually trained the centroids (``trained_on``) and the inertia
  on the *full* data, so the provenance says what was done;
- faiss prints warnings from C++ ("WARNING clustering 200 points to 50
  centroids ...") straight to file descriptor 2, past ``sys.stderr``.
  :func:`quiet_fds` redirects fds 1 and 2 to a temporary file while faiss
  runs and forwards what it said to ``logging`` at DEBUG level.

faiss is imported inside the functions (it is a heavy import, docs/design.md §2).
"""
from __future__ import annotations

import contextlib
import logging
import os
import sys
import tempfile
from typing import Iterator

import numpy as np

from probekit.errors import ProbekitUsageError

__all__ = ["as_float32", "kmeans", "kmeans_plus_plus", "nearest", "quiet_fds"]

log = logging.getLogger(__name__)

_C_INT_MAX = 2**31 - 1


@contextlib.contextmanager
def quiet_fds() -> Iterator[None]:
    """Send whatever C code writes to fds 1 and 2 to a temp file, then to ``logging``.

    Python-level ``sys.stdout``/``sys.stderr`` are flushed first so nothing
    printed before is lost or reordered. While the block runs, *every* thread's
    fd 1/2 output is captured (the descriptors are process-wide), so keep the
    block short: one faiss call.
    """
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    with tempfile.TemporaryFile(mode="w+b") as sink:
        saved = []
        try:
            for fd in (1, 2):
                try:
                    saved.append((fd, os.dup(fd)))
                except OSError:  # fd closed (e.g. a daemon): nothing to silence
                    continue
                os.dup2(sink.fileno(), fd)
            yield
        finally:
            for fd, copy in saved:
                os.dup2(copy, fd)
                os.close(copy)
            sink.seek(0)
            chatter = sink.read().decode("utf-8", "replace").strip()
            if chatter:
                log.debug("faiss said: %s", chatter)


def as_float32(x: np.ndarray, owner: str = "kmeans") -> np.ndarray:
    """A C-contiguous, finite float32 [N, d] copy-if-needed of ``x``."""
    x = np.asarray(x)
    if x.ndim != 2 or x.shape[0] == 0 or x.shape[1] == 0:
        raise ProbekitUsageError(f"{owner} needs a non-empty [N, d] matrix. Got shape {x.shape} instead.")
    x = np.ascontiguousarray(x, dtype=np.float32)
    bad = ~np.isfinite(x)
    if bad.any():
        row = int(np.nonzero(bad.any(axis=1))[0][0])
        raise ProbekitUsageError(f"{owner} needs finite features; found NaN or inf (first at row {row}).")
    return x


def faiss_seed(seed: int) -> int:
    """``seed`` itself when it fits faiss's C ``int``, else a seed derived from it."""
    seed = int(seed)
    if 0 <= seed <= _C_INT_MAX:
        return seed
    return int(np.random.SeedSequence(abs(seed)).generate_state(1)[0] & _C_INT_MAX)


def sq_dist_to(queries: np.ndarray, base: np.ndarray, idx: np.ndarray, block: int = 65536) -> np.ndarray:
    """||queries[i] - base[idx[i]]||^2 for every i ([M] float32), computed directly.

    faiss's search uses ||a||^2 + ||b||^2 - 2 a.b through BLAS, whose rounding
    can depend on the thread count and leaves tiny non-zero distances between
    equal vectors; the direct difference is exact for equal rows and the same
    on every machine, so medoids and the inertia do not move with the threads.
    """
    out = np.empty(len(queries), dtype=np.float32)
    for start in range(0, len(queries), block):
        diff = queries[start:start + block] - base[idx[start:start + block]]  # [block, d]
        out[start:start + block] = np.einsum("ij,ij->i", diff, diff)
    return out


def nearest(base: np.ndarray, queries: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each query row, the nearest base row: (squared L2 distance [M] float32, index [M] int64).

    Exact search with ``faiss.IndexFlatL2``; the distances are recomputed
    directly (:func:`sq_dist_to`).
    """
    import faiss

    base = as_float32(base, "nearest")
    queries = as_float32(queries, "nearest")
    index = faiss.IndexFlatL2(base.shape[1])
    with quiet_fds():
        index.add(base)
        _, idx = index.search(queries, 1)
    idx = idx[:, 0].astype(np.int64)
    return sq_dist_to(queries, base, idx), idx


def kmeans_plus_plus(x: np.ndarray, k: int, rng: np.random.Generator, trials: int | None = None) -> np.ndarray:
    """Greedy k-means++ seeding (Arthur & Vassilvitskii; scikit-learn's variant): [k, d] rows of x.

    Each new centre is the best of ``trials`` (default 2 + ln k) candidates
    drawn with probability proportional to the squared distance to the
    nearest centre so far. Costs k * trials * N * d; call it on a sample.
    """
    x = as_float32(x, "kmeans_plus_plus")
    n = len(x)
    trials = 2 + int(np.log(k)) if trials is None else int(trials)
    sq = np.einsum("ij,ij->i", x, x)  # [N]

    def sq_dist(rows: np.ndarray) -> np.ndarray:  # [len(rows), N] squared distances to x[rows]
        return np.maximum(sq[rows][:, None] + sq[None, :] - 2.0 * (x[rows] @ x.T), 0.0)

    chosen = np.empty(k, dtype=np.int64)
    chosen[0] = rng.integers(n)
    closest = sq_dist(chosen[:1])[0].astype(np.float64)  # [N]
    for c in range(1, k):
        cumulative = np.cumsum(closest)
        if cumulative[-1] <= 0.0:  # every point already is a centre: take any unused one
            chosen[c] = np.setdiff1d(np.arange(n), chosen[:c])[0]
            continue
        candidates = np.minimum(np.searchsorted(cumulative, rng.random(trials) * cumulative[-1]), n - 1)
        candidate_closest = np.minimum(closest[None, :], sq_dist(candidates))  # [trials, N]
        best = int(np.argmin(candidate_closest.sum(axis=1)))
        chosen[c] = candidates[best]
        closest = candidate_closest[best]
    return x[chosen]


def kmeans(
    x: np.ndarray,
    k: int,
    *,
    n_iter: int = 20,
    seed: int = 0,
    max_points_per_centroid: int = 256,
    init: str = "k-means++",
    init_points_per_centroid: int = 32,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict]:
    """Lloyd's k-means with faiss; returns ``(centroids, assignment, sq_dist, info)``.

    x: [N, d] features (any float dtype; NaN/inf refused). k: clusters,
    1 <= k <= N. ``init="random"`` is faiss's own initialisation (k random
    training points); ``"k-means++"`` seeds faiss with :func:`kmeans_plus_plus`
    run on a random sample of min(N, k * init_points_per_centroid) points (at
    k = 512 on 200k and 1M x 384 mixture data it lowered the final inertia by
    ~12% for 10-20% more time). When N > k * max_points_per_centroid faiss trains on a
    random subsample of that many points; the final ``assignment`` [N] (int64)
    and ``sq_dist`` [N] (float32, squared L2 to the assigned centroid) cover
    *all* points. ``info`` holds the facts for the provenance: k, n_iter,
    n_points, trained_on, subsampled, max_points_per_centroid, init,
    init_sample, seed, faiss_seed, inertia (sum of sq_dist on the full data),
    inertia_trained (faiss's last-iteration objective on the training points),
    empty_clusters, faiss_version.
    """
    import faiss

    x = as_float32(x, "kmeans")
    n, d = x.shape
    if not (1 <= int(k) <= n):
        raise ProbekitUsageError(f"kmeans needs 1 <= k <= N = {n}. Got k={k} instead.")
    if init not in ("k-means++", "random"):
        raise ProbekitUsageError(f"kmeans init must be 'k-means++' or 'random'. Got {init!r} instead.")
    k, n_iter, max_ppc = int(k), int(n_iter), int(max_points_per_centroid)
    params = faiss.ClusteringParameters()
    params.niter = n_iter
    params.seed = faiss_seed(seed)
    params.max_points_per_centroid = max_ppc
    params.verbose = False
    clus = faiss.Clustering(d, k, params)
    init_sample = 0
    if init == "k-means++":
        rng = np.random.default_rng(seed)
        init_sample = min(n, k * int(init_points_per_centroid))
        sample = x if init_sample == n else x[np.sort(rng.choice(n, size=init_sample, replace=False))]
        faiss.copy_array_to_vector(kmeans_plus_plus(sample, k, rng).ravel(), clus.centroids)
    index = faiss.IndexFlatL2(d)
    with quiet_fds():
        clus.train(x, index)
    centroids = faiss.vector_float_to_array(clus.centroids).reshape(k, d).copy()  # [k, d]
    stats = clus.iteration_stats
    obj_trained = float(stats.at(stats.size() - 1).obj) if stats.size() else float("nan")
    sq_dist, assignment = nearest(centroids, x)  # [N], [N]
    counts = np.bincount(assignment, minlength=k)
    trained_on = min(n, k * max_ppc)  # faiss's own rule: subsample iff N > k * max_points_per_centroid
    info = {
        "k": k,
        "n_iter": n_iter,
        "n_points": n,
        "trained_on": trained_on,
        "subsampled": trained_on < n,
        "max_points_per_centroid": max_ppc,
        "init": init,
        "init_sample": init_sample,
        "seed": int(seed),
        "faiss_seed": params.seed,
        "inertia": float(sq_dist.astype(np.float64).sum()),
        "inertia_trained": obj_trained,
        "empty_clusters": int((counts == 0).sum()),
        "faiss_version": faiss.__version__,
    }
    return centroids, assignment, sq_dist, info
