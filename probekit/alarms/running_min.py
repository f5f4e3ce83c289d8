"""Ratio of the signal to its running minimum.

    score_t = x_t / m_t,   m_t = min of the finite values of series[t-M+1..t] (t included)

with memory M = all history by default. A finite ``memory`` lets the rule
re-arm: with the all-history minimum a run with several transitions stays above
10x its first quiet value after the first one and never alarms again (the deep
linear network's four saddle escapes give one alarm); with a trailing minimum
the ratio falls back to ~1 on the way down from each peak, so every new rise
is a new alarm.

and a record exceeds iff score_t > ratio. Including t in the minimum makes the
score >= 1 on any non-negative series (a new minimum scores exactly 1).

Zero minimum (decided here, the rest of probekit relies on it): when x_t == m_t
the score is 1, including 0/0; when m_t == 0 < x_t the score is +inf, i.e. a
signal that has been exactly zero and turns positive has grown by an unbounded
factor and exceeds any ratio. (A one-probe SHC is identically 0 and therefore
scores 1 forever, never alarming.)

The series must be non-negative: a ratio to a running minimum means nothing
for signs that change (SHC, PR and variances are >= 0). Negative values raise.

docs/findings.md: "SHC exceeds 10x its running minimum for 3 records" caught 23/24
deep-linear-network transitions with 0-1 false alarms, every induction-head and
x^2-grokking run, and failed only on ReLU grokking (a 6-11x hump). Hence the
defaults, and this being the provisional default rule.
"""
from __future__ import annotations

from collections import deque
from typing import Any

import numpy as np

from probekit.alarms.base import AlarmRule
from probekit.errors import ProbekitUsageError
from probekit.params import AnyOf, Interval


def _ratio(x: np.ndarray, m: np.ndarray) -> np.ndarray:
    """x / m with the zero-minimum convention; shared by the offline and online paths."""
    with np.errstate(divide="ignore", invalid="ignore"):
        score = x / m  # m == 0 < x gives +inf; 0 / 0 gives NaN, fixed next
    score[x == m] = 1.0
    return score


def _negative_error(owner: str, value: float, where: str) -> ProbekitUsageError:
    return ProbekitUsageError(
        f"{owner} needs a non-negative series (a ratio to a running minimum is "
        f"meaningless for negative values). Got {value!r}{where}."
    )


class RunningMinRatio(AlarmRule):
    """Alarm when the signal exceeds ``ratio`` times its running minimum.

    Parameters
    ----------
    ratio : float, default 10.0
        Exceed iff x_t / m_t > ratio (docs/findings.md: 10x).
    persistence : int, default 3
        Consecutive exceedances needed to fire (docs/findings.md: 3 records).
    min_history : int, default 1
        Finite values seen so far (t included) before a score exists; raise it to
        let the running minimum settle after a noisy start.
    memory : int or None, default None
        Records the minimum looks back over (t included); None is all history.
        A finite memory re-arms the rule for runs with several transitions.
    """

    name = "running-min"
    threshold_param = "ratio"
    _constraints = {
        "ratio": Interval(float, 0, None, closed="neither"),
        "persistence": Interval(int, 1, None),
        "min_history": Interval(int, 1, None),
        "memory": AnyOf(None, Interval(int, 1, None)),
    }
    # On a coarser grid a memory keeps at least 4 records, so that it still spans a rise.
    record_params = {"persistence": 1, "min_history": 1, "memory": 4}

    def __init__(
        self,
        *,
        ratio: float = 10.0,
        persistence: int = 3,
        min_history: int = 1,
        memory: int | None = None,
    ) -> None:
        self.ratio = ratio
        self.persistence = persistence
        self.min_history = min_history
        self.memory = memory

    def _scores(self, x: np.ndarray, p: dict[str, Any]) -> np.ndarray:
        negative = np.flatnonzero(x < 0)
        if negative.size:
            i = int(negative[0])
            raise _negative_error(type(self).__name__, float(x[i]), f" at record {i}")
        finite = ~np.isnan(x)
        memory = p["memory"]
        if memory is None or memory >= len(x):
            m = np.fmin.accumulate(x)  # fmin skips NaN; NaN until the first finite value
        else:
            padded = np.concatenate([np.full(memory - 1, np.nan), x])
            windows = np.lib.stride_tricks.sliding_window_view(padded, memory)  # [T, memory]
            m = np.fmin.reduce(windows, axis=1)  # NaN only where a window has no value
        score = _ratio(x, m)
        seen = np.cumsum(finite)
        score[~finite | (seen < p["min_history"])] = np.nan
        return score

    # Online: the running minimum as a scalar (or, with a memory, the trailing
    # values it is taken over) and the count of finite values seen.
    def _online_state(self, p: dict[str, Any]) -> dict[str, Any]:
        state: dict[str, Any] = {"minimum": float("nan"), "seen": 0}
        if p["memory"] is not None:
            state["recent"] = []  # at most `memory` values
        return state

    def _online_score(self, state: dict[str, Any], x: float, p: dict[str, Any]) -> float:
        if x == x and x < 0:  # raise before any state changes
            raise _negative_error(type(self).__name__, x, "")
        if p["memory"] is not None:
            recent = deque(state["recent"], maxlen=p["memory"])
            recent.append(x)  # NaN kept: it occupies a slot of the window
            state["recent"] = list(recent)
        if x != x:  # NaN: missing record, no score
            return float("nan")
        xa = np.array([x])
        if p["memory"] is None:
            m = float(np.fmin(state["minimum"], x))
        else:
            m = float(np.fmin.reduce(np.array(state["recent"])))
        state["minimum"] = m
        state["seen"] += 1
        if state["seen"] < p["min_history"]:
            return float("nan")
        return float(_ratio(xa, np.array([m]))[0])


def running_min_ratio_alarm(series: Any, **params: Any) -> np.ndarray:
    """Alarm indices of ``RunningMinRatio(**params)`` on ``series``."""
    return RunningMinRatio(**params).alarms(series)
