"""Alarm rules: turn a signal series (e.g. SHC per record) into alarm times.

Three built-in rules, one module each, behind one contract (``base.AlarmRule``):

- ``RunningMinRatio`` ("running-min"): signal / its running minimum > ratio;
- ``RobustZScore`` ("zscore"): robust z of log-signal against a trailing median/MAD;
- ``KendallTrend`` ("kendall"): Kendall-tau trend with an AR(1)-surrogate p-value.

Each has ``scores``, ``persistent_scores``, ``exceedances``, ``alarms`` (pure,
vectorised) and ``online()`` (a streaming twin with identical decisions), plus a
functional shortcut. ``calibrate`` sets a rule's threshold from null runs.

Rules are found by name through the registry ``probekit.registry.ALARMS`` (entry-point
group ``probekit.alarm_rules``, where the built-ins register exactly as a third-party
rule does); ``make_rule`` builds one, and ``analyze``, the Monitor and the bench all
go through it. ``ALARM_RULES`` is a read-only name -> class view of that registry.

Only numpy is imported here, so this package is cheap to import.
"""
from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from probekit.alarms.base import AlarmRule
from probekit.alarms.calibrate import Calibration, calibrate
from probekit.alarms.kendall import KendallTrend, kendall_trend_alarm
from probekit.alarms.online import OnlineAlarm
from probekit.alarms.running_min import RunningMinRatio, running_min_ratio_alarm
from probekit.alarms.zscore import RobustZScore, robust_zscore_alarm
from probekit.errors import ProbekitError, ProbekitUsageError
from probekit.registry import ALARMS


class _RegisteredRules(Mapping):
    """Read-only view of the alarm-rule registry: name -> rule class (loaded on first use)."""

    def __getitem__(self, name: str) -> type[AlarmRule]:
        if name not in ALARMS.names():
            raise KeyError(name)
        return _rule_class(name)

    def __iter__(self) -> Iterator[str]:
        return iter(ALARMS.names())

    def __len__(self) -> int:
        return len(ALARMS.names())

    def __repr__(self) -> str:
        return f"ALARM_RULES({', '.join(ALARMS.names())})"


ALARM_RULES: Mapping[str, type[AlarmRule]] = _RegisteredRules()

# Provisional: best on the prototypes (docs/findings.md, 23/24 DLN transitions with
# 0-1 false alarms). The benchmark of a later issue decides the final default.
DEFAULT_RULE = "running-min"


def _rule_class(name: Any) -> type[AlarmRule]:
    cls = ALARMS.load(name)  # unknown names: "Unknown alarm rule ... Did you mean ..."
    if not (isinstance(cls, type) and issubclass(cls, AlarmRule)):
        raise ProbekitError(
            f"the alarm rule {name!r} is registered as {cls!r}, which is not an AlarmRule subclass."
        )
    return cls


def make_rule(name: str = DEFAULT_RULE, **params: Any) -> AlarmRule:
    """Build the registered rule ``name`` with ``params`` (validated when it runs)."""
    cls = _rule_class(name)
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
