"""``probekit select``: build a ranked probe set from a pool with one strategy."""
from __future__ import annotations

import argparse

from probekit.cli.outputs import add_overwrite_flag
from probekit.errors import ProbekitUsageError

EPILOG = """\
examples:
  probekit select --strategy cluster --n 512                # built-in pool (scikit-learn digits)
  probekit select --strategy random --n 64 --param stratify=label --param mode=balanced
  probekit select --strategy cluster --n 256 --data prompts.jsonl --text-field prompt --id-field uid
  probekit select --strategy gradient --n 64 --data pool.jsonl --text-field text --param checkpoint=out/checkpoint-500
  probekit select --strategy concern --n 128 --data builtin:toy-text --slice "bias:group,label,pairs=pair_id" --slice "rare:topic,below=0.05"
  probekit select --strategy concern --n 64 --data builtin:toy-text --slice topic=astronomy --param background=0.25
  probekit select --strategy mixture --n 200 --data builtin:toy-text --param components=cluster:0.75,random:0.25
  probekit select --strategy mixture --n 200 --data prompts.jsonl --text-field prompt --id-field uid --param components=cluster:0.75,random:0.25
  probekit select --strategy mixture --n 200 --data prompts.jsonl --text-field prompt --id-field uid --slice topic=astronomy --param components=cluster:0.75,concern:0.25
  probekit select --strategy mixture --n 200 --data builtin:toy-text --param components='[{"strategy":"cluster","weight":0.75},{"strategy":"concern","weight":0.25,"params":{"slices":["rare:topic,below=0.05"]}}]'

--text-field, --embedding-field and --slice set the strategy's parameters of the same name; a
mixture passes each to the components that take it (unless a component's params set their own).

slices: 'rare:topic' shares its probes over EVERY topic (the rare one gets 1/9 of them on
builtin:toy-text); to target one value write a predicate ('topic=astronomy'), or
'rare:topic,below=0.05' for every value under 5% of the pool. 'probekit selectors concern' shows
the grammar; docs/slices.md is the full reference.

pools: --data takes a .jsonl/.json/.csv/.parquet/.arrow file, a datasets save_to_disk
directory, or builtin:digits (default, bundled with scikit-learn) / builtin:toy-text
(generated). 'probekit selectors' lists the strategies and their parameters;
'probekit selectors NAME' shows one in detail (allowed values, defaults, what each does).
"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "select",
        help="select a ranked probe set from a pool",
        description="Select n probes from a candidate pool with one strategy and write the ranked "
        "probe set (Parquet, provenance inside). Selections are nested: the first m probes of a "
        "selection of n are the selection of m.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--strategy", default="cluster", help="selection strategy (default cluster)")
    p.add_argument("--n", type=int, default=256, help="number of probes (default 256)")
    p.add_argument("--data", help="pool file or directory, or builtin:NAME (default builtin:digits)")
    p.add_argument("--id-field", help="column holding example ids (default: derived from content)")
    p.add_argument("--text-field", help="text column to embed (TF-IDF + SVD)")
    p.add_argument("--embedding-field", help="column holding precomputed embeddings")
    p.add_argument("--slice", action="append", default=[], metavar="SPEC",
                   help="slice spec for concern (or a mixture's concern component), repeatable; "
                   "grammar: 'probekit selectors concern' and docs/slices.md")
    p.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                   help="strategy parameter, repeatable (values: numbers, true/false, none, JSON, text; "
                   "quote text that looks like a number: stratify='\"2024\"')")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--out", help="output file (default probes-STRATEGY-N.parquet); never one of the inputs")
    add_overwrite_flag(p)
    p.set_defaults(run=run)


# CLI flags that map onto selector parameters of the same meaning. A mixture takes them too
# and passes each to the components whose parameters include it (selectors/mixture.py).
_FLAG_PARAMS = {"text_field": "--text-field", "embedding_field": "--embedding-field", "slices": "--slice"}


def selector_params(cls, args: argparse.Namespace) -> dict:
    from probekit.cli.common import parse_key_values

    params = parse_key_values(args.param, "--param")
    given = {"text_field": args.text_field, "embedding_field": args.embedding_field,
             "slices": args.slice or None}
    accepted = set(cls._param_names())
    for name, value in given.items():
        if value is None:
            continue
        if name not in accepted:
            from probekit.selectors.mixture import strategies_taking

            raise ProbekitUsageError(
                f"{_FLAG_PARAMS[name]} does not apply to strategy {cls.name!r} "
                f"(its parameters: {', '.join(sorted(accepted)) or 'none'}); strategies taking it: "
                f"{strategies_taking(name)}, mixture."
            )
        if name in params:
            raise ProbekitUsageError(f"{name} is given both as {_FLAG_PARAMS[name]} and as --param.")
        params[name] = value
    return params


def run(args: argparse.Namespace) -> int:
    import logging
    import time
    from collections import Counter

    from probekit.cli.common import BUILTIN_PREFIX, load_pool
    from probekit.cli.outputs import check_new_file
    from probekit.registry import SELECTORS, make_selector

    log = logging.getLogger("probekit.select")
    cls = SELECTORS.load(args.strategy)
    selector = make_selector(args.strategy, **selector_params(cls, args))
    out = args.out or f"probes-{args.strategy}-{args.n}.parquet"
    if not str(out).endswith(".parquet"):
        raise ProbekitUsageError(f"--out must name a .parquet file (the canonical probe-set format); got {out!r}.")
    data_path = None if args.data is None or args.data.startswith(BUILTIN_PREFIX) else args.data
    check_new_file(out, "--out", args.overwrite, {"--data": data_path})
    t0 = time.perf_counter()
    pool = load_pool(args.data, args.id_field)
    log.info("pool %s: %d examples (%.1f s)", pool.name, len(pool), time.perf_counter() - t0)
    t1 = time.perf_counter()
    probes = selector.select(pool, args.n, seed=args.seed)
    elapsed = time.perf_counter() - t1
    probes.save(out)
    print(f"selected {len(probes)} of {len(pool)} examples from {pool.name} with {selector!r}, "
          f"seed {args.seed}, in {elapsed:.1f} s")
    from probekit.cli.inspect_cmd import POOL_INFO

    info = {k: v for k, v in probes.provenance.info.items() if k not in POOL_INFO}
    scalars = {k: v for k, v in info.items() if not isinstance(v, (dict, list))}
    if scalars:
        print("  " + ", ".join(f"{k}={v}" for k, v in scalars.items()))
    if len(scalars) < len(info):
        print(f"  (more in the provenance: {', '.join(k for k in info if k not in scalars)}; see probekit inspect)")
    if probes.slices is not None:
        counts = Counter(s if s is not None else "(none)" for s in probes.slices)
        shown = ", ".join(f"{k} {v}" for k, v in counts.most_common(10))
        more = f", ... ({len(counts) - 10} more labels; see probekit inspect)" if len(counts) > 10 else ""
        print(f"  slices: {shown}{more}")
    print(f"  first probes: {', '.join(probes.ids[:5])}{' ...' if len(probes) > 5 else ''}")
    print(f"wrote {out}")
    return 0
