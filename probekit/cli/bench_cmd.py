"""``probekit bench``: score probe designs on the reference transitions (grid, resumable)."""
from __future__ import annotations

import argparse
from typing import Any

EPILOG = """examples:
  probekit bench --quick                       # small configs, 3 seeds, all designs: ~2 min cold
  probekit bench --quick --out-dir results/    # resumable: rerun to continue a killed benchmark
  probekit bench --families grokking rare-drift --jobs 2
  probekit bench --designs random cluster concern:slices=rare:class   # any registered strategy, with parameters
  probekit bench --full --peers                # + the LLC (devinterp), needs pip install "probekit[peers]"
  probekit bench --trajectory my-run --null my-baseline --concern rare="topic=rare" --sizes 16 64
                                               # your own run, recorded with probekit record (docs/record.md)

Writes OUT_DIR/results.json (every cell), OUT_DIR/report.md (rows: design x size, columns:
families; cells: median lead in records at a 5% false-alarm rate, detection rate, spread) and
OUT_DIR/figures/ (per family: convergence with size, lead vs false-alarm rate, signals and alarms)."""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "bench",
        help="score probe designs on the reference transitions or on your own recorded runs",
        description="Run the benchmark grid (families x designs x sizes x seeds) on cached reference "
        "trajectories, in worker processes, resumable, and write a JSON of every cell and a markdown report.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="small configs, seeds 0-2, sizes 8 and 32 (the default)")
    mode.add_argument("--full", action="store_true", help="default configs, 20 seeds and 30 null seeds per family, sizes 8-256, 7 signals x 4 rules")
    p.add_argument("--peers", action="store_true",
                   help="also score the peer signals: the local learning coefficient (devinterp SGLD at checkpoints "
                        "every k records) and its change; needs pip install \"probekit[peers]\"")
    p.add_argument("--families", nargs="+", default=None, metavar="NAME",
                   help="transition families (default: every registered one; see 'probekit transitions list')")
    p.add_argument("--designs", nargs="+", default=None, metavar="NAME[:KEY=VALUE,...]",
                   help="probe designs: any registered selection strategy, with parameters (default: random, cluster, "
                        "gradient:sketch_dim=64 named gradient; see 'probekit selectors')")
    p.add_argument("--trajectory", nargs="+", default=None, metavar="DIR",
                   help="your own runs (trajectories of probekit record), each scored as a family of its own; only "
                        "these unless --families is given too")
    p.add_argument("--null", nargs="+", default=None, metavar="DIR",
                   help="with --trajectory: null runs (trajectories of probekit record without the transition, e.g. "
                        "without the intervention), quiet throughout (default: the quiet period alone)")
    p.add_argument("--concern", action="append", default=None, metavar="NAME=SPEC[;SPEC]",
                   help="with --trajectory: a concern the concern and mixture designs target, as slice specs over "
                        "the pool (docs/slices.md), repeatable")
    p.add_argument("--pilot", type=int, default=None, metavar="RECORDS",
                   help="with --trajectory: the records at the start of the run a response design reads at "
                        "selection time, not scored (default: a tenth of the records before the first onset)")
    p.add_argument("--sizes", nargs="+", type=int, default=None, metavar="N",
                   help="probe-set sizes (default: 8 32, or 8-256 with --full)")
    p.add_argument("--seeds", type=int, default=None, metavar="COUNT",
                   help="seeds 0..COUNT-1 (default: 3, 20 with --full; on a user trajectory they are selection seeds, "
                        "10 by default)")
    p.add_argument("--out-dir", default="probekit-bench", help="where the report goes (default: ./probekit-bench)")
    p.add_argument("--jobs", type=int, default=2, help="worker processes (default: 2)")
    p.add_argument("--cache-dir", default=None, help="trajectory cache (default: the user cache dir)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace report.md, results.json and the figures of another grid in --out-dir (rerunning "
                        "the same grid there resumes it and needs no flag; computed cells are always kept)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import dataclasses

    from probekit.errors import ProbekitUsageError
    from pathlib import Path

    from probekit.eval.bench import FULL, QUICK, run_grid
    from probekit.eval.reports.bench_figures import write_figures
    from probekit.eval.reports.report import write_report
    from probekit.registry import TRANSITIONS

    grid = FULL if args.full else QUICK
    if args.families:
        families = TRANSITIONS.names()
        for name in args.families:
            if name not in families:
                raise TRANSITIONS.unknown(name)
            if TRANSITIONS.load(name).kind != "transition":
                raise ProbekitUsageError(f"argument --families: {name!r} is a null control; name its family "
                                         f"({TRANSITIONS.load(name).control_of}) and its null is used for false alarms.")
        grid = dataclasses.replace(grid, families=tuple(dict.fromkeys(args.families)))
    if args.designs:
        from probekit.eval.bench.designs import parse_design

        grid = dataclasses.replace(grid, designs=tuple(parse_design(d) for d in args.designs))
    grid = _user_runs(args, grid)
    if args.sizes:
        if min(args.sizes) < 1:
            raise ProbekitUsageError(f"argument --sizes: sizes must be ints >= 1. Got {args.sizes} instead.")
        grid = dataclasses.replace(grid, sizes=tuple(sorted(set(args.sizes))))
    if args.seeds is not None:
        if args.seeds < 1:
            raise ProbekitUsageError(f"argument --seeds: must be an int >= 1. Got {args.seeds} instead.")
        grid = dataclasses.replace(grid, seeds=tuple(range(args.seeds)))
    if args.peers:
        from probekit.eval.scoring.signals import PEER_SIGNALS

        grid = dataclasses.replace(grid, peers=PEER_SIGNALS)
    if args.jobs < 1:
        raise ProbekitUsageError(f"argument --jobs: must be an int >= 1. Got {args.jobs} instead.")
    grid.check()  # before any work: designs, peers
    grid = grid.with_families()
    _check_out_dir(args.out_dir, grid.key(), args.overwrite)
    result = run_grid(grid, args.out_dir, jobs=args.jobs, cache_dir=args.cache_dir)
    json_path, md_path = write_report(result, args.out_dir, getattr(args, "command_line", "probekit bench"))
    figures = write_figures(result, args.out_dir, cache_dir=args.cache_dir)
    print(md_path.read_text())
    print(f"{result.computed} cells computed, {len(result.cells) - result.computed} resumed")
    print(f"report: {md_path}\nresults: {json_path}\nfigures: {len(figures)} PNGs in {Path(args.out_dir) / 'figures'}")
    return 1 if any(c.error for c in result.cells) else 0


def _user_runs(args: argparse.Namespace, grid: Any) -> Any:
    """The grid with the user's trajectories (--trajectory, --null, --concern, --pilot), checked."""
    import dataclasses

    from probekit.errors import ProbekitUsageError
    from probekit.eval.bench.user_runs import UserTrajectory, parse_concern

    if not args.trajectory:
        for flag, value in (("--null", args.null), ("--concern", args.concern), ("--pilot", args.pilot)):
            if value is not None:
                raise ProbekitUsageError(f"argument {flag}: applies to your own runs; give them with --trajectory DIR.")
        return grid
    if args.pilot is not None and args.pilot < 1:
        raise ProbekitUsageError(f"argument --pilot: must be an int >= 1 (records). Got {args.pilot} instead.")
    concerns = tuple(parse_concern(c) for c in args.concern or ())
    users = tuple(UserTrajectory(str(d), tuple(str(n) for n in args.null or ()), concerns, args.pilot)
                  for d in dict.fromkeys(args.trajectory))
    # selection seeds: cheap on one run; beside reference families or under --full, the grid's own
    seeds = grid.seeds if args.full or args.families else tuple(range(10))
    return dataclasses.replace(grid, trajectories=users, seeds=seeds, families=tuple(args.families or ()))


#: What bench writes into --out-dir (cells/ is its resumable store of computed cells).
REPORT_FILES = ("results.json", "report.md", "figures")


def _check_out_dir(out_dir: str, key: str, overwrite: bool) -> None:
    """Resume the same grid, refuse to replace another grid's (or anyone else's) report without --overwrite."""
    import json
    from pathlib import Path

    from probekit.errors import ProbekitUsageError

    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ProbekitUsageError(f"--out-dir {out} exists and is not a directory.")
    present = [name for name in REPORT_FILES if (out / name).exists()]
    if not present or overwrite:
        return
    try:
        same_grid = json.loads((out / "results.json").read_text()).get("grid_key") == key
    except (OSError, ValueError, AttributeError):
        same_grid = False
    if not same_grid:
        raise ProbekitUsageError(
            f"--out-dir {out} already holds {', '.join(present)} of another benchmark; pass --overwrite to "
            "replace them (computed cells are kept), or choose another --out-dir."
        )
