"""Machinery shared by every alarm rule: input checks, scores -> exceedances -> alarms.

An alarm rule reads a 1-D signal series (one value per record, e.g. the spectral
heat capacity) and returns the records at which an alarm fires. Every rule is
built from the same three layers:

1. ``scores(series)``: one float per record, NaN where the rule has no opinion
   yet (a missing value, a baseline too short, a window with gaps);
2. ``exceedances(series)``: ``score > score_threshold`` (NaN never exceeds);
3. ``alarms(series)``: an alarm fires at the record where a run of consecutive
   exceedances first reaches length ``persistence``; the rule re-arms only after
   a record that does not exceed.

``persistent_scores(series)`` is the rolling minimum of the score over the last
``persistence`` records (NaN if any of them is NaN or fewer exist), so that
``persistent_score > h`` holds exactly where ``persistence`` consecutive records
exceed ``h``. Calibration works on it.

Missing values: NaN, +inf and -inf all mean "no value at this record". They
never exceed and baselines skip them. (The streaming 2RDM never emits inf; a
monitor that gets one from elsewhere should not crash on it.)

Rules follow the scikit-learn contract: the constructor only stores its keyword
arguments; they are validated, with probekit's one error template, when work
is done (``scores``, ``exceedances``, ``alarms``, ``online``).

A rule is one subclass of ``AlarmRule`` (one module) registered in the entry-point
group ``probekit.alarm_rules`` (``probekit.registry.ALARMS``); it declares

- ``name`` (its registry name) and ``threshold_param`` (the parameter that acts as
  the threshold; override ``score_threshold`` / ``with_score_threshold`` when the
  parameter is not on the score scale, as Kendall's ``alpha`` is not);
- ``_constraints``: every constructor parameter with its allowed values
  (``probekit.params``), checked by the default ``_check``;
- ``record_params``: the parameters that count records, each with its smallest
  value on a coarser record grid (``coarse_params``); ``persistence`` is one;

and implements the hooks ``_check`` (only to add cross-parameter checks or to
fill defaults that depend on other parameters), ``_scores`` (offline) and
``_online_state`` / ``_online_score`` (the streaming twin, bit-identical scores).
``probekit.alarms.testing`` is the conformance suite every registered rule passes.
"""
from __future__ import annotations

import numbers
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from probekit.errors import ProbekitUsageError
from probekit.params import Interval, Options, ParamsMixin, validate

if TYPE_CHECKING:  # online.py imports this module
    from probekit.alarms.online import OnlineAlarm

# Smallest positive normal float64: the floor under log() so that a zero value
# maps to a large negative number (log(tiny) ~ -708) instead of -inf.
TINY = float(np.finfo(np.float64).tiny)

TRANSFORMS = Options("log", "none")


def apply_transform(values: np.ndarray, transform: str) -> np.ndarray:
    """``log``: natural log of max(x, TINY); ``none``: identity. NaN stays NaN.

    Callers pass contiguous float64 arrays (offline the whole series, online a
    1-element array) so both go through the same ufunc loop and agree bit for bit.
    """
    if transform == "none":
        return values
    with np.errstate(invalid="ignore"):
        return np.log(np.maximum(values, TINY))  # maximum propagates NaN (fmax would not)


