"""Which probe design would have warned earliest on *your* training run? Three commands tell you.

The whole path, on runs this script makes itself (no download):

0. train a tiny GPT-2 (built from a config) with the Hugging Face ``Trainer`` on a generated
   corpus in which a rare skill is learned late: in 20% of the sequences the second half repeats
   the first (in-context copying; at a fixed offset, so a positional head can do it, unlike the
   induction heads of ``probekit transitions``), the rest are random words. A ``checkpoint-N``
   folder every few steps. And a null run: the same job without the copy sequences;
1. ``probekit record``: the loss of every example of a held-out pool at every checkpoint of both,
   the transition read off an order parameter measured while recording (the copy sequences'
   mean loss) by the rule of the reference families;
2. ``probekit bench --trajectory``: random, cluster and concern probe designs scored on the run
   (lead before the onset at a 5% false-alarm rate set on the null run and the quiet stretch,
   over 10 selection seeds);
3. ``probekit select`` + ``probekit analyze``: the winner's probe set, its alarms and the probes
   that move together.

    python examples/own_run.py --out own-run           # ~4 min on 2 cores
    python examples/own_run.py --tiny --out own-run    # ~30 s: a smoke run of every step (the tests)
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import shlex
import sys
import time

import numpy as np

from probekit.cli import main as probekit

# The run. Full mode: copying switches on after a plateau, at step ~480 of 1200. Settings tried
# (docs/own_run.md): at lr 3e-3 the copy loss falls slowly and noisily; at 3e-3 with 10% copies, or
# with a block of varying length, it did not fall within 3000 steps. Tiny mode is far too short for
# copying: its "transition" is the first fit of the word frequencies, moved off the first records by
# a learning-rate warmup and found with a lowered --min-change. A smoke test of every step, no result.
FULL = dict(steps=1200, save_every=10, lr=1e-3, warmup=0, copy_share=0.2, pool=2000, sizes=[16, 64],
            seeds=10, min_change=None, jobs=2)
TINY = dict(steps=80, save_every=1, lr=3e-4, warmup=80, copy_share=0.2, pool=200, sizes=[8, 16], seeds=3,
            min_change=0.02, jobs=1)
WORDS = [f"w{i:02d}" for i in range(60)]  # the vocabulary: 60 words + <pad> <unk> <eos> fit a 64-row embedding
LENGTH, BLOCK = 32, 16  # tokens per sequence (the model's context); a copy sequence repeats its first 16


def make_rows(n: int, copy_share: float, seed: int, prefix: str) -> list[dict]:
    """``n`` sequences of LENGTH random words; in a ``copy_share`` of them the second half repeats the
    first. Only copying from context predicts that half, so its loss falls only when the model
    learns to copy; the random sequences hold nothing to learn beyond the word frequencies."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        words = rng.integers(len(WORDS), size=LENGTH)
        kind = "copy" if rng.random() < copy_share else "random"
        if kind == "copy":
            words[BLOCK:] = words[:BLOCK]
        rows.append({"id": f"{prefix}{i:05d}", "text": " ".join(WORDS[w] for w in words), "kind": kind})
    return rows


