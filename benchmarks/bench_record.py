"""Cost of ``probekit record`` against a bare batched no-grad forward loop over the same checkpoints and pool.

A small GPT-2 (built from a config: 2 layers, d 128, 4 heads, vocab 512) saved as a Trainer
output of K checkpoints (``checkpoint-N``, weights perturbed between them), a pool of n texts
of L words (a word-level tokenizer built here: one token per word). Measured side by side in
one run, interleaved, median of the repeats (the machine is noisy; absolute times drift,
ratios less so):

- bare loop: tokenize the pool once (right padding, chunks of ``--batch-size``), then per
  checkpoint ``AutoModelForCausalLM.from_pretrained`` and, under no_grad in eval mode, every
  chunk's logits -> masked next-token cross-entropy per sequence (``F.cross_entropy``), nothing
  else;
- probekit record: ``probekit.record.record_run`` into a fresh directory: pool loading and
  fingerprint, tokenization, content hashes of the checkpoints, loading, the forward passes
  (``forward_losses`` + ``causal_lm_loss``), staging each checkpoint's losses, writing and
  verifying the trajectory.

Checkpoint loading (``from_pretrained``) is reported separately: it is the same call in both
and does not depend on probekit. Target (issue 16): record's time without loading is at most
10% above the bare loop's.

    python benchmarks/bench_record.py [--threads 1] [--repeats 3] [--checkpoints 6] [--pool 512]
"""
from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import torch

WORDS = [f"w{i}" for i in range(500)]


def _setup(root: Path, k: int, n: int, length: int) -> tuple[Path, Path, object]:
    import transformers
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    core = Tokenizer(models.WordLevel(unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    core.train_from_iterator(WORDS, trainers.WordLevelTrainer(special_tokens=["<pad>", "<unk>", "<eos>"]))
    tok = transformers.PreTrainedTokenizerFast(tokenizer_object=core, unk_token="<unk>", pad_token="<pad>",
                                               eos_token="<eos>", model_max_length=length)
    config = transformers.GPT2Config(vocab_size=512, n_positions=length, n_embd=128, n_layer=2, n_head=4,
                                     bos_token_id=2, eos_token_id=2, pad_token_id=0)
    torch.manual_seed(0)
    model = transformers.GPT2LMHeadModel(config)
    g = torch.Generator().manual_seed(0)
    lengths = torch.randint(length // 2, length + 1, (n,), generator=g)  # ragged: padding matters
    rows = [{"id": f"t{i}", "text": " ".join(WORDS[j] for j in torch.randint(0, len(WORDS), (int(m),), generator=g))}
            for i, m in enumerate(lengths)]
    pool = root / "pool.jsonl"
    pool.write_text("".join(json.dumps(r) + "\n" for r in rows))
    run = root / "run"
    for step in range(0, 100 * k, 100):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(0.01 * torch.randn(p.shape, generator=g))
        model.save_pretrained(run / f"checkpoint-{step}")
        tok.save_pretrained(run / f"checkpoint-{step}")
    return run, pool, tok


def _bare(run: Path, pool: Path, tok, batch_size: int) -> tuple[float, float]:
    """(seconds loading checkpoints, seconds for everything else) of the plain loop."""
    import torch.nn.functional as F
    import transformers

    t0 = time.perf_counter()
    texts = [json.loads(line)["text"] for line in pool.read_text().splitlines()]
    chunks = [tok(texts[a:a + batch_size], padding=True, return_tensors="pt") for a in range(0, len(texts), batch_size)]
    load = 0.0
    losses = []
    for d in sorted(run.iterdir(), key=lambda p: int(p.name.split("-")[1])):
        tl = time.perf_counter()
        model = transformers.AutoModelForCausalLM.from_pretrained(d, dtype=torch.float32).eval()
        load += time.perf_counter() - tl
        row = []
        with torch.no_grad():
            for enc in chunks:
                logits = model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).logits.float()
                target = enc["input_ids"][:, 1:].masked_fill(enc["attention_mask"][:, 1:] == 0, -100)
                tokens = F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), target.reshape(-1),
                                         ignore_index=-100, reduction="none").reshape(target.shape)
                row.append(tokens.sum(1) / (target != -100).sum(1))
        losses.append(torch.cat(row))
    return load, time.perf_counter() - t0 - load


