"""Worker processes die with the benchmark: after kill -9 of ``probekit bench`` nothing computes on.

A SIGKILLed parent runs no cleanup; its pool workers used to be re-parented and compute for
minutes (420-530 MB each), and the multiprocessing resource tracker with them.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")

TESTS = Path(__file__).parent
GRACE = 5.0  # seconds a worker may outlive its parent (measured: well under one)


def _state(pid: int) -> bytes | None:
    try:
        return Path(f"/proc/{pid}/stat").read_bytes().rsplit(b")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return None


def _gone(pid: int) -> bool:
    """Exited: no such process, or a zombie nobody has reaped yet (it computes nothing)."""
    return _state(pid) in (None, b"Z", b"X")


def _children(pid: int) -> dict[int, str]:
    """pid -> command line of every live child of ``pid``."""
    out = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            fields = (d / "stat").read_bytes().rsplit(b")", 1)[1].split()
            if int(fields[1]) == pid and fields[0] not in (b"Z", b"X"):
                out[int(d.name)] = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
    return out


def _wait(condition, timeout: float) -> float | None:
    """Seconds until ``condition()`` held, or None if it did not within ``timeout``."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if condition():
            return time.monotonic() - t0
        time.sleep(0.02)
    return None


def _reap_leftovers(pids) -> None:
    for pid in pids:  # only processes this test started (its bench's workers), by pid
        if not _gone(pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


@pytest.mark.parametrize("phase", ["record", "score"])
def test_workers_and_resource_tracker_exit_soon_after_the_bench_is_sigkilled(phase, tmp_path):
    pid_dir = tmp_path / "pids"
    pid_dir.mkdir()
    code = (f"import sys; sys.path.insert(0, {str(TESTS)!r}); import bench_crash_helper as h; "
            f"h.run_until_killed({phase!r}, {str(tmp_path / 'out')!r})")
    with open(tmp_path / "stderr.txt", "w") as err:
        bench = subprocess.Popen([sys.executable, "-c", code], stderr=err,
                                 env={**os.environ, "PROBEKIT_TEST_PID_DIR": str(pid_dir)})
    watched: list[int] = []
    try:
        started = _wait(lambda: len(list(pid_dir.iterdir())) >= 2, 90)
        children = _children(bench.pid)
        workers = [int(p.name) for p in pid_dir.iterdir()]
        trackers = [pid for pid, cmd in children.items() if "resource_tracker" in cmd]
        watched = workers + trackers
        assert started is not None, (tmp_path / "stderr.txt").read_text()[-2000:]
        assert set(workers) <= set(children)  # spawned: the bench is their own parent
        assert trackers, children

        bench.send_signal(signal.SIGKILL)
        bench.wait()
        took = _wait(lambda: all(_gone(pid) for pid in watched), GRACE)
        alive = {pid: _state(pid) for pid in watched if not _gone(pid)}
        assert took is not None, f"still running {GRACE} s after the bench was killed: {alive}"
    finally:
        if bench.poll() is None:
            bench.kill()
            bench.wait()
        _reap_leftovers(watched)


@pytest.mark.parametrize("phase", ["record", "score"])
def test_sigterm_stops_the_bench_and_its_workers_at_once(phase, tmp_path):
    # The CLI turns SIGTERM into an exception so that cleanup runs; the pool must then stop its
    # workers, not wait for their jobs (which here never end).
    pid_dir = tmp_path / "pids"
    pid_dir.mkdir()
    code = (f"import sys; sys.path.insert(0, {str(TESTS)!r}); import bench_crash_helper as h\n"
            "from probekit.cli import Terminated, _stop_on_sigterm\n"
            "try:\n"
            f"    with _stop_on_sigterm(): h.run_until_killed({phase!r}, {str(tmp_path / 'out')!r})\n"
            "except Terminated:\n"
            "    sys.exit(143)\n")
    with open(tmp_path / "stderr.txt", "w") as err:
        bench = subprocess.Popen([sys.executable, "-c", code], stderr=err,
                                 env={**os.environ, "PROBEKIT_TEST_PID_DIR": str(pid_dir)})
    workers: list[int] = []
    try:
        assert _wait(lambda: len(list(pid_dir.iterdir())) >= 2, 90) is not None, \
            (tmp_path / "stderr.txt").read_text()[-2000:]
        workers = [int(p.name) for p in pid_dir.iterdir()]
        bench.send_signal(signal.SIGTERM)
        assert _wait(lambda: bench.poll() is not None, GRACE) is not None, "the bench waited for its jobs"
        assert bench.returncode == 143, (tmp_path / "stderr.txt").read_text()[-2000:]
        assert _wait(lambda: all(_gone(pid) for pid in workers), GRACE) is not None
    finally:
        if bench.poll() is None:
            bench.kill()
            bench.wait()
        _reap_leftovers(workers)


def _spinner(watch: str, ready: Path) -> list[str]:
    """A python process that watches ``watch`` (an expression for the pid) with the thread
    alone (no PR_SET_PDEATHSIG), says it is ready, then computes forever."""
    code = ("import os, pathlib; from probekit.eval.store.suite import die_with_parent; "
            f"die_with_parent({watch}, pdeathsig=False, interval=0.1); pathlib.Path({str(ready)!r}).touch(); "
            "x = 0\nwhile True: x = (x + sum(range(10_000))) % 7")
    return [sys.executable, "-c", code]


def test_the_watch_thread_alone_ends_a_worker_whose_parent_died(tmp_path):
    """The portable fallback: no prctl, the daemon thread sees the parent change."""
    ready = tmp_path / "ready"
    start_child = (f"import subprocess, time; p = subprocess.Popen({_spinner('os.getppid()', ready)!r}); "
                   "print(p.pid, flush=True); time.sleep(120)")
    parent = subprocess.Popen([sys.executable, "-c", start_child], stdout=subprocess.PIPE, text=True)
    child = int(parent.stdout.readline())
    try:
        assert _wait(ready.exists, 60) is not None
        parent.kill()
        parent.wait()
        assert _wait(lambda: _gone(child), GRACE) is not None
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()
        _reap_leftovers([child])


def test_the_watch_follows_a_process_that_is_not_the_immediate_parent(tmp_path):
    """Under forkserver the bench is a grandparent: the thread then watches its pid (dead or a zombie)."""
    ready = tmp_path / "ready"
    owner = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    worker = subprocess.Popen(_spinner(str(owner.pid), ready))
    try:
        assert _wait(ready.exists, 60) is not None
        time.sleep(0.3)
        assert worker.poll() is None  # its owner lives: it keeps working
        owner.kill()  # not reaped yet: a zombie, which must count as dead
        assert _wait(lambda: worker.poll() is not None, GRACE) is not None
        assert worker.returncode == 1
    finally:
        for p in (owner, worker):
            if p.poll() is None:
                p.kill()
            p.wait()
