"""Run many reference runs (families x seeds) and check them against the suite's rules.

The rules every ``default`` reference run must meet (issue 4, and FINDINGS.md:
"every reference run needs a quiet plateau of at least ~3 windows before
onset and a matching control run, or its false-alarm figures are empty"):

- a family: every one of its transitions happens, with at least
  :data:`QUIET_RECORDS` records (3 windows of W = 20) before the onset record
  and the onset after :data:`QUIET_FRACTION` of the recorded span;
- a null control: none of its family's transitions happens;
- either: one run within :data:`BUDGET_SECONDS` on one thread.

``run_suite`` records (or loads) in worker processes, one torch thread each,
so ``jobs = 2`` uses both cores of a small machine.
"""
from __future__ import annotations

import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path

import numpy as np

from probekit.eval.reference import Transition

__all__ = ["BUDGET_SECONDS", "QUIET_FRACTION", "QUIET_RECORDS", "SuiteRow", "problems", "run_suite"]

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


def _one(job: tuple) -> SuiteRow:
    name, preset, seed, cache_dir, rebuild, checkpoint_every = job
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    from probekit.eval.runner import get_reference_run, load_or_record

    traj = load_or_record(name, preset, seed, cache_dir=cache_dir, rebuild=rebuild, progress=False,
                          checkpoint_every=checkpoint_every)
    return SuiteRow.from_trajectory(traj, get_reference_run(name).kind)


def run_suite(
    names: list[str],
    seeds: list[int],
    *,
    preset: str = "default",
    jobs: int = 1,
    cache_dir: str | os.PathLike | None = None,
    rebuild: bool = False,
    checkpoint_every: dict[str, int] | None = None,
) -> list[SuiteRow]:
    """Record (or load) every name x seed; rows in the order of ``names`` then ``seeds``.

    ``checkpoint_every`` maps a run name to the record stride of its kept checkpoints (see
    ``load_or_record``); runs it does not name keep only init and early.
    """
    every = checkpoint_every or {}
    work = [(n, preset, s, None if cache_dir is None else str(Path(cache_dir)), rebuild, int(every.get(n, 0)))
            for n in names for s in seeds]
    if jobs <= 1:
        return [_one(job) for job in work]
    # spawn: a fresh interpreter per worker (torch and fork do not mix well)
    with ProcessPoolExecutor(max_workers=jobs, mp_context=get_context("spawn")) as pool:
        return list(pool.map(_one, work))


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
