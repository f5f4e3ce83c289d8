"""Run many reference runs (families x seeds) and check them against the suite's rules.

The rules every ``default`` reference run must meet (issue 4, and docs/findings.md:
"every reference run needs a quiet plateau of at least ~3 windows before
onset and a matching control run, or its false-alarm figures are empty"):

- a family: every one of its transitions happens, with at least
  :data:`QUIET_RECORDS` records (3 windows of W = 20) before the onset record
  and the onset after :data:`QUIET_FRACTION` of the recorded span;
- a null control: none of its family's transitions happens;
- either: one run within :data:`BUDGET_SECONDS` on one thread.

``run_suite`` records (or loads) in worker processes, one torch thread each,
so ``jobs = 2`` uses both cores of a small machine. Its workers, and the
benchmark's, come from :func:`worker_pool`: they die with the process that
started them, even when it is killed with SIGKILL.
"""
from __future__ import annotations

import logging
import os
import sys
import threading
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path

import numpy as np

from probekit.eval.families.base import Transition

__all__ = ["BUDGET_SECONDS", "QUIET_FRACTION", "QUIET_RECORDS", "SuiteRow", "problems", "run_suite", "worker_pool"]

log = logging.getLogger(__name__)

QUIET_RECORDS = 60
QUIET_FRACTION = 0.10
BUDGET_SECONDS = 180.0


@dataclass(frozen=True)
class SuiteRow:
    """One reference run of the suite, as the rules and the report need it."""

    name: str
    kind: str  # "transition" or "null"
    seed: int
    preset: str
    path: str
    n_records: int
    n_pool: int
    span: int  # last recorded step
    wall_seconds: float  # the recording's own wall time (from the manifest)
    early_step: int  # the "early" checkpoint: a selector's latest view, must precede every onset
    transitions: tuple[Transition, ...]
    onset_records: tuple[int | None, ...]  # record index of each onset

    @classmethod
    def from_trajectory(cls, traj, kind: str) -> "SuiteRow":
        steps = traj.steps
        index = {int(s): i for i, s in enumerate(steps)}
        ts = tuple(traj.transitions)
        m = traj.manifest
        return cls(
            name=traj.name, kind=kind, seed=traj.seed, preset=m["preset"], path=str(traj.path),
            n_records=m["n_records"], n_pool=m["n_pool"], span=int(steps[-1]),
            wall_seconds=float(m["wall_seconds"]), early_step=int(m["checkpoints"]["early"]), transitions=ts,
            onset_records=tuple(None if t.onset_step is None else index[t.onset_step] for t in ts),
        )


def problems(
    row: SuiteRow,
    *,
    quiet_records: int = QUIET_RECORDS,
    quiet_fraction: float = QUIET_FRACTION,
    budget_seconds: float = BUDGET_SECONDS,
) -> list[str]:
    """What is wrong with one run under the suite's rules (empty: it passes)."""
    out = []
    where = f"{row.name} seed {row.seed}"
    if row.wall_seconds > budget_seconds:
        out.append(f"{where}: took {row.wall_seconds:.0f} s (budget {budget_seconds:.0f} s)")
    for t, r in zip(row.transitions, row.onset_records):
        if row.kind == "null":
            if t.happened:
                out.append(f"{where}: null control shows a transition in {t.name} (onset {t.onset_step})")
            continue
        if not t.happened:
            out.append(f"{where}: no transition in {t.name} ({t.start_value:.3g} -> {t.end_value:.3g})")
            continue
        if t.onset_step <= row.early_step:
            out.append(f"{where}: {t.name} onset at step {t.onset_step} is not after the early checkpoint ({row.early_step})")
        if r < quiet_records or t.onset_step < quiet_fraction * row.span:
            out.append(
                f"{where}: {t.name} onset at step {t.onset_step} (record {r}) leaves too little quiet plateau "
                f"(need >= {quiet_records} records and >= {quiet_fraction:.0%} of {row.span} steps)"
            )
    return out


# -- worker processes ------------------------------------------------------------
def worker_pool(workers: int) -> ProcessPoolExecutor:
    """A pool of ``workers`` spawned processes (a fresh interpreter each: torch and fork do not
    mix well) that exit within a second of this process's death, however it dies, and draw
    no progress bars (their stderr is this process's terminal). Interrupted (Ctrl-C, SIGTERM),
    it stops its workers at once instead of waiting for the work in flight."""
    return _WorkerPool(max_workers=workers, mp_context=get_context("spawn"),
                       initializer=_worker_init, initargs=(os.getpid(),))


class _WorkerPool(ProcessPoolExecutor):
    def __exit__(self, exc_type, exc, tb):
        if exc_type is not None and not issubclass(exc_type, Exception):  # KeyboardInterrupt, SIGTERM
            # ProcessPoolExecutor.__exit__ would wait for every running job (minutes of a bench)
            for process in list((self._processes or {}).values()):
                process.terminate()
            self.shutdown(wait=False, cancel_futures=True)
            return False
        return super().__exit__(exc_type, exc, tb)


def _worker_init(parent: int) -> None:
    from probekit.progress import disable_bars

    disable_bars()
    die_with_parent(parent)


