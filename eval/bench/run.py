"""Computing the benchmark grid: cell by cell, in worker processes, resumable.

Each cell is computed in a worker process and written atomically as its own JSON file
under ``<out>/cells/`` (``probekit.eval.bench.cells``: the cell type and its JSON), beside each
design's rankings; a rerun skips the cells already finished (same grid
hash) and computes failed ones again, so a killed benchmark continues where it
stopped. A cell whose computation raises, or whose worker process dies (a
crash, the out-of-memory killer), is written with its error instead of failing
the grid. Results are deterministic: same grid, same seeds, same JSON.
"""
from __future__ import annotations

import json
import logging
import os
import traceback
from concurrent.futures import as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from probekit.eval.bench.cells import Cell, Rankings, cell_key, finished, load_cell, save_cell
from probekit.eval.bench.grid import BenchGrid, RuleSpec
from probekit.eval.scoring.signals import SignalSpec

__all__ = ["GridResult", "run_grid"]

log = logging.getLogger(__name__)


def _cell_name(cell: dict) -> str:
    s = cell["signal"]
    tag = f"{s['statistic']}-W{s['window']}-k{s['stride']}-{s['detrend']}"
    extra = f"__llc-{cell['llc']['key']}" if "llc" in cell else ""  # a peer cell names its SGLD settings
    return f"{cell['family']}__{cell['design']}__{tag}__{RuleSpec.from_dict(cell['rule']).tag}{extra}"


def _point_json(p: Any) -> dict:
    return {"size": p.size, "fidelity": p.fidelity, **p.score.summary(), "episodes": p.score.episode_rows()}


def _score_job(job: tuple) -> list[Any]:
    """Compute the cells of one (family, design) in a worker: the design's rankings once (returned
    too, as :class:`Rankings`), then every signal once, scored under every rule. Never raises: an
    error is recorded in the cells it hit."""
    grid, family, label, cells, cache_dir = job
    os.environ.setdefault("OMP_NUM_THREADS", "1")

    def failed(cell: dict, exc: Exception) -> Cell:  # a failed cell is a result, not a crash of the grid
        return Cell.failed(cell_key(cell), f"{type(exc).__name__}: {exc}", traceback.format_exc(limit=5))

    out: list[Any] = []
    try:
        import torch

        torch.set_num_threads(1)
        trajs, nulls = grid.open_runs(family, cache_dir)
        pilot = grid.pilot_for(family)  # records a design saw at selection time: no cell scores them
        if label == "scalar":
            rankings, sizes = {}, []  # the scalar baselines watch the full pool
        else:
            design = grid.design(label, family)
            rankings = {id(t): design.ranking(_run_of(grid, family, t), t, max(grid.sizes)) for t in trajs + nulls}
            sizes = list(grid.sizes)
            out.append(Rankings(family, label, {Rankings.run_key(t.name, t.seed): rankings[id(t)]
                                                for t in trajs + nulls}))
    except Exception as exc:
        return [failed(c, exc) for c in cells]
    from probekit.eval.scoring.convergence import convergence

    by_signal: dict[str, list[dict]] = {}
    for c in cells:
        by_signal.setdefault(json.dumps(c["signal"], sort_keys=True), []).append(c)
    for group in by_signal.values():
        try:
            rules = [RuleSpec.from_dict(c["rule"]).make() for c in group]
            points = convergence(trajs, nulls, lambda t: rankings[id(t)], sizes, spec=SignalSpec(**group[0]["signal"]),
                                 rules=rules, hit_fraction=grid.hit_fraction, pilot=pilot)
            per_rule = len(points) // len(group)  # the points come rule by rule
            for k, c in enumerate(group):
                scored = [_point_json(p) for p in points[k * per_rule:(k + 1) * per_rule]]
                out.append(Cell.from_json({**cell_key(c), "points": scored, "error": None}))
        except Exception as exc:
            out.extend(failed(c, exc) for c in group)
    for t in trajs + nulls:
        t.close()
    return out


@dataclass
class GridResult:
    grid: BenchGrid
    cells: list[Cell] = field(default_factory=list)
    computed: int = 0  # cells computed in this call (the rest were resumed)
    rankings: dict[tuple[str, str], Rankings] = field(default_factory=dict)  # (family, design) -> its selections
    pools: dict[str, dict] = field(default_factory=dict)  # family -> pool size and its concern slices' sizes

    def ranking(self, family: str, design: str, run: str, seed: int) -> list[str] | None:
        found = self.rankings.get((family, design))
        return None if found is None else found.of(run, seed)


