"""Cluster selection: faiss k-means (ClusterSelector) vs scikit-learn KMeans, side by side.

Issue target: 512 probes from 200k x 384 float32 embeddings, >= 10x faster than
scikit-learn KMeans at the same iteration count with inertia within 2%; and the
1M x 384 case under 60 s on 2 cores.

Data: a seeded Gaussian mixture (2000 centres with Dirichlet masses, unit
spread between centres, noise 0.5 per coordinate), generated here.

Rows, all on the same matrix, all with k = 512 clusters and 20 Lloyd iterations
(tol=0 makes scikit-learn run all 20, so both libraries do the same iterations):
  sklearn random       KMeans(init="random", n_init=1, max_iter=20, tol=0) + the
                       nearest-member medoid of every cluster. init="random" (k
                       random points) is faiss's own initialisation: the fair
                       like-for-like baseline;
  sklearn k-means++    the same with scikit-learn's default init="k-means++";
  faiss random         probekit.selection.faiss_kmeans.kmeans(init="random"), faiss's
                       default subsampling (k * 256 training points) + medoids;
  faiss k-means++      the same seeded by k-means++ on a 32-per-centroid sample
                       (probekit's default), + medoids;
  ..., all points      max_points_per_centroid large enough that nothing is
                       subsampled (what subsampling costs in inertia);
  ..., mppc=32         heavier subsampling (k * 32 points): the speed/inertia trade;
  select               the whole ClusterSelector.select(pool, 512) with its
                       defaults, on a Pool with a precomputed embedding column
                       (features out of Arrow, k-means, medoids, greedy k-median
                       order, the ProbeSet).
Each row shows its speed-up and inertia ratio against both sklearn rows.
Inertia is always the sum of squared distances from *every* point to its
nearest centroid, computed the same way for every row. Pool building and the
pool fingerprint are timed separately (the fingerprint is cached on the Pool
and paid once per pool; it is measured on a slice and extrapolated, see below).

Both libraries use the machine's threads (2 cores here). The machine is shared:
read the ratios side by side, not the absolute seconds.

    python benchmarks/bench_cluster.py                 # 200k (with sklearn) and 1M; 10-25 minutes
    python benchmarks/bench_cluster.py --no-kmeanspp   # without sklearn k-means++ (~10 of those minutes)
    python benchmarks/bench_cluster.py --quick         # 20k (with sklearn) and 50k; ~2 minutes
"""
from __future__ import annotations

import argparse
import os
import time

import numpy as np

from probekit.selection.faiss_kmeans import kmeans, nearest

K = 512
N_ITER = 20
DIM = 384


def mixture(n: int, dim: int = DIM, centres: int = 2000, seed: int = 0) -> np.ndarray:
    """[n, dim] float32 Gaussian mixture, generated in chunks to bound memory."""
    rng = np.random.default_rng(seed)
    mu = rng.standard_normal((centres, dim), dtype=np.float32)
    which = rng.choice(centres, size=n, p=rng.dirichlet(np.ones(centres)))
    x = np.empty((n, dim), dtype=np.float32)
    for start in range(0, n, 65536):
        stop = min(n, start + 65536)
        x[start:stop] = mu[which[start:stop]] + 0.5 * rng.standard_normal((stop - start, dim), dtype=np.float32)
    return x


