"""The benchmark report's figures: three PNGs per transition family, under ``<out>/figures/``.

The convergence and lead figures show the grid's primary signal under its
primary rule (the other signals and rules are in the report's tables).

- ``convergence-<family>.png``, the basis-set view. Top: warning, the mean
  lead fraction at a 5% false-alarm rate of each 2RDM design, with a band over
  the range of the per-seed values at the same threshold, against the
  probe-set size (log2 axis; the full pool, the complete-basis limit, at the
  right end, labelled ``full``), with each scalar baseline (on the full pool)
  as a dashed horizontal line. Middle: detection, the detection rate at the
  same threshold (first alarm from the hit window on, by the midpoint), drawn
  the same way (cells without detection, schema < 3, are left out). Bottom:
  the fidelity of each prefix, the rank correlation over time of its signal
  with the full pool's (median over seeds).
- ``lead-vs-far-<family>.png``, the threshold-free comparison: mean lead
  fraction against false-alarm rate, a staircase with one step per threshold,
  for each design at its largest prefix size, for the full pool (black) and
  for each scalar baseline (dashed); the dotted vertical line is the 5% rate
  the report's table reads.
- ``signals-<family>.png``, what the alarm rule sees on seed 0. Top: the order
  parameter(s) against training step, onsets dotted (also in the panels
  below). Middle: the mean loss of the full pool. Bottom: the signal (log y)
  of the family's best design (largest mean lead at 5% FAR among the 2RDM
  points of every signal and rule; its label says how many it was picked
  from) and of the random design under the same signal and rule at the same
  size, with red ticks where that rule fires at the point's 5%-FAR threshold
  (none when the threshold is not finite).

Failed cells are skipped; a family with no successful cell gets no figures.
"""
from __future__ import annotations

import dataclasses
import math
import os
import textwrap
from pathlib import Path
from typing import Any

import numpy as np

from probekit.eval.bench.cells import Cell, Point

__all__ = ["result_from_json", "write_figures"]

_STYLE = {"random": ("C0", "o", 7), "cluster": ("C1", "s", 5.5), "gradient": ("C2", "^", 4.5)}
# other designs (any registered strategy): colours apart from the scalar baselines' C3-C9, one per label
_EXTRA = (("#393b79", "D", 5), ("#637939", "v", 5.5), ("#8c6d31", "P", 5.5), ("#843c39", "X", 5.5),
          ("#7b4173", "*", 7), ("#5254a3", "h", 5.5), ("#8ca252", "<", 5.5), ("#bd9e39", ">", 5.5))


def _style(design: str) -> tuple[str, str, float]:
    """A design's colour, marker and marker size: the same in every figure."""
    if design in _STYLE:
        return _STYLE[design]
    import zlib

    return _EXTRA[zlib.crc32(design.encode()) % len(_EXTRA)]  # stable across runs (unlike hash())
_SCALAR_COLOURS = ("C3", "C4", "C5", "C6", "C7", "C8", "C9")


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: Path) -> Path:
    from probekit.atomic import atomic_file

    with atomic_file(path) as tmp:  # a reader never sees half a PNG
        fig.savefig(tmp, dpi=110, format="png")
    _plt().close(fig)
    return path


def _label(cell: Cell) -> str:
    return cell.label


def _num(value: Any) -> float:
    return float("nan") if value is None else float(value)


def _lead(p: Point) -> float:
    return _num(p.at_far_5pct.mean_lead_fraction)


def _detected(p: Point) -> float:
    return _num(p.at_far_5pct.detected)


def _seed_range(p: Point) -> tuple[float, float]:
    """Lowest and highest per-seed mean lead fraction at the pooled 5%-FAR threshold."""
    fracs = [s.mean_lead_fraction for s in p.at_far_5pct_by_seed]
    return (min(fracs), max(fracs)) if fracs else (_lead(p), _lead(p))


