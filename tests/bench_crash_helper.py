"""Job functions for the bench tests: one that kills its worker process on one design
(tests/test_bench.py), and ones that compute forever (tests/test_bench_processes.py).

They live in a module of their own because worker processes are spawned: they
import the function by its module name, so it cannot be a local or a lambda.
"""
from __future__ import annotations

import os


def score_job_or_crash(job):
    from probekit.eval.bench.run import _score_job

    if job[2] == "cluster":  # (grid, family, design, cells, cache)
        os._exit(3)  # what the out-of-memory killer leaves: no exception, no result
    return _score_job(job)


# -- for tests/test_bench_processes.py: a benchmark killed with SIGKILL while its workers compute --
def _spin(*_):
    """Say which process computes (a file named by its pid), then compute forever."""
    from pathlib import Path

    Path(os.environ["PROBEKIT_TEST_PID_DIR"], str(os.getpid())).touch()
    x = 0
    while True:
        x = (x + sum(range(10_000))) % 7


def spin_job(job):  # stands in for bench._score_job
    _spin()


def spin_record(job):  # stands in for suite._one
    _spin()


def run_until_killed(phase: str, out_dir: str) -> None:
    """Run the TINY grid on 2 workers whose jobs never end: ``phase`` "record" (the trajectory
    recordings of run_suite) or "score" (the cells). The test kills this process."""
    from bench_grids import TINY

    from probekit.eval.bench import run as bench
    from probekit.eval.store import suite

    if phase == "record":
        suite._one = spin_record
    else:
        suite.run_suite = lambda *args, **kwargs: []  # no recordings: straight to the cells
        bench._score_job = spin_job
    bench.run_grid(TINY, out_dir, jobs=2, cache_dir=out_dir, progress=False)
