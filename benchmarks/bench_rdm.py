"""Streaming Gram-route 2RDM vs the dense n x n reference, side by side in one process.

For each (n, W): per-record milliseconds of
  - stream: DynamicalRDM.update + compute (SHC, PR, top-3 eigenvalues and loadings),
  - stream-noload: the same without loadings (what an alarm needs),
  - dense: np.cov of the window (n x n) + np.linalg.eigvalsh, then SHC and PR,
and the ratio dense / stream. Both paths see the same records and agree on SHC
(the relative difference is printed). BLAS runs on one thread for both
(docs/findings.md: contention makes multi-threaded BLAS erratic on this machine).

Targets (issue 2): >= 100x at n=1024, W=64; <= 2 ms per record at n=4096, W=64.

    python benchmarks/bench_rdm.py            # full grid, ~2 minutes
    python benchmarks/bench_rdm.py --quick    # n in {256, 1024}
"""
from __future__ import annotations

import argparse
import time

import numpy as np
from threadpoolctl import threadpool_limits

from probekit.rdm import DynamicalRDM


def dense_shc(window_records: np.ndarray) -> tuple[float, float]:
    c = np.cov(window_records, rowvar=False)
    ev = np.linalg.eigvalsh(c)
    tr = ev.sum()
    return float(np.var(ev)), float(tr**2 / (ev**2).sum())


def time_stream(x: np.ndarray, w: int, loadings: bool, reps: int) -> tuple[float, float]:
    rdm = DynamicalRDM(window=w, top_k=3, loadings=loadings)
    for row in x[:w]:
        rdm.update(row)
    rdm.compute()
    t0 = time.perf_counter()
    for row in x[w : w + reps]:
        rdm.update(row)
        stats = rdm.compute()
    return (time.perf_counter() - t0) / reps * 1e3, stats.shc


def time_dense(x: np.ndarray, w: int, reps: int) -> tuple[float, float]:
    t0 = time.perf_counter()
    for i in range(reps):
        end = w + i + 1
        shc, _ = dense_shc(x[end - w : end])
    return (time.perf_counter() - t0) / reps * 1e3, shc


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="skip n=4096")
    parser.add_argument("--threads", type=int, default=1, help="BLAS threads for both paths")
    args = parser.parse_args()
    sizes = [256, 1024] if args.quick else [256, 1024, 4096]
    windows = [32, 64, 128]
    rng = np.random.default_rng(0)
    print(f"{'n':>5} {'W':>4} {'stream ms':>10} {'noload ms':>10} {'dense ms':>10} "
          f"{'dense/stream':>13} {'SHC rel.diff':>13}")
    with threadpool_limits(limits=args.threads):
        for n in sizes:
            dense_reps = {256: 20, 1024: 3, 4096: 1}[n]
            for w in windows:
                reps = 300
                # Loss-like records: positive, drifting, with a common offset.
                x = (3.0 + rng.gamma(2.0, 0.5, size=(w + reps + 1, n))
                     + np.linspace(0, 1, w + reps + 1)[:, None]).astype(np.float32)
                stream_ms, _ = time_stream(x, w, True, reps)
                noload_ms, _ = time_stream(x, w, False, reps)
                dense_ms, shc_dense = time_dense(x.astype(np.float64), w, dense_reps)
                _, shc_stream = time_stream(x, w, False, dense_reps)
                rel = abs(shc_stream - shc_dense) / abs(shc_dense)
                print(f"{n:>5} {w:>4} {stream_ms:>10.3f} {noload_ms:>10.3f} {dense_ms:>10.1f} "
                      f"{dense_ms / stream_ms:>12.0f}x {rel:>13.1e}", flush=True)


if __name__ == "__main__":
    main()
