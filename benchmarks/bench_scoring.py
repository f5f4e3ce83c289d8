"""Scoring one probe set on a cached trajectory, against re-running the training it replaces.

    python benchmarks/bench_scoring.py

For reference runs recorded into a fresh cache (deep-linear default, and the
small configs of grokking, induction heads and late bias), times, side by
side in one process, one torch/BLAS thread:

- score: column selection of n probes + the 2RDM SHC series (W = 32) + the
  alarm rule's persistent scores and alarms + episode classification, per
  trajectory (median of 20 repeats);
- record: the run's own recording wall time (from its manifest), i.e. what
  scoring without a store would cost.

Issue 5's figure: scoring takes milliseconds.
"""
from __future__ import annotations

import tempfile
import time

import numpy as np
from threadpoolctl import threadpool_limits


def main() -> None:
    from probekit.alarms import make_rule
    from probekit.eval.scoring.design_score import score_design
    from probekit.eval.scoring.signals import SignalSpec
    from probekit.eval.store.runner import load_or_record

    cache = tempfile.mkdtemp(prefix="probekit-bench-scoring-")
    runs = [("deep-linear", "default"), ("grokking", "small"), ("induction-heads", "small"), ("late-bias", "small")]
    rule = make_rule("running-min")
    print(f"{'run':<18} {'preset':<8} {'records x pool':>15} {'n':>5} {'score ms':>9} {'record s':>9} {'record/score':>13}")
    with threadpool_limits(1):
        for name, preset in runs:
            traj = load_or_record(name, preset, 0, cache_dir=cache, progress=False)
            r, pool = traj.losses.shape
            for n in (16, 64, 256):
                if n > pool:
                    continue
                probes = np.arange(n)
                times = []
                for _ in range(20):
                    t0 = time.perf_counter()
                    score_design([traj], [], lambda t: probes, spec=SignalSpec("shc", window=32), rule=rule)
                    times.append(time.perf_counter() - t0)
                ms = 1e3 * float(np.median(times))
                wall = traj.manifest["wall_seconds"]
                print(f"{name:<18} {preset:<8} {f'{r} x {pool}':>15} {n:>5} {ms:>9.2f} {wall:>9.2f} {wall * 1e3 / ms:>12.0f}x")


if __name__ == "__main__":
    main()
