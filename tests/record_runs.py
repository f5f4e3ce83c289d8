"""Tiny training runs saved as checkpoints, for the ``probekit record`` tests (no download).

- :func:`lm_run`: a one-layer GPT-2 (built from a config) with a word-level tokenizer, trained a
  few steps on a jsonl pool and saved as a Trainer-style ``checkpoint-N`` layout;
- :func:`mlp_run`: a tiny torch MLP for classification, its weights moved from a random start to
  a trained solution along a sigmoid in time (a transition near step 450), saved as state-dict
  files with a factory module (``mymodels.py:build``), plus an evaluation file.
"""
from __future__ import annotations

import json
from pathlib import Path

WORDS = "the a cat dog bird fish runs sleeps sings swims fast slow loud red green blue star moon".split()
MLP_STEPS = list(range(0, 1000, 100))

FACTORY = '''
import os, time
import torch

CALLS = {"n": 0}

def build():
    CALLS["n"] += 1
    slow_after = int(os.environ.get("RECORD_TEST_SLOW_AFTER", "0"))
    if slow_after and CALLS["n"] > slow_after:  # lets a test kill the recording half-way
        time.sleep(120)
    return torch.nn.Sequential(torch.nn.Linear(3, 8), torch.nn.Tanh(), torch.nn.Linear(8, 2))
'''


def tokenizer():
    import transformers
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    core = Tokenizer(models.WordLevel(unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    core.train_from_iterator(WORDS, trainers.WordLevelTrainer(special_tokens=["<pad>", "<unk>", "<eos>"]))
    return transformers.PreTrainedTokenizerFast(tokenizer_object=core, unk_token="<unk>", pad_token="<pad>",
                                                eos_token="<eos>", model_max_length=32)


def lm_rows(n: int = 30) -> list[dict]:
    rows = []
    for i in range(n):
        topic = "rare" if i % 10 == 0 else "common"
        text = " ".join(WORDS[(i * k + k) % len(WORDS)] for k in range(1, 4 + i % 5))
        rows.append({"uid": f"u{i:02d}", "text": text, "topic": topic})
    return rows


def lm_run(root: Path, steps=(0, 4, 8, 12), vocab_size: int = 64) -> Path:
    """A Trainer-style output directory ``root/run`` with ``checkpoint-N`` folders and ``root/pool.jsonl``."""
    import torch
    import transformers

    root.mkdir(parents=True, exist_ok=True)
    tok = tokenizer()
    config = transformers.GPT2Config(n_layer=1, n_embd=16, n_head=2, vocab_size=vocab_size, n_positions=32,
                                     bos_token_id=2, eos_token_id=2, pad_token_id=0)
    torch.manual_seed(0)
    model = transformers.GPT2LMHeadModel(config)
    rows = lm_rows()
    (root / "pool.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    batch = tok([r["text"] for r in rows], padding=True, return_tensors="pt")
    labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    for step in range(max(steps) + 1):
        if step in steps:
            d = root / "run" / f"checkpoint-{step}"
            model.save_pretrained(d)
            tok.save_pretrained(d)
            (d / "trainer_state.json").write_text(json.dumps({"global_step": step}))
            torch.save({"momentum": torch.full((3,), float(step))}, d / "optimizer.pt")  # not part of the hash
        if vocab_size < len(tok):  # a model too small for the tokenizer (the mismatch test): saved untrained
            continue
        loss = model(**batch, labels=labels).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    return root / "run"


def mlp_rows(n: int, seed: int) -> list[dict]:
    import numpy as np

    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 3))
    return [{"id": f"r{seed}-{i:03d}", "x1": float(a), "x2": float(b), "x3": float(c), "y": int(a + b > 0),
             "group": "a" if i % 3 == 0 else "b"} for i, (a, b, c) in enumerate(x)]


def mlp_run(root: Path) -> Path:
    """``root/ckpt/step-NNNN.pt`` (two as .safetensors), ``root/mymodels.py``, ``root/pool.jsonl`` and
    ``root/eval.jsonl``."""
    import importlib.util

    import numpy as np
    import torch
    from safetensors.torch import save_file

    root.mkdir(parents=True, exist_ok=True)
    (root / "mymodels.py").write_text(FACTORY)
    spec = importlib.util.spec_from_file_location("record_test_models", root / "mymodels.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    rows, evals = mlp_rows(48, 0), mlp_rows(30, 1)
    (root / "pool.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (root / "eval.jsonl").write_text("".join(json.dumps(r) + "\n" for r in evals))
    torch.manual_seed(0)
    start = module.build()
    trained = module.build()
    x = torch.tensor([[r["x1"], r["x2"], r["x3"]] for r in rows], dtype=torch.float32)
    y = torch.tensor([r["y"] for r in rows])
    opt = torch.optim.Adam(trained.parameters(), lr=0.05)
    for _ in range(200):
        loss = torch.nn.functional.cross_entropy(trained(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    (root / "ckpt").mkdir()
    a, b = start.state_dict(), trained.state_dict()
    for step in MLP_STEPS:
        w = float(1 / (1 + np.exp(-(step - 450) / 60)))
        state = {k: ((1 - w) * a[k] + w * b[k]).contiguous() for k in a}
        if step in (300, 600):
            save_file(state, str(root / "ckpt" / f"step-{step:04d}.safetensors"))
        else:
            torch.save(state, root / "ckpt" / f"step-{step:04d}.pt")
    return root / "ckpt"
