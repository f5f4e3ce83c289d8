"""A job function for tests/test_bench.py that kills its worker process on one design.

It lives in a module of its own because worker processes are spawned: they
import the function by its module name, so it cannot be a local or a lambda.
"""
from __future__ import annotations

import os


def score_job_or_crash(job):
    from probekit.eval.bench import _score_job

    if job[2] == "cluster":  # (grid, family, design, cells, cache)
        os._exit(3)  # what the out-of-memory killer leaves: no exception, no result
    return _score_job(job)