def run_grid(grid: BenchGrid, out_dir: str | os.PathLike, *, jobs: int = 1,
             cache_dir: str | os.PathLike | None = None, progress: bool | None = None) -> GridResult:
    """Compute every cell not already in ``out_dir/cells`` (same grid key); return all cells in grid order.

    ``progress``: bars for the recordings and the cells (None: on a terminal only); without
    them, a line per trajectory and per finished job at INFO (``probekit -v``)."""
    from probekit.progress import Progress

    grid.check()
    grid = grid.with_families()
    cells_dir = Path(out_dir) / "cells" / grid.key()
    todo = [c for c in grid.cells() if not finished(cells_dir / f"{_cell_name(c)}.json")]
    peer_families = sorted({c["family"] for c in todo if c["design"] == "peer"})
    if peer_families:  # before any work: a missing extra is a one-line error, not failed cells
        from probekit.eval.peers.llc import require_devinterp

        require_devinterp()
    cells_dir.mkdir(parents=True, exist_ok=True)
    log.info("bench grid %s: %d cells to compute, %d finished before", grid.key(), len(todo),
             len(grid.cells()) - len(todo))
    cache = None if cache_dir is None else str(cache_dir)
    for user in grid.trajectories:  # verified before any work: a damaged trajectory is one line, not failed cells
        for path in (user.path, *user.nulls):
            _verify(path)
    if todo:  # record (or verify) every trajectory first, runs in parallel; cells then only read them
        from probekit.eval.store.suite import run_suite
        from probekit.registry import TRANSITIONS

        from probekit.eval.bench.user_runs import user_family

        families = sorted({c["family"] for c in todo if user_family(grid, c["family"]) is None})  # the user's: recorded
        names = families + [n for n in TRANSITIONS.names() if TRANSITIONS.load(n).control_of in families]
        every = {}
        if peer_families:  # the LLC needs the weights: keep checkpoints every k records
            from probekit.eval.peers.scoring import checkpoint_every, family_of

            every = {n: checkpoint_every(n, grid.preset) for n in names if family_of(n) in peer_families}
        seeds = {n: list(grid.seeds if n in families else grid.control_seeds) for n in names}
        run_suite(names, seeds, preset=grid.preset, jobs=jobs, cache_dir=cache, checkpoint_every=every,
                  progress=progress)
        if peer_families:
            _llc_series(grid, [n for n in names if n in every], jobs, cache, progress)
    groups: dict[tuple[str, str], list[dict]] = {}  # one job per (family, design): its rankings are computed once
    for c in todo:
        groups.setdefault((c["family"], c["design"]), []).append(c)
    jobs_list = [(grid, fam, design, group, cache) for (fam, design), group in groups.items()]

    def save(result: Any) -> None:
        if isinstance(result, Rankings):
            result.save(cells_dir / _rankings_name(result.family, result.design))
            return
        cell = result if isinstance(result, Cell) else Cell.from_json(result)
        save_cell(cell, cells_dir / f"{_cell_name(cell.key())}.json")

    bar = Progress(len(todo), "bench cells", unit="cell", logger=log, enabled=progress,
                   line="scored {n}/{total} cells")
    try:
        if jobs <= 1:
            for job in jobs_list:
                for result in _job_fn(job)(job):
                    save(result)
                bar.update(len(job[3]), f"{job[1]} {job[2]}")
        else:
            broken = _run_pool(jobs_list, jobs, save, bar)
            # A worker that dies (a crash, the OOM killer) breaks the whole pool, so every job still in
            # flight fails with it. Rerun those one at a time, each in a pool of its own: the one
            # that kills its worker alone is the culprit, and its cells record the crash.
            for job in broken:
                for lost in _run_pool([job], 1, save, bar):
                    for c in lost[3]:
                        save(Cell.failed(cell_key(c), "the worker process died while computing this cell "
                                                      "(a crash or the out-of-memory killer)"))
                    bar.update(len(lost[3]), f"{lost[1]} {lost[2]}: its worker died")
    finally:
        bar.close()
    cells = [load_cell(cells_dir / f"{_cell_name(c)}.json") for c in grid.cells()]
    rankings = {}
    for family in grid.families:
        for design in grid.designs_for(family):
            found = Rankings.load(cells_dir / _rankings_name(family, design.label))
            if found is not None:
                rankings[(family, design.label)] = found
    return GridResult(grid, cells, computed=len(todo), rankings=rankings,
                      pools={fam: pool_prevalence(grid, fam, cache) for fam in grid.families})


def _run_of(grid: BenchGrid, family: str, traj: Any) -> Any:
    """What a trajectory's designs read of its run: its own reference run (a null control's differs
    from its family's), or, on a user trajectory and its nulls, the user family's adapter."""
    from probekit.eval.bench.user_runs import family_class, user_family
    from probekit.eval.store.runner import get_reference_run

    return family_class(grid, family)() if user_family(grid, family) is not None else get_reference_run(traj.name)


