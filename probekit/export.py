"""Exporters and importers: probe sets in the formats other tools read.

Each format is declared once in :mod:`probekit.export_formats` (name, suffix, pool, options,
writer, reader) and found through the registry, built-ins and third-party formats alike:
:func:`export` and :func:`read` dispatch through it, and :data:`FORMATS` is its list of names.

Exporters (every write is atomic: a failed export leaves no file behind)::

    to_jsonl(ps, path, pool=None)   one JSON object per probe, rank order:
                                    {"rank", "id", "index"[, "slice"][, "score"][, "example"]}
                                    "slice"/"score" appear only when the probe set has them;
                                    "example" (the pool row) only when a pool is given.
                                    JSON has no NaN/inf: non-finite scores are written as null.
    to_csv(ps, path)                columns rank,id,index[,slice][,score]; a None slice is an
                                    empty cell; scores use repr() (exact, nan/inf kept).
    to_datasets(ps, pool, path)     datasets save_to_disk directory of the probes' pool rows in
                                    rank order, plus columns probe_rank (int64) and probe_id.
    to_npy(ps, path)                int64 pool indices in rank order (np.save format).
    to_lm_eval(ps, path, task)      {"<task>": [indices]}: lm-evaluation-harness --samples. The
                                    indices are sorted (pool order), not in rank order: the
                                    harness logs each sample's doc_id as the entry of this list
                                    at the document's position among the selected ones, so only
                                    a sorted list gets every logged doc_id right. The ranking
                                    stays in the Parquet probe set.

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

from probekit.atomic import atomic_directory, atomic_file, check_replaceable_directory
from probekit.errors import ProbekitUsageError
from probekit.export_formats import export_format, format_names
from probekit.params import Options, validate
from probekit.pool import canonical_json
from probekit.pool_files import quiet_datasets
from probekit.probeset import ProbeSet, Provenance

if TYPE_CHECKING:  # pragma: no cover
    from probekit.pool import Pool


def __getattr__(name: str) -> Any:
    if name == "FORMATS":  # the registered formats, read when asked: a format registered later is in it
        return tuple(format_names())
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _check(ps: Any, owner: str) -> None:
    if not isinstance(ps, ProbeSet):
        raise ProbekitUsageError(f"{owner} needs a ProbeSet. Got {type(ps).__name__} instead.")


def _check_task(task: Any, owner: str) -> None:
    if not isinstance(task, str) or not task.strip():
        raise ProbekitUsageError(f"The 'task' parameter of {owner} must be a non-empty str. Got {task!r} instead.")


# -- exporters ------------------------------------------------------------------
def _json_safe(value: Any) -> Any:
    """NaN and +-inf become null: JSONL is strict JSON (the same rule as for scores)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def to_jsonl(ps: ProbeSet, path: str | os.PathLike, pool: "Pool | None" = None) -> None:
    """One line per probe; with ``pool``, the example row under ``"example"``."""
    _check(ps, "to_jsonl")
    examples = None
    if pool is not None:
        ps.validate_against(pool)
        examples = pool.rows(ps.indices)
    with atomic_file(path) as tmp, open(tmp, "w", encoding="utf-8", newline="\n") as fh:
        for rank, (pid, index) in enumerate(zip(ps.ids, ps.indices.tolist())):
            record: dict[str, Any] = {"rank": rank, "id": pid, "index": index}
            if ps.slices is not None:
                record["slice"] = ps.slices[rank]
            if ps.scores is not None:
                score = float(ps.scores[rank])
                record["score"] = score if math.isfinite(score) else None
            if examples is not None:
                record["example"] = _json_safe(examples[rank])
            fh.write(canonical_json(record, allow_nan=False) + "\n")


