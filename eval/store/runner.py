"""Record a reference run, or reuse its cached trajectory.

:func:`load_or_record` is the one entry point the harness and the CLI use: it
computes the config hash, loads the cached trajectory when it verifies, and
otherwise records the run (one torch thread, so a run gives the same numbers
however many cores the machine has and several can run side by side) and
writes it atomically.
"""
from __future__ import annotations

import contextlib
import logging
import math
import os
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from probekit.atomic import atomic_directory
from probekit.errors import ProbekitUsageError, ProbekitWarning
from probekit.eval.families.base import Recording, ReferenceRun
from probekit.eval.store.trajectory import (
    Trajectory,
    TrajectoryCorruptError,
    config_hash,
    default_cache_dir,
    write_trajectory,
)
from probekit.progress import Progress

__all__ = ["cache_key", "get_reference_run", "load_or_record", "record", "trajectory_path"]

log = logging.getLogger(__name__)


def get_reference_run(name: str) -> ReferenceRun:
    """An instance of the reference run registered as ``name``."""
    from probekit.registry import TRANSITIONS

    return TRANSITIONS.load(name)()


def cache_key(run: ReferenceRun, config: Any) -> str:
    """The config hash a trajectory of ``run`` with ``config`` is stored under."""
    return config_hash(run.name, run.version, config, run.order_parameters(config))


def trajectory_path(cache_dir: str | os.PathLike | None, name: str, run: ReferenceRun, config: Any) -> Path:
    root = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    return root / name / cache_key(run, config)[:16]


@contextlib.contextmanager
def _exclusive(path: Path) -> Iterator[None]:
    """Hold an advisory lock on ``<path>.lock`` (POSIX), so that two processes asking
    for the same trajectory record it once: the second waits, then loads it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # Windows: no lock; concurrent recorders both write, the last rename wins
        yield
        return
    with open(path.parent / f"{path.name}.lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _cached(path: Path, key: str) -> Trajectory | None:
    """The valid trajectory at ``path``, or None (absent, or corrupt: warned, to be rebuilt)."""
    if not path.exists():
        return None
    if not path.is_dir():
        raise ProbekitUsageError(f"cache path {path} exists and is not a directory; remove it or pick another --cache-dir.")
    try:
        traj = Trajectory(path)
        if traj.manifest["config_hash"] != key:
            traj.close()
            raise TrajectoryCorruptError(f"{path}: holds config hash {traj.manifest['config_hash'][:16]}, not {key[:16]}")
        return traj
    except TrajectoryCorruptError as exc:
        warnings.warn(f"rebuilding the cached trajectory: {exc}", ProbekitWarning, stacklevel=3)
        return None


def record(run: ReferenceRun, config: Any, *, progress: bool | None = None,
           checkpoint_every: int = 0) -> tuple[Recording, float]:
    """Train once with one torch thread; return the recording and its wall time.

    ``checkpoint_every`` = k > 0 also keeps the model at every k-th record (passed to ``run.record``).

    The families seed torch's and numpy's global generators; their states are
    restored afterwards, so the caller's random numbers do not depend on
    whether a trajectory came from the cache or was recorded.
    """
    import random

    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    np_state, py_state = np.random.get_state(), random.getstate()
    # a bar on a terminal (progress=None) or when asked; else a line at INFO every 10 s of training
    bar = Progress(run.total_steps(config), f"{run.name} seed {config.seed}", unit="step", logger=log,
                   enabled=progress, every=10.0, line="{desc}: step {n}/{total}")
    t0 = time.perf_counter()
    try:
        with torch.random.fork_rng(devices=[]):
            recording = run.record(config, bar.update, checkpoint_every=int(checkpoint_every))
    finally:
        bar.close()
        torch.set_num_threads(threads)
        np.random.set_state(np_state)
        random.setstate(py_state)
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
    checkpoint_every: int = 0,
    **overrides: Any,
) -> Trajectory:
    """The trajectory of reference run ``name`` (preset, seed, overrides), from the cache if valid.

    ``checkpoint_every`` = k > 0 asks for the model at every k-th record as well (for signals
    that need weights, such as the LLC). It is not part of the cache key: the losses do not
    depend on it. A cached trajectory whose checkpoints do not cover k (its own stride h does not
    divide k) is recorded again with stride gcd(k, h), which serves both; the run is
    deterministic, so its losses must come out identical, and a warning says so if they do not.
    """
    if isinstance(checkpoint_every, bool) or not isinstance(checkpoint_every, (int, np.integer)) \
            or checkpoint_every < 0:
        raise ProbekitUsageError(
            f"checkpoint_every must be an int >= 0 (0: no per-record checkpoints). Got {checkpoint_every!r} instead."
        )
    run = get_reference_run(name)
    config = run.make_config(preset, seed, **overrides)
    key = cache_key(run, config)
    path = trajectory_path(cache_dir, name, run, config)
    previous_losses = None
    with _exclusive(path):
        if not rebuild:
            traj = _cached(path, key)
            if traj is not None:
                have = traj.checkpoint_every
                if checkpoint_every == 0 or (have > 0 and checkpoint_every % have == 0):
                    return traj
                previous_losses = traj.manifest["files"].get("losses.npy")
                traj.close()
                # keep what was kept too (the gcd serves both strides), so that two callers
                # with strides that do not divide each other do not record over each other
                checkpoint_every = math.gcd(checkpoint_every, have)
                log.info("recording %s seed %d again to keep a checkpoint every %d records", name, seed,
                         checkpoint_every)
        recording, wall = record(run, config, progress=progress, checkpoint_every=checkpoint_every)
        transitions = run.transitions(config, recording)
        # The path is CACHE/NAME/CONFIG_HASH, a directory only the store creates: an invalid
        # trajectory there (corrupt, or recorded again for its checkpoints) is replaced.
        with atomic_directory(path, replace_if=lambda _: True, what="trajectory", overwrite=True) as tmp:
            write_trajectory(
                tmp,
                name=name,
                preset=preset,
                config=config,
                run_version=run.version,
                key=key,
                recording=recording,
                transitions=transitions,
                wall_seconds=wall,
                checkpoint_every=checkpoint_every,
            )
        traj = Trajectory(path)  # inside the lock: another process may be about to replace the directory
    log.info("recorded %s seed %d in %.1f s -> %s", name, seed, wall, path)
    if previous_losses is not None and traj.manifest["files"]["losses.npy"] != previous_losses:
        warnings.warn(f"{name} seed {seed}: recorded again (for its checkpoints), its losses differ from the "
                      "cached ones: the run is not deterministic on this machine", ProbekitWarning, stacklevel=2)
    if on_record is not None:
        on_record(path)
    return traj
