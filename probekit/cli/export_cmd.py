"""``probekit export``: write a probe set in another monitor's format.

The formats, their flags, the default output name, whether the pool is loaded and which option
goes with which format all come from the declarations in :mod:`probekit.export.formats`.
"""
from __future__ import annotations

import argparse
import textwrap

EXAMPLES = """\
examples:
  probekit export probes.parquet --format lm-eval --task hellaswag      # JSON for lm_eval --samples
  probekit export probes.parquet --format jsonl --out probes.jsonl      # with each example's payload
  probekit export probes.parquet --format datasets --out probe_ds/      # a datasets save_to_disk dir
  probekit export probes.parquet --format npy --data pool.parquet       # int64 pool indices
"""


def _declared() -> list[tuple[str, object]]:
    """(name, declaration) for every registered format; a declaration that cannot be loaded is
    its error instead, so that one broken plugin does not take `probekit --help` down with it."""
    from probekit.errors import ProbekitError
    from probekit.export.formats import export_format, format_names

    out: list[tuple[str, object]] = []
    for name in format_names():
        try:
            out.append((name, export_format(name)))
        except ProbekitError as exc:
            out.append((name, exc))
    return out


def _epilog(declared) -> str:
    rows, notes = [], []
    for name, spec in declared:
        if isinstance(spec, Exception):
            rows.append((name, "", f"(cannot be loaded: 'probekit export --format {name}' says why)"))
            continue
        needs = [f"needs {o.flag} {o.metavar}" for o in spec.options if o.required]
        needs += {"required": ["needs the pool"], "optional": ["reads the pool"], "unused": []}[spec.pool]
        out = str(spec.default_output("PROBES")) + ("/" if spec.is_directory else "")
        rows.append((name, out, spec.doc + (f" ({'; '.join(needs)})" if needs else "")))
        if spec.details:
            notes.append(textwrap.fill(f"{name}: {spec.details}", width=100))
    width = max((len(r[0]) for r in rows), default=0)
    out_width = max((len(r[1]) for r in rows), default=0)
    lines = ["formats (FORMAT, the default --out, what it holds):"]
    indent = " " * (width + out_width + 6)
    lines += [textwrap.fill(f"  {n:<{width}}  {o:<{out_width}}  {d}", width=100, subsequent_indent=indent,
                              break_on_hyphens=False)
              for n, o, d in rows]
    return EXAMPLES + "\n" + "\n".join(lines) + "\n" + "".join(f"\n{note}\n" for note in notes)


def add_parser(sub: argparse._SubParsersAction) -> None:
    from probekit.export.formats import option_table

    declared = _declared()
    names = [name for name, _ in declared]
    with_pool = [name for name, spec in declared if not isinstance(spec, Exception) and spec.pool != "unused"]
    p = sub.add_parser(
        "export",
        help=f"export a probe set ({', '.join(names)})",
        description="Export a probe-set file for other tools. Formats that carry the examples "
        f"themselves ({', '.join(with_pool)}) read them from the pool the probes came from.",
        epilog=_epilog(declared),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("probes", metavar="PROBES", help="probe-set file (.parquet)")
    p.add_argument("--format", required=True, dest="fmt", metavar="FORMAT",
                   help=f"one of {', '.join(names)} (below)")
    p.add_argument("--out", help="output path (default: PROBES with the format's suffix)")
    for option, formats in option_table().values():
        p.add_argument(option.flag, dest=option.name, metavar=option.metavar,
                       help=f"{option.help} (--format {' or '.join(formats)})")
    p.add_argument("--data", help="the pool (default: the one the provenance names)")
    p.add_argument("--id-field", help="id column of --data")
    p.add_argument("--ignore-fingerprint", action="store_true",
                   help="use --data even if it is not the pool the probes came from (match by id)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an existing output file, or a directory an earlier export of the same format wrote "
                        "(never any other directory, never one of the inputs)")
    p.set_defaults(run=run)


def _chosen_options(spec, args: argparse.Namespace) -> dict[str, str]:
    """The format's options from the flags: none it does not take, every one it requires."""
    from probekit.errors import ProbekitUsageError
    from probekit.export.formats import option_table

    own = {o.name for o in spec.options}
    for option, formats in option_table().values():
        if getattr(args, option.name, None) is not None and option.name not in own:
            raise ProbekitUsageError(
                f"{option.flag} applies to --format {' or '.join(formats)} only; got --format {spec.name}."
            )
    for option in spec.options:
        if option.required and not getattr(args, option.name, None):
            raise ProbekitUsageError(
                f"--format {spec.name} needs {option.flag} {option.metavar} ({option.help})."
            )
    return {o.name: getattr(args, o.name) for o in spec.options if getattr(args, o.name, None) is not None}


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from probekit.atomic import check_replaceable_directory
    from probekit.cli.common import BUILTIN_PREFIX
    from probekit.cli.outputs import check_new_file, check_not_input, check_parent
    from probekit.export import export
    from probekit.export.formats import export_format, format_names, unknown_format
    from probekit.probeset import ProbeSet

    if args.fmt not in format_names():
        raise unknown_format(args.fmt)
    spec = export_format(args.fmt)
    options = _chosen_options(spec, args)
    probes = ProbeSet.load(args.probes)
    out = args.out or str(spec.default_output(Path(args.probes)))
    # Its inputs: the probe set, and the pool (given, or the one the probe set names even when
    # this format does not read it: exporting over it would destroy it all the same).
    recorded = probes.provenance.info.get("pool")
    inputs = {"PROBES": args.probes, "--data": args.data, "the probe set's pool": recorded}
    inputs = {k: v for k, v in inputs.items() if v and not v.startswith(("<", BUILTIN_PREFIX))}
    if spec.is_directory:
        check_not_input(out, "--out", inputs)
        check_parent(out, "--out")
        check_replaceable_directory(out, spec.owns_directory, spec.what, args.overwrite, flag="--overwrite")
    else:
        check_new_file(out, "--out", args.overwrite, inputs)
    pool = None
    if spec.pool != "unused" or args.data is not None:  # --data alone: checked against the probe set
        from probekit.cli.common import pool_for

        pool, probes = pool_for(probes, args.data, args.id_field, args.ignore_fingerprint)
    export(probes, out, spec.name, pool=pool, overwrite=args.overwrite, **options)
    print(f"wrote {out} ({spec.name}, {len(probes)} probes)")
    return 0