def _seed_detection_range(p: Point) -> tuple[float, float]:
    """Lowest and highest per-seed detection rate at the pooled 5%-FAR threshold (NaN without detection)."""
    rates = [s.detection_rate for s in p.at_far_5pct_by_seed if s.detection_rate is not None]
    return (min(rates), max(rates)) if rates else (_detected(p), _detected(p))


def _title(ax: Any, text: str) -> None:
    ax.set_title(textwrap.fill(text, 90), fontsize=9)


def _convergence(family: str, designs: list, scalars: list, what: str, path: Path) -> Path:
    plt = _plt()
    fig, (lead_ax, det_ax, fid_ax) = plt.subplots(3, 1, figsize=(10, 8.5), sharex=True, constrained_layout=True)
    prefix = sorted({p.size for c in designs for p in c.points if p.size > 0})
    full_x = 4 * (prefix[-1] if prefix else 1)
    for cell in designs:
        colour, marker, ms = _style(cell.design)
        pts = sorted(cell.points, key=lambda p: full_x if p.size == 0 else p.size)
        xs = [full_x if p.size == 0 else p.size for p in pts]
        lo, hi = zip(*(_seed_range(p) for p in pts))  # the seed spread of the lead: a band
        lead_ax.fill_between(xs, lo, hi, color=colour, alpha=0.12, lw=0, step=None)
        panels = [(lead_ax, [_lead(p) for p in pts]), (fid_ax, [_num(p.fidelity) for p in pts])]
        if all(p.has_detection for p in pts):
            lo, hi = zip(*(_seed_detection_range(p) for p in pts))
            det_ax.fill_between(xs, lo, hi, color=colour, alpha=0.12, lw=0, step=None)
            panels.insert(1, (det_ax, [_detected(p) for p in pts]))
        for ax, ys in panels:
            n = len(pts) - (pts[-1].size == 0)  # the prefixes: solid; the step to the full pool: dotted
            line, = ax.plot(xs[:n], ys[:n], color=colour, marker=marker, ms=ms, lw=1.3,
                             label=_label(cell) if ax is lead_ax else None)
            if n < len(pts):
                ax.plot(xs[max(n - 1, 0):], ys[max(n - 1, 0):], color=line.get_color(), lw=1.0, ls=":")
                ax.plot(xs[-1:], ys[-1:], color=line.get_color(), marker=marker, ms=ms, ls="none")
    for k, cell in enumerate(scalars):
        colour = _SCALAR_COLOURS[k % len(_SCALAR_COLOURS)]
        lead_ax.axhline(_lead(cell.points[-1]), color=colour, ls="--", lw=1.1, label=f"{_label(cell)} (full pool)")
        if cell.points[-1].has_detection:
            det_ax.axhline(_detected(cell.points[-1]), color=colour, ls="--", lw=1.1)
    fid_ax.set_xscale("log", base=2)
    fid_ax.set_xticks(prefix + [full_x], [str(s) for s in prefix] + ["full"])
    fid_ax.xaxis.set_minor_locator(plt.NullLocator())
    fid_ax.set_xlim((prefix[0] if prefix else 1) / 1.6, full_x * 1.6)
    lead_ax.set_ylim(bottom=-0.03)
    det_ax.set_ylim(-0.03, 1.03)
    lead_ax.set_ylabel("warning: mean lead\nfraction at 5% FAR")
    det_ax.set_ylabel("detection rate at 5% FAR\n(alarm by the midpoint)")
    fid_ax.set_ylabel("fidelity (rank corr.\nwith full pool)")
    fid_ax.set_xlabel("probes (log2; dotted: the step to the full pool)")
    lead_ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=8)  # outside: never over the data
    _title(lead_ax, f"{family}, {what}: early warning, detection (bands: range over seeds) and fidelity against "
                    "probe-set size (scalar baselines dashed)")
    return _save(fig, path)


def _staircase(ax: Any, curve: dict, **kw: Any) -> None:
    far = np.asarray(curve["far"], dtype=np.float64)
    lead = np.asarray(curve["mean_lead_fraction"], dtype=np.float64)
    order = np.lexsort((lead, far))  # the curve is monotone in the threshold: sorted by FAR, a staircase
    ax.step(far[order], lead[order], where="post", **kw)


