"""Streaming twin of an alarm rule: one record at a time, same decisions as ``rule.alarms``.

    online = RunningMinRatio().online()
    for value in shc_stream:            # None or NaN for "no value yet"
        if online.update(value):
            print("alarm at record", online.alarms[-1])

State is bounded: the rule's trailing buffer (``baseline`` or ``window`` values)
or its running minimum, the current run length capped at ``persistence``, and
the record counter. ``alarms`` (the output) is the only list that grows. Scores
are computed by the same helper functions the offline path uses, on 1-row
arrays, so decisions are bit-identical to ``rule.alarms(full_series)``.
"""
from __future__ import annotations

import copy
from typing import Any

from probekit.alarms.base import AlarmRule, as_value
from probekit.errors import ProbekitUsageError

_STATE_KEYS = ("rule", "params", "n_records", "run", "last_score", "alarms", "rule_state")


class OnlineAlarm:
    """Record-by-record alarm decisions of ``rule`` (validated and copied at construction).

    Attributes
    ----------
    alarms : list[int]
        Indices of the records at which an alarm fired, as ``rule.alarms`` returns.
    n_records : int
        Records consumed so far (the index the next record will get).
    last_score : float
        Score of the last record (NaN where the rule had none); handy for logging.
    """

    def __init__(self, rule: AlarmRule) -> None:
        if not isinstance(rule, AlarmRule):
            raise ProbekitUsageError(
                f"OnlineAlarm needs an alarm rule (an AlarmRule instance). Got {rule!r} instead."
            )
        self._params = rule._check()  # validate once, at the point work starts
        self.rule = rule.clone()  # later set_params on the caller's rule must not leak in
        self._threshold = self.rule.score_threshold
        self._persistence = self._params["persistence"]
        self.reset()

    def reset(self) -> None:
        """Forget every record: back to the state of a fresh ``rule.online()``."""
        self.n_records = 0
        self.run = 0  # current run of exceedances, capped at persistence
        self.last_score = float("nan")
        self.alarms: list[int] = []
        self._state = self.rule._online_state(self._params)

    def update(self, value: Any) -> bool:
        """Consume one record; return True iff an alarm fires at it."""
        x = as_value(value, "OnlineAlarm")
        score = self.rule._online_score(self._state, x, self._params)
        exceeded = score > self._threshold  # NaN never exceeds
        before = self.run
        self.run = min(self.run + 1, self._persistence) if exceeded else 0
        fired = self.run == self._persistence and before < self._persistence
        if fired:
            self.alarms.append(self.n_records)
        self.last_score = score
        self.n_records += 1
        return fired

    def state_dict(self) -> dict[str, Any]:
        """Plain-Python snapshot (lists, floats, ints, str) of everything ``update`` uses."""
        return {
            "rule": type(self.rule).__name__,
            "params": self.rule.get_params(),
            "n_records": self.n_records,
            "run": self.run,
            "last_score": self.last_score,
            "alarms": list(self.alarms),
            "rule_state": copy.deepcopy(self._state),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a ``state_dict`` saved by an OnlineAlarm of the same rule and parameters."""
        missing = [k for k in _STATE_KEYS if k not in state]
        if missing:
            raise ProbekitUsageError(
                f"OnlineAlarm.load_state_dict got a state without {', '.join(map(repr, missing))}; "
                "pass what state_dict() returned."
            )
        mine = (type(self.rule).__name__, self.rule.get_params())
        theirs = (state["rule"], state["params"])
        if mine != theirs:
            raise ProbekitUsageError(
                f"OnlineAlarm.load_state_dict: the state was saved by {theirs[0]}"
                f"({_kw(theirs[1])}) but this alarm runs {mine[0]}({_kw(mine[1])})."
            )
        expected_state = self.rule._online_state(self._params)
        # A list the rule starts empty grows with the records (running-min's `recent`); one it
        # starts filled keeps its length.
        if set(state["rule_state"]) != set(expected_state) or any(
            isinstance(v, list) and (not isinstance(state["rule_state"][k], list)
                                     or (v and len(state["rule_state"][k]) != len(v)))
            for k, v in expected_state.items()
        ):
            raise ProbekitUsageError(
                "OnlineAlarm.load_state_dict: 'rule_state' does not match the rule's "
                f"state layout (keys {sorted(expected_state)})."
            )
        self.n_records = int(state["n_records"])
        self.run = int(state["run"])
        self.last_score = float(state["last_score"])
        self.alarms = [int(i) for i in state["alarms"]]
        self._state = copy.deepcopy(state["rule_state"])

    def __repr__(self) -> str:
        return f"OnlineAlarm({self.rule!r}, n_records={self.n_records}, alarms={self.alarms})"


def _kw(params: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in params.items())
