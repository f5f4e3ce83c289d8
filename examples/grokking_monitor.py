"""Watch grokking with the live monitor: a plain PyTorch loop, TensorBoard logs, and a PNG.

A one-hidden-layer ReLU MLP learns (a + b) mod p from 40% of the pairs with
strong weight decay: it memorises the training pairs within a few hundred
steps, and only much later generalises (test accuracy jumps; Power et al. 2022).
The probes are 256 held-out pairs (training pairs are useless as probes: their
losses sit at the float32 floor). Every ``--every`` steps the monitor runs one
no-grad pass over them, updates the 2RDM and the alarm, and writes TensorBoard
scalars and a JSONL line; an alarm tightens the checkpoint schedule from every
500 steps to every 50.

The monitor watches 1/PR with the robust z-score rule (of its log), W = 32:
the configuration ``probekit bench --full`` found best on the grokking
reference runs (docs/bench/report.md; chosen on grokking itself, so optimistic;
SHC with the running-minimum rule did not warn there at a 5% false-alarm rate).

    python examples/grokking_monitor.py                 # ~1 min on 2 cores
    tensorboard --logdir grokking-monitor/tensorboard   # probekit/shc, probekit/pr, ...
    python examples/grokking_monitor.py --tiny          # seconds: what CI runs
"""
from __future__ import annotations

import argparse
import json
import os

import torch

from probekit.monitor import JSONLSink, Monitor, TensorBoardSink


class ModularMLP(torch.nn.Module):
    """Embed a and b, concatenate, one ReLU hidden layer, logits over the p residues."""

    def __init__(self, p: int, emb: int, hidden: int) -> None:
        super().__init__()
        self.emb = torch.nn.Embedding(p, emb)
        self.hidden = torch.nn.Linear(2 * emb, hidden)
        self.out = torch.nn.Linear(hidden, p)

    def forward(self, pairs: torch.Tensor) -> torch.Tensor:  # [b, 2] -> [b, p]
        return self.out(torch.relu(self.hidden(self.emb(pairs).flatten(1))))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--p", type=int, default=59)
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--every", type=int, default=10, help="record every k optimizer steps")
    parser.add_argument("--window", type=int, default=32)
    parser.add_argument("--probes", type=int, default=256)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="grokking-monitor")
    parser.add_argument("--tiny", action="store_true", help="p=23, 300 steps: a smoke run in seconds")
    args = parser.parse_args()
    if args.tiny:
        args.p, args.steps, args.every, args.window, args.probes = 23, 300, 5, 8, 64
    torch.manual_seed(args.seed)
    torch.set_num_threads(1)  # tiny matrices: threads only add overhead on a busy machine

    p = args.p
    pairs = torch.cartesian_prod(torch.arange(p), torch.arange(p))  # [p*p, 2]
    labels = (pairs[:, 0] + pairs[:, 1]) % p
    perm = torch.randperm(len(pairs))
    n_train = int(0.4 * len(pairs))
    train, test = perm[:n_train], perm[n_train:]
    probes = test[: args.probes]  # held-out pairs: where generalisation shows

    model = ModularMLP(p, emb=64, hidden=256)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=1.0, betas=(0.9, 0.98))
    os.makedirs(args.out, exist_ok=True)

    checkpoints = os.path.join(args.out, "checkpoints")
    schedule = {"every": 500}  # steps between checkpoints; an alarm tightens it ("checkpoint more often near transitions")

    def on_alarm(event):
        schedule["every"] = 50
        save(event.step)
        print(f"alarm at step {event.step}: 1/PR score {event.record.score:.2f}, SHC {event.record.shc:.3g}, "
              f"PR {event.record.pr:.3f}; checkpointing every {schedule['every']} steps from here")

    def save(step):
        os.makedirs(checkpoints, exist_ok=True)
        torch.save(model.state_dict(), os.path.join(checkpoints, f"step-{step}.pt"))

    monitor = Monitor(
        model, (pairs[probes], labels[probes]), "classification",  # per-sample cross-entropy
        every=args.every, window=args.window, signal="inv_pr", alarm="zscore",
        sinks=[TensorBoardSink(os.path.join(args.out, "tensorboard")), JSONLSink(os.path.join(args.out, "monitor.jsonl"))],
        on_alarm=on_alarm,
    )
    curve = []  # (step, test accuracy, SHC, PR) at each record, for the figure
    for step in range(args.steps + 1):
        if step % schedule["every"] == 0:
            save(step)
        rec = monitor.step(step)
        if rec is not None:
            with torch.no_grad():
                acc = (model(pairs[test]).argmax(-1) == labels[test]).float().mean().item()
            curve.append((step, acc, rec.shc, rec.pr))
        loss = torch.nn.functional.cross_entropy(model(pairs[train]), labels[train])  # full batch
        opt.zero_grad()
        loss.backward()
        opt.step()
    monitor.close()

    figure = os.path.join(args.out, "shc_pr_vs_accuracy.png")
    _plot(curve, monitor.alarm_steps, figure)
    # when generalisation got under way (test accuracy 0.1): how early the alarms came
    onset = next((step for step, acc, _, _ in curve if acc >= 0.1), None)
    summary = {"alarms": monitor.alarm_steps, "test_accuracy_0.1_at_step": onset,
               "final_test_accuracy": curve[-1][1], "records": len(curve), "counters": monitor.counters}
    with open(os.path.join(args.out, "summary.json"), "w") as fh:
        json.dump(summary, fh, indent=1)
    print(f"{len(curve)} records, alarms at steps {monitor.alarm_steps}, test accuracy 0.1 at step {onset}, "
          f"final test accuracy {curve[-1][1]:.2f}")
    print(f"wrote {figure}, {args.out}/tensorboard/, {args.out}/monitor.jsonl")


def _plot(curve, alarms, path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps, acc, shc, pr = zip(*curve)
    fig, (ax0, ax1, ax2) = plt.subplots(3, 1, figsize=(8, 7), sharex=True, constrained_layout=True)
    ax0.plot(steps, acc, color="k")
    ax0.set_ylabel("test accuracy")
    ax1.plot(steps, shc, color="C0")
    ax1.set_yscale("log")
    ax1.set_ylabel("SHC of the probes")
    ax2.plot(steps, pr, color="C1")
    ax2.set_ylabel("participation ratio")
    ax2.set_xlabel("training step")
    for ax in (ax0, ax1, ax2):
        for a in alarms:
            ax.axvline(a, color="red", ls=":", lw=1)
    ax0.set_title("grokking watched by probekit's monitor (red: alarms)")
    fig.savefig(path, dpi=100)
    plt.close(fig)


if __name__ == "__main__":
    main()
