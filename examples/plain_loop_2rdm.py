"""Watch a plain PyTorch training loop with the streaming 2RDM, then analyze the record.

An MLP learns scikit-learn's bundled digits (no download) from a small
initialisation. Every ``--every`` steps the loss of each of 64 held-out probe
digits is computed in one no-grad forward pass and fed to ``DynamicalRDM``;
an online running-minimum alarm watches SHC. The per-sample losses are saved as
an npz that ``probekit analyze`` reads:

    python examples/plain_loop_2rdm.py --out digits_losses.npz
    probekit analyze digits_losses.npz --window 16
"""
from __future__ import annotations

import argparse

import numpy as np
import torch
from sklearn.datasets import load_digits

from probekit import DynamicalRDM
from probekit.alarms import RunningMinRatio


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--every", type=int, default=5, help="record every k optimizer steps")
    parser.add_argument("--window", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="digits_losses.npz")
    args = parser.parse_args()

    torch.manual_seed(args.seed)
    x, y = load_digits(return_X_y=True)
    x = torch.tensor(x / 16.0, dtype=torch.float32)  # [1797, 64], pixel values 0..16
    y = torch.tensor(y)
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(args.seed))
    probe_idx, train_idx = perm[:64], perm[64:]  # probes never trained on

    model = torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.Tanh(), torch.nn.Linear(64, 10))
    with torch.no_grad():  # small init: a plateau, then learning (room for early warning)
        for p in model.parameters():
            p.mul_(0.05)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    loss_fn = torch.nn.CrossEntropyLoss(reduction="none")  # per-sample losses, not their mean

    rdm = DynamicalRDM(window=args.window, top_k=1)
    alarm = RunningMinRatio(ratio=10.0, persistence=3, memory=50).online()
    steps, records = [], []
    gen = torch.Generator().manual_seed(args.seed + 1)
    for step in range(args.steps + 1):
        if step % args.every == 0:
            model.eval()
            with torch.no_grad():
                losses = loss_fn(model(x[probe_idx]), y[probe_idx])  # [64]
            model.train()
            rdm.update(losses, step=step)
            steps.append(step)
            records.append(losses.numpy())
            stats = rdm.compute()  # None until the window is full
            if alarm.update(None if stats is None else stats.shc):
                top = stats.top_probes(5).tolist()
                print(f"alarm at step {step}: SHC {stats.shc:.3g}, PR {stats.pr:.2f}, "
                      f"mean probe loss {losses.mean():.3f}, probes moving together {top}")
        batch = train_idx[torch.randint(len(train_idx), (32,), generator=gen)]
        loss = loss_fn(model(x[batch]), y[batch]).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()

    np.savez(args.out, losses=np.stack(records), steps=np.asarray(steps),
             probe_ids=np.array([f"digit{int(i)}" for i in probe_idx]))
    print(f"{len(steps)} records x {len(probe_idx)} probes, {len(alarm.alarms)} alarm(s); "
          f"final mean probe loss {records[-1].mean():.3f}; wrote {args.out}")


if __name__ == "__main__":
    main()