def _lead_vs_far(family: str, designs: list, scalars: list, what: str, path: Path) -> Path:
    plt = _plt()
    fig, ax = plt.subplots(1, 1, figsize=(10, 5), constrained_layout=True)
    full = next((p for c in designs for p in c.points if p.size == 0), None)
    if full is not None:  # first and wide, so that a design on the same staircase shows on top of it
        _staircase(ax, full.curve, color="k", lw=3, alpha=0.45, label="full pool")
    for cell in designs:
        sized = [p for p in cell.points if p.size > 0]
        if sized:
            p = max(sized, key=lambda q: q.size)
            colour = _style(cell.design)[0]
            _staircase(ax, p.curve, color=colour, lw=1.4,
                       label=f"{_label(cell)} {p.size}")
    for k, cell in enumerate(scalars):
        _staircase(ax, cell.points[-1].curve, color=_SCALAR_COLOURS[k % len(_SCALAR_COLOURS)], ls="--",
                   lw=1.1, label=_label(cell))
    ax.axvline(0.05, color="0.4", ls=":", lw=1, label="5% FAR")
    ax.set_xlim(-0.02, 1.02)
    ax.set_ylim(bottom=-0.03)
    ax.set_xlabel("false-alarm rate (quiet units with an alarm)")
    ax.set_ylabel("mean lead fraction (misses count 0)")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=8)
    _title(ax, f"{family}, {what}: lead against false-alarm rate, every threshold (designs at their largest prefix)")
    return _save(fig, path)


def _signals(result: Any, family: str, designs: list, cache_dir: Any, path: Path) -> Path:
    from probekit.eval.bench.run import first_run

    traj = first_run(result.grid, family, cache_dir)
    try:
        return _draw_signals(result, traj, family, designs, path)
    finally:
        traj.close()  # release the memory-mapped losses


def _draw_signals(result: Any, traj: Any, family: str, designs: list, path: Path) -> Path:
    from probekit.eval.scoring.design_score import trajectory_signal
    from probekit.eval.scoring.signals import SignalSpec

    best_cell, best = designs[0], designs[0].points[0]
    for cell in designs:  # strict '>': ties go to the first
        for p in cell.points:
            if _lead(p) > _lead(best):
                best_cell, best = cell, p
    shown = [(best_cell, best)]
    if best_cell.design != "random":
        rand = [c for c in designs if c.design == "random" and c.signal == best_cell.signal
                and c.rule == best_cell.rule]
        point = next((p for c in rand for p in c.points if p.size == best.size), None)
        if point is not None:
            shown.insert(0, (rand[0], point))

    plt = _plt()
    fig, axes = plt.subplots(3, 1, figsize=(8, 8.5), sharex=True, constrained_layout=True)
    steps = np.asarray(traj.steps)
    colours = {}
    for name, values in traj.order_parameters.items():
        colours[name] = axes[0].plot(steps, values, lw=1.3, label=name)[0].get_color()
    for t in traj.transitions:
        if t.happened:
            for ax in axes:
                ax.axvline(t.onset_step, color=colours.get(t.name, "0.3"), ls=":", lw=1)
    axes[1].plot(steps, np.asarray(traj.losses).mean(axis=1), color="k", lw=1.2)
    axes[1].set_yscale("log")

    from probekit.eval.bench import RuleSpec

    rule = RuleSpec.from_dict(best_cell.rule).make()
    alarm_label, positive = "alarms at the 5%-FAR threshold", False
    for cell, p in shown:
        spec = SignalSpec(**cell.signal)
        size = p.size
        probes = np.arange(traj.losses.shape[1]) if size == 0 else _probes(result, family, traj, cell.design)[:size]
        signal, sig_steps = trajectory_signal(traj, probes, spec)
        shown_signal = np.where(signal > 0, signal, np.nan)  # log axis
        positive = positive or bool(np.isfinite(shown_signal).any())
        tag = "full" if size == 0 else str(size)
        n_points = sum(len(c.points) for c in designs)  # what the best was picked from: optimistic
        best_tag = f" (best of {n_points})" if cell is best_cell and p is best else ""
        colour = _style(cell.design)[0]
        axes[2].plot(sig_steps, shown_signal, color=colour, lw=1.2,
                     label=f"{cell.design} {tag} [{spec.label}, {RuleSpec.from_dict(cell.rule).label}]"
                           f"{best_tag}: lead {_lead(p):.0%} at 5% FAR")
        h = _num(p.at_far_5pct.threshold)
        if math.isfinite(h):
            alarms = rule.with_score_threshold(h).alarms(signal)
            axes[2].plot(sig_steps[alarms], shown_signal[alarms], ls="none", marker="|", ms=14, mew=1.6,
                         color="red", label=alarm_label)
            alarm_label = None
    if positive:
        axes[2].set_yscale("log")
    axes[0].set_ylabel("order parameter")
    if colours:
        axes[0].legend(loc="best", fontsize=8)
    else:  # a user's run whose onset was given by hand, or read elsewhere
        axes[0].text(0.5, 0.5, "no order parameter recorded (onset given)", transform=axes[0].transAxes,
                     ha="center", va="center", color="0.4")
    axes[1].set_ylabel("mean pool loss")
    axes[2].set_ylabel(SignalSpec(**best_cell.signal).label)
    axes[2].legend(loc="best", fontsize=8)
    axes[2].set_xlabel("training step (dotted: onsets)")
    _title(axes[0], f"{family}, seed 0: order parameters, mean loss, and the signal of the random and the best "
                    f"design with the alarms of `{RuleSpec.from_dict(best_cell.rule).label}` at their "
                    "5%-FAR thresholds")
    return _save(fig, path)


