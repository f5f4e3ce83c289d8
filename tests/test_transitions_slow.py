"""The reference suite at full size: every default run, seeds 0-4 (slow: ~15-20 minutes on 2 cores).

Run with ``python -m pytest -m slow tests/test_transitions_slow.py``. It records
into a fresh directory (nothing cached is trusted), two runs at a time, and
checks every run against the suite's rules (``probekit.eval.store.suite.problems``):
each family's transitions happen with >= 60 records of quiet plateau before
onset, each null control shows none, each run within its 3-minute budget.
``benchmarks/bench_transitions.py`` runs the same suite and prints the table.
"""
from __future__ import annotations

import pytest

from probekit.eval.store.suite import problems, run_suite
from probekit.registry import BUILTIN_TRANSITIONS


@pytest.mark.slow
def test_every_default_reference_run_meets_the_suite_rules_on_seeds_0_to_4(tmp_path):
    rows = run_suite(sorted(BUILTIN_TRANSITIONS), [0, 1, 2, 3, 4], preset="default", jobs=2, cache_dir=tmp_path)
    assert len(rows) == 5 * len(BUILTIN_TRANSITIONS)
    found = [p for row in rows for p in problems(row)]
    assert not found, "\n".join(found)
