"""Robust z-score of the signal against a trailing median/MAD baseline.

At record t, with y = transform(series) and B the finite values among
y[t-baseline : t] (the trailing baseline, record t itself excluded):

    z_t = (y_t - median(B)) / max(1.4826 * MAD(B), SCALE_FLOOR_REL * |median(B)|, TINY)

1.4826 makes the MAD a consistent estimate of the standard deviation under
Gaussian noise. The floor keeps a flat baseline (MAD = 0) from dividing by
zero: a departure smaller than one part per million of the baseline level then
never counts, and a larger one gives a huge z. TINY (the smallest normal float)
only matters for a baseline that is exactly zero. The score is z; a record
exceeds iff z > threshold. Fewer than ``min_baseline`` finite values in B: no
score. The median of an even count is the mean of the two middle values
(as ``statistics.median``).

docs/findings.md: on log-SHC this rule normalised away the smooth exponential ramps
of deep-linear-network transitions; it is shipped so the benchmark can rank it.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from probekit.alarms.base import TINY, TRANSFORMS, AlarmRule, apply_transform
from probekit.params import AnyOf, Interval

# 1 / Phi^-1(3/4): scales the MAD to a standard deviation for Gaussian noise.
MAD_TO_SD = 1.4826
# Scale floor relative to |median|: below float noise of any signal we compute,
# far above rounding error; see the module docstring.
SCALE_FLOOR_REL = 1e-6
# Rows per block in the vectorised path: bounds memory at ~BLOCK * baseline floats.
_BLOCK = 8192


def _zscore_rows(windows: np.ndarray, y: np.ndarray, min_baseline: int) -> np.ndarray:
    """z of y[i] against the finite values of windows[i]; windows [k, baseline] with NaN gaps.

    Shared by the offline and the online path, so both compute bit-identical scores.
    """
    count = np.count_nonzero(~np.isnan(windows), axis=1)  # [k]
    lo = np.maximum((count - 1) // 2, 0)[:, None]
    hi = (count // 2)[:, None]
    srt = np.sort(windows, axis=1)  # NaN sorts last, so the first `count` are the values
    med = 0.5 * (np.take_along_axis(srt, lo, 1) + np.take_along_axis(srt, hi, 1))  # [k, 1]
    dev = np.sort(np.abs(windows - med), axis=1)
    mad = 0.5 * (np.take_along_axis(dev, lo, 1) + np.take_along_axis(dev, hi, 1))
    med, mad = med[:, 0], mad[:, 0]
    scale = np.maximum(MAD_TO_SD * mad, np.maximum(SCALE_FLOOR_REL * np.abs(med), TINY))
    with np.errstate(invalid="ignore", over="ignore"):
        z = (y - med) / scale
    z[count < min_baseline] = np.nan
    return z


class RobustZScore(AlarmRule):
    """Alarm when log-signal leaves its trailing median by more than ``threshold`` robust SDs.

    Parameters
    ----------
    baseline : int, default 50
        Length of the trailing baseline (records before t; docs/findings.md used 50).
    threshold : float, default 4.0
        Exceed iff z > threshold (docs/findings.md: z > 4).
    persistence : int, default 3
        Consecutive exceedances needed to fire (docs/findings.md: 3 records).
    transform : {"log", "none"}, default "log"
        SHC spans orders of magnitude; log makes its noise roughly additive.
    min_baseline : int or None, default None
        Finite baseline values needed for a score; None means max(2, baseline // 2).
    """

    name = "zscore"
    threshold_param = "threshold"
    _constraints = {
        "baseline": Interval(int, 2, None),
        "threshold": Interval(float),
        "persistence": Interval(int, 1, None),
        "transform": TRANSFORMS,
        # A median/MAD of one value is meaningless (MAD = 0), hence at least 2; at most
        # the baseline, which _check adds.
        "min_baseline": AnyOf(None, Interval(int, 2, None)),
    }
    # On a coarser grid the baseline keeps at least 8 records: a median/MAD of fewer is noise.
    record_params = {"baseline": 8, "persistence": 1, "min_baseline": 2}

    def __init__(
        self,
        *,
        baseline: int = 50,
        threshold: float = 4.0,
        persistence: int = 3,
        transform: str = "log",
        min_baseline: int | None = None,
    ) -> None:
        self.baseline = baseline
        self.threshold = threshold
        self.persistence = persistence
        self.transform = transform
        self.min_baseline = min_baseline

    def _check(self) -> dict[str, Any]:
        # The table, with min_baseline's bound tightened to this baseline (checked in order,
        # so an invalid baseline is named before it is used as a bound).
        params = self._validate(
            {**self._constraints, "min_baseline": AnyOf(None, Interval(int, 2, self.baseline))}
        )
        params["min_baseline"] = (
            max(2, self.baseline // 2) if self.min_baseline is None else self.min_baseline
        )
        return params

    def _scores(self, x: np.ndarray, p: dict[str, Any]) -> np.ndarray:
        b = p["baseline"]
        y = apply_transform(x, p["transform"])
        n = y.shape[0]
        padded = np.concatenate((np.full(b, np.nan), y))
        # windows[t] = padded[t : t + b] = y[t - b : t]: the baseline before record t.
        windows = np.lib.stride_tricks.sliding_window_view(padded, b)[:n]
        out = np.empty(n)
        for start in range(0, n, _BLOCK):  # blocks of records, not records
            stop = min(start + _BLOCK, n)
            block = np.ascontiguousarray(windows[start:stop])
            out[start:stop] = _zscore_rows(block, y[start:stop], p["min_baseline"])
        return out

    # Online: a buffer of the last `baseline` transformed values, oldest first.
    def _online_state(self, p: dict[str, Any]) -> dict[str, Any]:
        return {"buffer": [float("nan")] * p["baseline"]}

    def _online_score(self, state: dict[str, Any], x: float, p: dict[str, Any]) -> float:
        y = apply_transform(np.array([x]), p["transform"])
        window = np.array([state["buffer"]], dtype=np.float64)
        z = float(_zscore_rows(window, y, p["min_baseline"])[0])
        state["buffer"] = state["buffer"][1:] + [float(y[0])]
        return z


def robust_zscore_alarm(series: Any, **params: Any) -> np.ndarray:
    """Alarm indices of ``RobustZScore(**params)`` on ``series``."""
    return RobustZScore(**params).alarms(series)