def as_series(series: Any, owner: str) -> np.ndarray:
    """Return ``series`` as a contiguous 1-D float64 copy, non-finite values as NaN.

    Accepts any 1-D array-like of real numbers; ``None`` entries mean missing.
    Raises ``ProbekitUsageError`` (one line) for anything else.
    """
    try:
        arr = np.asarray(series)
    except (TypeError, ValueError) as exc:  # ragged nested lists
        raise ProbekitUsageError(
            f"{owner} needs a 1-D numeric series; could not read it as an array ({exc})."
        ) from None
    if arr.ndim != 1:
        raise ProbekitUsageError(
            f"{owner} needs a 1-D numeric series (one value per record). "
            f"Got an array of shape {arr.shape} instead."
        )
    if arr.dtype.kind == "O":
        # Lists with None for "no value yet": check element types before converting,
        # because float("1.5") would silently accept strings.
        if not all(_is_real(v) or v is None for v in arr):
            raise ProbekitUsageError(
                f"{owner} needs a 1-D numeric series; got non-numeric entries."
            )
        arr = np.array([np.nan if v is None else float(v) for v in arr], dtype=np.float64)
    elif arr.dtype.kind not in "iuf":
        raise ProbekitUsageError(
            f"{owner} needs a 1-D numeric series (int or float). Got dtype {arr.dtype} instead."
        )
    out = np.array(arr, dtype=np.float64, order="C", copy=True)
    out[~np.isfinite(out)] = np.nan
    return out


def as_value(value: Any, owner: str) -> float:
    """One record for the online path: a real number or None; non-finite -> NaN."""
    if value is None:
        return float("nan")
    if isinstance(value, np.ndarray) and value.ndim == 0:
        value = value.item()
    if not _is_real(value):
        raise ProbekitUsageError(
            f"{owner}.update needs one real number per record (or None for a missing "
            f"value). Got {value!r} instead."
        )
    value = float(value)
    return value if np.isfinite(value) else float("nan")


def _is_real(value: Any) -> bool:
    return isinstance(value, (numbers.Real, np.integer, np.floating)) and not isinstance(
        value, (bool, np.bool_)
    )


def rolling_min(scores: np.ndarray, persistence: int) -> np.ndarray:
    """Minimum over the last ``persistence`` records; NaN if any is NaN or too few exist."""
    n = scores.shape[0]
    out = np.full(n, np.nan)
    if persistence == 1:
        out[:] = scores
    elif n >= persistence:
        # np.min propagates NaN, which is what we want: a missing score breaks a run.
        windows = np.lib.stride_tricks.sliding_window_view(scores, persistence)
        out[persistence - 1 :] = windows.min(axis=1)
    return out


def run_alarms(exceed: np.ndarray, persistence: int) -> np.ndarray:
    """Indices where a run of consecutive True first reaches length ``persistence``.

    full[t] says the last ``persistence`` records all exceed; an alarm fires where
    full turns on (full[t] and not full[t-1]), i.e. where the run length equals
    ``persistence`` exactly. A longer run does not fire again; after a False the
    run restarts, which is the re-arming rule.
    """
    n = exceed.shape[0]
    if n < persistence:
        return np.zeros(0, dtype=np.int64)
    csum = np.concatenate(([0], np.cumsum(exceed, dtype=np.int64)))
    full = np.zeros(n, dtype=bool)
    full[persistence - 1 :] = (csum[persistence:] - csum[:-persistence]) == persistence
    fires = full.copy()
    fires[1:] &= ~full[:-1]
    return np.flatnonzero(fires).astype(np.int64)


