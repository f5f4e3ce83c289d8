"""A user trajectory on disk: the reference store's format (``probekit.eval.store.trajectory``), plus
``"kind": "user"`` and the ``source`` its selection checkpoint is loaded from; the staging
directory a recording keeps its per-checkpoint losses in until it is finished.

The weights are not copied: the manifest says where the selection-time checkpoint is, how to
load it and its content hash, and :func:`load_user_model` (what ``Trajectory.model`` calls for a
user trajectory) loads it from there, refusing a checkpoint that is gone or has changed.
"""
from __future__ import annotations

import json
import math
import os
import shutil
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from probekit.atomic import atomic_file
from probekit.errors import ProbekitError, ProbekitUsageError
from probekit.eval.store.manifest import _files, _jsonable, _manifest_hash, _sha256, _versions
from probekit.eval.store.trajectory import FORMAT_VERSION

__all__ = ["CheckpointGoneError", "Staging", "is_user_trajectory", "load_user_model", "write_user_trajectory"]

KIND = "user"
STAGING_SUFFIX = ".partial"
STAGING_MARKER = ".probekit-record"
_EPOCH = (1980, 1, 1, 0, 0, 0)  # zip entry times: the same bytes on every run


class CheckpointGoneError(ProbekitError):
    """The checkpoint a user trajectory names is no longer where it was, or no longer the same."""


def is_user_trajectory(path: str | os.PathLike) -> bool:
    try:
        return json.loads((Path(path) / "manifest.json").read_text()).get("kind") == KIND
    except (OSError, ValueError, AttributeError):
        return False


def save_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """``np.savez`` with fixed entry times: equal arrays give equal bytes (np.savez stamps the clock)."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as zf:
        for key in sorted(arrays):
            info = zipfile.ZipInfo(f"{key}.npy", date_time=_EPOCH)
            with zf.open(info, "w", force_zip64=True) as fh:
                np.lib.format.write_array(fh, np.asanyarray(arrays[key]), allow_pickle=False)


def write_user_trajectory(directory: Path, *, name: str, config: dict, key: str, steps: np.ndarray,
                          losses: np.ndarray, series: dict[str, np.ndarray], pool: Any, transitions: list,
                          selection: int, source: dict, wall_seconds: float) -> None:
    """Write a complete user trajectory into the (empty, temporary) ``directory``."""
    import datasets

    from probekit.pool.files import quiet_datasets

    directory = Path(directory)
    np.save(directory / "losses.npy", np.ascontiguousarray(losses, dtype=np.float32))
    np.save(directory / "steps.npy", np.asarray(steps, dtype=np.int64))
    save_npz(directory / "series.npz", {k: np.asarray(v, dtype=np.float64) for k, v in series.items()})
    ds = pool.dataset
    if pool.id_field != "probe_id":  # the store reopens the pool by its probe_id column
        if "probe_id" in ds.column_names:
            raise ProbekitUsageError(f"pool {pool.name} has a 'probe_id' column that is not its id column "
                                     f"({pool.id_field!r}); rename it or use it as --id-field.")
        ds = ds.add_column("probe_id", [str(i) for i in pool.ids])
    ds = datasets.Dataset(ds.flatten_indices().data if ds._indices is not None else ds.data,
                          fingerprint=pool.fingerprint[:16])  # a fixed fingerprint: the same bytes every run
    with quiet_datasets(bars_on_a_terminal=False):
        ds.save_to_disk(str(directory / "pool"))
    (directory / "checkpoints").mkdir()  # the weights stay where the user keeps them (manifest "source")
    manifest = {
        "format_version": FORMAT_VERSION,
        "kind": KIND,
        "name": name,
        "preset": KIND,
        "run_version": 0,
        "seed": 0,
        "config": config,
        "config_hash": key,
        "versions": _versions(),
        "n_records": int(losses.shape[0]),
        "n_pool": int(losses.shape[1]),
        "transitions": [t.to_dict() for t in transitions],
        "checkpoints": {"selection": int(selection)},
        "checkpoint_every": 0,
        "source": source,
        "info": {"recorded_by": "probekit record"},
        "wall_seconds": round(float(wall_seconds), 3),
        "files": {rel: _sha256(directory / rel) for rel in _files(directory)},
    }
    manifest = json.loads(json.dumps(manifest, default=_jsonable))  # as it will read back
    manifest["content_hash"] = _manifest_hash(manifest)
    (directory / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")


def load_user_model(trajectory: Any, checkpoint: str) -> Any:
    """The model of a user trajectory's checkpoint, loaded from where it was recorded, in eval mode."""
    from probekit.record.sources import Loader, load_model

    path, source = checkpoint_source(trajectory, checkpoint)
    return load_model(path, Loader.from_dict(source["loader"])).eval()


