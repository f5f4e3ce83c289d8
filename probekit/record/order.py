"""The ground truth of a user's run: its transition, given by hand or read off an order parameter.

Three ways, one at a time (docs/record.md, "Transitions"):

- ``onset`` (and ``midpoint``) given by hand: ``Transition("given", onset, midpoint, nan, nan, "given by hand")``;
- ``order_csv``: a CSV of ``step,value`` rows (a header row is optional);
- ``order_parameters``: ``METRIC:WHERE`` series measured while recording, METRIC ``loss`` or
  ``accuracy``, WHERE a slice of the pool in the slice grammar (``topic=rare``; docs/slices.md)
  or ``eval=PATH``, a separate evaluation file in the pool's format.

A series' onset and midpoint come from :func:`probekit.eval.families.ground_truth.find_transition`,
the rule every reference family uses (10% / 50% of the way from the plateau to the final value,
held). A series that never gets there is an error naming its start and end values and the
minimum change.
"""
from __future__ import annotations

import csv
import hashlib
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from probekit.errors import ProbekitUsageError
from probekit.eval.families.ground_truth import OrderParameter, Transition, find_transition

__all__ = ["OrderSpec", "TransitionSpec", "parse_order_parameter", "per_sample_correct", "read_order_csv"]

METRICS = ("loss", "accuracy")
ACCURACY_LOSSES = ("classification", "causal_lm")
DEFAULT_ACCURACY_CHANGE = 0.1  # ten points of accuracy
DEFAULT_RELATIVE_CHANGE = 0.1  # otherwise: 10% of the larger of the start and end values


@dataclass(frozen=True)
class OrderSpec:
    """One order parameter measured while recording: ``metric`` over a pool slice or an eval file."""

    name: str  # the series' name: op/<name> in series.npz
    metric: str
    where: str  # the slice spec, or the eval file's path
    on_eval: bool

    @property
    def needs_forward(self) -> bool:
        """Measured in the forward pass (accuracy, an eval file), not computed from the pool losses."""
        return self.on_eval or self.metric == "accuracy"

    def describe(self, eval_digest: str | None = None) -> dict:
        return {"name": self.name, "metric": self.metric, "where": self.where, "on_eval": self.on_eval,
                "eval_data": eval_digest}


def parse_order_parameter(text: str) -> OrderSpec:
    metric, sep, where = str(text).partition(":")
    metric, where = metric.strip(), where.strip()
    if not sep or metric not in METRICS or not where:
        raise ProbekitUsageError(f"--order-parameter must be METRIC:WHERE with METRIC one of {', '.join(METRICS)} and "
                                 f"WHERE a slice of the pool (topic=rare) or eval=PATH; got {text!r}.")
    if where.startswith("eval="):
        path = Path(where[5:]).expanduser()
        if not path.exists():
            raise ProbekitUsageError(f"--order-parameter {text!r}: the eval file {path} does not exist.")
        return OrderSpec(f"{metric}:eval={path.name}", metric, str(path.resolve()), True)
    return OrderSpec(f"{metric}:{where}", metric, where, False)


