"""Importers: probe sets read back from the formats other tools read (:mod:`probekit.export`).

Importers return probe sets with provenance strategy ``"imported"``, params
``{"format": <fmt>, "source": <file name>}`` (lm-eval adds ``"task"``), seed None, and the pool's
fingerprint when a pool is given (the probe set is then checked against it)::

    read_jsonl(path, pool=None)  read_csv(path, pool=None)
    read_npy(path, pool)         read_lm_eval(path, pool, task=None)  (in pool order)

Ranks are 0-based everywhere, as in the canonical file.
"""
from __future__ import annotations

import csv
import io
import json
import math
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from probekit.errors import ProbekitUsageError
from probekit.export.formats import export_format, format_names
from probekit.export.writers import _check_task
from probekit.params import Options, validate
from probekit.probeset import ProbeSet, Provenance

if TYPE_CHECKING:  # pragma: no cover
    from probekit.pool import Pool


def read(path: str | os.PathLike, fmt: str, pool: "Pool | None" = None, **options: Any) -> ProbeSet:
    """Read back a file written in the registered format ``fmt``, with that format's reader."""
    validate("read", {"fmt": fmt}, {"fmt": Options(*format_names())})
    spec = export_format(fmt)
    if spec.read is None:
        readable = [n for n in format_names() if export_format(n).read is not None]
        raise ProbekitUsageError(
            f"export format {fmt!r} has no reader; formats that can be read back: {', '.join(readable)}."
        )
    return spec.read(path, pool=pool, **options)


def _imported(fmt: str, path: str | os.PathLike, pool: "Pool | None", ids, indices,
              slices=None, scores=None, **extra: Any) -> ProbeSet:
    provenance = Provenance(
        strategy="imported",
        params={"format": fmt, "source": Path(path).name, **extra},
        seed=None,
        pool_fingerprint=None if pool is None else pool.fingerprint,
    )
    try:
        ps = ProbeSet(ids, indices, slices, scores, provenance=provenance)
    except ProbekitUsageError as exc:
        raise ProbekitUsageError(f"{path} does not hold a valid probe set: {exc}") from None
    if pool is not None:
        ps.validate_against(pool)
    return ps


def _open_text(path: str | os.PathLike, fmt: str) -> str:
    p = Path(path)
    if not p.is_file():
        raise ProbekitUsageError(f"{fmt} file {str(path)!r} does not exist.")
    return p.read_text(encoding="utf-8")


def _ranked(path, rows: list[tuple[int, Any]]) -> list[Any]:
    """Order rows by rank and check the ranks are exactly 0..n-1."""
    rows.sort(key=lambda r: r[0])
    ranks = [r[0] for r in rows]
    if ranks != list(range(len(rows))):
        raise ProbekitUsageError(f"{path} ranks must be 0, 1, ..., n-1 (each once). Got {ranks[:10]} instead.")
    return [r[1] for r in rows]


