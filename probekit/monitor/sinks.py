"""Where the monitor's records go: JSONL lines, TensorBoard scalars, or any object with ``write``.

A sink has ``write(record)`` (one per record), ``flush()`` and ``close()``.
The monitor calls them inside its own error handling: a sink that raises (a
full disk, a closed writer) costs a warning and a counter, never the training;
the records it could not take are lost to it (``JSONLSink`` never writes part
of one), and ``Monitor.close()`` names their steps.
Under torch.distributed only the main rank (rank 0) writes.
"""
from __future__ import annotations

import errno
import json
import math
import os
from dataclasses import asdict, dataclass, field
from typing import Any

from probekit.errors import ProbekitError

__all__ = ["JSONLSink", "MissingExtraError", "MonitorRecord", "Sink", "TensorBoardSink"]


@dataclass
class MonitorRecord:
    """One record of the monitor: what it measured at a training step and what the alarm said."""

    step: int  # the training step the losses were measured at
    record: int  # index of this record among the monitor's records
    n_probes: int
    mean_loss: float  # mean probe loss (NaN if the record failed)
    ready: bool  # the window is full: the statistics below are defined
    signal: str  # the statistic the alarm watches: a registered 2RDM signal ("shc", "inv_pr", ...)
    signal_value: float = math.nan  # that statistic at this record (probekit.rdm.signal_table)
    shc: float = math.nan
    pr: float = math.nan
    trace: float = math.nan
    top_eigenvalues: list = field(default_factory=list)
    score: float = math.nan  # the alarm rule's score at this record
    alarm: bool = False  # an alarm fired at this record
    n_alarms: int = 0  # alarms so far
    every: int = 1  # the record interval in force
    ok: bool = True  # False: the probe pass failed or gave non-finite losses; not admitted
    # at an alarm of a monitor given probe descriptions: the probes that move together and the
    # slices they over-represent (probekit.rdm.modes.Mode.as_dict); None otherwise, and then left
    # out of as_dict(), so a monitor without descriptions writes the lines it always wrote
    mode: dict | None = None

    def as_dict(self) -> dict:
        out = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in asdict(self).items()}
        if out["mode"] is None:
            del out["mode"]
        return out


class Sink:
    """Base class (optional: any object with these methods works)."""

    def write(self, record: MonitorRecord) -> None:  # pragma: no cover - interface
        raise NotImplementedError

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass


class JSONLSink(Sink):
    """One JSON line per record (NaN and inf as null), appended to ``path``.

    Append mode, so a resumed training continues the same file; the file is
    opened at the first record, so constructing a sink writes nothing. A record
    is written whole or not at all: the line goes out in one ``os.write`` on an
    ``O_APPEND`` descriptor (no buffer holds part of it for later), and a write
    that fails or stops short (a full disk) is cut back off the file before the
    error is raised, so the file stays valid JSONL and that record is lost.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = os.fspath(path)
        self._fd: int | None = None

    def write(self, record: MonitorRecord) -> None:
        line = (json.dumps(record.as_dict(), sort_keys=True, allow_nan=False) + "\n").encode("utf-8")
        if self._fd is None:
            parent = os.path.dirname(os.path.abspath(self.path))
            os.makedirs(parent, exist_ok=True)
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
        fd = self._fd
        before = os.fstat(fd).st_size  # one writer (rank 0): the file's end is where this line starts
        try:
            written = os.write(fd, line)
        except BaseException:
            _cut_back(fd, before)
            raise
        if written != len(line):
            _cut_back(fd, before)
            raise OSError(errno.ENOSPC, f"short write: {written} of {len(line)} bytes of the line reached "
                                        f"{self.path} (disk full?); the line was removed")

    def flush(self) -> None:
        pass  # nothing is buffered: each line is one os.write

    def close(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)


def _mode_markdown(mode: dict) -> str:
    """An alarm's mode (``Mode.as_dict()``) as TensorBoard markdown: the probes, then what they over-represent."""
    from probekit.rdm.modes import label_text

    lines = ["probes moving together (leading mode):", ""]
    for rank, p in enumerate(mode["top_probes"], 1):
        tags = ", ".join(label_text(f, v) for f, v in (p.get("slices") or {}).items() if v is not None)
        text = p.get("text")
        lines.append(f"{rank}. `{p['probe']}` {p['loading']:+.4f}" + (f" [{tags}]" if tags else "")
                     + (f" {text}" if text else ""))
    excess = mode.get("over_represented") or []
    if excess:
        lines += ["", "over-represented:", ""] + [f"- {e['text']}" for e in excess[:5]]
    return "\n".join(lines)


def _cut_back(fd: int, size: int) -> None:
    """Truncate the file to ``size`` if a write left part of a line beyond it."""
    try:
        if os.fstat(fd).st_size > size:
            os.ftruncate(fd, size)
    except OSError:  # the write's own error is the one to report
        pass


class MissingExtraError(ProbekitError, ImportError):
    """An optional dependency is not installed (still an ImportError for ``except ImportError``)."""


class TensorBoardSink(Sink):
    """Scalars under ``<prefix>/``: shc, pr, trace, mean_loss, eig_<i>, signal_value, score, alarm (0/1); alarms as text.

    ``writer``: a ``torch.utils.tensorboard.SummaryWriter``, or a log directory
    to open one in (then closed with the sink). Statistics are written once the
    window is full; the mean probe loss from the first record.
    """

    def __init__(self, writer: Any, *, prefix: str = "probekit") -> None:
        self._own = isinstance(writer, (str, os.PathLike))
        if self._own:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError as exc:
                why = (str(exc).splitlines() or [type(exc).__name__])[0]
                raise MissingExtraError(f'TensorBoardSink needs tensorboard: pip install "probekit[monitor]" (or pass '
                                        f"a SummaryWriter you made, or use JSONLSink). The import failed: {why}") from exc

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
        for name in ("shc", "pr", "trace", "signal_value", "score"):
            value = getattr(record, name)
            if math.isfinite(value):
                w.add_scalar(f"{p}/{name}", value, step)
        for i, ev in enumerate(record.top_eigenvalues):
            w.add_scalar(f"{p}/eig_{i}", ev, step)
        w.add_scalar(f"{p}/alarm", float(record.alarm), step)
        if record.alarm:
            text = (f"alarm {record.n_alarms} at step {step}: {record.signal} "
                    f"score {record.score:.4g}, SHC {record.shc:.4g}, PR {record.pr:.3g}")
            if record.mode is not None:
                text += "\n\n" + _mode_markdown(record.mode)
            w.add_text(f"{p}/alarms", text, step)

    def flush(self) -> None:
        self.writer.flush()

    def close(self) -> None:
        self.writer.flush()
        if self._own:
            self.writer.close()