def make_tokenizer():
    """A word-level tokenizer built offline with the ``tokenizers`` library (no download)."""
    import transformers
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    core = Tokenizer(models.WordLevel(unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    core.train_from_iterator(WORDS, trainers.WordLevelTrainer(special_tokens=["<pad>", "<unk>", "<eos>"]))
    return transformers.PreTrainedTokenizerFast(tokenizer_object=core, unk_token="<unk>", pad_token="<pad>",
                                                eos_token="<eos>", model_max_length=LENGTH)


def train(cfg: dict, tokenizer, out: str, copy_share: float) -> None:
    """Step 0: the user's own run, a plain Trainer job saved to ``out``. probekit plays no part in it."""
    import torch
    import transformers

    transformers.logging.set_verbosity_error()  # keep the printout to what each step did
    transformers.logging.disable_progress_bar()
    # Online, as in pre-training: every training sequence is fresh (seen once), so the pool below,
    # drawn from the same law with another seed, is held out.
    texts = [r["text"] for r in make_rows(cfg["steps"] * 32, copy_share, seed=1, prefix="t")]
    ids = tokenizer(texts, return_tensors="pt")["input_ids"]  # [N, 32]: every text is exactly 32 words

    class Sequences(torch.utils.data.Dataset):
        def __len__(self):
            return len(ids)

        def __getitem__(self, i):
            return {"input_ids": ids[i], "labels": ids[i]}

    torch.manual_seed(0)
    config = transformers.GPT2Config(n_layer=2, n_embd=64, n_head=2, vocab_size=64, n_positions=LENGTH,
                                     bos_token_id=2, eos_token_id=2, pad_token_id=0,
                                     resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)  # fresh data: no dropout
    model = transformers.GPT2LMHeadModel(config)
    args = transformers.TrainingArguments(
        output_dir=out, max_steps=cfg["steps"], per_device_train_batch_size=32, learning_rate=cfg["lr"],
        lr_scheduler_type="constant_with_warmup", warmup_steps=cfg["warmup"], weight_decay=0.0, seed=0,
        use_cpu=True, report_to=[],
        save_strategy="steps", save_steps=cfg["save_every"], save_total_limit=None,
        save_only_model=True,  # the weights are what probekit reads; optimizer states would only fill the disk
        logging_strategy="no", disable_tqdm=True, dataloader_drop_last=True)
    model.save_pretrained(f"{out}/checkpoint-0")  # the Trainer saves nothing at step 0: the untrained model
    tokenizer.save_pretrained(f"{out}/checkpoint-0")  # probekit record finds the tokenizer here
    start = time.time()
    trainer = transformers.Trainer(model=model, args=args, train_dataset=Sequences(), processing_class=tokenizer)
    trainer.remove_callback(transformers.trainer_callback.PrinterCallback)  # its metrics dict
    trainer.train()
    n = len([d for d in os.listdir(out) if d.startswith("checkpoint-")])
    print(f"{out}: {cfg['steps']} steps on {len(ids)} sequences ({copy_share:.0%} copy) in "
          f"{time.time() - start:.0f} s; {n} checkpoints {out}/checkpoint-N")


def cli(*argv: str, tail: int = 0) -> None:
    """Run a probekit command as a user would type it, printed first (``tail``: only its last lines)."""
    print("\n$ probekit " + shlex.join(argv), flush=True)
    out = io.StringIO()
    with contextlib.redirect_stdout(out if tail else sys.stdout):
        code = probekit(list(argv))
    if tail:
        print("[...]\n" + "\n".join(out.getvalue().rstrip().splitlines()[-tail:]))
    if code != 0:
        raise SystemExit(f"probekit {argv[0]} failed")


def primary_points(results: dict) -> dict:
    """(design, size) -> the 5%-false-alarm point of the report's primary signal and rule (the grid's
    first), for the probe designs and the scalar baselines (which read the primary window)."""
    signal, rule = results["grid"]["signals"][0], results["grid"]["rules"][0]
    out = {}
    for cell in results["cells"]:
        scalar = cell["design"] == "scalar"
        if cell["error"] is None and (scalar or cell["signal"] == signal) and (
                cell["rule"]["name"], dict(cell["rule"]["params"])) == (rule["name"], dict(rule["params"])):
            name = f"scalar {cell['signal']['statistic']}" if scalar else cell["design"]
            for point in cell["points"]:
                out[(name, point["size"])] = point["at_far_5pct"]
    return out


def fmt(x, spec=".2f"):
    return "-" if x is None else format(x, spec)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="own-run", help="working directory (made if missing)")
    parser.add_argument("--tiny", action="store_true", help="a smoke run of every step (seconds, not a result)")
    args = parser.parse_args()
    cfg = TINY if args.tiny else FULL
    os.makedirs(args.out, exist_ok=True)
    os.chdir(args.out)  # every path below is relative, as a user would type it
    import torch

    torch.set_num_threads(1)
    started = time.time()

    # -- step 0: the training run, and a null run ----------------------------------------------
    # The null run is the same job without the copy sequences: nothing to learn late. It is optional,
    # but without it the false-alarm rate rests on the short quiet stretch before the onset alone.
    print(f"== step 0: train a 2-layer GPT-2 with the Trainer, {cfg['copy_share']:.0%} of its sequences repeating "
          f"their first half; and a null run without them ({'tiny' if args.tiny else 'full'} mode)")
    tokenizer = make_tokenizer()
    train(cfg, tokenizer, "run", cfg["copy_share"])
    train(cfg, tokenizer, "null-run", 0.0)
    pool = make_rows(cfg["pool"], cfg["copy_share"], seed=2, prefix="p")  # held out: never trained on
    with open("pool.jsonl", "w") as fh:
        fh.writelines(json.dumps(r) + "\n" for r in pool)
    n_copy = sum(r["kind"] == "copy" for r in pool)
    print(f"pool.jsonl: {len(pool)} held-out sequences, {n_copy} copy and {len(pool) - n_copy} random")

    # -- step 1: record the runs -------------------------------------------------------------
    # The order parameter is the mean loss of the copy sequences, measured while recording; its
    # onset (10% of the way from start to end, held 3 records) is the reference families' rule.
    print("\n== step 1: record the loss of every pool example at every checkpoint")
    pool_args = ["--data", "pool.jsonl", "--text-field", "text", "--id-field", "id"]
    minimum = [] if cfg["min_change"] is None else ["--min-change", str(cfg["min_change"])]
    cli("record", "--checkpoints", "run", *pool_args, "--out", "traj", "--name", "own-run",
        "--order-parameter", "loss:kind=copy", *minimum, "--overwrite")
    cli("record", "--checkpoints", "null-run", *pool_args, "--out", "null-traj", "--name", "own-run-null",
        "--overwrite")

    # -- step 2: benchmark the designs on it ---------------------------------------------------
    print("\n== step 2: score random, cluster and concern probe designs on the recorded run")
    sizes = [str(s) for s in cfg["sizes"]]
    cli("bench", "--trajectory", "traj", "--null", "null-traj", "--designs", "random", "cluster", "concern",
        "--concern", "copy=kind=copy", "--sizes", *sizes, "--seeds", str(cfg["seeds"]), "--out-dir", "bench",
        "--jobs", str(cfg["jobs"]), "--overwrite", tail=4)  # it prints its report: bench/report.md

    # -- the bench's verdict -----------------------------------------------------------------
    results = json.loads(open("bench/results.json").read())
    points = primary_points(results)
    manifest = json.loads(open("traj/manifest.json").read())
    onset = manifest["transitions"][0]
    print(f"\n== summary ({time.time() - started:.0f} s so far)")
    print(f"transition {onset['name']}: onset step {onset['onset_step']}, midpoint step {onset['midpoint_step']} "
          f"({manifest['n_records']} records, one every {cfg['save_every']} steps)")
    print(f"{'design':<18} {'size':>4}  {'warning':>7}  {'median lead':>11}  {'detection':>9}  {'median latency':>14}")
    for (design, size), p in points.items():
        print(f"{design:<18} {size or 'full':>4}  {fmt(p['detection']):>7}  {fmt(p['median_lead'], '.0f'):>11}  "
              f"{fmt(p['detected']):>9}  {fmt(p['median_latency'], '.0f'):>14}")
    print("(rates over the selection seeds at a matched 5% false-alarm rate; lead and latency in records)")
    paired = [c for family in results["paired"] for c in family["comparisons"]]
    for c in paired:
        print(f"  {c['design']} vs random at {c['size']} probes, {c['score']}: {c['verdict']} "
              f"(mean difference {c['mean_difference']:+.2f}, adjusted p {c['p_adjusted']:.3g})")

    # The winner: the best warning rate averaged over the sizes, then detection, then lead.
    designs = [d for d in dict.fromkeys(d for d, _ in points) if not d.startswith("scalar")]

    def merit(design):
        ps = [p for (d, _), p in points.items() if d == design]
        return tuple(float(np.mean([p[k] or 0 for p in ps])) for k in ("detection", "detected", "median_lead"))

    winner = max(designs, key=merit)
    beats = [c for c in paired if c["design"] == winner and c["verdict"] == "better"]
    if merit(winner) == merit("random"):
        winner = "random"
        print("winner: none -- no design beats random on this run")
    else:
        print(f"winner: {winner}" + ("" if beats else ", but not significantly better than random "
                                     "on any size or score (paired test over the selection seeds)"))

    # -- step 3: the winner's probe set, analyzed -----------------------------------------------
    n = cfg["sizes"][-1]
    which = f"the winner, {winner}" if winner != "random" else "no winner, so the baseline, random"
    print(f"\n== step 3: {which}: its probe set of {n} selected again, and the run analyzed through it")
    # The bench selected each seed's probes on the trajectory's pool; `probekit select` with the same
    # strategy, parameters and seed on that pool gives the same probe set (checked below).
    strategy = winner.split("[")[0]
    offered = {"random": [], "cluster": ["--text-field", "text"],  # what the bench gave each strategy
               "concern": ["--slice", "kind=copy", "--text-field", "text"]}[strategy]
    cli("select", "--strategy", strategy, *offered, "--n", str(n), "--data", "traj/pool", "--id-field", "probe_id",
        "--seed", "0", "--out", "winner.parquet", "--overwrite")
    from probekit import ProbeSet

    chosen = list(ProbeSet.load("winner.parquet").ids)
    ranking = next(r for r in results["rankings"] if r["design"] == winner)["runs"]["own-run/0"]
    print(f"the same {n} probes as the bench's seed-0 draw of {winner}: {chosen == ranking[:n]}")
    cli("analyze", "traj", "--probes", "winner.parquet", "--slice-field", "kind",
        "--window", str(results["grid"]["signals"][0]["window"]), "--out-dir", "analyze", "--overwrite")
    print(f"\ndone in {time.time() - started:.0f} s")


if __name__ == "__main__":
    main()
