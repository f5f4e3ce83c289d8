"""The canonical probe-set file: one Parquet file, provenance in the schema metadata.

Columns, one row per probe in rank order::

    rank   int32    0-based position in the ranking (row r has rank r)
    id     string   probe id (the pool's id column value)
    index  int64    row position in the pool
    slice  string   slice label, null when unlabelled
    score  float64  selector score, null when the probe set has no scores

The Arrow schema metadata key ``b"probekit"`` holds canonical JSON::

    {"schema_version": 1, "content_hash": "<sha256 hex>", "provenance": {...},
     "has_slices": bool, "has_scores": bool}

``has_slices``/``has_scores`` tell "no slice labels" (``slices is None``) from
"labels that are all null".  The content hash is ``ProbeSet.content_hash`` and is
recomputed on load.  Files are written atomically with page checksums and hold
no timestamps: the same probe set always gives byte-identical files (with the
same pyarrow version).
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from probekit.atomic import atomic_file
from probekit.errors import ProbekitError, ProbekitUsageError, ProbeSetFileError
from probekit.pool import canonical_json
from probekit.probeset.core import SCHEMA_VERSION, ProbeSet, Provenance

METADATA_KEY = b"probekit"
_COLUMNS = ("rank", "id", "index", "slice", "score")


def _schema() -> Any:
    import pyarrow as pa

    return pa.schema([
        pa.field("rank", pa.int32(), nullable=False),
        pa.field("id", pa.string(), nullable=False),
        pa.field("index", pa.int64(), nullable=False),
        pa.field("slice", pa.string()),
        pa.field("score", pa.float64()),
    ])


def to_table(probeset: ProbeSet) -> Any:
    """The probe set as a ``pyarrow.Table`` with the ``probekit`` schema metadata."""
    import pyarrow as pa

    n = len(probeset)
    meta = {
        "schema_version": SCHEMA_VERSION,
        "content_hash": probeset.content_hash,
        "provenance": probeset.provenance.to_dict(),
        "has_slices": probeset.slices is not None,
        "has_scores": probeset.scores is not None,
    }
    slices = probeset.slices if probeset.slices is not None else [None] * n
    scores = (pa.array(probeset.scores, type=pa.float64()) if probeset.scores is not None
              else pa.nulls(n, type=pa.float64()))
    schema = _schema().with_metadata({METADATA_KEY: canonical_json(meta).encode("utf-8")})
    return pa.Table.from_arrays(
        [pa.array(np.arange(n, dtype=np.int32)), pa.array(list(probeset.ids), type=pa.string()),
         pa.array(probeset.indices, type=pa.int64()), pa.array(list(slices), type=pa.string()), scores],
        schema=schema,
    )


def save(probeset: ProbeSet, path: str | os.PathLike) -> None:
    """Write ``probeset`` to ``path`` atomically (a reader never sees half a file)."""
    import pyarrow.parquet as pq

    if not isinstance(probeset, ProbeSet):
        raise ProbekitUsageError(f"save needs a ProbeSet. Got {type(probeset).__name__} instead.")
    table = to_table(probeset)
    with atomic_file(path) as tmp:
        pq.write_table(table, tmp, compression="zstd", write_page_checksum=True)


def _short(exc: BaseException) -> str:
    lines = [ln.strip() for ln in str(exc).strip().splitlines() if ln.strip()]
    line = lines[0] if lines else type(exc).__name__
    return line if len(line) <= 160 else line[:157] + "..."


def load(path: str | os.PathLike) -> ProbeSet:
    """Read a probe-set file; refuse foreign, corrupt, edited or newer-schema files."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    p = Path(path)
    name = str(path)
    if not p.is_file():
        raise ProbekitUsageError(f"probe-set file {name!r} does not exist.")
    try:
        pf = pq.ParquetFile(p, page_checksum_verification=True)
        metadata = pf.metadata.metadata or {}  # the Parquet key-value copy
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise ProbeSetFileError(f"{name} is not a probe-set file: {_short(exc)}") from exc
    if METADATA_KEY not in metadata:
        raise ProbeSetFileError(
            f"{name} is a Parquet file but not a probekit probe set (no 'probekit' schema metadata)"
        )
    try:
        meta = json.loads(metadata[METADATA_KEY].decode("utf-8"))
        if not isinstance(meta, dict):
            raise ValueError("not a JSON object")
        version = meta["schema_version"]
        if not isinstance(version, int) or isinstance(version, bool):
            raise ValueError("schema_version is not an int")
    except (ValueError, KeyError, TypeError, UnicodeDecodeError) as exc:
        raise ProbeSetFileError(f"{name} has unreadable 'probekit' metadata: {_short(exc)}") from exc
    if version > SCHEMA_VERSION:
        raise ProbeSetFileError(
            f"{name} uses probe-set schema version {version}, but this probekit reads versions up to "
            f"{SCHEMA_VERSION}; upgrade probekit to read it"
        )
    if version < 1:
        raise ProbeSetFileError(f"{name} has an invalid probe-set schema version {version}")
    try:
        table = pf.read()
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise ProbeSetFileError(f"{name} is not a probe-set file: {_short(exc)}") from exc
    if tuple(table.column_names) != _COLUMNS or not table.schema.equals(_schema(), check_metadata=False):
        raise ProbeSetFileError(
            f"{name} is not a probe-set file: columns {table.column_names} do not match {list(_COLUMNS)}"
        )
    try:
        probeset = _from_table(table, meta)
    except (ProbekitError, KeyError, TypeError, ValueError) as exc:
        raise ProbeSetFileError(f"{name} is not a valid probe-set file: {_short(exc)}") from exc
    if probeset.content_hash != meta.get("content_hash"):
        raise ProbeSetFileError(f"{name} content hash mismatch: file corrupt or edited")
    return probeset


def _from_table(table: Any, meta: dict) -> ProbeSet:
    ranks = table.column("rank").to_numpy()
    if not np.array_equal(ranks, np.arange(len(ranks))):
        raise ValueError("rank column is not 0, 1, ..., n-1 in row order")
    slices = tuple(table.column("slice").to_pylist()) if meta["has_slices"] else None
    scores = None
    if meta["has_scores"]:
        score_col = table.column("score")
        if score_col.null_count:
            raise ValueError("score column has nulls")
        scores = score_col.to_numpy()
    return ProbeSet(
        tuple(table.column("id").to_pylist()),
        table.column("index").to_numpy(),
        slices,
        scores,
        provenance=Provenance.from_dict(meta["provenance"]),
    )
