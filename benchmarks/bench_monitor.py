"""Cost of a monitor record against the bare probe forward pass, and against a training step.

A small GPT-2 (built from a config: 2 layers, d 128, 4 heads, vocab 512),
n = 512 probe sequences of 64 tokens. Measured side by side in one run,
interleaved, median of the repeats (the machine is noisy; absolute times
drift, ratios less so):

- bare forward: ``model(**probes)`` under no_grad in eval mode, nothing else;
- monitor record: ``Monitor.record`` with a full window (W = 32), the default
  alarm and a JSONL sink: the forward, the per-sequence loss, the 2RDM update
  and statistics, the alarm, the sink line;
- training step: forward + backward + AdamW on a batch of 64 sequences.

Target (issue 6): a record costs <= 5% more than the bare forward pass. Also
printed: the monitor's share of training time when it records every k = 10
steps.

    python benchmarks/bench_monitor.py [--threads 1] [--repeats 15]
"""
from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

import torch


def _times_ms(fn, repeats: int) -> list[float]:
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        out.append(1e3 * (time.perf_counter() - t0))
    return out


def main() -> None:
    import transformers

    from probekit.monitor import JSONLSink, Monitor
    from probekit.monitor.losses import causal_lm_loss

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--probes", type=int, default=512)
    parser.add_argument("--length", type=int, default=64)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    config = transformers.GPT2Config(vocab_size=512, n_positions=args.length, n_embd=128, n_layer=2, n_head=4)
    model = transformers.GPT2LMHeadModel(config)
    g = torch.Generator().manual_seed(0)
    probes = {"input_ids": torch.randint(0, 512, (args.probes, args.length), generator=g),
              "attention_mask": torch.ones(args.probes, args.length, dtype=torch.long)}
    train = torch.randint(0, 512, (64, args.length), generator=g)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)

    tmp = tempfile.mkdtemp(prefix="probekit-bench-monitor-")
    monitor = Monitor(model, probes, "causal_lm", every=10, window=32, sinks=[JSONLSink(os.path.join(tmp, "m.jsonl"))])
    for s in range(32):  # fill the window: every timed record computes the full statistics
        monitor.record(s)

    def bare() -> None:
        model.eval()
        with torch.no_grad():
            model(**probes)
        model.train()

    def bare_with_loss() -> None:
        model.eval()
        with torch.no_grad():
            causal_lm_loss(model, probes)
        model.train()

    step = {"n": 1000}

    def record() -> None:
        step["n"] += 1
        monitor.record(step["n"])

    def train_step() -> None:
        out = model(input_ids=train, labels=train)
        opt.zero_grad()
        out.loss.backward()
        opt.step()

    def stats_only() -> None:  # the 2RDM part alone, on a record of the same size
        monitor.rdm.update(torch.rand(args.probes).double().numpy(), step=0)
        monitor.rdm.compute()

    for fn in (bare, bare_with_loss, record, train_step):  # warm-up
        fn()
    times: dict[str, list[float]] = {"bare": [], "loss": [], "record": [], "train": [], "stats": []}
    for _ in range(args.repeats):  # interleaved, so drift hits every measurement alike
        times["bare"] += _times_ms(bare, 1)
        times["loss"] += _times_ms(bare_with_loss, 1)
        times["record"] += _times_ms(record, 1)
        times["train"] += _times_ms(train_step, 1)
        times["stats"] += _times_ms(stats_only, 1)
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"GPT-2 2x128, {args.probes} probes x {args.length} tokens, W=32, {args.threads} thread(s), "
          f"median of {args.repeats} interleaved repeats")
    print(f"{'what':<44} {'ms':>9} {'vs bare forward':>16}")
    rows = [
        ("bare probe forward (no grad, eval)", med["bare"]),
        ("forward + per-sequence causal-LM loss", med["loss"]),
        ("monitor record (all of it, JSONL sink)", med["record"]),
        ("  of which 2RDM update + statistics", med["stats"]),
        ("training step (batch 64: fwd + bwd + AdamW)", med["train"]),
    ]
    for name, ms in rows:
        print(f"{name:<44} {ms:>9.2f} {ms / med['bare']:>15.3f}x")
    overhead = med["record"] / med["bare"] - 1
    print(f"monitor overhead on top of the bare forward pass: {100 * overhead:+.1f}% (target <= 5%)")
    for k in (10, 50):
        print(f"monitor cost at k={k}: {100 * med['record'] / (k * med['train']):.1f}% of training time "
              f"(one record per {k} steps)")
    print(f"counters: {monitor.counters}")


if __name__ == "__main__":
    main()
