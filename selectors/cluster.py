"""Embedding-cluster coverage: k-means medoids, ordered so that every prefix covers the pool.

The pool is embedded (a precomputed column, TF-IDF of a text column, or the
numeric columns; see ``probekit.embedders``) and clustered once with faiss
k-means, seeded by k-means++ on a sample (``init="random"`` gives faiss's own
initialisation). Each non-empty cluster contributes its **medoid**: the member
nearest its centroid, a real example standing for the cluster. (Taking the
medoid from the cluster's own members rather than the whole pool keeps each
probe inside the cluster whose mass it carries and needs no de-duplication;
the two coincide except when the nearest example sits across a cluster
boundary.)
The ranking is then

1. the medoids in **greedy weighted k-median** order: each step takes the
   medoid that most lowers the mass-weighted distance from the clusters to
   their nearest probe, starting at the weighted 1-median. So every prefix is
   a good coverage of the pool at its own size, not only the full set;
2. past the medoids (``n > n_clusters``), the other examples **stratified by
   cluster**: proportional to cluster size (a divisor-method apportionment),
   in a seeded random order within each cluster.

Why not farthest-first (greedy k-center) over the medoids? It was measured
(mean distance from the pool to its nearest probe, 3 seeds): on a 50-centre
Gaussian mixture it was *worse than random* for 5-20 probes (it takes the
outlying small clusters first), while the k-median order was 19-34% better
than random at every prefix from 5 to 100 probes. Farthest-first continued over
all examples was no better than the stratified continuation at 200-400 probes
(worse than random at 400 on the mixture), and it costs O(N d) per probe.

Nesting: the clustering and both orders depend on the pool, the parameters and
the seed, never on ``n``; ``select`` returns the first ``n`` of one fixed
ranking, so ``select(n).ids[:m] == select(m).ids``.

``n_clusters="auto"`` means ``min(512, number of distinct feature vectors)``:
512 is the probe count of the README's example (``--n 512``: all medoids),
probe sets of a few hundred to ~2000 are what the 2RDM monitor watches
(docs/findings.md), and faiss's training cost grows like k^2 once it subsamples
k * max_points_per_centroid points, so 512 keeps a 1M x 384 pool within a
minute on 2 cores (31 s measured; 1024 would roughly quadruple the training).
A pool of at most 512 distinct examples is thus its own clustering: the
ranking is the greedy k-median order of the whole pool, the best coverage
order this module knows, and the seed does not change it.

Scores (``weights=True``, the tinyBenchmarks convention): the mass of the
probe's cluster, i.e. the fraction of the pool assigned to it. The medoids'
masses sum to 1, so the first ``n_clusters`` probes (one per cluster) weight a
pool-wide mean. Slices: ``"c<j>"``, j the rank of the cluster's medoid in the
ranking (c0 is the first probe's cluster).

The provenance (``info``) records what faiss actually did: ``trained_on``
(faiss trains on a random subset of ``k * max_points_per_centroid`` points when
the pool is larger, silently), the seed, the inertia on the full pool, the
empty clusters and the number of medoids.
"""
from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from probekit.embedders.base import Embedder, resolve_embedder
from probekit.errors import ProbekitUsageError
from probekit.params import AnyOf, Interval, Options
from probekit.progress import stage
from probekit.selectors.base import Ranking, Selector, describe_param

if TYPE_CHECKING:
    from probekit.pool import Pool

log = logging.getLogger(__name__)

#: ``n_clusters="auto"`` uses min(AUTO_MAX_CLUSTERS, distinct feature vectors).
AUTO_MAX_CLUSTERS = 512


def count_distinct(x: np.ndarray, block: int = 32768) -> int:
    """Exact number of distinct rows of a float32 matrix (-0.0 and 0.0 count as equal).

    Rows are hashed with a seeded multiply-add over their bit patterns (exact
    integer arithmetic); equal rows get equal hashes, and rows sharing a hash
    are verified equal, so the count is exact. Falls back to ``np.unique``
    on rows in the (astronomically rare) case of a hash collision.
    """
    n, d = x.shape
    mult = np.random.default_rng(0).integers(1, 2**63, size=d, dtype=np.uint64) | np.uint64(1)
    hashes = np.empty(n, dtype=np.uint64)
    for start in range(0, n, block):
        bits = (x[start:start + block] + np.float32(0.0)).view(np.uint32).astype(np.uint64)  # +0.0: -0.0 -> 0.0
        bits *= mult
        hashes[start:start + block] = bits.sum(axis=1)
    _, first, inverse = np.unique(hashes, return_index=True, return_inverse=True)
    for start in range(0, n, block):
        rows = slice(start, start + block)
        if not np.array_equal(x[rows], x[first[inverse[rows]]]):
            return int(np.unique(x + np.float32(0.0), axis=0).shape[0])
    return int(first.size)


