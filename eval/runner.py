"""Record a reference run, or reuse its cached trajectory.

:func:`load_or_record` is the one entry point the harness and the CLI use: it
computes the config hash, loads the cached trajectory when it verifies, and
otherwise records the run (one torch thread, so a run gives the same numbers
however many cores the machine has and several can run side by side) and
writes it atomically.
"""
from __future__ import annotations

import logging
import os
import time
import warnings
from pathlib import Path
from typing import Any, Callable

from probekit.atomic import atomic_directory
from probekit.errors import ProbekitUsageError, ProbekitWarning
from probekit.eval.reference import Recording, ReferenceRun
from probekit.eval.trajectory import (
    Trajectory,
    TrajectoryCorruptError,
    config_hash,
    default_cache_dir,
    write_trajectory,
)

__all__ = ["get_reference_run", "load_or_record", "record", "trajectory_path"]

log = logging.getLogger(__name__)


def get_reference_run(name: str) -> ReferenceRun:
    """An instance of the reference run registered as ``name``."""
    from probekit.registry import TRANSITIONS

    return TRANSITIONS.load(name)()


def trajectory_path(cache_dir: str | os.PathLike | None, name: str, run: ReferenceRun, config: Any) -> Path:
    root = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    return root / name / config_hash(name, run.version, config)[:16]


def _progress_bar(total: int, desc: str, enabled: bool | None) -> Any:
    from tqdm.auto import tqdm

    # disable=None: tqdm shows the bar only on a TTY (never in CI logs)
    return tqdm(total=total, desc=desc, unit="step", disable=None if enabled is None else not enabled, leave=False)


def record(run: ReferenceRun, config: Any, *, progress: bool | None = None) -> tuple[Recording, float]:
    """Train once with one torch thread; return the recording and its wall time."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    bar = _progress_bar(run.total_steps(config), f"{run.name} seed {config.seed}", progress)
    t0 = time.perf_counter()
    try:
        recording = run.record(config, bar.update)
    finally:
        bar.close()
        torch.set_num_threads(threads)
    wall = time.perf_counter() - t0
    recording.check()
    return recording, wall


def load_or_record(
    name: str,
    preset: str = "default",
    seed: int = 0,
    *,
    cache_dir: str | os.PathLike | None = None,
    rebuild: bool = False,
    progress: bool | None = None,
    on_record: Callable[[Path], None] | None = None,
    **overrides: Any,
) -> Trajectory:
    """The trajectory of reference run ``name`` (preset, seed, overrides), from the cache if valid."""
    run = get_reference_run(name)
    config = run.make_config(preset, seed, **overrides)
    path = trajectory_path(cache_dir, name, run, config)
    if path.exists() and not rebuild:
        try:
            return Trajectory(path)
        except TrajectoryCorruptError as exc:
            warnings.warn(f"rebuilding the cached trajectory: {exc}", ProbekitWarning, stacklevel=2)
    if path.exists() and not path.is_dir():
        raise ProbekitUsageError(f"cache path {path} exists and is not a directory; remove it or pick another --cache-dir.")
    recording, wall = record(run, config, progress=progress)
    transitions = run.transitions(config, recording)
    with atomic_directory(path) as tmp:
        write_trajectory(
            tmp,
            name=name,
            preset=preset,
            config=config,
            run_version=run.version,
            recording=recording,
            transitions=transitions,
            wall_seconds=wall,
        )
    log.info("recorded %s seed %d in %.1f s -> %s", name, seed, wall, path)
    if on_record is not None:
        on_record(path)
    return Trajectory(path)
