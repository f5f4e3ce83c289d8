"""Exporters: probe sets written in the formats other tools read (:mod:`probekit.export`).

Each format is declared once in :mod:`probekit.export.formats` (name, suffix, pool, options,
writer, reader) and found through the registry, built-ins and third-party formats alike:
:func:`export` here and :func:`probekit.export.readers.read` dispatch through it.

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

Ranks are 0-based everywhere, as in the canonical file.
"""
from __future__ import annotations

import csv
import json
import math
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from probekit.atomic import atomic_directory, atomic_file, check_replaceable_directory
from probekit.errors import ProbekitUsageError
from probekit.export.formats import export_format, format_names
from probekit.params import Options, validate
from probekit.pool import canonical_json
from probekit.pool.files import quiet_datasets
from probekit.probeset import ProbeSet

if TYPE_CHECKING:  # pragma: no cover
    from probekit.pool import Pool


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
