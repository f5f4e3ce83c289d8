"""``probekit analyze``: 2RDM series, alarms and co-moving probes of a recorded loss matrix."""
from __future__ import annotations

import argparse
import json

from probekit.errors import ProbekitUsageError

EPILOG = """\
examples:
  probekit analyze                                   # built-in demo: a deep linear network's 256 pool losses
  probekit analyze losses.npy --window 32            # rows = records, columns = probes
  probekit analyze losses.parquet --steps-column step --detrend linear --out-dir results/
  probekit analyze losses.npz --alarm zscore --alarm-param threshold=5 --alarm-param baseline=40
  probekit analyze ~/.cache/probekit/trajectories/deep-linear/HASH    # a stored run: every pool example
  probekit analyze TRAJ_DIR --probes probes.parquet  # that probe set's columns, described by its slices
  probekit analyze TRAJ_DIR --slice-field topic --describe-field prompt   # label and show the co-moving probes

inputs: .npy (2-D array), .npz ('losses', optional 'steps' and 'probe_ids'),
.parquet/.csv (one numeric column per probe, optional step column), or a trajectory
directory (probekit transitions run; manifest.json, losses.npy, steps.npy, pool/): its
steps, and its ground-truth transition onsets beside the alarms. With a trajectory the
co-moving probes are described from its pool (text or a few fields, slice labels) and the
slices over-represented among them are listed (docs/analyze.md).
outputs in --out-dir: series.csv (one row per record), summary.json, analyze.png.
"""


#: The files analyze writes into --out-dir.
OUTPUTS = ("series.csv", "summary.json", "analyze.png")


def _signal_help() -> str:
    """The epilog's table of signals, from the signal table (a plugin that cannot load says so)."""
    from probekit.errors import ProbekitError
    from probekit.rdm.signal_table import get_signal, signal_names

    lines = ["", "signals (--signal; 2RDM statistics of each window, each rising towards a transition):"]
    for name in signal_names():
        try:
            doc = get_signal(name).doc
        except ProbekitError as exc:
            doc = f"(cannot be loaded: {exc})"
        lines.append(f"  {name:<15} {doc}")
    return "\n".join(lines) + "\n"