def checkpoint_source(trajectory: Any, checkpoint: str) -> tuple[Path, dict]:
    """(path, recorded source) of a user trajectory's checkpoint: still there and unchanged (its content hash
    is the one recorded), else a CheckpointGoneError saying which."""
    from probekit.record.sources import hash_path

    if checkpoint not in trajectory.checkpoints:
        raise KeyError(f"no checkpoint {checkpoint!r}; this trajectory has {', '.join(sorted(trajectory.checkpoints))}")
    source = trajectory.manifest.get("source", {}).get(checkpoint)
    if not source or source["loader"]["kind"] == "memory" or source.get("path") is None:
        raise CheckpointGoneError(f"{trajectory.path}: checkpoint {checkpoint!r} was recorded from a model in memory; "
                                  "there is no file to load it from.")
    path = Path(source["path"])
    if not path.exists():
        raise CheckpointGoneError(f"checkpoint {checkpoint!r} (step {source['step']}) is gone: {path} does not exist.")
    digest = hash_path(path)
    if digest != source["sha256"]:
        raise CheckpointGoneError(f"checkpoint {checkpoint!r} (step {source['step']}) at {path} has changed since it "
                                  f"was recorded (sha256 {digest[:12]}, recorded {source['sha256'][:12]}).")
    return path, source


class Staging:
    """``OUT.partial/``: one ``.npz`` per recorded checkpoint (its pool losses and measured order
    parameters), named by the checkpoint's content hash and the measurement key. A killed recording
    continues from what is there; a finished one removes it."""

    def __init__(self, out: Path, measurement_key: str) -> None:
        self.path = out.parent / (out.name + STAGING_SUFFIX)
        self.key = measurement_key

    def check(self) -> None:
        """A folder of that name that is not a probekit staging directory is the user's: refuse it."""
        if self.path.exists() and not (self.path / STAGING_MARKER).is_file():
            raise ProbekitUsageError(f"{self.path} exists and is not a probekit record staging directory; "
                                     "move it away (probekit keeps its unfinished losses there).")

    def file(self, sha: str) -> Path:
        return self.path / f"{sha[:32]}-{self.key[:16]}.npz"

    def load(self, sha: str, needed: list[str]) -> tuple[np.ndarray, dict[str, float]] | None:
        """(losses, order-parameter values) staged for a checkpoint, if all of ``needed`` are there."""
        f = self.file(sha)
        if not f.is_file():
            return None
        try:
            with np.load(f) as data:
                if not all(f"op/{k}" in data.files for k in needed):
                    return None
                return data["losses"], {k: float(data[f"op/{k}"]) for k in needed}
        except (OSError, ValueError, KeyError, zipfile.BadZipFile):
            return None  # a torn file from a crash: recomputed

    def save(self, sha: str, losses: np.ndarray, values: dict[str, float]) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        marker = self.path / STAGING_MARKER
        if not marker.exists():
            marker.write_text("probekit record: per-checkpoint losses of an unfinished recording\n")
        arrays = {"losses": np.asarray(losses, dtype=np.float32)}
        arrays.update({f"op/{k}": np.float64(v) for k, v in values.items()})
        with atomic_file(self.file(sha)) as tmp:
            save_npz(tmp, arrays)

    def remove(self) -> None:
        if (self.path / STAGING_MARKER).is_file():
            shutil.rmtree(self.path, ignore_errors=True)


def reusable(trajectory: Any, measurement_key: str, needed: dict[str, str]) -> dict[str, tuple]:
    """Content hash -> (losses row, order-parameter values) of every checkpoint of an existing user
    trajectory recorded with the same measurement key; ``needed`` maps each forward-measured order
    parameter's key to its series name (a checkpoint is reused only with all of them)."""
    config = trajectory.manifest["config"]
    if config.get("measurement_key") != measurement_key:
        return {}
    have = {p["key"]: p["name"] for p in config.get("order", {}).get("measured", [])}
    if any(k not in have for k in needed):
        return {}
    ops = trajectory.order_parameters
    out = {}
    for i, ckpt in enumerate(config["checkpoints"]):
        values = {k: float(ops[have[k]][i]) for k in needed}
        if all(math.isfinite(v) for v in values.values()):
            out[ckpt["sha256"]] = (np.array(trajectory.losses[i]), values)
    return out