def _verify(path: str) -> None:
    from probekit.errors import ProbekitUsageError
    from probekit.eval.store.trajectory import Trajectory, TrajectoryCorruptError

    try:
        Trajectory(path).close()
    except TrajectoryCorruptError as exc:
        raise ProbekitUsageError(f"trajectory {path} fails verification: {exc}") from None


def first_run(grid: BenchGrid, family: str, cache_dir: Any) -> Any:
    """The family's first trajectory (seed 0 of a reference family; a user family's own run)."""
    from probekit.eval.bench.user_runs import user_family
    from probekit.eval.store.runner import load_or_record
    from probekit.eval.store.trajectory import Trajectory

    user = user_family(grid, family)
    if user is not None:
        return Trajectory(user.path)
    return load_or_record(family, grid.preset, grid.seeds[0] if grid.seeds else 0, cache_dir=cache_dir, progress=False)


def pool_prevalence(grid: BenchGrid, family: str, cache_dir: str | None) -> dict:
    """What a family's candidate pool holds (its first run's): its size, and how many examples each
    declared concern's slice covers, so a reader sees how targeted "random" probes already are."""
    from probekit.errors import ProbekitError
    from probekit.eval.bench.user_runs import family_class
    from probekit.selection.slices.parse import parse_slices
    from probekit.selection.slices.rows import member_rows

    try:
        traj = first_run(grid, family, cache_dir)
    except ProbekitError:
        return {}
    try:
        pool = traj.pool
        concerns = {}
        for name, specs in family_class(grid, family).concerns.items():
            rows: set[int] = set()
            try:
                for spec in parse_slices(specs):
                    if spec.kind in ("where", "ids"):  # membership slices; a bias or rare slice has no fixed rows
                        rows |= set(member_rows(pool, spec).tolist())
            except ProbekitError:
                continue
            if rows:
                concerns[name] = len(rows)
        return {"size": len(pool), "concerns": concerns}
    finally:
        traj.close()


def _rankings_name(family: str, design: str) -> str:
    return f"rankings/{family}__{design}.json"  # beside the cells, not among them


def _llc_series(grid: BenchGrid, names: list[str], jobs: int, cache: str | None, progress: bool | None) -> None:
    """Estimate (or load) the LLC series of every run the peer cells need, runs in parallel.

    A run that fails here fails again, with its error, in the peer cells that need it."""
    from probekit.eval.peers.scoring import llc_job
    from probekit.eval.store.suite import worker_pool
    from probekit.progress import Progress

    from probekit.registry import TRANSITIONS

    work = [(n, grid.preset, s, cache) for n in names
            for s in (grid.seeds if TRANSITIONS.load(n).kind == "transition" else grid.control_seeds)]
    bar = Progress(len(work), "LLC series", unit="run", logger=log, enabled=progress,
                   line="estimated {n}/{total} LLC series")
    try:
        if jobs <= 1:
            for job in work:
                llc_job(job)
                bar.update(1, f"{job[0]} seed {job[2]}")
        else:
            try:
                with worker_pool(jobs) as pool:
                    for job, _ in zip(work, pool.map(llc_job, work)):
                        bar.update(1, f"{job[0]} seed {job[2]}")
            except BrokenProcessPool:  # a worker died: the peer jobs compute what is missing, or record why not
                pass
    finally:
        bar.close()


def _peer_job(job: tuple) -> list[dict]:
    from probekit.eval.peers.scoring import peer_job

    grid, family, _, cells, cache_dir = job
    return peer_job((grid, family, cells, cache_dir))


def _job_fn(job: tuple) -> Any:
    """What computes a job: the peer cells of a family, or the cells of one (family, design).
    (Looked up when the job is submitted, so a test can swap ``_score_job``.)"""
    return _peer_job if job[2] == "peer" else _score_job


def _run_pool(jobs_list: list, workers: int, save: Any, bar: Any) -> list:
    """Run jobs in spawned worker processes (``worker_pool``: they die with this process), saving
    each job's cells as it finishes; return the jobs lost to a broken pool, in submission order."""
    from probekit.eval.store.suite import worker_pool

    lost = []
    with worker_pool(workers) as pool:
        futures = {pool.submit(_job_fn(job), job): k for k, job in enumerate(jobs_list)}
        for fut in as_completed(futures):
            job = jobs_list[futures[fut]]
            try:
                for result in fut.result():
                    save(result)
                bar.update(len(job[3]), f"{job[1]} {job[2]}")
            except BrokenProcessPool:
                lost.append(futures[fut])
    return [jobs_list[k] for k in sorted(lost)]