def write_figures(result: Any, out_dir: str | os.PathLike, *, cache_dir: str | os.PathLike | None = None) -> list[Path]:
    """Write the figures of a ``GridResult`` under ``out_dir/figures/``; return their paths, sorted."""
    out = Path(out_dir) / "figures"
    grid = result.grid
    primary_signal = dataclasses.asdict(grid.signals[0])  # the convergence and lead figures: primary signal and rule
    primary_rule = grid.rules[0].as_dict()
    what = f"{grid.signals[0].label}, rule {grid.rules[0].label}"
    written = []
    for family in grid.families:
        cells = [c for c in result.cells if c.family == family and c.ok]
        if not cells:
            continue
        designs = [c for c in cells if c.kind == "design"]
        primary = [c for c in designs if c.signal == primary_signal and c.rule == primary_rule]
        scalars = [c for c in cells if c.kind == "scalar" and c.rule == primary_rule]
        written.append(_convergence(family, primary, scalars, what, out / f"convergence-{family}.png"))
        written.append(_lead_vs_far(family, primary, scalars, what, out / f"lead-vs-far-{family}.png"))
        if designs:  # the best design over every signal and rule, beside random probes
            written.append(_signals(result, family, designs, cache_dir, out / f"signals-{family}.png"))
    from probekit.eval.reports.peer_report import peer_figures

    written += peer_figures(result, out_dir)
    return sorted(written)


def _probes(result: Any, family: str, traj: Any, design: str) -> list[str]:
    """A design's probe ids on this run, as the grid selected them: the rankings stored with its
    cells (selected again only for results written before rankings were stored)."""
    ids = result.ranking(family, design, traj.name, traj.seed)
    if ids is None:
        from probekit.eval.bench.run import _run_of

        ids = result.grid.design(design, family).ranking(_run_of(result.grid, family, traj), traj,
                                                          max(result.grid.sizes))
    return ids


def result_from_json(path: str | os.PathLike) -> Any:
    """A ``GridResult`` read back from a benchmark's ``results.json`` (to redraw its figures)."""
    from probekit.eval.bench.cells import read_results

    return read_results(path)