@dataclass(frozen=True)
class TransitionSpec:
    """How the transition is found; at most one of ``onset``, ``order_csv``, ``order_parameters``."""

    onset: int | None = None
    midpoint: int | None = None
    order_csv: str | None = None
    order_name: str | None = None
    order_parameters: tuple[str, ...] = ()
    min_change: float | None = None
    edge_records: int | None = None

    def check(self) -> list[OrderSpec]:
        given = [k for k, v in (("--onset", self.onset), ("--order-csv", self.order_csv),
                                ("--order-parameter", self.order_parameters or None)) if v is not None]
        if len(given) > 1:
            raise ProbekitUsageError(f"give one of --onset, --order-csv and --order-parameter; "
                                     f"got {' and '.join(given)}.")
        if self.midpoint is not None and self.onset is None:
            raise ProbekitUsageError("--midpoint needs --onset.")
        if self.onset is not None and self.midpoint is not None and self.midpoint < self.onset:
            raise ProbekitUsageError(f"--midpoint {self.midpoint} comes before --onset {self.onset}.")
        if self.min_change is not None and not (math.isfinite(self.min_change) and self.min_change > 0):
            raise ProbekitUsageError(f"--min-change must be a number > 0; got {self.min_change}.")
        if self.edge_records is not None and self.edge_records < 1:
            raise ProbekitUsageError(f"--edge-records must be an int >= 1; got {self.edge_records}.")
        if self.order_csv is not None and not Path(self.order_csv).is_file():
            raise ProbekitUsageError(f"--order-csv {self.order_csv} does not exist.")
        specs = [parse_order_parameter(t) for t in self.order_parameters]
        names = [s.name for s in specs]
        if len(set(names)) < len(names):
            raise ProbekitUsageError(f"--order-parameter names one series twice: {', '.join(names)}.")
        return specs

    def describe(self) -> dict:
        out = {"onset": self.onset, "midpoint": self.midpoint, "order_parameters": list(self.order_parameters),
               "min_change": self.min_change, "edge_records": self.edge_records, "order_csv": None}
        if self.order_csv is not None:
            path = Path(self.order_csv)
            out["order_csv"] = {"path": str(path.resolve()), "name": self.order_name,
                                "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}
        return out


def read_order_csv(path: str | Path, name: str | None = None) -> tuple[str, np.ndarray, np.ndarray]:
    """(name, steps, values) of a ``step,value`` CSV; the name is the value column's header, else the file's stem."""
    path = Path(path)
    with open(path, newline="", encoding="utf-8") as fh:
        rows = [r for r in csv.reader(fh) if r and any(c.strip() for c in r)]
    header = None
    if rows and not _is_number(rows[0][0]):
        header, rows = rows[0], rows[1:]
    steps, values = [], []
    for i, row in enumerate(rows, start=2 if header else 1):
        if len(row) < 2 or not _is_number(row[0]) or not _is_number(row[1]):
            raise ProbekitUsageError(f"--order-csv {path}: line {i} is not 'step,value' with two numbers: "
                                     f"{','.join(row)!r}.")
        steps.append(float(row[0]))
        values.append(float(row[1]))
    if len(steps) < 2:
        raise ProbekitUsageError(f"--order-csv {path}: needs at least two 'step,value' rows; got {len(steps)}.")
    s = np.asarray(steps)
    if np.any(s != np.round(s)) or np.any(np.diff(s) <= 0):
        raise ProbekitUsageError(f"--order-csv {path}: the steps must be integers in increasing order.")
    v = np.asarray(values, dtype=np.float64)
    if not np.all(np.isfinite(v)):
        raise ProbekitUsageError(f"--order-csv {path}: the values hold NaN or inf.")
    return name or (header[1].strip() if header and len(header) > 1 and header[1].strip() else path.stem), \
        s.astype(np.int64), v


def _is_number(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


def on_steps(name: str, csv_steps: np.ndarray, values: np.ndarray, steps: np.ndarray) -> np.ndarray:
    """A CSV series at the checkpoint steps: its own values where it has them, interpolated between."""
    outside = steps[(steps < csv_steps[0]) | (steps > csv_steps[-1])]
    if outside.size:
        raise ProbekitUsageError(f"--order-csv {name!r} covers steps {csv_steps[0]}..{csv_steps[-1]}; the checkpoints "
                                 f"at steps {', '.join(map(str, outside[:5]))} are outside it.")
    return np.interp(steps.astype(np.float64), csv_steps.astype(np.float64), values)


def transition_of(name: str, description: str, steps: np.ndarray, values: np.ndarray, *, metric: str | None,
                  min_change: float | None, edge_records: int | None, option: str) -> Transition:
    """The 10% / 50% rule on one series; an error if it never crosses."""
    edge = edge_records or min(10, max(1, len(values) // 10))  # reference runs have hundreds of records
    edge = min(edge, len(values))
    start, end = float(np.median(values[:edge])), float(np.median(values[-edge:]))
    if min_change is None:
        min_change = DEFAULT_ACCURACY_CHANGE if metric == "accuracy" else \
            DEFAULT_RELATIVE_CHANGE * max(abs(start), abs(end))
    spec = OrderParameter(name, description, float(min_change), edge_records=edge)
    t = find_transition(spec, steps, values)
    if t.onset_step is None:
        why = (f"a change of {abs(end - start):.4g}, below the minimum change {min_change:.4g} (--min-change)"
               if abs(end - start) < min_change or not np.all(np.isfinite(values))
               else f"but it never stays past 10% of the way ({spec.persist} records running)")
        raise ProbekitUsageError(
            f"{option} {name!r} never crosses its threshold: it goes from {start:.4g} (median of the first {edge} "
            f"records) to {end:.4g} (median of the last {edge}), {why}; lower --min-change, change --edge-records, "
            "or give --onset.")
    return t


def given_transition(onset: int, midpoint: int | None, steps: np.ndarray) -> Transition:
    for flag, step in (("--onset", onset), ("--midpoint", midpoint)):
        if step is not None and not steps[0] <= step <= steps[-1]:
            raise ProbekitUsageError(f"{flag} {step} is outside the recorded steps {steps[0]}..{steps[-1]}.")
    return Transition("given", int(onset), None if midpoint is None else int(midpoint), math.nan, math.nan,
                      "given by hand")


def per_sample_correct(loss: str, logits: Any, batch: Any) -> Any:
    """[b] float: the share of each example's targets the model's argmax gets right.

    classification: the class (or, for [b, ..., C] logits, the mean over the labelled positions);
    causal_lm: next-token accuracy over the tokens ``causal_lm_loss`` scores (padding masked).
    """
    import torch

    from probekit.monitor.losses import IGNORE_INDEX

    logits = logits.float()
    if loss == "classification":
        targets = batch["labels"] if isinstance(batch, dict) else batch[1]
        if logits.ndim == 2:
            return (logits.argmax(dim=-1) == targets).float()
        targets = targets.reshape(logits.shape[0], -1)
        pred = logits.argmax(dim=-1).reshape(targets.shape)
        keep = targets != IGNORE_INDEX
        return ((pred == targets) & keep).sum(dim=1).float() / keep.sum(dim=1).clamp(min=1)
    ids = batch["input_ids"] if isinstance(batch, dict) else batch
    labels = batch.get("labels", ids) if isinstance(batch, dict) else ids
    mask = batch.get("attention_mask") if isinstance(batch, dict) else None
    shift = torch.full_like(labels, IGNORE_INDEX)  # position t predicts token t + 1, as causal_lm_loss
    shift[:, :-1] = labels[:, 1:]
    if mask is not None:
        shift[:, :-1] = shift[:, :-1].masked_fill(mask[:, 1:] == 0, IGNORE_INDEX)
        shift = shift.masked_fill(mask == 0, IGNORE_INDEX)
    keep = shift != IGNORE_INDEX
    hits = (logits.argmax(dim=-1) == shift) & keep
    return hits.sum(dim=1).float() / keep.sum(dim=1).clamp(min=1)