def to_csv(ps: ProbeSet, path: str | os.PathLike) -> None:
    """Columns rank,id,index, then slice and score when the probe set has them."""
    _check(ps, "to_csv")
    header = ["rank", "id", "index"]
    header += ["slice"] if ps.slices is not None else []
    header += ["score"] if ps.scores is not None else []
    with atomic_file(path) as tmp, open(tmp, "w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(header)
        for rank, (pid, index) in enumerate(zip(ps.ids, ps.indices.tolist())):
            row: list[Any] = [rank, pid, index]
            if ps.slices is not None:
                row.append("" if ps.slices[rank] is None else ps.slices[rank])
            if ps.scores is not None:
                row.append(repr(float(ps.scores[rank])))
            writer.writerow(row)


#: What :func:`to_datasets` writes, and the only kind of directory it replaces.
DATASETS_EXPORT = "probe-set datasets export"


def is_datasets_directory(path: str | os.PathLike) -> bool:
    """True for what :func:`to_datasets` writes: a ``datasets`` save_to_disk directory of one
    split with the ``probe_rank`` and ``probe_id`` columns, and nothing else.

    Only such a directory may be replaced (with ``overwrite=True``): any other
    directory, another ``datasets`` directory included, is the user's.
    """
    entries = list(Path(path).iterdir())
    names = {e.name for e in entries}
    if not {"dataset_info.json", "state.json"} <= names:
        return False
    if not all(e.is_file() and (e.name in ("dataset_info.json", "state.json") or e.suffix == ".arrow")
               for e in entries):
        return False
    try:
        features = json.loads((Path(path) / "dataset_info.json").read_text()).get("features", {})
    except (OSError, ValueError, AttributeError):
        return False
    return isinstance(features, dict) and {"probe_rank", "probe_id"} <= set(features)


def to_datasets(ps: ProbeSet, pool: "Pool", path: str | os.PathLike, overwrite: bool = False) -> None:
    """The probes' pool rows, in rank order, as a ``datasets`` save_to_disk directory.

    ``path`` must be new or empty; with ``overwrite=True`` it may also be an
    existing ``datasets`` directory (see :func:`is_datasets_directory`), which
    is replaced. Any other directory is refused: its files are the user's.
    """
    _check(ps, "to_datasets")
    if pool is None:
        raise ProbekitUsageError("to_datasets needs the pool the probe set was selected from (pool=None given).")
    ps.validate_against(pool)
    check_replaceable_directory(path, is_datasets_directory, DATASETS_EXPORT, overwrite)  # before any work
    with quiet_datasets():  # its "Flattening the indices" and "Saving" bars, off a terminal
        selected = pool.dataset.select(ps.indices.tolist(), keep_in_memory=True)  # no cache-file side effects
        drop = [c for c in ("probe_rank",) if c in selected.column_names]
        if pool.id_field != "probe_id" and "probe_id" in selected.column_names:
            drop.append("probe_id")
        if drop:
            selected = selected.remove_columns(drop)
        selected = selected.add_column("probe_rank", np.arange(len(ps), dtype=np.int64).tolist())
        if "probe_id" not in selected.column_names:
            selected = selected.add_column("probe_id", list(ps.ids))
        with atomic_directory(path, replace_if=is_datasets_directory, what=DATASETS_EXPORT,
                              overwrite=overwrite) as tmp:
            selected.save_to_disk(str(tmp))


def to_npy(ps: ProbeSet, path: str | os.PathLike) -> None:
    """The pool indices (int64, rank order) in numpy's .npy format, at exactly ``path``."""
    _check(ps, "to_npy")
    with atomic_file(path) as tmp, open(tmp, "wb") as fh:
        np.save(fh, np.ascontiguousarray(ps.indices, dtype=np.int64), allow_pickle=False)


def to_lm_eval(ps: ProbeSet, path: str | os.PathLike, task: str) -> None:
    """``{task: [indices]}``, the mapping lm-evaluation-harness takes with ``--samples``.

    The indices are written **sorted** (pool order), not in rank order.  The
    harness walks the task's documents in their own order, keeps those whose
    index is in the list, and logs the k-th one it evaluates with
    ``doc_id = list[k]``: with an unsorted list the right documents are
    evaluated but their logged ``doc_id`` values are wrong.  The ranking (and
    slices, scores) stays in the probe set's Parquet file.
    """
    _check(ps, "to_lm_eval")
    _check_task(task, "to_lm_eval")
    with atomic_file(path) as tmp, open(tmp, "w", encoding="utf-8") as fh:
        fh.write(json.dumps({task: sorted(ps.indices.tolist())}) + "\n")


def export(ps: ProbeSet, path: str | os.PathLike, fmt: str, pool: "Pool | None" = None,
           task: str | None = None, overwrite: bool = False, **options: Any) -> None:
    """Write ``ps`` to ``path`` in the registered format ``fmt`` (one of :data:`FORMATS`).

    ``pool`` is required by the formats that declare it so (``datasets``), used when given by
    ``jsonl``, and ignored by the others. Options (``task`` for ``lm-eval``) go to the formats
    that declare them; an option only other formats take is ignored, so one call serves every
    format, and a name no registered format declares is refused. ``overwrite`` is what lets a
    directory format replace an earlier export of its own; file formats replace a file
    atomically (the CLI asks for ``--overwrite`` before it gets here)."""
    validate("export", {"fmt": fmt}, {"fmt": Options(*format_names())})
    spec = export_format(fmt)
    _check(ps, "export")
    given = {k: v for k, v in {"task": task, **options}.items() if v is not None}
    chosen = spec.writer_options(given, owner="export")
    if spec.pool == "required" and pool is None:
        raise ProbekitUsageError(
            f"export to {fmt!r} needs the pool the probe set was selected from (pool=None given)."
        )
    spec.write(ps, path, pool=pool, overwrite=overwrite, **chosen)


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


# -- importers ------------------------------------------------------------------
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