def read_jsonl(path: str | os.PathLike, pool: "Pool | None" = None) -> ProbeSet:
    """Read a :func:`to_jsonl` file (the ``example`` payload is ignored)."""
    rows: list[tuple[int, dict]] = []
    for lineno, line in enumerate(_open_text(path, "jsonl").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
            rows.append((int(rec["rank"]), {**rec, "index": int(rec["index"]), "id": str(rec["id"])}))
        except (ValueError, KeyError, TypeError) as exc:
            raise ProbekitUsageError(
                f"{path} line {lineno} is not a probe record with rank, id and index: {exc}"
            ) from None
    if not rows:
        raise ProbekitUsageError(f"{path} holds no probes.")
    records = _ranked(path, rows)
    has_slices = any("slice" in r for r in records)
    has_scores = any("score" in r for r in records)
    slices = [r.get("slice") for r in records] if has_slices else None
    scores = [math.nan if r.get("score") is None else r["score"] for r in records] if has_scores else None
    return _imported("jsonl", path, pool, [r["id"] for r in records],
                     np.array([r["index"] for r in records], dtype=np.int64), slices, scores)


def read_csv(path: str | os.PathLike, pool: "Pool | None" = None) -> ProbeSet:
    """Read a :func:`to_csv` file; an empty slice cell reads back as None."""
    reader = csv.DictReader(io.StringIO(_open_text(path, "csv"), newline=""))
    fields = reader.fieldnames or []
    if not {"rank", "id", "index"} <= set(fields):
        raise ProbekitUsageError(f"{path} must have the columns rank, id, index. Got {fields} instead.")
    rows = []
    for lineno, rec in enumerate(reader, start=2):
        try:
            rec["index"] = int(rec["index"])
            if "score" in rec:
                rec["score"] = float(rec["score"])
            rows.append((int(rec["rank"]), rec))
        except (ValueError, TypeError) as exc:
            raise ProbekitUsageError(f"{path} line {lineno} has a bad rank, index or score: {exc}") from None
    if not rows:
        raise ProbekitUsageError(f"{path} holds no probes.")
    records = _ranked(path, rows)
    slices = [r["slice"] or None for r in records] if "slice" in fields else None
    scores = [r["score"] for r in records] if "score" in fields else None
    return _imported("csv", path, pool, [r["id"] for r in records],
                     np.array([r["index"] for r in records], dtype=np.int64), slices, scores)


def _from_pool_indices(fmt: str, path, pool: "Pool", values: Any, **extra: Any) -> ProbeSet:
    from probekit.pool import Pool

    if not isinstance(pool, Pool):
        raise ProbekitUsageError(
            f"reading {fmt} needs the Pool the indices refer to. Got {type(pool).__name__} instead."
        )
    idx = np.asarray(values)
    if idx.ndim != 1 or idx.size == 0 or not (np.issubdtype(idx.dtype, np.integer) or idx.dtype == object):
        raise ProbekitUsageError(
            f"{path} must hold a non-empty 1-D list of integer indices. Got {idx.dtype} {idx.shape}."
        )
    if idx.dtype == object:
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in idx.tolist()):
            raise ProbekitUsageError(f"{path} must hold integer indices only.")
        idx = idx.astype(np.int64)
    out = idx[(idx < 0) | (idx >= len(pool))]
    if out.size:
        raise ProbekitUsageError(f"{path} index {int(out[0])} is outside pool {pool.name!r} (size {len(pool)}).")
    return _imported(fmt, path, pool, pool.ids[idx].tolist(), idx.astype(np.int64), **extra)


def read_npy(path: str | os.PathLike, pool: "Pool") -> ProbeSet:
    """Read an index array written by :func:`to_npy` (or numpy) against ``pool``."""
    if not Path(path).is_file():
        raise ProbekitUsageError(f"npy file {str(path)!r} does not exist.")
    try:
        values = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise ProbekitUsageError(f"{path} is not a readable .npy index array: {exc}") from None
    return _from_pool_indices("npy", path, pool, values)


def read_lm_eval(path: str | os.PathLike, pool: "Pool", task: str | None = None) -> ProbeSet:
    """Read ``{task: [indices]}``; ``task`` may be omitted when the file names one task.

    Returns a probe set **in pool order** (indices ascending), whatever the
    order of the file's list: that is the order the harness evaluates and logs
    the documents in, and an lm-eval file carries no ranking.  Compare it with
    the original probe set as a set (``sorted(ps.indices)``), or keep the
    ranking from the Parquet file.
    """
    try:
        data = json.loads(_open_text(path, "lm-eval"))
    except ValueError as exc:
        raise ProbekitUsageError(f"{path} is not JSON: {exc}") from None
    if not isinstance(data, dict) or not data:
        raise ProbekitUsageError(f"{path} must be a JSON object mapping task names to index lists.")
    if task is None:
        if len(data) != 1:
            raise ProbekitUsageError(
                f"{path} holds several tasks ({', '.join(sorted(data))}); pass task=<one of them>."
            )
        task = next(iter(data))
    _check_task(task, "read_lm_eval")
    if task not in data:
        raise ProbekitUsageError(f"task {task!r} is not in {path}; tasks: {', '.join(sorted(data))}.")
    values = data[task]
    if not isinstance(values, list):
        raise ProbekitUsageError(f"{path} task {task!r} must map to a list of indices.")
    if all(isinstance(v, int) for v in values):
        values = sorted(values)  # pool order: what the harness evaluates (bad entries: checked below)
    return _from_pool_indices("lm-eval", path, pool, np.array(values, dtype=object), task=task)
