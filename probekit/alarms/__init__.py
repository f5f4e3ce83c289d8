"""Alarm rules: turn a signal series (e.g. SHC per record) into alarm times.

Three rules, one module each, behind one contract (``base.AlarmRule``):

- ``RunningMinRatio`` ("running-min"): signal / its running minimum > ratio;
- ``RobustZScore`` ("zscore"): robust z of log-signal against a trailing median/MAD;
- ``KendallTrend`` ("kendall"): Kendall-tau trend with an AR(1)-surrogate p-value.

Each has ``scores``, ``persistent_scores``, ``exceedances``, ``alarms`` (pure,
vectorised) and ``online()`` (a streaming twin with identical decisions), plus a
functional shortcut. ``calibrate`` sets a rule's threshold from null runs.

Only numpy is imported here, so this package is cheap to import.
"""
from __future__ import annotations

import difflib
from typing import Any

from probekit.alarms.base import AlarmRule
from probekit.alarms.calibrate import Calibration, calibrate
from probekit.alarms.kendall import KendallTrend, kendall_trend_alarm
from probekit.alarms.online import OnlineAlarm
from probekit.alarms.running_min import RunningMinRatio, running_min_ratio_alarm
from probekit.alarms.zscore import RobustZScore, robust_zscore_alarm
from probekit.errors import ProbekitUsageError

ALARM_RULES: dict[str, type[AlarmRule]] = {
    "running-min": RunningMinRatio,
    "zscore": RobustZScore,
    "kendall": KendallTrend,
}

# Provisional: best on the prototypes (FINDINGS.md, 23/24 DLN transitions with
# 0-1 false alarms). The benchmark of a later issue decides the final default.
DEFAULT_RULE = "running-min"


def make_rule(name: str = DEFAULT_RULE, **params: Any) -> AlarmRule:
    """Build the registered rule ``name`` with ``params`` (validated when it runs)."""
    available = sorted(ALARM_RULES)
    if not isinstance(name, str) or name not in ALARM_RULES:
        close = difflib.get_close_matches(name, available, n=1) if isinstance(name, str) else []
        hint = f" Did you mean: {close[0]}?" if close else ""
        raise ProbekitUsageError(
            f"Unknown alarm rule {name!r}.{hint} Available: {', '.join(available)}."
        )
    cls = ALARM_RULES[name]
    unknown = sorted(set(params) - set(cls._param_names()))
    if unknown:
        raise ProbekitUsageError(
            f"Invalid parameter {unknown[0]!r} for alarm rule {name!r} ({cls.__name__}). "
            f"Valid parameters: {', '.join(cls._param_names())}."
        )
    return cls(**params)


__all__ = [
    "ALARM_RULES",
    "DEFAULT_RULE",
    "AlarmRule",
    "Calibration",
    "KendallTrend",
    "OnlineAlarm",
    "RobustZScore",
    "RunningMinRatio",
    "calibrate",
    "kendall_trend_alarm",
    "make_rule",
    "robust_zscore_alarm",
    "running_min_ratio_alarm",
]
