"""Select probes with ``probekit select``, then watch a Hugging Face Trainer with them.

The whole path on a tiny GPT-2 built from a config (no download) and a
generated corpus (no dataset download):

1. write the corpus as JSONL and run ``probekit select --strategy cluster`` on it
   (TF-IDF embeddings, faiss k-means coverage) to pick the probe sentences;
2. tokenise the probes (a word-level vocabulary built from the corpus);
3. train with ``transformers.Trainer`` and ``ProbekitCallback``: every ``--every``
   optimizer steps the monitor runs the probes through the model in its own
   no-grad pass (per-sequence causal-LM loss, padding masked), updates the 2RDM
   and the alarm, writes TensorBoard scalars and JSONL lines, and its state goes
   into every Trainer checkpoint.

    python examples/hf_trainer_monitor.py            # ~30 s on 2 cores
    python examples/hf_trainer_monitor.py --tiny     # seconds: what CI runs
"""
from __future__ import annotations

import argparse
import json
import os
import random

import torch

from probekit.cli import main as probekit_cli
from probekit.monitor import JSONLSink, Monitor, ProbekitCallback, TensorBoardSink

SUBJECTS = ["the cat", "a dog", "the bird", "my friend", "the teacher", "a child", "the farmer", "our neighbour"]
VERBS = ["sees", "likes", "follows", "finds", "helps", "calls"]
OBJECTS = ["the ball", "a tree", "the river", "the house", "a letter", "the garden", "the market"]
ENDINGS = ["today", "at night", "in the morning", "again", "quietly", "with care"]


def make_corpus(n: int, seed: int) -> list[str]:
    """Template sentences, plus counting sequences: structure a small model learns in minutes."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        if i % 4 == 3:
            start = rng.randrange(20)
            out.append("count " + " ".join(str(start + k) for k in range(rng.randrange(4, 9))))
        else:
            out.append(f"{rng.choice(SUBJECTS)} {rng.choice(VERBS)} {rng.choice(OBJECTS)} {rng.choice(ENDINGS)}")
    return out


class WordTokenizer:
    """Word-level ids; 0 is padding, 1 begins a sequence."""

    def __init__(self, texts: list[str]) -> None:
        words = sorted({w for t in texts for w in t.split()})
        self.vocab = {w: i + 2 for i, w in enumerate(words)}

    def __call__(self, texts: list[str], length: int) -> dict[str, torch.Tensor]:
        ids = torch.zeros(len(texts), length, dtype=torch.long)
        mask = torch.zeros(len(texts), length, dtype=torch.long)
        for row, text in enumerate(texts):
            toks = [1] + [self.vocab[w] for w in text.split()][: length - 1]
            ids[row, : len(toks)] = torch.tensor(toks)
            mask[row, : len(toks)] = 1
        return {"input_ids": ids, "attention_mask": mask}


class LMDataset(torch.utils.data.Dataset):
    def __init__(self, enc: dict[str, torch.Tensor]) -> None:
        self.enc = enc

    def __len__(self) -> int:
        return len(self.enc["input_ids"])

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        ids, mask = self.enc["input_ids"][i], self.enc["attention_mask"][i]
        return {"input_ids": ids, "attention_mask": mask, "labels": ids.masked_fill(mask == 0, -100)}


def main() -> None:
    import transformers

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sentences", type=int, default=4000)
    parser.add_argument("--probes", type=int, default=128)
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--every", type=int, default=10)
    parser.add_argument("--window", type=int, default=16)
    parser.add_argument("--out", default="hf-trainer-monitor")
    parser.add_argument("--tiny", action="store_true", help="a smoke run in seconds")
    args = parser.parse_args()
    if args.tiny:
        args.sentences, args.probes, args.steps, args.every, args.window = 400, 32, 24, 2, 4
    torch.set_num_threads(1)
    os.makedirs(args.out, exist_ok=True)

    # 1. the candidate pool, and probekit select on it (the CLI, as a user would run it)
    corpus = make_corpus(args.sentences, seed=0)
    pool_path = os.path.join(args.out, "corpus.jsonl")
    with open(pool_path, "w") as fh:
        for i, text in enumerate(corpus):
            fh.write(json.dumps({"uid": f"s{i}", "text": text}) + "\n")
    probes_path = os.path.join(args.out, "probes.parquet")
    select = ["select", "--strategy", "cluster", "--n", str(args.probes), "--data", pool_path,
              "--text-field", "text", "--id-field", "uid", "--out", probes_path]
    print("$ probekit " + " ".join(select))
    if probekit_cli(select) != 0:
        raise SystemExit("probekit select failed")
    from probekit import ProbeSet

    probe_set = ProbeSet.load(probes_path)
    probe_texts = [corpus[i] for i in probe_set.indices.tolist()]

    # 2. tokenise: the probes are held out of training
    tokenizer = WordTokenizer(corpus)
    held_out = set(probe_set.indices.tolist())
    train_texts = [t for i, t in enumerate(corpus) if i not in held_out]
    length = 12
    probes = tokenizer(probe_texts, length)

    # 3. a tiny GPT-2 from a config, the Trainer, and the callback
    torch.manual_seed(0)
    config = transformers.GPT2Config(vocab_size=len(tokenizer.vocab) + 2, n_positions=length, n_embd=64,
                                     n_layer=2, n_head=2, bos_token_id=1, eos_token_id=0, pad_token_id=0)
    model = transformers.GPT2LMHeadModel(config)
    monitor = Monitor(model, probes, "causal_lm", every=args.every, window=args.window,
                      probe_ids=list(probe_set.ids),
                      sinks=[TensorBoardSink(os.path.join(args.out, "tensorboard")),
                             JSONLSink(os.path.join(args.out, "monitor.jsonl"))])
    training = transformers.TrainingArguments(
        output_dir=os.path.join(args.out, "trainer"), max_steps=args.steps, per_device_train_batch_size=32,
        learning_rate=1e-3, warmup_steps=0, report_to=[], use_cpu=True, logging_strategy="no",
        save_strategy="steps", save_steps=max(args.steps // 2, 1), disable_tqdm=True, seed=0)
    trainer = transformers.Trainer(model=model, args=training, train_dataset=LMDataset(tokenizer(train_texts, length)),
                                   callbacks=[ProbekitCallback(monitor)])
    trainer.train()
    monitor.close()
    last = monitor.last
    print(f"{monitor.counters['records']} records of {monitor.n_probes} probes; mean probe loss {last.mean_loss:.3f}; "
          f"SHC {last.shc:.3g}, PR {last.pr:.2f}; alarms at steps {monitor.alarm_steps}")
    print(f"wrote {args.out}/monitor.jsonl, {args.out}/tensorboard/, monitor state in each "
          f"{args.out}/trainer/checkpoint-*/probekit_monitor.pt")


if __name__ == "__main__":
    main()