def add_parser(sub: argparse._SubParsersAction) -> None:
    from probekit.rdm.signal_table import signal_names

    p = sub.add_parser(
        "analyze",
        help="2RDM statistics and alarms of a recorded per-sample loss matrix or a stored trajectory",
        description="Compute the dynamical 2RDM (SHC, PR, spectrum) over a sliding window of "
        "a [records, probes] loss matrix, run an alarm rule, and list the probes that move "
        "together at the strongest alarm. LOSSES is a loss file or a trajectory directory "
        "(then --probes picks the columns). With no LOSSES, analyzes a built-in demo run.",
        epilog=EPILOG + _signal_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("losses", nargs="?", metavar="LOSSES",
                   help="loss matrix file (.npy/.npz/.parquet/.csv) or trajectory directory; "
                   "default: the built-in demo")
    p.add_argument("--probes", metavar="PROBES",
                   help="with a trajectory: analyze only this probe-set file's probes (.parquet), in its order "
                   "(default: every pool example); its slices label the co-moving probes")
    p.add_argument("--describe-field", action="append", metavar="COLUMN",
                   help="with a trajectory: pool column shown for each co-moving probe, repeatable (default: the "
                   "pool's text column, else up to three columns that vary)")
    p.add_argument("--slice-field", action="append", metavar="COLUMN",
                   help="with a trajectory: pool column whose values label the probes, repeatable; labels "
                   "over-represented among the co-moving probes are listed (default: the column 'slice' if any)")
    p.add_argument("--steps-column", help="column holding training steps (parquet/csv; default 'step' if present)")
    p.add_argument("--window", type=int, default=32, help="records per sliding window W (default 32)")
    p.add_argument("--stride", type=int, default=1, help="use every k-th record (default 1)")
    p.add_argument("--detrend", default="none", help="none (default), linear or diff")
    p.add_argument("--top-k", type=int, default=3, help="leading eigenvalues to report (default 3)")
    p.add_argument("--signal", default="shc", metavar="NAME",
                   help=f"signal the alarm reads (default shc): {', '.join(signal_names())}; see 'signals' below")
    p.add_argument("--alarm", default=None, help="alarm rule: running-min (default), zscore, kendall")
    p.add_argument("--alarm-param", action="append", default=[], metavar="KEY=VALUE",
                   help="alarm rule parameter, repeatable (e.g. ratio=20)")
    p.add_argument("--top", type=int, default=10, help="co-moving probes to list (default 10)")
    p.add_argument("--out-dir", default="probekit-analyze", help="output directory (default ./probekit-analyze)")
    p.add_argument("--no-plot", action="store_true", help="skip the PNG figure")
    p.add_argument("--demo-seed", type=int, default=0, help="seed of the built-in demo run (default 0)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace series.csv, summary.json and analyze.png if --out-dir already holds them")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import csv
    from pathlib import Path

    import numpy as np

    from probekit.atomic import staged_files
    from probekit.cli.common import parse_key_values
    from probekit.cli.outputs import check_files_in_dir
    from probekit.rdm.analysis import analyze

    for flag, value, low in (("--top", args.top, 1), ("--top-k", args.top_k, 1), ("--window", args.window, 2),
                             ("--stride", args.stride, 1), ("--demo-seed", args.demo_seed, 0)):
        if value < low:
            raise ProbekitUsageError(f"argument {flag}: must be an int >= {low}. Got {value} instead.")
    trajectory = _is_trajectory(args.losses)
    _check_trajectory_flags(args, trajectory)
    # analyze.png is checked with --no-plot too: a figure of earlier settings must not be left
    # beside the new series (with --overwrite it is removed)
    check_files_in_dir(args.out_dir, OUTPUTS, "--out-dir", args.overwrite,
                       {"LOSSES": args.losses, "--probes": args.probes})
    alarm_params = parse_key_values(args.alarm_param, "--alarm-param")
    onsets: list[int] = []
    transitions: list[dict] = []
    descriptions = None
    index = "step"  # what a record's index is called: "record" when the file had no steps
    if trajectory:
        losses, steps, descriptions, source, transitions = _read_trajectory(args)
        probe_ids = list(descriptions.ids)
        onsets = [t["onset_step"] for t in transitions if t["onset_step"] is not None]
    elif args.losses is None:
        from probekit.eval.families.deep_linear import DeepLinearConfig, run_deep_linear

        demo = run_deep_linear(DeepLinearConfig(seed=args.demo_seed))
        losses, steps = demo.losses, demo.steps
        probe_ids = [f"pool{i}" for i in range(losses.shape[1])]
        source = f"built-in demo: deep linear network, seed {args.demo_seed}"
        onsets = [int(s) for s in demo.onset_steps]
    else:
        from probekit.rdm.loss_files import read_loss_matrix

        matrix = read_loss_matrix(args.losses, steps_column=args.steps_column)
        losses, steps, probe_ids, source = matrix.losses, matrix.steps, matrix.probe_ids, matrix.source
        index = "step" if matrix.steps_given else "record"

    result = analyze(
        losses, steps=steps, probe_ids=probe_ids, window=args.window, stride=args.stride,
        detrend=args.detrend, top_k=args.top_k, signal=args.signal, alarm=args.alarm,
        alarm_params=alarm_params, n_top=args.top, descriptions=descriptions,
    )
    summary = {"source": source, **result.summary()}
    if onsets:
        summary["ground_truth_onset_steps"] = onsets
    if trajectory:
        summary["transitions"] = transitions

    out_dir = Path(args.out_dir)
    with staged_files(out_dir) as stage:
        cols = result.series.columns()
        cols["signal_score"] = result.alarm_scores
        alarm_flag = np.zeros(len(result.series), dtype=np.int64)
        alarm_flag[result.alarm_positions] = 1
        cols["alarm"] = alarm_flag
        with open(stage / "series.csv", "w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(cols)
            for row in zip(*cols.values()):
                writer.writerow(_csv_cell(v) for v in row)
        (stage / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
        if not args.no_plot:
            from probekit.plotting import plot_analysis

            plot_analysis(result, stage / "analyze.png", title=source, onsets=onsets, index=index)
    if args.no_plot and (out_dir / "analyze.png").exists():  # --overwrite was given (checked above)
        (out_dir / "analyze.png").unlink()
    _print_report(result, summary, out_dir, args.no_plot, index)
    return 0


def _is_trajectory(losses: str | None) -> bool:
    """A directory holding a manifest.json: a stored trajectory (anything else goes to the loss-file reader)."""
    from pathlib import Path

    return losses is not None and Path(losses).is_dir() and (Path(losses) / "manifest.json").is_file()


def _check_trajectory_flags(args: argparse.Namespace, trajectory: bool) -> None:
    """Flags that need a trajectory, and the one that does not apply to it: refused before any work."""
    if trajectory:
        if args.steps_column is not None:
            raise ProbekitUsageError(f"--steps-column applies to parquet and csv files; {args.losses} is a "
                                     "trajectory directory (its steps are in steps.npy).")
        return
    for flag, value in (("--probes", args.probes), ("--describe-field", args.describe_field),
                        ("--slice-field", args.slice_field)):
        if value:
            what = "the built-in demo" if args.losses is None else f"{args.losses}, a loss file"
            raise ProbekitUsageError(f"{flag} needs a trajectory directory as LOSSES (one with manifest.json, "
                                     f"losses.npy and pool/); got {what}.")


def _read_trajectory(args: argparse.Namespace):
    """Losses [records, probes] float64, steps, probe descriptions, source line and transitions of LOSSES.

    Every pool example, or exactly the ``--probes`` probe set's, in its order
    (``Trajectory.probe_losses``). A probe id the pool lacks is one line naming how many and the first few.
    """
    import numpy as np

    from probekit.errors import PoolMismatchError
    from probekit.eval.store.trajectory import Trajectory
    from probekit.rdm.modes import describe_probes

    probes = None
    if args.probes is not None:
        from probekit.probeset import ProbeSet

        probes = ProbeSet.load(args.probes)
    traj = Trajectory(args.losses)  # verifies every checksum: a corrupt store is an error (exit 1)
    pool = traj.pool
    if probes is None:
        losses = np.asarray(traj.losses, dtype=np.float64)  # [records, pool]
    else:
        known = set(pool.ids.tolist())
        missing = [v for v in probes.ids if v not in known]
        if missing:
            shown = ", ".join(repr(v) for v in missing[:5]) + (", ..." if len(missing) > 5 else "")
            raise PoolMismatchError(
                f"--probes {args.probes}: {len(missing)} of {len(probes)} probe ids are not in the pool of "
                f"trajectory {args.losses} ({len(pool)} examples): {shown}; select the probes from that "
                f"pool (probekit select --data {traj.path / 'pool'})."
            )
        losses = np.asarray(traj.probe_losses(probes), dtype=np.float64)  # [records, probes], the set's order
    descriptions = describe_probes(pool, probes, describe_fields=args.describe_field, slice_fields=args.slice_field)
    m = traj.manifest
    what = "every pool example" if probes is None else f"probe set {args.probes}"
    source = f"trajectory {m['name']} ({m['preset']}, seed {m['seed']}), {what}"
    transitions = [{"name": t.name, "onset_step": t.onset_step, "midpoint_step": t.midpoint_step}
                   for t in traj.transitions]
    steps = np.asarray(traj.steps, dtype=np.int64)
    traj.close()
    return losses, steps, descriptions, source, transitions


def _csv_cell(v):
    if isinstance(v, (float,)) or hasattr(v, "dtype") and v.dtype.kind == "f":
        v = float(v)
        return "" if v != v else repr(v)  # NaN -> empty cell
    return int(v) if hasattr(v, "dtype") else v


def _print_report(result, summary: dict, out_dir, no_plot: bool, index: str = "step") -> None:
    """The text report; ``index`` is "step" when the records carry training steps, else "record"."""
    s = result.series
    print(f"{summary['source']}: {summary['records']} records x {s.n_probes} probes, "
          f"window {s.window}, stride {s.stride}, detrend {s.detrend}"
          + (f", {s.n_rejected} records rejected (NaN/inf)" if s.n_rejected else ""))
    params = ", ".join(f"{k}={v}" for k, v in result.alarm_params.items())
    steps = ", ".join(str(int(x)) for x in result.alarm_steps)
    where = f" at {index}(s) {steps}" if steps else ""
    print(f"alarm rule {result.alarm_rule} ({params}) on {result.signal_name}: "
          f"{len(result.alarm_positions)} alarm(s){where}")
    if "transitions" in summary:
        for t in summary["transitions"]:
            said = ("no transition in the recorded span" if t["onset_step"] is None else
                    f"onset step {t['onset_step']}, midpoint step {t['midpoint_step']}")
            print(f"ground-truth transition {t['name']} (trajectory manifest): {said}")
    elif "ground_truth_onset_steps" in summary:
        print("ground-truth transition onsets (demo): steps "
              + ", ".join(str(x) for x in summary["ground_truth_onset_steps"]))
    focus = summary["focus"]
    if focus is not None:
        share = focus["leading_share"]
        share_txt = f"{100 * share:.0f}% of the trace" if share is not None else "no variance"
        print(f"probes moving together at the {focus['kind']}, {index} {focus['step']} "
              f"(leading mode: {share_txt}):")
        for line in result.mode.lines() if result.mode is not None else []:
            print(line)
    files = ["series.csv", "summary.json"] + ([] if no_plot else ["analyze.png"])
    print("wrote " + ", ".join(str(out_dir / f) for f in files))