def die_with_parent(parent: int, *, pdeathsig: bool = True, interval: float = 0.25) -> None:
    """Make this process exit soon after process ``parent`` (the one that owns its work) dies.

    A SIGKILLed parent runs no cleanup, so its workers would be re-parented and compute on for
    minutes. On Linux, when ``parent`` is this process's own parent (the spawn start method),
    the kernel sends SIGTERM at its death (PR_SET_PDEATHSIG). Everywhere, a daemon thread
    checks every ``interval`` seconds and calls ``os._exit`` once it is gone (the fallback
    for other systems, for a parent that is not the immediate one, e.g. under forkserver,
    and for a SIGTERM handler that does not exit). The multiprocessing resource tracker
    exits by itself when the last process holding its pipe, parent or worker, is gone.
    """
    direct = os.getppid() == parent
    if pdeathsig and direct and sys.platform.startswith("linux"):
        try:
            import ctypes
            import signal

            ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGTERM))  # 1: PR_SET_PDEATHSIG
        except (OSError, AttributeError):  # no prctl: the thread alone watches
            pass
    if _parent_gone(parent, direct):  # it died before the watch began
        os._exit(1)
    threading.Thread(target=_watch_parent, args=(parent, direct, interval), name="probekit-watch-parent",
                     daemon=True).start()


def _watch_parent(parent: int, direct: bool, interval: float) -> None:
    while not _parent_gone(parent, direct):
        time.sleep(interval)
    os._exit(1)


def _parent_gone(parent: int, direct: bool) -> bool:
    if direct:  # an orphan is re-parented (to init or a subreaper) the moment its parent dies
        return os.getppid() != parent
    try:
        with open(f"/proc/{parent}/stat", "rb") as fh:  # dead but not yet reaped: state Z
            return fh.read().rsplit(b")", 1)[1].split()[0] in (b"Z", b"X")
    except FileNotFoundError:
        return True
    except OSError:  # no /proc: ask the kernel (a zombie counts as alive here)
        try:
            os.kill(parent, 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            pass
        return False


def _one(job: tuple) -> tuple[SuiteRow, bool, float]:
    """Record (or load) one run; the row, whether it was recorded now, and the seconds taken."""
    name, preset, seed, cache_dir, rebuild, checkpoint_every = job
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    from probekit.eval.store.runner import get_reference_run, load_or_record

    t0 = time.perf_counter()
    recorded: list = []
    traj = load_or_record(name, preset, seed, cache_dir=cache_dir, rebuild=rebuild, progress=False,
                          checkpoint_every=checkpoint_every, on_record=recorded.append)
    return SuiteRow.from_trajectory(traj, get_reference_run(name).kind), bool(recorded), time.perf_counter() - t0


def run_suite(
    names: list[str],
    seeds: list[int] | dict[str, list[int]],
    *,
    preset: str = "default",
    jobs: int = 1,
    cache_dir: str | os.PathLike | None = None,
    rebuild: bool = False,
    checkpoint_every: dict[str, int] | None = None,
    progress: bool | None = None,
) -> list[SuiteRow]:
    """Record (or load) every name x seed; rows in the order of ``names`` then ``seeds``.

    ``seeds``: one list for every name, or a list per name (the bench runs more null controls
    than transitions).

    ``checkpoint_every`` maps a run name to the record stride of its kept checkpoints (see
    ``load_or_record``); runs it does not name keep only init and early. ``progress``: a bar
    (None: on a terminal only); without one, a line per run at INFO.
    """
    from probekit.progress import Progress

    every = checkpoint_every or {}
    work = [(n, preset, s, None if cache_dir is None else str(Path(cache_dir)), rebuild, int(every.get(n, 0)))
            for n in names for s in (seeds[n] if isinstance(seeds, dict) else seeds)]
    rows: dict[int, SuiteRow] = {}
    with Progress(len(work), "trajectories", unit="run", logger=log, enabled=progress,
                  line="recorded {n}/{total} trajectories") as bar:
        def done(i: int, result: tuple[SuiteRow, bool, float]) -> None:
            rows[i], recorded, seconds = result
            how = f"{seconds:.1f} s" if recorded else "cached"
            bar.update(1, f"{work[i][0]} seed {work[i][2]}, {how}")

        if jobs <= 1:
            for i, job in enumerate(work):
                done(i, _one(job))
        else:
            with worker_pool(jobs) as pool:
                futures = {pool.submit(_one, job): i for i, job in enumerate(work)}
                for fut in as_completed(futures):
                    done(futures[fut], fut.result())
    return [rows[i] for i in range(len(work))]


def onset_table(rows: list[SuiteRow]) -> str:
    """A markdown table: one line per run, onsets/midpoints per transition, records and wall time."""
    lines = [
        "| run | seed | records x pool | transitions: onset / midpoint (onset record) | wall s |",
        "|---|---|---|---|---|",
    ]
    for row in rows:
        cells = []
        for t, r in zip(row.transitions, row.onset_records):
            cells.append(f"{t.name} {t.onset_step} / {t.midpoint_step} ({r})" if t.happened else f"{t.name} none")
        lines.append(
            f"| {row.name} | {row.seed} | {row.n_records} x {row.n_pool} | {'; '.join(cells)} | {row.wall_seconds:.1f} |"
        )
    return "\n".join(lines)


def wall_summary(rows: list[SuiteRow]) -> dict[str, tuple[float, float]]:
    """name -> (median, max) recording wall seconds."""
    out: dict[str, list[float]] = {}
    for row in rows:
        out.setdefault(row.name, []).append(row.wall_seconds)
    return {k: (float(np.median(v)), float(np.max(v))) for k, v in out.items()}
