"""The benchmark grid: families x strategies x sizes x seeds, scored cell by cell, resumable.

A **cell** is one (family, design, signal): the design's nested selection on
every seed's trajectory (and on each seed's null control, so false alarms are
measured with the same probes), scored at every prefix size and on the full
pool (``probekit.eval.convergence``). Scalar baselines are cells too (their
design is the full pool's mean loss, or the stored gradient norm). Each cell
is computed in a worker process and written atomically as its own JSON file
under ``<out>/cells/``; a rerun skips the cells already there (same grid
hash), so a killed benchmark continues where it stopped, and a cell whose
computation raises is written with its error instead of failing the grid.
Results are deterministic: same grid, same seeds, same JSON.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import traceback
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from probekit.atomic import atomic_file
from probekit.eval.signals import SCALAR_SIGNALS, SignalSpec

__all__ = ["FULL", "QUICK", "BenchGrid", "run_grid"]

STRATEGIES = ("random", "cluster", "gradient")


@dataclass(frozen=True)
class BenchGrid:
    """What the benchmark scores. ``families``: transition families (their nulls are found by ``control_of``)."""

    families: tuple[str, ...]
    preset: str = "small"
    seeds: tuple[int, ...] = (0, 1, 2)
    strategies: tuple[str, ...] = STRATEGIES
    sizes: tuple[int, ...] = (8, 32)
    signals: tuple[SignalSpec, ...] = (SignalSpec("shc", window=16),)
    scalar_baselines: tuple[str, ...] = SCALAR_SIGNALS
    rule: str = "running-min"
    rule_params: tuple[tuple[str, Any], ...] = ()
    hit_fraction: float = 0.5

    def key(self) -> str:
        text = json.dumps(dataclasses.asdict(self), sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def cells(self) -> list[dict]:
        out = []
        for fam in self.families:
            for spec in self.signals:
                for strategy in self.strategies:
                    out.append({"family": fam, "design": strategy, "signal": dataclasses.asdict(spec)})
            for scalar in self.scalar_baselines:
                spec = SignalSpec(scalar, window=self.signals[0].window, stride=self.signals[0].stride)
                out.append({"family": fam, "design": "scalar", "signal": dataclasses.asdict(spec)})
        return out


FAMILIES = ("deep-linear", "grokking", "induction-heads", "late-bias", "misalignment", "rare-drift")
QUICK = BenchGrid(families=FAMILIES)
FULL = BenchGrid(
    families=FAMILIES,
    preset="default",
    seeds=(0, 1, 2, 3, 4),
    sizes=(8, 16, 32, 64, 128, 256),
    # the signal axes compared: SHC raw and detrended by first differences, and 1 / PR
    signals=(SignalSpec("shc", window=32), SignalSpec("shc", window=32, detrend="diff"), SignalSpec("inv_pr", window=32)),
)


def _cell_name(cell: dict) -> str:
    s = cell["signal"]
    tag = f"{s['statistic']}-W{s['window']}-k{s['stride']}-{s['detrend']}"
    return f"{cell['family']}__{cell['design']}__{tag}"


def _ranking(strategy: str, traj: Any, n: int) -> list:
    """The strategy's nested selection of n probes on this trajectory's pool, seeded by its seed."""
    from probekit.eval.runner import get_reference_run
    from probekit.registry import make_selector

    pool = traj.pool
    n = min(n, len(pool))
    if strategy == "random":
        sel = make_selector("random")
    elif strategy == "cluster":
        sel = make_selector("cluster", embedding_field="input")
    elif strategy == "gradient":  # gradients at the run's own initialisation checkpoint
        loss = get_reference_run(traj.name).loss
        sel = make_selector("gradient", model=traj.model("init"), input_field="input", target_field="target",
                            loss=loss, sketch_dim=64)
    else:
        raise ValueError(f"unknown design {strategy!r}; the grid knows {', '.join(STRATEGIES)} and scalar")
    return list(sel.select(pool, n, seed=traj.seed).ids)


def _score_cell(job: tuple) -> dict:
    """Compute one cell (in a worker). Never raises: an error is recorded in the cell."""
    grid, cell, cache_dir = job
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    try:
        import torch

        torch.set_num_threads(1)
        from probekit.alarms import make_rule
        from probekit.eval.convergence import FULL_POOL, convergence
        from probekit.eval.runner import load_or_record
        from probekit.registry import TRANSITIONS

        fam = cell["family"]
        null_names = [n for n in TRANSITIONS.names() if TRANSITIONS.load(n).control_of == fam]
        trajs = [load_or_record(fam, grid.preset, s, cache_dir=cache_dir, progress=False) for s in grid.seeds]
        nulls = [load_or_record(n, grid.preset, s, cache_dir=cache_dir, progress=False)
                 for n in null_names for s in grid.seeds]
        spec = SignalSpec(**cell["signal"])
        rule = make_rule(grid.rule, **dict(grid.rule_params))
        if cell["design"] == "scalar":
            rankings = {id(t): list(range(t.losses.shape[1])) for t in trajs + nulls}
            sizes = [max(grid.sizes)]  # placeholder: the scalar uses the full pool (size 0 below)
        else:
            rankings = {id(t): _ranking(cell["design"], t, max(grid.sizes)) for t in trajs + nulls}
            sizes = list(grid.sizes)
        points = convergence(trajs, nulls, lambda t: rankings[id(t)], sizes, spec=spec, rule=rule,
                             hit_fraction=grid.hit_fraction)
        if cell["design"] == "scalar":
            points = [p for p in points if p.size == FULL_POOL]
        result = []
        for p in points:
            summary = p.score.summary()
            per_episode = [
                {"run": run, "seed": seed, "transition": s.transition, "outcome": s.outcome, "lead": s.lead}
                for run, seed, s in p.score.episodes
            ]
            result.append({"size": p.size, "fidelity": p.fidelity, **summary, "episodes": per_episode})
        return {**cell, "points": result, "error": None}
    except Exception as exc:  # a failed cell is a result, not a crash of the grid
        return {**cell, "points": [], "error": f"{type(exc).__name__}: {exc}",
                "traceback": traceback.format_exc(limit=5)}


@dataclass
class GridResult:
    grid: BenchGrid
    cells: list[dict] = field(default_factory=list)
    computed: int = 0  # cells computed in this call (the rest were resumed)


def run_grid(grid: BenchGrid, out_dir: str | os.PathLike, *, jobs: int = 1,
             cache_dir: str | os.PathLike | None = None, progress: bool | None = None) -> GridResult:
    """Compute every cell not already in ``out_dir/cells`` (same grid key); return all cells in grid order."""
    from tqdm.auto import tqdm

    cells_dir = Path(out_dir) / "cells" / grid.key()
    cells_dir.mkdir(parents=True, exist_ok=True)
    todo = [c for c in grid.cells() if not (cells_dir / f"{_cell_name(c)}.json").exists()]
    cache = None if cache_dir is None else str(cache_dir)
    if todo:  # record (or verify) every trajectory first, runs in parallel; cells then only read them
        from probekit.eval.suite import run_suite
        from probekit.registry import TRANSITIONS

        families = sorted({c["family"] for c in todo})
        names = families + [n for n in TRANSITIONS.names() if TRANSITIONS.load(n).control_of in families]
        run_suite(names, list(grid.seeds), preset=grid.preset, jobs=jobs, cache_dir=cache)
    jobs_list = [(grid, c, cache) for c in todo]

    def save(result: dict) -> None:
        with atomic_file(cells_dir / f"{_cell_name(result)}.json") as tmp:
            tmp.write_text(json.dumps(result, indent=1, sort_keys=True, default=float) + "\n")

    failed: list[str] = []
    bar = tqdm(total=len(todo), desc="bench cells", unit="cell", disable=None if progress is None else not progress)
    try:
        if jobs <= 1:
            for job in jobs_list:
                save(_score_cell(job))
                bar.update(1)
        else:
            with ProcessPoolExecutor(max_workers=jobs, mp_context=get_context("spawn")) as pool:
                futures = [pool.submit(_score_cell, job) for job in jobs_list]
                for (_, cell, _), fut in zip(jobs_list, futures):
                    try:
                        save(fut.result())
                    except BrokenProcessPool as exc:  # a worker died (killed, out of memory): not saved,
                        failed.append(f"{_cell_name(cell)}: {exc}")  # so a rerun retries the cell
                    bar.update(1)
    finally:
        bar.close()
    cells = []
    for c in grid.cells():
        path = cells_dir / f"{_cell_name(c)}.json"
        cells.append(json.loads(path.read_text()) if path.exists()
                     else {**c, "points": [], "error": "worker died before finishing this cell (rerun to retry)"})
    return GridResult(grid, cells, computed=len(todo) - len(failed))