def _record(run: Path, pool: Path, out: Path, batch_size: int):
    from probekit.record import record_run

    t0 = time.perf_counter()
    outcome = record_run(run, pool, out, text_field="text", id_field="id", batch_size=batch_size, progress=False)
    return outcome, time.perf_counter() - t0


def main() -> None:
    from transformers.utils import logging as hf_logging

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--checkpoints", type=int, default=6)
    parser.add_argument("--pool", type=int, default=512)
    parser.add_argument("--length", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    root = Path(tempfile.mkdtemp(prefix="probekit-bench-record-"))
    try:
        run, pool, tok = _setup(root, args.checkpoints, args.pool, args.length)
        _bare(run, pool, tok, args.batch_size)  # warm-up (imports, allocator)
        _record(run, pool, root / "warm", args.batch_size)
        times: dict[str, list[float]] = {k: [] for k in ("bare_load", "bare_rest", "rec_wall", "rec_load", "rec_hash",
                                                         "rec_forward")}
        for r in range(args.repeats):  # interleaved, so drift hits both alike
            load, rest = _bare(run, pool, tok, args.batch_size)
            times["bare_load"].append(load)
            times["bare_rest"].append(rest)
            outcome, wall = _record(run, pool, root / f"out-{r}", args.batch_size)
            assert outcome.computed == args.checkpoints and not outcome.up_to_date
            times["rec_wall"].append(wall)
            times["rec_load"].append(outcome.load_seconds)
            times["rec_hash"].append(outcome.hash_seconds)
            times["rec_forward"].append(outcome.forward_seconds)
        med = {k: statistics.median(v) for k, v in times.items()}
        rec_rest = statistics.median(w - ld for w, ld in zip(times["rec_wall"], times["rec_load"]))
        print(f"GPT-2 2x128, {args.checkpoints} checkpoints, pool {args.pool} texts of {args.length // 2}-"
              f"{args.length} tokens, batch {args.batch_size}, {args.threads} thread(s), median of {args.repeats} "
              "interleaved repeats")
        print(f"{'what':<52} {'s':>8}")
        rows = [
            ("bare loop: checkpoint loading (from_pretrained)", med["bare_load"]),
            ("bare loop: tokenize once + forward + loss", med["bare_rest"]),
            ("probekit record: checkpoint loading", med["rec_load"]),
            ("probekit record: everything else", rec_rest),
            ("  of which content hashes of the checkpoints", med["rec_hash"]),
            ("  of which forward + loss (forward_losses)", med["rec_forward"]),
            ("  of which pool, tokenization, staging, writing", rec_rest - med["rec_hash"] - med["rec_forward"]),
        ]
        for name, s in rows:
            print(f"{name:<52} {s:>8.3f}")
        print(f"record vs bare loop, loading excluded: {rec_rest / med['bare_rest']:.3f}x "
              f"({100 * (rec_rest / med['bare_rest'] - 1):+.1f}%, target <= +10%)")
        print(f"record vs bare loop, loading included: {med['rec_wall'] / (med['bare_load'] + med['bare_rest']):.3f}x")
        paired = sorted((w - ld) / b for w, ld, b in zip(times["rec_wall"], times["rec_load"], times["bare_rest"]))
        # each repeat's record beside the bare loop run just before it: the spread says how much is noise
        print(f"paired per repeat, loading excluded: {', '.join(f'{r:.3f}' for r in paired)} "
              f"(median {statistics.median(paired):.3f}x)")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
