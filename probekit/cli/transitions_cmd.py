"""``probekit transitions``: list the reference runs, record (or reuse) their trajectories."""
from __future__ import annotations

import argparse
import sys

EPILOG = """examples:
  probekit transitions list
  probekit transitions run grokking --seed 0
  probekit transitions run deep-linear deep-linear-null --config small --seed 0 1 2
  probekit transitions run all --seed 0 --cache-dir ./trajectories

A trajectory is cached under CACHE_DIR/NAME/CONFIG_HASH (default: $PROBEKIT_CACHE_DIR,
else the user cache dir + probekit/trajectories); a valid one is reused, a corrupt one
rebuilt. Onset/midpoint: the first record step at which the order parameter has moved
10% / 50% of the way from its plateau to its final value (and stays there)."""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "transitions",
        help="list and record the reference transitions (probekit.eval)",
        description="Reference runs with known phase transitions, and null controls without one. "
        "'run' trains a run once, stores the per-sample loss of every pool example at every record, "
        "and prints where the trajectory went and the transition times found.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = p.add_subparsers(dest="action", metavar="ACTION", parser_class=type(p))
    actions.required = True
    ls = actions.add_parser("list", help="the registered reference runs")
    ls.set_defaults(run=run_list)
    rn = actions.add_parser(
        "run",
        help="record (or load from the cache) reference runs",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    rn.add_argument("names", nargs="+", metavar="NAME", help="reference run names, or 'all'")
    rn.add_argument("--seed", type=int, nargs="+", default=[0], metavar="S", help="seeds (default: 0)")
    rn.add_argument("--config", default="default", metavar="PRESET",
                    help="config preset: default (minutes) or small (seconds); default: default")
    rn.add_argument("--cache-dir", default=None, help="where trajectories are cached")
    rn.add_argument("--rebuild", action="store_true", help="record again even when a valid cache exists")
    rn.set_defaults(run=run_record)


def run_list(args: argparse.Namespace) -> int:
    from probekit.errors import ProbekitError
    from probekit.registry import TRANSITIONS

    rows = []
    for name in TRANSITIONS.names():
        try:
            cls = TRANSITIONS.load(name)
        except ProbekitError as exc:  # a broken plugin must not hide the others
            rows.append((name, f"(cannot be loaded: {exc})"))
            continue
        rows.append((name, cls.kind, cls.transition_order, ",".join(cls.preset_names()), cls.summary))
    widths = [max(len(r[i]) for r in rows + [("name", "kind", "order", "presets")] if len(r) > 2) for i in range(4)]
    for row in [("name", "kind", "order", "presets", "summary")] + rows:
        if len(row) == 2:
            print(f"{row[0]:<{widths[0]}}  {row[1]}")
        else:
            print("  ".join(f"{v:<{w}}" for v, w in zip(row[:4], widths)) + "  " + row[4])
    return 0


def _fmt(step) -> str:
    return "-" if step is None else str(step)


def run_record(args: argparse.Namespace) -> int:
    import logging
    import time

    from probekit.errors import ProbekitUsageError
    from probekit.eval.store.runner import get_reference_run, load_or_record
    from probekit.registry import TRANSITIONS

    names = TRANSITIONS.names() if args.names == ["all"] else list(dict.fromkeys(args.names))
    bad = [s for s in args.seed if s < 0]
    if bad:
        raise ProbekitUsageError(f"argument --seed: seeds must be ints >= 0. Got {bad[0]} instead.")
    runs = {name: get_reference_run(name) for name in names}  # unknown names fail before any training
    for name, run in runs.items():
        run.make_config(args.config, 0)  # an unknown preset fails before any training
    log = logging.getLogger("probekit.transitions")
    done, total = 0, len(names) * len(args.seed)
    for name in names:
        for seed in args.seed:
            done += 1  # the run's own step bar (terminal) or 10 s lines come from probekit.eval.store.runner
            log.info("run %d/%d: %s seed %d (%s)", done, total, name, seed, args.config)
            t0 = time.perf_counter()
            recorded = []
            traj = load_or_record(name, args.config, seed, cache_dir=args.cache_dir, rebuild=args.rebuild,
                                  on_record=recorded.append)
            how = (f"recorded in {traj.manifest['wall_seconds']:.1f} s" if recorded
                   else f"cached, loaded in {time.perf_counter() - t0:.2f} s")
            print(f"{name} seed {seed} ({args.config}): {traj.manifest['n_records']} records x "
                  f"{traj.manifest['n_pool']} pool examples, {how}")
            print(f"  trajectory: {traj.path}")
            for t in traj.transitions:
                status = f"onset {_fmt(t.onset_step)}, midpoint {_fmt(t.midpoint_step)}" if t.happened else "no transition"
                print(f"  {t.name}: {status} (from {t.start_value:.3g} to {t.end_value:.3g})")
            sys.stdout.flush()
    return 0
