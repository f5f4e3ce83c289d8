"""Feedback on long work: a tqdm bar on a terminal, INFO log lines everywhere else.

Every long loop in probekit goes through :class:`Progress` (counted work: records,
trajectories, cells, batches) or :func:`stage` (one long call with nothing to count,
such as a faiss k-means). On a terminal (stderr is a TTY) they draw a bar that is
gone when done; off a terminal (CI logs, a pipe, a file) they draw nothing and log
progress lines at INFO instead, which ``probekit -v`` shows::

    INFO probekit.eval.store.suite: recorded 3/12 trajectories (grokking seed 1, 8.2 s)
    INFO probekit.eval.bench.run: scored 40/120 cells (late-bias cluster)

Worker processes call :func:`disable_bars`: their stderr is the parent's terminal,
and bars from several processes on one terminal overwrite each other.
"""
from __future__ import annotations

import contextlib
import logging
import sys
import time
from typing import Any, Iterable, Iterator, TypeVar

__all__ = ["Progress", "bars_enabled", "disable_bars", "stage"]

_BARS_OFF = False
T = TypeVar("T")


def disable_bars() -> None:
    """No bars in this process from now on (log lines stay)."""
    global _BARS_OFF
    _BARS_OFF = True


def bars_enabled(enabled: bool | None = None) -> bool:
    """Whether to draw a bar: ``enabled`` if given, else only when stderr is a terminal."""
    if _BARS_OFF:
        return False
    if enabled is not None:
        return bool(enabled)
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):  # replaced or closed stderr
        return False


class Progress:
    """Count ``total`` units of work: a bar on a terminal, else one INFO line per update.

    ``line`` is the log line's format (fields ``n``, ``total``, ``desc``, ``unit``); ``update``
    may add a note, shown in parentheses. ``every`` > 0 logs at most one line per that many
    seconds, the first after that long (the last line is always logged). ``enabled``: True/False forces the bar on/off,
    None draws it only on a terminal.
    """

    def __init__(self, total: int | None, desc: str, *, unit: str = "it", logger: logging.Logger | None = None,
                 line: str = "{desc}: {n}/{total} {unit}", enabled: bool | None = None, every: float = 0.0,
                 leave: bool = False) -> None:
        self.total, self.desc, self.unit, self.line, self.every = total, desc, unit, line, every
        self.n = 0
        self.log = logger or logging.getLogger("probekit")
        self._last_log = time.monotonic() if every > 0 else -float("inf")  # throttled: first line after `every` s
        self._bar = None
        if bars_enabled(enabled):
            from tqdm.auto import tqdm

            self._bar = tqdm(total=total, desc=desc, unit=unit, leave=leave, file=sys.stderr)

    def update(self, n: int = 1, note: str | None = None) -> None:
        self.n += n
        if self._bar is not None:
            self._bar.update(n)
            return
        now = time.monotonic()
        last = self.total is not None and self.n >= self.total
        if last or now - self._last_log >= self.every:
            self._last_log = now
            text = self.line.format(n=self.n, total="?" if self.total is None else self.total,
                                    desc=self.desc, unit=self.unit)
            self.log.info("%s%s", text, f" ({note})" if note else "")

    def track(self, items: Iterable[T]) -> Iterator[T]:
        """Yield ``items``, counting one done each time the loop comes back for the next; close at the end."""
        try:
            for item in items:
                yield item
                self.update()
        finally:
            self.close()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


@contextlib.contextmanager
def stage(desc: str, *, logger: logging.Logger | None = None, enabled: bool | None = None) -> Iterator[None]:
    """One long step with nothing to count: a status line on a terminal, else INFO lines
    when it starts and when it is done (with its time)."""
    log = logger or logging.getLogger("probekit")
    t0 = time.perf_counter()
    if bars_enabled(enabled):
        from tqdm.auto import tqdm

        bar = tqdm(total=None, desc=desc, bar_format="{desc} ...", leave=False, file=sys.stderr)
        try:
            yield
        finally:
            bar.close()
        return
    log.info("%s ...", desc)
    yield
    log.info("%s: done in %.1f s", desc, time.perf_counter() - t0)