def greedy_kmedian(points: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Greedy weighted k-median order of a small set of points ([M, d], weights [M]).

    Step t takes the point that most lowers sum_c weights[c] * distance(points[c],
    nearest point taken), so every prefix is a greedy k-median solution on the
    weighted points (greedy is within 1 - 1/e of the best gain for this
    submodular objective). Lazy evaluation (gains only shrink) makes it exact
    greedy at ~6 O(M) gain evaluations per step (the M x M distances are kept
    up to M = 4096, recomputed row by row above). Euclidean distances in float64;
    ties go to the lowest position, so the order is a pure function of the input.
    """
    import heapq

    p = points.astype(np.float64)  # [M, d]
    w = np.asarray(weights, dtype=np.float64)  # [M]
    center = w @ p / w.sum()
    # Before any pick every point is "covered" at a distance that beats no real one:
    # 2 * radius + 1 > any pairwise distance, so the first pick is the weighted 1-median.
    covered = np.full(len(p), 2.0 * np.sqrt(((p - center) ** 2).sum(axis=1).max()) + 1.0)

    def row(j: int) -> np.ndarray:  # [M] distances to point j; direct differences, no BLAS,
        diff = p - p[j]  # so the rounding (and the order) cannot move with the thread count
        return np.sqrt(np.einsum("ij,ij->i", diff, diff))

    # Up to 4096 points (128 MB) keep every row: each later gain is then O(M), not O(M d).
    dist = np.stack([row(j) for j in range(len(p))]).__getitem__ if len(p) <= 4096 else row

    def gain(j: int) -> float:
        return float(w @ np.maximum(covered - dist(j), 0.0))

    heap = [(-gain(j), j, 0) for j in range(len(p))]  # (-gain, position, step it was computed at)
    heapq.heapify(heap)
    order = np.empty(len(p), dtype=np.int64)
    for step in range(len(p)):
        while True:
            _, j, when = heapq.heappop(heap)
            if when == step:  # fresh, and no stale upper bound beats it: the greedy choice
                break
            heapq.heappush(heap, (-gain(j), j, step))
        order[step] = j
        np.minimum(covered, dist(j), out=covered)
    return order


def stratified_rest(assignment: np.ndarray, label: np.ndarray, taken: np.ndarray,
                    rng: np.random.Generator) -> np.ndarray:
    """Every position not in ``taken``, in an order whose prefixes stay proportional to cluster sizes.

    Within a cluster the members come in one seeded random order; across
    clusters, a divisor-method (Sainte-Lague) apportionment: the j-th member
    of cluster c (the medoid being j = 0) is due at (j + 0.5) / size_c, ties
    to the cluster whose medoid ranks first. The order never depends on how
    many are asked for, so prefixes nest.
    """
    rest = np.setdiff1d(np.arange(len(assignment)), taken)
    rest = rest[rng.permutation(len(rest))]
    rest = rest[np.argsort(label[assignment[rest]], kind="stable")]  # grouped by cluster, random inside
    cluster = label[assignment[rest]]
    starts = np.flatnonzero(np.r_[True, cluster[1:] != cluster[:-1]])
    j = np.arange(len(rest)) - np.repeat(starts, np.diff(np.r_[starts, len(rest)])) + 1
    sizes = np.bincount(label[assignment])  # [M] whole clusters, medoids included
    due = (j + 0.5) / sizes[cluster]
    return rest[np.lexsort((cluster, due))]


class ClusterSelector(Selector):
    """faiss k-means medoids in greedy k-median order, then the rest stratified by cluster."""

    name: ClassVar[str] = "cluster"
    stochastic: ClassVar[bool] = True  # the seed drives k-means++, faiss's subsample and the continuation
    _constraints: ClassVar[dict[str, Any]] = {
        "n_clusters": AnyOf(Options("auto"), Interval(int, 1, None)),
        "n_iter": Interval(int, 1, 10_000),
        "max_points_per_centroid": Interval(int, 1, None),
        "init": Options("k-means++", "random"),
        "embedder": AnyOf(None, Embedder),
        "text_field": AnyOf(None, str),
        "embedding_field": AnyOf(None, str),
        "weights": bool,
    }

    def __init__(
        self,
        *,
        n_clusters: int | str = "auto",
        n_iter: int = 20,
        max_points_per_centroid: int = 256,
        init: str = "k-means++",
        embedder: Embedder | None = None,
        text_field: str | None = None,
        embedding_field: str | None = None,
        weights: bool = True,
    ) -> None:
        self.n_clusters = n_clusters  # "auto": min(512, distinct examples); see the module docstring
        self.n_iter = n_iter  # 20 Lloyd iterations, the benchmark setting (faiss's own default: 25)
        self.max_points_per_centroid = max_points_per_centroid  # faiss's default 256 (subsampling above)
        # k-means++ on a 32-per-centroid sample, then faiss's Lloyd: ~12% lower inertia than faiss's
        # random init on clustered data for 10-20% more time (benchmarks/bench_cluster.py).
        self.init = init
        self.embedder = embedder  # None: resolve_embedder picks one from the pool's columns
        self.text_field = text_field
        self.embedding_field = embedding_field
        self.weights = weights  # cluster masses as scores (tinyBenchmarks weights)

    @classmethod
    def example(cls) -> "ClusterSelector":
        return cls(n_clusters=24, embedding_field="embedding")

    def _check_params(self, pool: "Pool") -> None:
        self._require_columns(pool, "embedding_field", "text_field")
        if self.n_clusters != "auto" and self.n_clusters > len(pool):
            raise ProbekitUsageError(
                f"The 'n_clusters' parameter of ClusterSelector must be at most the number of examples "
                f"in the pool ({len(pool)}). Got {self.n_clusters} instead."
            )

    def _features(self, pool: "Pool") -> tuple[np.ndarray, Embedder]:
        emb = resolve_embedder(pool, self.embedder, text_field=self.text_field,
                               embedding_field=self.embedding_field)
        try:
            x = emb.embed(pool)  # [N, d] float32, finite
        except ProbekitUsageError as exc:
            source = (f"the 'embedding_field' column {emb.field!r}" if getattr(emb, "name", "") == "column"
                      else f"the 'embedder' {type(emb).__name__}")
            raise ProbekitUsageError(f"ClusterSelector cannot cluster {source}: {exc}") from None
        return x, emb

    def _cluster(self, x: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray, dict]:
        from probekit.selection.faiss_kmeans import kmeans

        n = len(x)
        k = min(AUTO_MAX_CLUSTERS, n) if self.n_clusters == "auto" else int(self.n_clusters)

        def run(k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict]:
            with stage(f"k-means: {k} clusters of {n} points, {self.n_iter} iterations", logger=log):
                return kmeans(x, k, n_iter=self.n_iter, seed=seed, init=self.init,
                              max_points_per_centroid=self.max_points_per_centroid)

        centroids, assignment, sq_dist, info = run(k)
        if info["empty_clusters"] or count_distinct(centroids) < k:  # duplicate rows? count them exactly
            distinct = count_distinct(x)
            if distinct < k:
                if self.n_clusters != "auto":
                    raise ProbekitUsageError(
                        f"The 'n_clusters' parameter of ClusterSelector must be at most the number of "
                        f"distinct feature vectors in the pool ({distinct}). Got {k} instead."
                    )
                _, assignment, sq_dist, info = run(distinct)
        info["n_clusters"] = self.n_clusters
        return assignment, sq_dist, info

    def _rank(self, pool: "Pool", n: int, seed: int) -> Ranking:
        x, emb = self._features(pool)  # [N, d]
        assignment, sq_dist, info = self._cluster(x, seed)  # [N], [N]
        size = len(x)
        k = info["k"]
        # Medoid of each non-empty cluster: its member nearest the centroid (ties: lowest position).
        by_cluster = np.lexsort((np.arange(size), sq_dist, assignment))
        firsts = np.flatnonzero(np.r_[True, assignment[by_cluster][1:] != assignment[by_cluster][:-1]])
        medoids = by_cluster[firsts]  # [M] pool positions, one per non-empty cluster
        mass = np.bincount(assignment, minlength=k) / size  # [k] fraction of the pool per cluster
        medoids = np.sort(medoids)  # position order, so ties go to the lowest position
        ranked = medoids[greedy_kmedian(x[medoids], mass[assignment[medoids]])]  # [M] whole medoid order
        label = np.full(k, -1, dtype=np.int64)  # cluster -> rank of its medoid (empty clusters: -1)
        label[assignment[ranked]] = np.arange(len(ranked))
        order = ranked[:n]
        if n > len(ranked):
            rest = stratified_rest(assignment, label, ranked, np.random.default_rng(seed))
            order = np.concatenate([ranked, rest[: n - len(ranked)]])
        slices = [f"c{r}" for r in label[assignment[order]].tolist()]
        scores = mass[assignment[order]] if self.weights else None
        info.update(
            n_medoids=int(len(medoids)),
            dim=int(x.shape[1]),
            embedder=describe_param(emb),
            order="medoids by greedy weighted k-median, then the rest stratified by cluster size",
        )
        return Ranking(indices=order, scores=scores, slices=slices, info=info)
