"""One figure per reference family: order parameter(s) and mean pool loss against step.

Seeds are overlaid (one colour per seed), the family's null control is drawn
dashed in grey, and each seed's onsets are dotted vertical lines, so a reader
sees at a glance that the transition happens, when, and that the null does
not move.
"""
from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np


def plot_family(family: list, nulls: list, path: str | Path, *, title: str = "") -> Path:
    """``family`` / ``nulls``: Trajectory objects (several seeds). Writes a PNG, returns its path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    specs = [t.name for t in family[0].transitions] if family else []
    fig, axes = plt.subplots(2, 1, figsize=(8, 6.5), sharex=True, constrained_layout=True)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for k, traj in enumerate(family):
        c = colours[k % len(colours)]
        steps = traj.steps
        ops = traj.order_parameters
        for j, name in enumerate(specs):
            axes[0].plot(steps, ops[name], color=c, lw=1.2, alpha=0.9 if j == 0 else 0.6,
                         label=f"seed {traj.seed}" if j == 0 else None)
        axes[1].plot(steps, np.asarray(traj.losses).mean(axis=1), color=c, lw=1.2)
        for t in traj.transitions:
            if t.happened:
                for ax in axes:
                    ax.axvline(t.onset_step, color=c, ls=":", lw=0.9)
    for k, traj in enumerate(nulls):
        label = "null control" if k == 0 else None
        ops = traj.order_parameters
        for name in specs:
            if name in ops:
                axes[0].plot(traj.steps, ops[name], color="0.5", ls="--", lw=1, label=label)
                label = None
        axes[1].plot(traj.steps, np.asarray(traj.losses).mean(axis=1), color="0.5", ls="--", lw=1)
    axes[0].set_ylabel("order parameter" + (f" ({', '.join(specs)})" if len(specs) <= 2 else ""))
    axes[1].set_ylabel("mean pool loss")
    axes[1].set_yscale("log")
    axes[1].set_xlabel("training step (dotted: onsets, 10% of the way)")
    axes[0].legend(loc="best", fontsize=8)
    axes[0].set_title(textwrap.fill(title, 90), fontsize=9)
    path = Path(path)
    from probekit.atomic import atomic_file

    with atomic_file(path) as tmp:  # a reader never sees half a PNG
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    return path
