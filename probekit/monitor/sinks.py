"""Where the monitor's records go: JSONL lines, TensorBoard scalars, or any object with ``write``.

A sink has ``write(record)`` (one per record), ``flush()`` and ``close()``.
The monitor calls them inside its own error handling: a sink that raises (a
full disk, a closed writer) costs a warning and a counter, never the training.
Under torch.distributed only the main rank (rank 0) writes.
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["JSONLSink", "MonitorRecord", "Sink", "TensorBoardSink"]


@dataclass
class MonitorRecord:
    """One record of the monitor: what it measured at a training step and what the alarm said."""

    step: int  # the training step the losses were measured at
    record: int  # index of this record among the monitor's records
    n_probes: int
    mean_loss: float  # mean probe loss (NaN if the record failed)
    ready: bool  # the window is full: the statistics below are defined
    signal: str  # the statistic the alarm watches ("shc", "inv_pr", ...)
    shc: float = math.nan
    pr: float = math.nan
    trace: float = math.nan
    top_eigenvalues: list = field(default_factory=list)
    score: float = math.nan  # the alarm rule's score at this record
    alarm: bool = False  # an alarm fired at this record
    n_alarms: int = 0  # alarms so far
    every: int = 1  # the record interval in force
    ok: bool = True  # False: the probe pass failed or gave non-finite losses; not admitted

    def as_dict(self) -> dict:
        return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in asdict(self).items()}


class Sink:
    """Base class (optional: any object with these methods works)."""

    def write(self, record: MonitorRecord) -> None:  # pragma: no cover - interface
        raise NotImplementedError

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass


class JSONLSink(Sink):
    """One JSON line per record (NaN and inf as null), appended to ``path`` and flushed each line.

    Append mode, so a resumed training continues the same file; the file is
    opened at the first record, so constructing a sink writes nothing.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = os.fspath(path)
        self._fh = None

    def write(self, record: MonitorRecord) -> None:
        if self._fh is None:
            parent = os.path.dirname(os.path.abspath(self.path))
            os.makedirs(parent, exist_ok=True)
            self._fh = open(self.path, "a", encoding="utf-8")
        self._fh.write(json.dumps(record.as_dict(), sort_keys=True, allow_nan=False) + "\n")
        self._fh.flush()

    def flush(self) -> None:
        if self._fh is not None:
            self._fh.flush()

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None


class TensorBoardSink(Sink):
    """Scalars under ``<prefix>/``: shc, pr, trace, mean_loss, eig_<i>, score, alarm (0/1); alarms as text.

    ``writer``: a ``torch.utils.tensorboard.SummaryWriter``, or a log directory
    to open one in (then closed with the sink). Statistics are written once the
    window is full; the mean probe loss from the first record.
    """

    def __init__(self, writer: Any, *, prefix: str = "probekit") -> None:
        self._own = isinstance(writer, (str, os.PathLike))
        if self._own:
            from torch.utils.tensorboard import SummaryWriter

            writer = SummaryWriter(log_dir=os.fspath(writer))
        self.writer = writer
        self.prefix = prefix

    def write(self, record: MonitorRecord) -> None:
        w, p, step = self.writer, self.prefix, record.step
        if not record.ok:
            return
        w.add_scalar(f"{p}/mean_loss", record.mean_loss, step)
        if not record.ready:
            return
        for name in ("shc", "pr", "trace", "score"):
            value = getattr(record, name)
            if math.isfinite(value):
                w.add_scalar(f"{p}/{name}", value, step)
        for i, ev in enumerate(record.top_eigenvalues):
            w.add_scalar(f"{p}/eig_{i}", ev, step)
        w.add_scalar(f"{p}/alarm", float(record.alarm), step)
        if record.alarm:
            w.add_text(f"{p}/alarms", f"alarm {record.n_alarms} at step {step}: {record.signal} "
                                      f"score {record.score:.4g}, SHC {record.shc:.4g}, PR {record.pr:.3g}", step)

    def flush(self) -> None:
        self.writer.flush()

    def close(self) -> None:
        self.writer.flush()
        if self._own:
            self.writer.close()
