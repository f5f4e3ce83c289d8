"""Figures (matplotlib, Agg backend, imported only when a figure is drawn)."""
from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from probekit.rdm.signal_table import get_signal



def analysis_title(result, source: str = "") -> str:
    """``<source> — SHC, W=32, running-min(ratio=10, persistence=3, min_history=1)``: what was computed."""
    s = result.series
    params = ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}"
                       for k, v in result.alarm_params.items() if v is not None)
    parts = [get_signal(result.signal_name).title, f"W={s.window}"]
    if s.stride != 1:
        parts.append(f"stride {s.stride}")
    if s.detrend != "none":
        parts.append(f"detrend {s.detrend}")
    parts.append(f"{result.alarm_rule}({params})")
    settings = ", ".join(parts)
    return f"{source} — {settings}" if source else settings


def plot_analysis(
    result,
    path: str | Path,
    *,
    title: str = "",
    onsets: Sequence[int] = (),
    onset_label: str = "transition onset (ground truth)",
    index: str = "step",
) -> Any:
    """Mean probe loss, SHC and PR against step, alarms as red lines, onsets dashed; return the figure.

    ``title``: where the losses came from; the signal, window and rule are added to it.
    ``index``: "step" when the records carry training steps, "record" when they are row numbers.
    The legend lists only what is drawn (no legend when nothing is).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s = result.series
    steps = s.steps
    fig, axes = plt.subplots(3, 1, figsize=(8, 7.5), sharex=True, constrained_layout=True)
    panels = [
        (axes[0], s.mean_loss, "mean probe loss", True),
        # the series the alarm rule read, so the red lines sit on what fired them
        (axes[1], s.shc, "SHC (spectral heat capacity)", True) if result.signal_name == "shc" else
        (axes[1], result.signal, f"{get_signal(result.signal_name).title} (alarm signal)",
         get_signal(result.signal_name).log_axis),
        (axes[2], s.pr, "PR (participation ratio)", False),
    ]
    for ax, y, label, log in panels:
        finite = y[np.isfinite(y)]
        # a log axis would silently drop zero and negative values (a user's losses may go below 0)
        log = log and finite.size > 0 and bool((finite > 0).all())
        few = finite.size <= 3  # e.g. a window as long as the run: one point, which a line does not show
        ax.plot(steps, y, lw=1.2, color="tab:blue", marker="o" if few else None, ms=4)
        if log:
            ax.set_yscale("log")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        for step in result.alarm_steps:
            ax.axvline(step, color="tab:red", lw=1.0, alpha=0.8)
        for step in onsets:
            if step >= 0:
                ax.axvline(step, color="k", lw=1.0, ls="--", alpha=0.7)
    handles = []
    if len(result.alarm_steps):
        handles.append(plt.Line2D([], [], color="tab:red", label=f"alarm ({result.alarm_rule})"))
    if any(step >= 0 for step in onsets):
        handles.append(plt.Line2D([], [], color="k", ls="--", label=onset_label))
    if handles:
        axes[0].legend(handles=handles, loc="upper right", fontsize=8)
    axes[-1].set_xlabel("training step" if index == "step" else "record")
    fig.suptitle(textwrap.fill(analysis_title(result, title), 95, break_on_hyphens=False), fontsize=10)  # long rule parameters wrap
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return fig
