"""The ground truth of a reference run: its order parameters, and the onset and midpoint read off them.

``find_transition`` applies one rule to every family: the onset is the first record at which the
order parameter has moved 10% of the way from its plateau to its final value (and stays past
that level), the midpoint the same at 50%.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from probekit.errors import ProbekitUsageError

__all__ = ["MIDPOINT_FRACTION", "ONSET_FRACTION", "OrderParameter", "Transition", "find_transition"]

ONSET_FRACTION = 0.1  # onset: 10% of the way from the plateau value to the final value
MIDPOINT_FRACTION = 0.5


@dataclass(frozen=True)
class OrderParameter:
    """How one transition's ground truth is read off an order-parameter series.

    ``start`` / ``end`` are the plateau and final values; ``None`` means "read
    from the data": the median of the first / last ``edge_records`` records.
    A run has the transition only if ``|end - start| >= min_change``; a null
    control's order parameter must stay within that.
    """

    name: str  # key into Recording.order_parameters
    description: str
    min_change: float  # smaller moves are "no transition"
    start: float | None = None
    end: float | None = None
    edge_records: int = 10
    persist: int = 3  # a crossing counts once the value stays past the level this many records


@dataclass(frozen=True)
class Transition:
    """The ground truth of one transition in one run (steps are training steps)."""

    name: str
    onset_step: int | None  # None: no transition in the recorded span
    midpoint_step: int | None
    start_value: float
    end_value: float
    rule: str

    @property
    def happened(self) -> bool:
        return self.onset_step is not None

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "Transition":
        return cls(**data)


def _first_persistent_crossing(values: np.ndarray, level: float, rising: bool, persist: int) -> int | None:
    past = values >= level if rising else values <= level
    run = 0
    for i in range(len(past) - 1, -1, -1):  # run[i]: consecutive records past the level from i on
        run = run + 1 if past[i] else 0
        past[i] = run >= min(persist, len(past) - i)
    hits = np.nonzero(past)[0]
    return int(hits[0]) if hits.size else None


def find_transition(spec: OrderParameter, steps: np.ndarray, values: np.ndarray) -> Transition:
    """Onset and midpoint of ``values`` (one per record) by the 10% / 50% rule.

    The onset is the first record at which the order parameter has moved 10%
    of the way from its plateau value to its final value and stays past that
    level for ``spec.persist`` records (so one noisy record cannot set it);
    the midpoint the same at 50%. Both are reported in training steps.
    """
    values = np.asarray(values, dtype=np.float64)
    steps = np.asarray(steps)
    if values.shape != steps.shape or values.ndim != 1 or values.size == 0:
        raise ProbekitUsageError(
            f"order parameter {spec.name!r} must be one value per record ({steps.size}); got shape {values.shape}."
        )
    edge = max(1, min(spec.edge_records, values.size))
    start = float(np.median(values[:edge])) if spec.start is None else float(spec.start)
    end = float(np.median(values[-edge:])) if spec.end is None else float(spec.end)
    rule = (
        f"{spec.name}: onset at {ONSET_FRACTION:.0%} and midpoint at {MIDPOINT_FRACTION:.0%} of the way "
        f"from {'the median of the first %d records' % edge if spec.start is None else spec.start} "
        f"to {'the median of the last %d records' % edge if spec.end is None else spec.end}, "
        f"held for {spec.persist} records; no transition if the change is below {spec.min_change:.4g}"
    )
    if not np.all(np.isfinite(values)) or abs(end - start) < spec.min_change:
        return Transition(spec.name, None, None, start, end, rule)
    rising = end > start
    times = []
    for fraction in (ONSET_FRACTION, MIDPOINT_FRACTION):
        i = _first_persistent_crossing(values, start + fraction * (end - start), rising, spec.persist)
        times.append(None if i is None else int(steps[i]))
    return Transition(spec.name, times[0], times[1], start, end, rule)
