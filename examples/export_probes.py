"""Export a probe set for other tools, then read every export back and check it is the same set.

1. ``probekit select`` picks probes from a pool of prompts (JSONL, an ``id`` column);
2. ``probekit export --format lm-eval`` writes ``{task: [doc indices]}`` (sorted: the
   harness logs the k-th document it evaluates as doc_id = list[k]), the file
   lm-evaluation-harness takes with ``--samples`` (``lm_eval --tasks TASK --samples
   samples.json``) to evaluate only those documents;
3. ``probekit export --format datasets`` writes the probe rows, in rank order,
   as a ``datasets`` ``save_to_disk`` directory (``datasets.load_from_disk``);
4. both are read back (``probekit.export.read_lm_eval``, ``datasets.load_from_disk``)
   and compared with the original probe set: the lm-eval file as a set (it holds
   no ranking), the datasets directory id by id, rank by rank.

For lm-evaluation-harness the pool's row order must be the task's document
order: export the task's documents as the pool, then select from it.

    python examples/export_probes.py            # seconds
    python examples/export_probes.py --tiny     # what CI runs
"""
from __future__ import annotations

import argparse
import json
import os
import random

from probekit.cli import main as probekit_cli

TOPICS = ["weather", "cooking", "travel", "football", "chemistry", "music", "gardening", "history"]
FORMS = ["What is the best way to learn about {t}?", "Write a short poem about {t}.", "Explain {t} to a child.",
         "List three facts about {t}.", "Why do people care about {t}?"]


def run(argv: list[str]) -> None:
    print("$ probekit " + " ".join(argv))
    if probekit_cli(argv) != 0:
        raise SystemExit(f"probekit {argv[0]} failed")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=2000)
    parser.add_argument("--probes", type=int, default=64)
    parser.add_argument("--task", default="toy_prompts", help="the lm-evaluation-harness task name")
    parser.add_argument("--out", default="export-probes")
    parser.add_argument("--tiny", action="store_true")
    args = parser.parse_args()
    if args.tiny:
        args.prompts, args.probes = 200, 16
    os.makedirs(args.out, exist_ok=True)

    rng = random.Random(0)
    pool_path = os.path.join(args.out, "prompts.jsonl")
    with open(pool_path, "w") as fh:  # row k is the task's document k
        for k in range(args.prompts):
            t = rng.choice(TOPICS)
            fh.write(json.dumps({"id": f"doc{k}", "topic": t, "prompt": rng.choice(FORMS).format(t=t)}) + "\n")

    probes_path = os.path.join(args.out, "probes.parquet")
    run(["select", "--strategy", "cluster", "--n", str(args.probes), "--data", pool_path, "--text-field", "prompt",
         "--id-field", "id", "--out", probes_path])
    samples = os.path.join(args.out, "samples.json")
    run(["export", probes_path, "--format", "lm-eval", "--task", args.task, "--out", samples])
    rows = os.path.join(args.out, "probe_rows")
    run(["export", probes_path, "--format", "datasets", "--out", rows])

    import datasets

    from probekit import Pool, ProbeSet
    from probekit.export import read_lm_eval

    original = ProbeSet.load(probes_path)
    pool = Pool.from_file(pool_path, id_field="id")
    back = read_lm_eval(samples, pool, task=args.task)
    if list(back.ids) != sorted(original.ids, key=lambda i: int(pool.index_of(i)[0])):
        raise SystemExit("the lm-eval export did not round-trip")
    ds = datasets.load_from_disk(rows)
    if list(ds["probe_id"]) != list(original.ids) or list(ds["probe_rank"]) != list(range(len(original))):
        raise SystemExit("the datasets export did not round-trip")
    with open(samples) as fh:
        indices = json.load(fh)[args.task]
    print(f"{len(original)} probes; lm-eval --samples file {samples}: {{{args.task!r}: {indices[:5]}...}}; "
          f"datasets dir {rows}: {ds.num_rows} rows, columns {ds.column_names}")
    print("read back: the same ids from both exports (lm-eval in pool order, datasets in rank order)")


if __name__ == "__main__":
    main()
