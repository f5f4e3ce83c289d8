"""Finding a slice's examples in a pool: predicates, id lists and query sets.

The parsing side is :mod:`probekit.selection.slices.parse`; this module answers, for one
parsed :class:`~probekit.selection.slices.spec.SliceSpec`, which pool rows belong to it.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from probekit.errors import ProbekitUsageError

if TYPE_CHECKING:
    from probekit.pool import Pool

from probekit.selection.slices.spec import Clause, SliceSpec, _fmt


# -- matching against a pool -----------------------------------------------------------
def need_column(pool: "Pool", column: str, spec: SliceSpec) -> None:
    if column not in pool.columns:
        raise ProbekitUsageError(f"slice {spec.name!r} uses column {column!r}, which the pool does not have; "
                                 f"columns: {', '.join(pool.columns)}.")


def nothing(spec: SliceSpec, why: str = "") -> ProbekitUsageError:
    return ProbekitUsageError(f"slice {spec.name!r} matches no example of the pool{why}.")


def _number(value: Any, clause: Clause, spec: SliceSpec) -> float:
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return float(value.strip().lower() == "true")
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ProbekitUsageError(f"slice {spec.name!r}: column {clause.column!r} holds numbers, "
                                 f"but {value!r} in {str(clause)!r} is not a number.") from None


def where_mask(pool: "Pool", clauses: tuple, spec: SliceSpec) -> np.ndarray:
    """[N] bool: the rows matching every clause (missing values never match)."""
    mask = np.ones(len(pool), dtype=bool)
    for clause in clauses:
        need_column(pool, clause.column, spec)
        col = pool.column(clause.column)
        values = clause.value if clause.op in ("in", "not in") else (clause.value,)
        if col.dtype.kind in "biuf":
            x = col.astype(np.float64)
            v = np.array([_number(value, clause, spec) for value in values])
            present = ~np.isnan(x)
        else:
            cells = col.tolist()
            if any(isinstance(c, (list, tuple, dict, np.ndarray)) for c in cells):
                raise ProbekitUsageError(f"slice {spec.name!r}: column {clause.column!r} holds lists or "
                                         "records; a clause compares numbers or text.")
            present = np.array([c is not None and not (isinstance(c, float) and c != c) for c in cells])
            # Booleans read as true/false whatever the column type (a bool column with a
            # missing value arrives as objects), and so do the spec's values against them.
            booleans = any(isinstance(c, (bool, np.bool_)) for c in cells)
            x = np.array([(_fmt(bool(c)) if isinstance(c, (bool, np.bool_)) else str(c)) if p else ""
                          for c, p in zip(cells, present)], dtype=object)
            v = np.array([_fmt(value) if isinstance(value, bool)
                          else (str(value).strip().lower() if booleans and str(value).strip().lower()
                                in ("true", "false") else str(value)) for value in values], dtype=object)
        if clause.op == "in":
            hit = np.isin(x, v)
        elif clause.op == "not in":
            hit = ~np.isin(x, v)
        else:
            hit = {"=": np.equal, "!=": np.not_equal, ">": np.greater, ">=": np.greater_equal,
                   "<": np.less, "<=": np.less_equal}[clause.op](x, v[0]).astype(bool)
        mask &= hit & present
    return mask


def id_rows(pool: "Pool", ids: tuple, spec: SliceSpec) -> np.ndarray:
    """Positions of the listed ids (every id must be in the pool)."""
    try:
        return np.unique(pool.index_of(list(ids)))
    except ProbekitUsageError as exc:
        raise ProbekitUsageError(f"slice {spec.name!r}: {exc}") from None


def member_rows(pool: "Pool", spec: SliceSpec) -> np.ndarray:
    """[m] sorted positions of a "where" or "ids" slice; an empty slice is an error."""
    rows = id_rows(pool, spec.ids, spec) if spec.kind == "ids" else np.flatnonzero(where_mask(pool, spec.where, spec))
    if rows.size == 0:
        raise nothing(spec)
    return rows


def query_set(pool: "Pool", spec: SliceSpec) -> tuple[np.ndarray | None, np.ndarray | None]:
    """A query slice's pool rows (``(rows, None)``) or given vectors (``(None, [Q, d])``)."""
    if spec.vectors is not None:
        return None, spec.vectors
    if spec.records:
        keys = list(dict.fromkeys((pool.id_field, "id")))
        key = next((k for k in keys if all(k in r for r in spec.records)), None)
        if key is None:
            raise ProbekitUsageError(
                f"slice {spec.name!r}: query rows need an 'embedding' or an id under {' or '.join(map(repr, keys))}; "
                f"first row's keys: {sorted(spec.records[0])}.")
        return id_rows(pool, tuple(str(r[key]) for r in spec.records), spec), None
    if spec.ids:
        return id_rows(pool, spec.ids, spec), None
    rows = np.flatnonzero(where_mask(pool, spec.where, spec))
    if rows.size == 0:
        raise nothing(spec)
    return rows, None
