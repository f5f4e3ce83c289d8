"""The trajectory store: a reference run written once, read many times.

On disk a trajectory is one directory (written atomically: a temporary sibling
renamed into place, so a reader never sees half of one)::

    manifest.json         name, preset, full config, seed, versions, transitions,
                          record layout, sha256 of every file and a content hash
    losses.npy            [records, pool] float32, memory-mapped on load
    steps.npy             [records] int64
    series.npz            order parameters ("op/<name>") and baselines ("baseline/<name>")
    pool/                 the candidate pool, a `datasets` save_to_disk directory
    checkpoints/<name>.pt torch state_dicts at the selection times (init, early), and
                          with ``checkpoint_every = k`` at every k-th record (record-<index>)

The cache keys a trajectory by the hash of (run name, run version, format
version, full config with seed): ``<cache_dir>/<name>/<hash[:16]>``. Loading
verifies every file's sha256 against the manifest; :func:`load_or_record`
rebuilds a trajectory that fails verification (with a warning) and reuses one
that passes.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np

from probekit.errors import ProbekitError
from probekit.eval.families.base import Recording, Transition
from probekit.eval.store.manifest import _files, _jsonable, _manifest_hash, _sha256, _versions

__all__ = [
    "FORMAT_VERSION",
    "Trajectory",
    "TrajectoryCorruptError",
    "config_hash",
    "default_cache_dir",
    "write_trajectory",
]

FORMAT_VERSION = 1


class TrajectoryCorruptError(ProbekitError):
    """A stored trajectory is missing a file or fails its checksums."""


def default_cache_dir() -> Path:
    """``$PROBEKIT_CACHE_DIR``, else the user cache dir (XDG) + ``probekit/trajectories``."""
    env = os.environ.get("PROBEKIT_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    if sys.platform == "darwin":
        base = Path.home() / "Library" / "Caches"
    elif os.name == "nt":
        base = Path(os.environ.get("LOCALAPPDATA", Path.home() / "AppData" / "Local"))
    else:
        base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "probekit" / "trajectories"


def config_hash(name: str, run_version: int, config: Any, order_parameters: Any = ()) -> str:
    """sha256 of the canonical JSON of everything that determines the stored trajectory.

    That is the run's name and version, the full config (seed included), and
    the onset rule: the transitions are computed once and stored, so a change
    to an OrderParameter spec or to the 10% / 50% fractions is a new key.
    """
    from probekit.eval.families.base import MIDPOINT_FRACTION, ONSET_FRACTION

    payload = {
        "format": FORMAT_VERSION,
        "run": name,
        "run_version": int(run_version),
        "config": dataclasses.asdict(config) if dataclasses.is_dataclass(config) else config,
        "onset_rule": {
            "fractions": [ONSET_FRACTION, MIDPOINT_FRACTION],
            "order_parameters": [dataclasses.asdict(op) for op in order_parameters],
        },
    }
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=_jsonable)
    return hashlib.sha256(text.encode()).hexdigest()


_REQUIRED = {
    "name": str, "preset": str, "run_version": int, "seed": int, "config": dict, "config_hash": str,
    "versions": dict, "n_records": int, "n_pool": int, "transitions": list, "checkpoints": dict,
    "info": dict, "wall_seconds": (int, float), "files": dict, "content_hash": str,
}


def write_trajectory(
    directory: Path,
    *,
    name: str,
    preset: str,
    config: Any,
    run_version: int,
    key: str,
    recording: Recording,
    transitions: list[Transition],
    wall_seconds: float,
    checkpoint_every: int = 0,
) -> None:
    """Write a complete trajectory into the (empty, temporary) ``directory``."""
    import datasets
    import torch

    recording.check()
    directory = Path(directory)
    np.save(directory / "losses.npy", np.ascontiguousarray(recording.losses, dtype=np.float32))
    np.save(directory / "steps.npy", np.asarray(recording.steps, dtype=np.int64))
    series = {f"op/{k}": np.asarray(v, dtype=np.float64) for k, v in recording.order_parameters.items()}
    series.update({f"baseline/{k}": np.asarray(v, dtype=np.float64) for k, v in recording.baselines.items()})
    np.savez(directory / "series.npz", **series)
    from probekit.pool.files import quiet_datasets

    with quiet_datasets(bars_on_a_terminal=False):  # its "Saving the dataset" bar: noise for a small pool
        datasets.Dataset.from_dict(recording.pool).save_to_disk(str(directory / "pool"))
    (directory / "checkpoints").mkdir()
    checkpoints = {}
    for ckpt, (step, state) in recording.checkpoints.items():
        torch.save({k: v.detach().cpu().clone() for k, v in state.items()}, directory / "checkpoints" / f"{ckpt}.pt")
        checkpoints[ckpt] = int(step)
    files = {rel: _sha256(directory / rel) for rel in _files(directory)}
    manifest = {
        "format_version": FORMAT_VERSION,
        "name": name,
        "preset": preset,
        "run_version": int(run_version),
        "seed": int(config.seed),
        "config": dataclasses.asdict(config),
        "config_hash": key,
        "versions": _versions(),
        "n_records": int(recording.losses.shape[0]),
        "n_pool": int(recording.losses.shape[1]),
        "transitions": [t.to_dict() for t in transitions],
        "checkpoints": checkpoints,
        "checkpoint_every": int(checkpoint_every),
        "info": recording.info,
        "wall_seconds": round(float(wall_seconds), 3),
        "files": files,
    }
    manifest = json.loads(json.dumps(manifest, default=_jsonable))  # as it will read back
    manifest["content_hash"] = _manifest_hash(manifest)
    (directory / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")


class Trajectory:
    """A stored reference run: losses memory-mapped, everything else small.

    ``Trajectory(path)`` verifies the directory (``verify=True``: the
    manifest's own hash, then every file's sha256 against the manifest) and
    raises :class:`TrajectoryCorruptError` when anything is missing or
    altered. The losses and the pool are memory-mapped: ``close()`` (or a
    ``with`` block) releases them, which matters where an open map pins the
    directory (Windows) before it is rebuilt.
    """

    def __init__(self, path: str | os.PathLike, *, verify: bool = True) -> None:
        self.path = Path(path)
        manifest_path = self.path / "manifest.json"
        try:
            self.manifest: dict = json.loads(manifest_path.read_text())
        except (OSError, ValueError) as exc:
            raise TrajectoryCorruptError(f"{manifest_path}: unreadable manifest ({exc})") from exc
        if not isinstance(self.manifest, dict):
            raise TrajectoryCorruptError(f"{manifest_path}: the manifest is not a JSON object")
        if self.manifest.get("format_version") != FORMAT_VERSION:
            raise TrajectoryCorruptError(
                f"{self.path}: format version {self.manifest.get('format_version')!r}, this probekit reads {FORMAT_VERSION}"
            )
        for key, kind in _REQUIRED.items():
            if not isinstance(self.manifest.get(key), kind) or isinstance(self.manifest.get(key), bool):
                raise TrajectoryCorruptError(f"{manifest_path}: missing or malformed {key!r}")
        if verify:
            self.verify()
        self._losses: np.ndarray | None = None
        self._series: dict[str, np.ndarray] | None = None
        self._pool = None

    def close(self) -> None:
        """Release the memory maps (losses, pool); the object reopens them on next use."""
        if self._losses is not None:
            mm = getattr(self._losses, "_mmap", None)
            self._losses = None
            if mm is not None:
                mm.close()
        self._pool = None
        self._series = None

    def __enter__(self) -> "Trajectory":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def verify(self) -> None:
        """Check the manifest's hash, then every file's sha256; raise if anything is missing, extra or altered."""
        if _manifest_hash(self.manifest) != self.manifest["content_hash"]:
            raise TrajectoryCorruptError(f"{self.path}: the manifest fails its content hash (edited?)")
        expected = self.manifest["files"]
        found = _files(self.path) if self.path.is_dir() else []
        if sorted(expected) != found:
            missing = sorted(set(expected) - set(found))
            extra = sorted(set(found) - set(expected))
            raise TrajectoryCorruptError(f"{self.path}: missing files {missing}, unexpected files {extra}")
        for rel, digest in expected.items():
            if _sha256(self.path / rel) != digest:
                raise TrajectoryCorruptError(f"{self.path}: {rel} fails its sha256 check")

    def __repr__(self) -> str:
        m = self.manifest
        return (
            f"Trajectory({m['name']!r}, preset={m['preset']!r}, seed={m['seed']}, "
            f"records={m['n_records']}, pool={m['n_pool']}, path='{self.path}')"
        )

    # -- identity -------------------------------------------------------------
    @property
    def name(self) -> str:
        return self.manifest["name"]

    @property
    def seed(self) -> int:
        return self.manifest["seed"]

    @property
    def config(self) -> dict:
        return dict(self.manifest["config"])

    @property
    def transitions(self) -> list[Transition]:
        return [Transition.from_dict(t) for t in self.manifest["transitions"]]

    # -- arrays ---------------------------------------------------------------
    @property
    def losses(self) -> np.ndarray:
        """[records, pool] float32, memory-mapped read-only."""
        if self._losses is None:
            self._losses = np.load(self.path / "losses.npy", mmap_mode="r")
        return self._losses

    @property
    def steps(self) -> np.ndarray:
        return np.load(self.path / "steps.npy")

    def _load_series(self) -> dict[str, np.ndarray]:
        if self._series is None:
            with np.load(self.path / "series.npz") as data:
                self._series = {k: data[k] for k in data.files}
        return self._series

    @property
    def order_parameters(self) -> dict[str, np.ndarray]:
        return {k[3:]: v for k, v in self._load_series().items() if k.startswith("op/")}

    @property
    def baselines(self) -> dict[str, np.ndarray]:
        return {k[9:]: v for k, v in self._load_series().items() if k.startswith("baseline/")}

    @property
    def pool(self):
        """The candidate pool (``probekit.Pool`` over the stored ``datasets`` directory)."""
        if self._pool is None:
            from probekit.pool import Pool

            self._pool = Pool.from_file(self.path / "pool")
        return self._pool

    def probe_losses(self, probes: Any) -> np.ndarray:
        """[records, n] losses of a probe set (a ProbeSet, probe ids, or pool indices), in its order."""
        from probekit.probeset import ProbeSet

        if isinstance(probes, ProbeSet):
            probes = list(probes.ids)
        items = list(probes) if not isinstance(probes, np.ndarray) else probes
        if len(items) and isinstance(items[0], str):
            idx = self.pool.index_of(items)
        else:
            raw = np.asarray(items)
            if raw.size and (raw.dtype == bool or not np.issubdtype(raw.dtype, np.integer)):
                raise TypeError(
                    f"probes must be a ProbeSet, probe ids (str) or integer pool indices; got {raw.dtype} values "
                    "(for a boolean mask pass np.flatnonzero(mask))"
                )
            idx = raw.astype(np.int64)
            if idx.size and (idx.min() < 0 or idx.max() >= self.losses.shape[1]):
                raise IndexError(f"pool indices must be in [0, {self.losses.shape[1]}); got {idx.min()}..{idx.max()}")
        return np.asarray(self.losses[:, idx])

    # -- checkpoints ----------------------------------------------------------
    @property
    def checkpoints(self) -> dict[str, int]:
        """Checkpoint name -> training step."""
        return dict(self.manifest["checkpoints"])

    @property
    def checkpoint_every(self) -> int:
        """k: a checkpoint is kept at every k-th record (0: only init and early; older stores lack the key)."""
        return int(self.manifest.get("checkpoint_every", 0))

    def record_checkpoints(self) -> dict[int, str]:
        """Record index -> checkpoint name, for the checkpoints kept at records (``checkpoint_every``)."""
        from probekit.eval.families.base import record_checkpoint_name

        k = self.checkpoint_every
        if k <= 0:
            return {}
        names = set(self.checkpoints)
        return {r: record_checkpoint_name(r) for r in range(0, self.manifest["n_records"], k)
                if record_checkpoint_name(r) in names}

    def state_dict(self, checkpoint: str) -> dict:
        import torch

        if self.manifest.get("kind") == "user":  # weights stay where the user keeps them (probekit.record)
            return self.model(checkpoint).state_dict()
        if checkpoint not in self.checkpoints:
            raise KeyError(f"no checkpoint {checkpoint!r}; this trajectory has {', '.join(sorted(self.checkpoints))}")
        return torch.load(self.path / "checkpoints" / f"{checkpoint}.pt", weights_only=True)

    def reference_run(self):
        """The registered ReferenceRun class that recorded this trajectory."""
        from probekit.registry import TRANSITIONS

        if self.manifest.get("kind") == "user":
            raise ProbekitError(f"{self.path} is a user trajectory (probekit record): it has no reference run; "
                                "its model is Trajectory.model('selection').")
        return TRANSITIONS.load(self.name)

    def model(self, checkpoint: str):
        """The run's torch module with the checkpoint's weights, in ``eval()`` mode."""
        if self.manifest.get("kind") == "user":  # loaded from its recorded source, hash checked
            from probekit.record.store import load_user_model
            return load_user_model(self, checkpoint)
        run_cls = self.reference_run()
        fields = {f.name for f in dataclasses.fields(run_cls.config_class)}
        config = run_cls.config_class(**{k: _tuple(v) for k, v in self.config.items() if k in fields})
        module = run_cls().build_model(config)
        module.load_state_dict(self.state_dict(checkpoint))
        return module.eval()


def _tuple(value: Any) -> Any:
    """JSON turned config tuples into lists; frozen configs want them back."""
    return tuple(_tuple(v) for v in value) if isinstance(value, list) else value
