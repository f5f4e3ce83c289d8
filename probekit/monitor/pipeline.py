"""What one record of probe losses goes through on the main rank: the 2RDM, the signal, the alarm, the sinks.

:class:`probekit.monitor.core.Monitor` measures the losses (its own probe pass, or the
shards gathered by :mod:`probekit.monitor.distributed`) and hands them to :func:`consume`.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from probekit.monitor.sinks import MonitorRecord
from probekit.rdm.modes import describe_mode
from probekit.rdm.signal_table import get_signal

__all__ = ["consume"]


def consume(monitor: Any, losses: np.ndarray, step: int, *, failed: bool) -> MonitorRecord:
    """Main rank: the 2RDM, the alarm and the sinks for one record of a Monitor's losses.

    ``failed``: a probe pass failed (here, or on another rank): the record is
    skipped, already counted as a failed batch.
    """
    monitor.counters["records"] += 1
    ok = not failed and bool(np.isfinite(losses).all())
    mean = float(np.mean(losses)) if ok else math.nan
    fired, score, value = False, math.nan, math.nan
    stats = None
    if ok:
        monitor.rdm.update(losses, step=step)
        monitor.counters["admitted"] += 1
        stats = monitor.rdm.compute()
        if stats is not None:
            value = get_signal(monitor.signal).value(stats)
        if monitor._online is not None:
            fired = monitor._online.update(None if stats is None else value)
            score = monitor._online.last_score
    elif not failed:  # the passes ran but gave NaN or inf (a diverged model gives all NaN)
        monitor.counters["nonfinite_records"] += 1
        monitor._warn("nonfinite", f"probekit Monitor: non-finite probe losses at step {step} "
                                f"({int((~np.isfinite(losses)).sum())} of {losses.size}); the record is skipped.")
    if fired:
        monitor.alarm_steps.append(step)
    rec = MonitorRecord(
        step=step, record=monitor.counters["records"] - 1, n_probes=monitor.n_probes, mean_loss=mean,
        ready=stats is not None, signal=monitor.signal, signal_value=value, score=float(score), alarm=fired,
        n_alarms=len(monitor.alarm_steps), every=monitor._every, ok=ok,
    )
    if stats is not None:
        rec.shc, rec.pr, rec.trace = stats.shc, stats.pr, stats.trace
        rec.top_eigenvalues = [float(v) for v in stats.eigenvalues]
    monitor._stats = stats
    monitor._mode = _alarm_mode(monitor, stats, step) if fired else None
    if monitor._mode is not None:
        rec.mode = monitor._mode.as_dict()
    monitor.last = rec
    for k, sink in enumerate(monitor.sinks):
        try:
            sink.write(rec)
        except Exception as exc:
            monitor.counters["sink_errors"] += 1
            monitor.lost_steps.setdefault(k, []).append(step)
            monitor._warn(f"sink{id(sink)}", f"probekit Monitor: sink {type(sink).__name__} failed at step {step} "
                                          f"({type(exc).__name__}: {exc}); the record of step {step} is not in it. "
                                          "Training goes on, later records are still written to it, and close() "
                                          "names every step it lost.")
    return rec


def _alarm_mode(monitor: Any, stats: Any, step: int) -> Any:
    """The leading mode at an alarm, described (None without descriptions or loadings). Never raises:
    a failure here costs the description, not the record."""
    if monitor.descriptions is None or stats is None:
        return None
    try:
        return describe_mode(stats, monitor.descriptions, monitor.mode_top)
    except Exception as exc:
        monitor._warn("mode", f"probekit Monitor: describing the probes at the alarm of step {step} failed "
                              f"({type(exc).__name__}: {exc}); the alarm is recorded without them.")
        return None
