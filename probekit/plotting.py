"""Figures (matplotlib, Agg backend, imported only when a figure is drawn)."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np


def plot_analysis(
    result,
    path: str | Path,
    *,
    title: str = "",
    onsets: Sequence[int] = (),
    onset_label: str = "transition onset (ground truth)",
) -> None:
    """Mean probe loss, SHC and PR against step, alarms as red lines, onsets dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s = result.series
    steps = s.steps
    fig, axes = plt.subplots(3, 1, figsize=(8, 7.5), sharex=True, constrained_layout=True)
    panels = [
        (axes[0], s.mean_loss, "mean probe loss", True),
        (axes[1], s.shc, "SHC (spectral heat capacity)", True),
        (axes[2], s.pr, "PR (participation ratio)", False),
    ]
    for ax, y, label, log in panels:
        positive = np.where(y > 0, y, np.nan) if log else y
        ax.plot(steps, positive, lw=1.2, color="tab:blue")
        if log and np.isfinite(positive).any():
            ax.set_yscale("log")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        for step in result.alarm_steps:
            ax.axvline(step, color="tab:red", lw=1.0, alpha=0.8)
        for step in onsets:
            if step >= 0:
                ax.axvline(step, color="k", lw=1.0, ls="--", alpha=0.7)
    handles = [plt.Line2D([], [], color="tab:red", label=f"alarm ({result.alarm_rule})")]
    if len(onsets):
        handles.append(plt.Line2D([], [], color="k", ls="--", label=onset_label))
    axes[0].legend(handles=handles, loc="upper right", fontsize=8)
    axes[-1].set_xlabel("training step")
    fig.suptitle(title or f"2RDM: window {s.window}, detrend {s.detrend}, {s.n_probes} probes")
    fig.savefig(path, dpi=110)
    plt.close(fig)
