"""Read per-sample loss matrices ([records, probes]) from npy, npz, parquet and csv.

Layouts accepted (what ``probekit analyze`` reads):

- ``.npy``: a 2-D numeric array, rows are records, columns are probes.
- ``.npz``: an array ``losses`` (or the only array in the file), optionally
  ``steps`` (one integer per record) and ``probe_ids`` (one name per column).
- ``.parquet`` / ``.csv``: one row per record, one numeric column per probe
  (its name is the probe id); a steps column named by ``steps_column``, or
  ``step`` when present, holds the training step of each record.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from probekit.errors import ProbekitUsageError

SUFFIXES = (".npy", ".npz", ".parquet", ".csv")


@dataclass(frozen=True)
class LossMatrix:
    losses: np.ndarray  # [records, probes] float64
    steps: np.ndarray  # [records] int64
    probe_ids: list[str]
    source: str
    steps_given: bool = True  # False: the file had no steps, so ``steps`` are the row numbers


def read_loss_matrix(path: str | Path, steps_column: str | None = None) -> LossMatrix:
    """Load a loss matrix; every problem is a one-line ProbekitUsageError naming the file."""
    p = Path(path)
    if not p.exists():
        raise ProbekitUsageError(f"loss file {str(p)!r} does not exist.")
    if p.is_dir():
        raise ProbekitUsageError(f"loss file {str(p)!r} is a directory without manifest.json; give a "
                                 f"{'/'.join(SUFFIXES)} file or a trajectory directory.")
    suffix = p.suffix.lower()
    if suffix not in SUFFIXES:
        raise ProbekitUsageError(
            f"loss file {p.name!r} has an unsupported extension {suffix or '(none)'!r}; "
            f"allowed: {', '.join(SUFFIXES)}."
        )
    if steps_column is not None and suffix in (".npy", ".npz"):
        raise ProbekitUsageError(
            f"--steps-column applies to parquet and csv files; {p.name} is {suffix} "
            "(put steps in an npz array named 'steps')."
        )
    try:
        if suffix == ".npy":
            losses, steps, ids = np.load(p, allow_pickle=False), None, None
        elif suffix == ".npz":
            losses, steps, ids = _read_npz(p)
        else:
            losses, steps, ids = _read_table(p, suffix, steps_column)
    except ProbekitUsageError:
        raise
    except Exception as exc:  # numpy/pyarrow parse errors: one line, named file
        reason = " ".join(str(exc).split())[:200]
        raise ProbekitUsageError(f"cannot read loss file {p.name!r}: {reason}") from exc
    return _check(p, losses, steps, ids)


def _read_npz(p: Path):
    with np.load(p, allow_pickle=False) as data:
        names = list(data.keys())
        if "losses" in data:
            losses = data["losses"]
        elif len(names) == 1:
            losses = data[names[0]]
        else:
            raise ProbekitUsageError(
                f"npz file {p.name!r} holds {', '.join(names)} but no array named 'losses'."
            )
        steps = data["steps"] if "steps" in data else None
        ids = [str(v) for v in data["probe_ids"]] if "probe_ids" in data else None
    return losses, steps, ids


def _read_table(p: Path, suffix: str, steps_column: str | None):
    if suffix == ".parquet":
        import pyarrow.parquet as pq

        table = pq.read_table(p)
    else:
        import pyarrow.csv as pacsv

        table = pacsv.read_csv(p)
    names = table.column_names
    if steps_column is not None and steps_column not in names:
        raise ProbekitUsageError(
            f"--steps-column {steps_column!r} is not a column of {p.name}; "
            f"columns: {', '.join(names[:8])}{', ...' if len(names) > 8 else ''}."
        )
    step_name = steps_column or ("step" if "step" in names else None)
    steps = None
    if step_name is not None:
        steps = table.column(step_name).to_numpy(zero_copy_only=False)
    probe_names = [c for c in names if c != step_name]
    cols = []
    for name in probe_names:
        col = table.column(name)
        import pyarrow as pa

        if not (pa.types.is_floating(col.type) or pa.types.is_integer(col.type)):
            raise ProbekitUsageError(
                f"column {name!r} of {p.name} is {col.type}, not numeric; every column but "
                "the steps column must hold one probe's losses."
            )
        cols.append(col.to_numpy(zero_copy_only=False).astype(np.float64))
    losses = np.stack(cols, axis=1) if cols else np.zeros((table.num_rows, 0))
    return losses, steps, probe_names


def _check(p: Path, losses, steps, ids) -> LossMatrix:
    losses = np.asarray(losses)
    if losses.ndim != 2 or losses.shape[0] == 0 or losses.shape[1] == 0:
        raise ProbekitUsageError(
            f"loss file {p.name!r} must hold a non-empty 2-D [records, probes] matrix; "
            f"got shape {losses.shape}."
        )
    if not (np.issubdtype(losses.dtype, np.floating) or np.issubdtype(losses.dtype, np.integer)):
        raise ProbekitUsageError(f"loss file {p.name!r} holds {losses.dtype} values, not numbers.")
    t, n = losses.shape
    steps_given = steps is not None
    if steps is None:
        steps = np.arange(t, dtype=np.int64)
    else:
        steps = np.asarray(steps)
        if steps.shape != (t,):
            raise ProbekitUsageError(
                f"steps in {p.name!r} must be one per record ({t}); got shape {steps.shape}."
            )
        if np.issubdtype(steps.dtype, np.floating) and np.all(np.isfinite(steps)) and np.all(
            steps == np.round(steps)
        ):
            steps = steps.astype(np.int64)
        if not np.issubdtype(steps.dtype, np.integer):
            raise ProbekitUsageError(f"steps in {p.name!r} must be integers; got {steps.dtype}.")
        if t > 1 and not np.all(np.diff(steps) > 0):
            raise ProbekitUsageError(f"steps in {p.name!r} must increase strictly from record to record.")
    if ids is None:
        ids = [str(i) for i in range(n)]
    elif len(ids) != n:
        raise ProbekitUsageError(f"{p.name!r} names {len(ids)} probes but holds {n} columns.")
    return LossMatrix(losses.astype(np.float64), steps.astype(np.int64), list(ids), str(p), steps_given)
