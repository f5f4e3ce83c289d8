"""``probekit export``: write a probe set in another monitor's format."""
from __future__ import annotations

import argparse

EPILOG = """\
examples:
  probekit export probes.parquet --format lm-eval --task hellaswag      # JSON for lm_eval --samples
  probekit export probes.parquet --format jsonl --out probes.jsonl      # with each example's payload
  probekit export probes.parquet --format datasets --out probe_ds/      # a datasets save_to_disk dir
  probekit export probes.parquet --format npy --data pool.parquet       # int64 pool indices

formats: jsonl (rank, id, index, slice, score, example payload), csv (rank, id, index, ...),
datasets (the selected examples in rank order), npy (indices), lm-eval ({task: [indices]}).

lm-eval: the indices are sorted (pool order), not in rank order: lm_eval logs the k-th document
it evaluates with doc_id = the k-th index of the list, right only when the list is sorted. The
ranking stays in PROBES. The pool's row order must be the task's document order.
"""

SUFFIX = {"jsonl": ".jsonl", "csv": ".csv", "datasets": "", "npy": ".npy", "lm-eval": ".json"}


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export",
        help="export a probe set (jsonl, csv, datasets, npy, lm-eval)",
        description="Export a probe-set file for other tools. Formats that carry the examples "
        "themselves (jsonl, datasets) read them from the pool the probes came from.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("probes", metavar="PROBES", help="probe-set file (.parquet)")
    p.add_argument("--format", required=True, dest="fmt", help="jsonl, csv, datasets, npy or lm-eval")
    p.add_argument("--out", help="output path (default: PROBES with the format's suffix)")
    p.add_argument("--task", help="task name for --format lm-eval")
    p.add_argument("--data", help="the pool (default: the one the provenance names)")
    p.add_argument("--id-field", help="id column of --data")
    p.add_argument("--ignore-fingerprint", action="store_true",
                   help="use --data even if it is not the pool the probes came from (match by id)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an existing output file, or a datasets directory an earlier export wrote (never any other "
                        "directory, never one of the inputs)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from probekit.errors import ProbekitUsageError
    from probekit.atomic import check_replaceable_directory
    from probekit.cli.common import BUILTIN_PREFIX
    from probekit.cli.outputs import check_new_file, check_not_input, check_parent
    from probekit.export import DATASETS_EXPORT, FORMATS, export, is_datasets_directory
    from probekit.probeset import ProbeSet

    if args.fmt not in FORMATS:
        raise ProbekitUsageError(f"--format must be one of {', '.join(FORMATS)}; got {args.fmt!r}.")
    if args.task is not None and args.fmt != "lm-eval":
        raise ProbekitUsageError(f"--task applies to --format lm-eval only; got --format {args.fmt}.")
    if args.fmt == "lm-eval" and not args.task:
        raise ProbekitUsageError("--format lm-eval needs --task NAME (the lm-evaluation-harness task).")
    probes = ProbeSet.load(args.probes)
    source = Path(args.probes)
    out = args.out or str(source.with_name(source.stem + (SUFFIX[args.fmt] or "-datasets")))
    # Its inputs: the probe set, and the pool (given, or the one the probe set names even when
    # this format does not read it: exporting over it would destroy it all the same).
    recorded = probes.provenance.info.get("pool")
    inputs = {"PROBES": args.probes, "--data": args.data, "the probe set's pool": recorded}
    inputs = {k: v for k, v in inputs.items() if v and not v.startswith(("<", BUILTIN_PREFIX))}
    if args.fmt == "datasets":
        check_not_input(out, "--out", inputs)
        check_parent(out, "--out")
        check_replaceable_directory(out, is_datasets_directory, DATASETS_EXPORT, args.overwrite, flag="--overwrite")
    else:
        check_new_file(out, "--out", args.overwrite, inputs)
    pool = None
    needs_pool = args.fmt in ("jsonl", "datasets") or args.data is not None
    if needs_pool:
        from probekit.cli.common import pool_for

        pool, probes = pool_for(probes, args.data, args.id_field, args.ignore_fingerprint)
    export(probes, out, args.fmt, pool=pool, task=args.task, overwrite=args.overwrite)
    print(f"wrote {out} ({args.fmt}, {len(probes)} probes)")
    return 0
