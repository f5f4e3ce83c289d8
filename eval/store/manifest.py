"""The files of a stored trajectory: their checksums, the manifest's own hash, the versions it records.

Shared by the reference store (``trajectory``) and user trajectories (``probekit.record``)."""
from __future__ import annotations

import hashlib
import json
import platform
from pathlib import Path
from typing import Any

import numpy as np

_CHUNK = 1 << 20


def _jsonable(value: Any) -> Any:
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    if isinstance(value, (np.ndarray, tuple)):
        return list(value)
    raise TypeError(f"not JSON-serialisable: {type(value).__name__}")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _files(root: Path) -> list[str]:
    """Every file under ``root`` except the manifest, as sorted posix paths."""
    return sorted(
        p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file() and p.name != "manifest.json"
    )


def _manifest_hash(manifest: dict) -> str:
    """sha256 of the manifest's canonical JSON without its own ``content_hash``.

    The manifest holds every file's sha256, so this one hash covers the data
    and everything said about it (config, seed, transitions, checkpoints).
    """
    body = {k: v for k, v in manifest.items() if k != "content_hash"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, default=_jsonable).encode()).hexdigest()


def _versions() -> dict[str, str]:
    import numpy
    import torch

    from probekit import __version__

    return {
        "probekit": __version__,
        "python": platform.python_version(),
        "numpy": numpy.__version__,
        "torch": torch.__version__,
    }