class AlarmRule(ParamsMixin):
    """Base class of the alarm rules (the module docstring lists what a subclass declares).

    Subclasses declare ``name``, ``threshold_param``, ``_constraints`` and
    ``record_params``, and implement ``_scores``, ``_online_state`` and
    ``_online_score`` (``_check`` only where the table cannot say it all).
    """

    #: registry name (``probekit.registry.ALARMS``), used in provenance and messages
    name: ClassVar[str] = ""
    #: the constructor parameter that acts as the threshold
    threshold_param: ClassVar[str] = ""
    #: every constructor parameter -> its allowed values, in the order they are checked
    _constraints: ClassVar[dict[str, Any]] = {}
    #: the parameters that count records -> their smallest value on a coarser grid
    record_params: ClassVar[dict[str, int]] = {}

    @classmethod
    def example(cls) -> "AlarmRule":
        """The instance the conformance suite runs (its defaults unless a rule says otherwise)."""
        return cls()

    def clone(self, **params: Any) -> "AlarmRule":
        """A new rule with the same parameters, some replaced by ``params``."""
        return type(self)(**self.get_params()).set_params(**params)

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and other.get_params() == self.get_params()

    __hash__ = None  # mutable via set_params

    # -- thresholds -------------------------------------------------------------------
    @property
    def score_threshold(self) -> float:
        """The threshold in score units: a record exceeds iff ``score > score_threshold``."""
        return float(getattr(self, self.threshold_param))

    def with_score_threshold(self, h: float) -> "AlarmRule":
        """A copy whose threshold parameter is set so that ``score_threshold == h``."""
        return self.clone(**{self.threshold_param: float(h)})

    # -- coarser record grids ---------------------------------------------------------
    def coarse_params(self, k: int) -> dict[str, Any]:
        """The parameters for the same signal recorded ``k`` times less often.

        Each parameter of ``record_params`` (a count of records) becomes
        ``min(v, max(minimum, v // k))``: divided by ``k``, kept at least at the rule's
        declared minimum, never raised above ``v`` (so ``k = 1`` changes nothing);
        None stays None. Every other parameter is unchanged.
        """
        validate(f"{type(self).__name__}.coarse_params", {"k": k}, {"k": Interval(int, 1, None)})
        self._check()
        params = self.get_params()
        for key, minimum in self.record_params.items():
            if params[key] is not None:
                params[key] = min(params[key], max(minimum, params[key] // k))
        return params

    # -- subclass hooks ---------------------------------------------------------------
    def _check(self) -> dict[str, Any]:
        """Validate the parameters; return them resolved (defaults filled in).

        The default checks ``_constraints``; override it to add checks that involve
        several parameters, or to resolve defaults, starting from ``self._validate``.
        """
        return self._validate(self._constraints)

    def _validate(self, constraints: dict[str, Any]) -> dict[str, Any]:
        params = self.get_params()
        validate(type(self).__name__, params, constraints)
        return params

    def _scores(self, x: np.ndarray, p: dict[str, Any]) -> np.ndarray:
        """Scores of a checked float64 series (non-finite already NaN)."""
        raise NotImplementedError

    def _online_state(self, p: dict[str, Any]) -> dict[str, Any]:
        """Initial bounded state of the online path (lists/floats/ints only)."""
        raise NotImplementedError

    def _online_score(self, state: dict[str, Any], x: float, p: dict[str, Any]) -> float:
        """Consume one record (NaN if missing), update ``state``, return its score."""
        raise NotImplementedError

    # -- public API -------------------------------------------------------------------
    def scores(self, series: Any) -> np.ndarray:
        """One float64 score per record; NaN where the rule has no value."""
        p = self._check()
        return self._scores(as_series(series, type(self).__name__), p)

    def persistent_scores(self, series: Any) -> np.ndarray:
        """Rolling minimum of the score over the last ``persistence`` records."""
        p = self._check()
        s = self._scores(as_series(series, type(self).__name__), p)
        return rolling_min(s, p["persistence"])

    def exceedances(self, series: Any) -> np.ndarray:
        """Boolean per record: ``score > score_threshold`` (NaN never exceeds)."""
        p = self._check()
        return self._exceed(as_series(series, type(self).__name__), p)

    def alarms(self, series: Any) -> np.ndarray:
        """Indices (int64, increasing) of the records at which an alarm fires."""
        p = self._check()
        return run_alarms(self._exceed(as_series(series, type(self).__name__), p), p["persistence"])

    def _exceed(self, x: np.ndarray, p: dict[str, Any]) -> np.ndarray:
        with np.errstate(invalid="ignore"):
            return self._scores(x, p) > self.score_threshold

    def online(self) -> "OnlineAlarm":  # noqa: F821 - imported lazily below
        """A streaming twin that decides record by record exactly as ``alarms`` does."""
        from probekit.alarms.online import OnlineAlarm

        return OnlineAlarm(self)