def medoids(x: np.ndarray, centroids: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """The member of each non-empty cluster nearest its centroid (the selector's rule)."""
    sq = np.empty(len(x), dtype=np.float32)
    for start in range(0, len(x), 65536):
        diff = x[start:start + 65536] - centroids[labels[start:start + 65536]]
        sq[start:start + 65536] = np.einsum("ij,ij->i", diff, diff)
    by = np.lexsort((np.arange(len(x)), sq, labels))
    return by[np.flatnonzero(np.r_[True, labels[by][1:] != labels[by][:-1]])]


def inertia(x: np.ndarray, centroids: np.ndarray) -> float:
    d2, _ = nearest(centroids, x)
    return float(d2.astype(np.float64).sum())


def run_sklearn(x: np.ndarray, seed: int, init: str = "random") -> tuple[float, float, int]:
    from sklearn.cluster import KMeans

    t0 = time.perf_counter()
    km = KMeans(n_clusters=K, init=init, n_init=1, max_iter=N_ITER, tol=0.0,
                algorithm="lloyd", random_state=seed).fit(x)
    meds = medoids(x, km.cluster_centers_.astype(np.float32), km.labels_)
    elapsed = time.perf_counter() - t0
    assert len(meds) <= K and km.n_iter_ <= N_ITER
    return elapsed, inertia(x, km.cluster_centers_.astype(np.float32)), int(km.n_iter_)


def run_faiss(x: np.ndarray, seed: int, max_points_per_centroid: int, init: str) -> tuple[float, float, int]:
    t0 = time.perf_counter()
    centroids, labels, _, info = kmeans(x, K, n_iter=N_ITER, seed=seed, init=init,
                                        max_points_per_centroid=max_points_per_centroid)
    medoids(x, centroids, labels)
    elapsed = time.perf_counter() - t0
    return elapsed, info["inertia"], info["trained_on"]


def build_pool(x: np.ndarray):
    """A Pool whose 'embedding' column is a float32 fixed-size list (no Python floats)."""
    import datasets
    import pyarrow as pa
    from datasets.table import InMemoryTable

    from probekit.pool import Pool

    table = pa.table({
        "id": pa.array([f"e{i:07d}" for i in range(len(x))]),
        "embedding": pa.FixedSizeListArray.from_arrays(pa.array(x.reshape(-1)), x.shape[1]),
    })
    return Pool(datasets.Dataset(InMemoryTable(table)), id_field="id")


def time_fingerprint(pool, rows: int) -> tuple[float, int]:
    """Seconds to fingerprint the first ``rows`` rows (Pool.fingerprint is linear in rows)."""
    from probekit.pool import table_fingerprint

    rows = min(rows, len(pool))
    part = pool.dataset.data.table.slice(0, rows)
    t0 = time.perf_counter()
    table_fingerprint(part)
    return time.perf_counter() - t0, rows


def run_select(pool, seed: int) -> tuple[float, float, dict]:
    from probekit.embedders import ColumnEmbedder
    from probekit.selectors.cluster import ClusterSelector

    t0 = time.perf_counter()
    ColumnEmbedder(field="embedding").embed(pool)
    features_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    ps = ClusterSelector(n_clusters=K, n_iter=N_ITER, embedding_field="embedding").select(pool, K, seed=seed)
    return time.perf_counter() - t0, features_s, ps.provenance.info


def row(name: str, seconds: float, value: float, bases: dict[str, tuple[float, float]], note: str = "") -> None:
    cells = []
    for key in ("random", "k-means++"):
        if key in bases:
            cells.append(f"{bases[key][0] / seconds:7.1f}x {value / bases[key][1]:7.4f}")
        else:
            cells.append(f"{'-':>8} {'-':>7}")
    print(f"  {name:<36} {seconds:8.2f} {value:12.5g}  {cells[0]}   {cells[1]}  {note}")


def case(n: int, with_sklearn: bool, all_points: bool, kmeanspp: bool, seed: int = 0) -> None:
    t0 = time.perf_counter()
    x = mixture(n, seed=seed)
    gen_s = time.perf_counter() - t0
    print(f"\n{n:,} x {DIM} float32, k = {K}, {N_ITER} iterations "
          f"(data generated in {gen_s:.1f} s; load average {os.getloadavg()[0]:.1f})")
    print(f"  {'':<36} {'':>8} {'':>12}  {'vs sklearn random':>16}   {'vs sklearn k-means++':>16}")
    print(f"  {'path':<36} {'seconds':>8} {'inertia':>12}  {'speed-up':>8} {'inertia':>7}   "
          f"{'speed-up':>8} {'inertia':>7}  note")
    bases: dict[str, tuple[float, float]] = {}
    if with_sklearn:
        sk_s, sk_inertia, sk_iter = run_sklearn(x, seed)
        bases["random"] = (sk_s, sk_inertia)
        if kmeanspp:
            pp_s, pp_inertia, pp_iter = run_sklearn(x, seed, init="k-means++")
            bases["k-means++"] = (pp_s, pp_inertia)
        row("sklearn KMeans, init=random", sk_s, sk_inertia, bases, f"{sk_iter} iterations run")
        if kmeanspp:
            row("sklearn KMeans, init=k-means++", pp_s, pp_inertia, bases, f"{pp_iter} iterations run")
    for init in ("random", "k-means++"):
        f_s, f_inertia, trained = run_faiss(x, seed, 256, init)
        row(f"faiss {init}", f_s, f_inertia, bases, f"trained on {trained:,} of {n:,} points")
    if all_points:
        fa_s, fa_inertia, trained = run_faiss(x, seed, -(-n // K), "k-means++")
        row("faiss k-means++, all points", fa_s, fa_inertia, bases, f"trained on {trained:,} points")
        f32_s, f32_inertia, trained = run_faiss(x, seed, 32, "k-means++")
        row("faiss k-means++, mppc=32", f32_s, f32_inertia, bases, f"trained on {trained:,} points")

    t0 = time.perf_counter()
    pool = build_pool(x)
    build_s = time.perf_counter() - t0
    del x
    fp_s, fp_rows = time_fingerprint(pool, 20_000)
    fp_full = fp_s * len(pool) / fp_rows
    pool._fingerprint = f"benchmark: fingerprint timed separately ({fp_full:.0f} s)"  # cached, as after one use
    sel_s, features_s, info = run_select(pool, seed)
    row("ClusterSelector.select (defaults)", sel_s, info["inertia"], bases,
        f"trained on {info['trained_on']:,}; features out of Arrow {features_s:.2f} s")
    print(f"  pool building: {build_s:.2f} s (Arrow table + Pool, ids checked); "
          f"pool fingerprint: {fp_s:.2f} s for {fp_rows:,} rows -> ~{fp_full:.0f} s for {len(pool):,} "
          f"(paid once per pool, not in the select row)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="20k and 50k rows instead of 200k and 1M")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-kmeanspp", action="store_true", help="skip the sklearn k-means++ reference row")
    args = parser.parse_args()
    import faiss

    print(f"faiss {faiss.__version__} ({faiss.omp_get_max_threads()} threads), {os.cpu_count()} cpus")
    small, large = (20_000, 50_000) if args.quick else (200_000, 1_000_000)
    case(small, with_sklearn=True, all_points=True, kmeanspp=not args.no_kmeanspp, seed=args.seed)
    case(large, with_sklearn=False, all_points=False, kmeanspp=False, seed=args.seed)


if __name__ == "__main__":
    main()
