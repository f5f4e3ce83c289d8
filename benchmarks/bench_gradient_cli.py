"""``probekit select --strategy gradient`` on a 13.8M-parameter GPT-2 checkpoint and 10k sequences, against its floor.

The checkpoint: ``GPT2Config(vocab_size=8192, n_positions=32, n_embd=384, n_layer=6, n_head=6)``,
``GPT2LMHeadModel`` seeded and built from the config (no download), saved with a word-level
tokenizer (8,189 words + 3 special tokens, built here with ``tokenizers``: one token per word) as a
Trainer-like ``out/checkpoint-0`` folder; the pool: a jsonl file of ``--pool`` texts (default
10,000) of 32 random words each (``id`` and ``text`` fields). Measured:

- the CLI, in a subprocess under ``/usr/bin/time -v``: ``probekit select --strategy gradient --n 64
  --param checkpoint=out/checkpoint-0 --param batch_size=16`` (method auto: factorized, above 1M
  trainable parameters): wall time, peak RSS ("Maximum resident set size"), and from its ``-v``
  log the gradient-sketch stage alone. The output must hold 64 probes and say ``sketch:
  factorized`` in its provenance;
- the floor: a bare batched forward + backward of the summed per-sequence causal-LM losses
  (``CausalLMForSketch`` + ``sequence_loss``, batches of 16, ``zero_grad`` each batch) on the
  same checkpoint's first 1,000 sequences, timed before and after the CLI, extrapolated to the pool.

Both at the default torch thread count. Target (issue): the sketch stage costs <= 1.5 x the floor
(the wall time adds process start, imports, pool loading, tokenization and model loading).

    python benchmarks/bench_gradient_cli.py [--pool 10000] [--keep DIR]   # ~4 minutes on 2 shared cores
"""
from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

VOCAB, SEQ, N_FLOOR, BATCH = 8192, 32, 1000, 16
WORDS = [f"w{i}" for i in range(VOCAB - 3)]  # + <pad>, <unk>, <eos>: the model's 8192 tokens


