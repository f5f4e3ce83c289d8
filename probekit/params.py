"""Declarative parameter validation with one error template (the scikit-learn habit).

Each public callable declares its parameters once, with their allowed values::

    validate(
        "DynamicalRDM",
        {"window": window, "detrend": detrend},
        {"window": Interval(int, 2, None), "detrend": Options("none", "linear", "diff")},
    )

and every violation reads the same way:
``The 'window' parameter of DynamicalRDM must be an int in the range [2, inf). Got 1 instead.``
"""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Any, Mapping

from probekit.errors import ProbekitUsageError


@dataclass(frozen=True)
class Interval:
    """A real or integer interval; ``None`` bounds are unbounded."""

    kind: type  # int or float
    low: float | None = None
    high: float | None = None
    closed: str = "both"  # "both", "left", "right", "neither"

    def accepts(self, value: Any) -> bool:
        if isinstance(value, bool):
            return False
        if self.kind is int:
            if not isinstance(value, numbers.Integral):
                return False
        elif not isinstance(value, numbers.Real) or not math.isfinite(float(value)):
            return False
        if self.low is not None:
            if value < self.low or (value == self.low and self.closed in ("right", "neither")):
                return False
        if self.high is not None:
            if value > self.high or (value == self.high and self.closed in ("left", "neither")):
                return False
        return True

    def describe(self) -> str:
        name = "an int" if self.kind is int else "a float"
        if self.low is None and self.high is None:
            return name
        left = "[" if self.closed in ("both", "left") and self.low is not None else "("
        right = "]" if self.closed in ("both", "right") and self.high is not None else ")"
        low = "-inf" if self.low is None else _fmt(self.low)
        high = "inf" if self.high is None else _fmt(self.high)
        return f"{name} in the range {left}{low}, {high}{right}"


@dataclass(frozen=True)
class Options:
    """One of a fixed set of values (usually strings)."""

    values: tuple

    def __init__(self, *values: Any) -> None:
        object.__setattr__(self, "values", tuple(values))

    def accepts(self, value: Any) -> bool:
        return any(value == v and type(value) is type(v) for v in self.values)

    def describe(self) -> str:
        return "one of " + ", ".join(repr(v) for v in self.values)


@dataclass(frozen=True)
class AnyOf:
    """Accepts a value that any of the constraints accepts (e.g. ``None`` or an int)."""

    constraints: tuple

    def __init__(self, *constraints: Any) -> None:
        object.__setattr__(self, "constraints", tuple(constraints))

    def accepts(self, value: Any) -> bool:
        return any(_accepts(c, value) for c in self.constraints)

    def describe(self) -> str:
        return " or ".join(_describe(c) for c in self.constraints)


def _fmt(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else repr(x)


def _accepts(constraint: Any, value: Any) -> bool:
    if constraint is None:
        return value is None
    if isinstance(constraint, type):
        return isinstance(value, constraint) and not (
            constraint in (int, float) and isinstance(value, bool)
        )
    if callable(getattr(constraint, "accepts", None)):
        return constraint.accepts(value)
    raise TypeError(f"unknown constraint {constraint!r}")


def _describe(constraint: Any) -> str:
    if constraint is None:
        return "None"
    if isinstance(constraint, type):
        return f"an instance of {constraint.__name__}"
    return constraint.describe()


def validate(owner: str, values: Mapping[str, Any], constraints: Mapping[str, Any]) -> None:
    """Raise ``ProbekitUsageError`` naming the first parameter that breaks its constraint."""
    for name, constraint in constraints.items():
        value = values[name]
        if not _accepts(constraint, value):
            raise ProbekitUsageError(
                f"The {name!r} parameter of {owner} must be {_describe(constraint)}. "
                f"Got {value!r} instead."
            )


class ParamsMixin:
    """scikit-learn's parameter contract for classes whose constructor only stores.

    ``get_params`` reads the constructor's keyword names back from the instance;
    ``set_params`` refuses names the constructor does not take; the repr shows
    them all. Shared by alarm rules and selectors.
    """

    @classmethod
    def _param_names(cls) -> list[str]:
        import inspect

        sig = inspect.signature(cls.__init__)
        return [
            p.name
            for p in sig.parameters.values()
            if p.name != "self" and p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)
        ]

    def get_params(self) -> dict[str, Any]:
        """The constructor parameters as stored (what provenance records)."""
        return {name: getattr(self, name) for name in self._param_names()}

    def set_params(self, **params: Any):
        """Set constructor parameters; unknown names are refused. Returns self."""
        valid = self._param_names()
        for key, value in params.items():
            if key not in valid:
                raise ProbekitUsageError(
                    f"Invalid parameter {key!r} for {type(self).__name__}. "
                    f"Valid parameters: {', '.join(valid) or '(none)'}."
                )
            setattr(self, key, value)
        return self

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({args})"
