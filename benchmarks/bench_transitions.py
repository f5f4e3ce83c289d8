"""Record every reference run (default config, seeds 0-4) and report onsets and wall times.

    python benchmarks/bench_transitions.py                 # all runs, seeds 0-4, 2 workers
    python benchmarks/bench_transitions.py --names grokking grokking-null --seeds 0 1 2
    python benchmarks/bench_transitions.py --cache-dir DIR # reuse (or fill) DIR instead of a fresh one

Each run records with one torch thread in its own worker process; the wall
time reported is the recording's own (from its manifest), so it is what one
run costs on one core while the other core runs another. Prints the markdown
table of onset / midpoint per transition, the rule violations (the same
rules as the slow test), per-run median and max wall seconds, the total, and
writes one PNG per family (order parameter and mean pool loss vs step, null
dashed) to --figures.
"""
from __future__ import annotations

import argparse
import atexit
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    from probekit.eval.reports.figures import plot_family
    from probekit.eval.store.suite import onset_table, problems, run_suite, wall_summary
    from probekit.eval.store.trajectory import Trajectory
    from probekit.registry import TRANSITIONS

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--names", nargs="+", default=None)
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    ap.add_argument("--config", default="default")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--cache-dir", default=None, help="trajectory cache (default: a fresh temporary directory)")
    ap.add_argument("--figures", default=None,
                    help="where the PNGs go (default: docs/transitions for --config default, else none)")
    args = ap.parse_args(argv)

    names = args.names or TRANSITIONS.names()
    cache = args.cache_dir or tempfile.mkdtemp(prefix="probekit-bench-transitions-")
    if not args.cache_dir:  # a fresh cache, so every run is really recorded; removed at exit
        atexit.register(shutil.rmtree, cache, ignore_errors=True)
    t0 = time.perf_counter()
    rows = run_suite(names, args.seeds, preset=args.config, jobs=args.jobs, cache_dir=cache)
    total = time.perf_counter() - t0
    print(onset_table(rows))
    print()
    print("| run | median wall s | max wall s |")
    print("|---|---|---|")
    for name, (med, mx) in wall_summary(rows).items():
        print(f"| {name} | {med:.1f} | {mx:.1f} |")
    first3 = sum(r.wall_seconds for r in rows if r.seed in (0, 1, 2))
    print(f"\nsuite wall time: {total:.0f} s with {args.jobs} workers ({len(rows)} runs); "
          f"seeds 0-2 alone: {first3:.0f} s of recording, ~{first3 / max(args.jobs, 1):.0f} s on {args.jobs} workers")
    found = [p for row in rows for p in problems(row)]
    print("rule violations:" if found else "rule violations: none")
    for p in found:
        print(f"  {p}")

    if args.figures is None and args.config != "default":
        return 1 if found else 0  # never overwrite the committed default-config figures
    figures = Path(args.figures or ROOT / "docs" / "transitions")
    for name in names:
        cls = TRANSITIONS.load(name)
        if cls.kind == "null":
            continue
        fam = [Trajectory(r.path) for r in rows if r.name == name]
        nulls = [Trajectory(r.path) for r in rows if TRANSITIONS.load(r.name).control_of == name]
        out = plot_family(fam, nulls, figures / f"{name}.png", title=f"{name}: {cls.summary}")
        print(f"figure: {out}")
    return 1 if found else 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    sys.exit(main())