def setup(root: Path, n: int) -> tuple[Path, Path]:
    """(checkpoint dir, pool file): the seeded GPT-2 and its tokenizer, and n texts of SEQ words."""
    import transformers
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    core = Tokenizer(models.WordLevel(unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    core.train_from_iterator(WORDS, trainers.WordLevelTrainer(vocab_size=VOCAB,
                                                              special_tokens=["<pad>", "<unk>", "<eos>"]))
    tok = transformers.PreTrainedTokenizerFast(tokenizer_object=core, unk_token="<unk>", pad_token="<pad>",
                                               eos_token="<eos>", model_max_length=SEQ)
    assert len(tok) == VOCAB, len(tok)
    config = transformers.GPT2Config(vocab_size=VOCAB, n_positions=SEQ, n_embd=384, n_layer=6, n_head=6,
                                     bos_token_id=2, eos_token_id=2, pad_token_id=0)
    torch.manual_seed(0)
    model = transformers.GPT2LMHeadModel(config)
    ckpt = root / "out" / "checkpoint-0"
    model.save_pretrained(ckpt)
    tok.save_pretrained(ckpt)
    g = torch.Generator().manual_seed(0)
    words = torch.randint(0, len(WORDS), (n, SEQ), generator=g).tolist()
    pool = root / "pool.jsonl"
    pool.write_text("".join(json.dumps({"id": f"s{i:05d}", "text": " ".join(WORDS[j] for j in row)}) + "\n"
                            for i, row in enumerate(words)))
    return ckpt, pool


def floor(ckpt: Path, pool: Path, m: int) -> float:
    """Seconds per sequence of a bare batched forward + backward over the pool's first m sequences."""
    import transformers

    from probekit.selection.causal_lm import CausalLMForSketch, causal_lm_labels, sequence_loss

    tok = transformers.AutoTokenizer.from_pretrained(ckpt)
    lm = transformers.AutoModelForCausalLM.from_pretrained(ckpt, dtype=torch.float32).eval()
    lm.config.pad_token_id = None  # as the selector leaves it
    model = CausalLMForSketch(lm)
    texts = [json.loads(line)["text"] for line in pool.read_text().splitlines()[:m]]
    enc = tok(texts, padding=True, return_tensors="pt")
    ids, mask = enc["input_ids"], enc["attention_mask"]
    assert ids.shape == (m, SEQ), ids.shape
    labels = causal_lm_labels(ids, mask)

    def run(lo: int, hi: int) -> None:
        for a in range(lo, hi, BATCH):
            b = min(a + BATCH, hi)
            model.zero_grad(set_to_none=True)
            sequence_loss(model(ids[a:b], mask[a:b]), labels[a:b]).sum().backward()
        model.zero_grad(set_to_none=True)

    run(0, BATCH)  # warm-up
    t0 = time.perf_counter()
    run(0, m)
    return (time.perf_counter() - t0) / m


def cli(root: Path, ckpt: Path, pool: Path) -> dict:
    probekit = Path(sys.executable).with_name("probekit")
    out = root / "probes.parquet"
    cmd = ["/usr/bin/time", "-v", str(probekit), "select", "--strategy", "gradient", "--n", "64", "--data", str(pool),
           "--text-field", "text", "--id-field", "id", "--param", f"checkpoint={ckpt}", "--param", "batch_size=16",
           "--out", str(out), "--overwrite", "-v"]
    print("$ " + " ".join(str(c) if " " not in str(c) else repr(c) for c in cmd), flush=True)
    t0 = time.perf_counter()
    res = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if res.returncode != 0:
        sys.exit(f"probekit select failed ({res.returncode}):\n{res.stdout}\n{res.stderr}")
    rss = re.search(r"Maximum resident set size \(kbytes\): (\d+)", res.stderr)
    sketch = re.search(r"gradient sketches: .*: done in ([0-9.]+) s", res.stderr)
    from probekit.probeset import ProbeSet

    ps = ProbeSet.load(out)
    info = ps.provenance.info
    ok = len(ps) == 64 and info.get("sketch") == "factorized"
    if not ok:
        sys.exit(f"unexpected output: {len(ps)} probes, info {info}")
    return {"wall": wall, "rss_mb": int(rss.group(1)) / 1024 if rss else float("nan"),
            "sketch": float(sketch.group(1)) if sketch else float("nan"), "probes": len(ps), "info": info,
            "log": [line for line in res.stderr.splitlines() if "done in" in line]}


def main() -> None:
    from transformers.utils import logging as hf_logging

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pool", type=int, default=10_000, help="sequences in the pool (default 10000)")
    parser.add_argument("--keep", type=Path, default=None, help="build in DIR and keep it (default: a temp dir)")
    args = parser.parse_args()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    root = args.keep or Path(tempfile.mkdtemp(prefix="probekit-bench-gradient-cli-"))
    root.mkdir(parents=True, exist_ok=True)
    try:
        ckpt, pool = setup(root, args.pool)
        m = min(N_FLOOR, args.pool)
        threads = torch.get_num_threads()
        before = floor(ckpt, pool, m)
        got = cli(root, ckpt, pool)
        after = floor(ckpt, pool, m)
        per = (before + after) / 2
        fl = per * args.pool
        info = got["info"]
        print(f"GPT-2 6x384 ({info['n_params']:,} parameters), {args.pool} sequences of {SEQ} tokens, batch {BATCH}, "
              f"{threads} torch threads")
        for line in got["log"]:
            print("  log: " + line.split("] ")[-1])
        print(f"output: {got['probes']} probes; provenance info: sketch={info['sketch']}, "
              f"factor_dim={info.get('factor_dim')}, sketch_dim={info['sketch_dim']}, tokens={info.get('tokens')}")
        print(f"{'what':<58} {'s':>8} {'x floor':>8}")
        print(f"{'floor: batched forward + backward, extrapolated *':<58} {fl:>8.1f} {1:>7.2f}x")
        print(f"{'probekit select: gradient-sketch stage (its -v log)':<58} {got['sketch']:>8.1f} "
              f"{got['sketch'] / fl:>7.2f}x")
        print(f"{'probekit select: wall time (/usr/bin/time)':<58} {got['wall']:>8.1f} {got['wall'] / fl:>7.2f}x")
        print(f"peak RSS of probekit select (Maximum resident set size): {got['rss_mb']:.0f} MB")
        print(f"* the floor timed on the first {m} sequences before and after the CLI ({before * 1e3:.1f} and "
              f"{after * 1e3:.1f} ms per sequence), their mean extrapolated to {args.pool}.")
        print("Target (issue): the sketch stage <= 1.5 x the floor.")
    finally:
        if args.keep is None:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
