"""Offline analysis of a recorded loss matrix: 2RDM series, alarms, co-moving probes.

``analyze`` is the library function behind ``probekit analyze``: it computes
the 2RDM statistics of every window, runs one alarm rule on one signal, and
names the probes that move together (the leading eigenvector of C) at the
strongest alarm, or at the signal's peak when no alarm fired. Given probe descriptions
(:mod:`probekit.rdm.modes`), it says who those probes are and which slices they over-represent.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from probekit.errors import ProbekitUsageError
from probekit.params import Interval, Options, validate
from probekit.rdm.modes import Mode, ProbeDescriptions, describe_mode
from probekit.rdm.offline import RDMSeries, rdm_series, window_stats
from probekit.rdm.signal_table import get_signal, signal_names


@dataclass(frozen=True)
class AnalysisResult:
    series: RDMSeries
    signal_name: str
    signal: np.ndarray  # [T] the series the alarm rule read
    alarm_rule: str
    alarm_params: dict
    alarm_scores: np.ndarray  # [T] the rule's score per record
    alarm_positions: np.ndarray  # series positions where an alarm fired
    focus_position: int | None  # strongest alarm, else the signal's peak
    focus_is_alarm: bool
    top_probes: list[tuple[str, float]]  # (probe id, loading) at the focus
    focus_share: float  # leading eigenvalue's share of the trace at the focus
    probe_ids: list[str]
    extras: dict = field(default_factory=dict)
    mode: Mode | None = None  # the leading mode at the focus, described (probekit.rdm.modes)

    @property
    def alarm_steps(self) -> np.ndarray:
        return self.series.steps[self.alarm_positions]

    def summary(self) -> dict[str, Any]:
        """A JSON-ready summary (no arrays longer than the alarm list)."""
        s = self.series
        focus = self.focus_position
        described = {} if self.mode is None else self.mode.as_dict()
        return {
            "records": int(len(s)),
            "probes": int(s.n_probes),
            "rejected_records": int(s.n_rejected),
            "window": s.window,
            "stride": s.stride,
            "detrend": s.detrend,
            "signal": self.signal_name,
            "alarm_rule": self.alarm_rule,
            "alarm_params": self.alarm_params,
            "alarms": [
                {"record": int(s.record_index[i]), "step": int(s.steps[i]),
                 "signal": _finite_or_none(self.signal[i]),
                 "score": _finite_or_none(self.alarm_scores[i])}
                for i in self.alarm_positions
            ],
            "focus": None if focus is None else {
                "kind": "strongest alarm" if self.focus_is_alarm else "signal peak (no alarm)",
                "record": int(s.record_index[focus]),
                "step": int(s.steps[focus]),
                "leading_share": _finite_or_none(self.focus_share),
                "top_probes": described.get("top_probes", []),
                **({"over_represented": described["over_represented"]} if "over_represented" in described else {}),
            },
            **self.extras,
        }


def _finite_or_none(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None


def _require_a_window(series: RDMSeries, n_rows: int) -> None:
    """Nothing computable is an error, not an empty result: say what was short."""
    if series.ready.any():
        return
    admitted = len(series)
    rejected = f", {series.n_rejected} rejected for NaN/inf" if series.n_rejected else ""
    strided = f" (stride {series.stride})" if series.stride > 1 else ""
    raise ProbekitUsageError(
        f"analyze needs at least window={series.window} usable records to compute one window; "
        f"got {admitted} of {n_rows} rows{strided}{rejected}. Record more, or lower the window (--window)."
    )


def analyze(
    losses: Any,
    *,
    steps: Sequence[int] | np.ndarray | None = None,
    probe_ids: Sequence[str] | None = None,
    window: int = 32,
    stride: int = 1,
    detrend: str = "none",
    top_k: int = 3,
    signal: str = "shc",
    alarm: str | None = None,
    alarm_params: dict | None = None,
    n_top: int = 10,
    descriptions: ProbeDescriptions | None = None,
) -> AnalysisResult:
    """2RDM series, alarms and the co-fluctuating probes of a [records, probes] matrix.

    ``signal``: any registered 2RDM signal (:mod:`probekit.rdm.signal_table`), NaN until the window is full.
    ``descriptions``: who the probes are (texts, slice labels; :func:`probekit.rdm.modes.describe_probes`),
    in column order; their ids replace ``probe_ids``. The leading mode at the focus is then
    described and its over-represented slices listed (``result.mode``, the summary's focus).
    """
    from probekit.alarms import DEFAULT_RULE, make_rule

    validate("analyze", {"signal": signal, "top_k": top_k, "n_top": n_top},
             {"signal": Options(*signal_names()), "top_k": Interval(int, 1, None), "n_top": Interval(int, 1, None)})
    with warnings.catch_warnings(record=True) as caught:  # held back: an error below says it all
        warnings.simplefilter("always")
        series = rdm_series(losses, window, stride=stride, detrend=detrend, top_k=top_k, steps=steps)
    _require_a_window(series, np.shape(losses)[0] if np.ndim(losses) else 0)
    for w in caught:
        warnings.warn(w.message, w.category, stacklevel=2)
    if descriptions is not None:
        if len(descriptions) != series.n_probes:
            raise ProbekitUsageError(
                f"analyze got {len(descriptions)} probe descriptions for {series.n_probes} probes."
            )
        probe_ids = list(descriptions.ids)
    if probe_ids is None:
        probe_ids = [str(i) for i in range(series.n_probes)]
    elif len(probe_ids) != series.n_probes:
        raise ProbekitUsageError(
            f"analyze got {len(probe_ids)} probe ids for {series.n_probes} probes."
        )
    values = get_signal(signal).values(series)  # [T]
    rule_name = alarm or DEFAULT_RULE
    rule = make_rule(rule_name, **(alarm_params or {}))
    scores = np.asarray(rule.scores(values), dtype=np.float64)
    positions = np.asarray(rule.alarms(values), dtype=np.int64)

    focus, is_alarm = None, False
    if positions.size:
        # An alarm fires only where its score exceeds the threshold, so these scores are never NaN;
        # +inf (a ratio to a zero running minimum, after a degenerate window) ranks below every finite one.
        strength = scores[positions]
        focus = int(positions[np.argmax(np.where(np.isinf(strength), -np.inf, strength))])
        is_alarm = True
    elif np.isfinite(values).any():  # no finite value: e.g. leading_share of constant losses (trace 0)
        focus = int(np.nanargmax(values))
    top, share, mode = [], float("nan"), None
    if focus is not None:
        x = np.asarray(losses, dtype=np.float64)[series.record_index[focus - window + 1 : focus + 1]]
        stats = window_stats(x, detrend=detrend, top_k=1)
        share = stats.leading_share
        if descriptions is None:
            descriptions = ProbeDescriptions.build(probe_ids)
        mode = describe_mode(stats, descriptions, n_top)
        if mode is not None:
            top = [(p.probe, p.loading) for p in mode.probes]
    return AnalysisResult(
        series=series,
        signal_name=signal,
        signal=values,
        alarm_rule=rule_name,
        alarm_params=rule.get_params() if hasattr(rule, "get_params") else dict(alarm_params or {}),
        alarm_scores=scores,
        alarm_positions=positions,
        focus_position=focus,
        focus_is_alarm=is_alarm,
        top_probes=top,
        focus_share=share,
        probe_ids=list(probe_ids),
        mode=mode,
    )
