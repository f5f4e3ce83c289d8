"""``probekit inspect``: what a probe-set file holds and how well it covers its pool."""
from __future__ import annotations

import argparse

EPILOG = """\
examples:
  probekit inspect probes-cluster-512.parquet
  probekit inspect probes.parquet --data prompts.jsonl --text-field prompt
  probekit inspect probes.parquet --no-coverage
"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "inspect",
        help="describe a probe-set file: provenance, slices, coverage",
        description="Print a probe set's size, strategy, parameters, provenance and slice "
        "composition, and (when its pool is available) coverage: the mean and maximum distance "
        "from every pool example to its nearest probe, against random probe sets of the same size.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("probes", metavar="PROBES", help="probe-set file (.parquet)")
    p.add_argument("--data", help="the pool (default: the one the provenance names; coverage is "
                   "skipped when it is not reachable)")
    p.add_argument("--id-field", help="id column of --data")
    p.add_argument("--text-field", help="text column for the coverage embedding")
    p.add_argument("--embedding-field", help="embedding column for the coverage embedding")
    p.add_argument("--no-coverage", action="store_true", help="skip the coverage figures")
    p.add_argument("--ignore-fingerprint", action="store_true",
                   help="use --data even if it is not the pool the probes came from (match by id)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from probekit.probeset import ProbeSet

    probes = ProbeSet.load(args.probes)
    # Everything that can fail runs before the first line is printed: inspect never
    # prints a summary and then exits with an error.
    coverage = None if args.no_coverage else _coverage(probes, args)
    _print_summary(args.probes, probes)
    if coverage is not None:
        print(coverage)
    return 0


def _coverage(probes, args: argparse.Namespace) -> str:
    """The coverage line, or a line saying why coverage was skipped."""
    from probekit.cli.common import PoolUnreachableError, embedder_from_provenance, pool_for
    from probekit.embedders import resolve_embedder
    from probekit.errors import ProbekitUsageError
    from probekit.probeset.coverage import coverage_report

    try:
        pool, probes = pool_for(probes, args.data, args.id_field, args.ignore_fingerprint)
    except PoolUnreachableError as exc:
        if args.data is not None:
            raise
        return f"  coverage: skipped ({exc})"
    # Measure coverage where the selector worked: its own embedding, unless told otherwise.
    explicit = args.text_field is not None or args.embedding_field is not None
    recorded, text_field, embedding_field = embedder_from_provenance(
        probes.provenance.params, args.text_field, args.embedding_field)
    try:
        embedder = resolve_embedder(pool, recorded, text_field=text_field, embedding_field=embedding_field)
        embedded = embedder.embed(pool)
    except ProbekitUsageError as exc:
        if explicit:
            raise
        return f"  coverage: skipped (the selection recorded no embedding, and {str(exc).rstrip('.')})"
    report = coverage_report(embedded, probes.indices)
    return (f"  coverage ({embedder!r}): mean distance to nearest probe {report['mean_distance']:.4g} "
            f"(random: {report['random_mean_distance']:.4g}, ratio {report['mean_ratio_to_random']:.3f}), "
            f"max {report['max_distance']:.4g} (random: {report['random_max_distance']:.4g})")


#: Provenance facts about the pool itself: shown on the pool line, not among the selector's facts.
POOL_INFO = ("pool", "pool_id_field", "pool_content_fingerprint")


def _print_summary(path: str, probes) -> None:
    import json
    from collections import Counter

    import numpy as np

    prov = probes.provenance
    print(f"{path}: {len(probes)} probes, strategy {prov.strategy!r}, seed {prov.seed}")
    print(f"  params: {json.dumps(prov.params, sort_keys=True)}")
    info = {k: v for k, v in prov.info.items() if k not in POOL_INFO}
    if info:
        print(f"  info: {json.dumps(info, sort_keys=True)}")
    pool_name = prov.info.get("pool")
    id_field = prov.info.get("pool_id_field")
    ids = f", ids from column {id_field!r}" if id_field and id_field != "probe_id" else ""
    print(f"  pool: {pool_name or '(not recorded)'}{ids}, fingerprint {str(prov.pool_fingerprint)[:12]}, "
          f"probekit {prov.probekit_version}, schema {prov.schema_version}, content {probes.content_hash[:12]}")
    if probes.slices is not None:
        counts = Counter(s if s is not None else "(none)" for s in probes.slices)
        shown = ", ".join(f"{k} {v} ({100 * v / len(probes):.0f}%)" for k, v in counts.most_common(20))
        more = f", ... and {len(counts) - 20} more labels" if len(counts) > 20 else ""
        print(f"  slices ({len(counts)} labels): {shown}{more}")
    if probes.scores is not None:
        s = np.asarray(probes.scores)
        print(f"  scores: min {np.nanmin(s):.4g}, median {np.nanmedian(s):.4g}, max {np.nanmax(s):.4g}")
    print(f"  first probes: {', '.join(probes.ids[:8])}{' ...' if len(probes) > 8 else ''}")
