"""Candidate pools: the examples a selector may pick probes from.

A :class:`Pool` wraps a ``datasets.Dataset`` (Arrow, memory-mapped when it was
loaded from a file) and adds three things selectors and probe sets rely on:

* a **stable id per row**.  Either the values of a column the user names
  (``id_field``, converted to ``str``, must be unique), or, when no id field is
  given, ids derived from the row content and stored in the column
  ``"probe_id"`` (:data:`ID_COLUMN`): ``"pk-"`` + the first 16 hex digits of the
  sha256 of the row's canonical JSON; the k-th repeat (k >= 1) of an identical
  row gets ``"-k"`` appended.  Same content -> same ids on every reload.  A
  dataset that already has a ``probe_id`` column (for example a pool exported
  with ``probekit export --format datasets``) uses it as the id field.
* a **content fingerprint** (sha256 hex) of every column (the id column
  included), value and the row order; see :func:`table_fingerprint`.
* small conveniences: ``index_of(ids)``, ``rows(indices)``, ``column(name)``.

Files are read by :func:`probekit.pool.files.read_pool_file`, which names the
line or the fault of a file it cannot read.  ``datasets`` and ``pyarrow`` are
imported inside the functions that need them so that ``import probekit`` stays cheap.
"""
from __future__ import annotations

import base64
import datetime as _dt
import decimal
import hashlib
import json
import os
from collections import Counter
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from probekit.errors import ProbekitUsageError
from probekit.params import AnyOf, validate
from probekit.pool.files import read_pool_file  # file reading lives there

#: Name of the column holding derived ids (and of the id column pools prefer).
ID_COLUMN = "probe_id"

# Rows per batch when hashing: bounded memory, and batch boundaries are fixed
# row ranges (never Arrow chunk boundaries) so the fingerprint ignores chunking.
_BATCH = 65_536


def _json_default(value: Any) -> Any:
    """Map the non-JSON values Arrow and numpy hand back to stable JSON values."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (bytes, bytearray, memoryview)):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, (_dt.datetime, _dt.date, _dt.time)):
        return value.isoformat()
    if isinstance(value, (_dt.timedelta, decimal.Decimal)):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def _encoder(allow_nan: bool) -> json.JSONEncoder:
    return json.JSONEncoder(
        sort_keys=True, separators=(",", ":"), ensure_ascii=False,
        default=_json_default, allow_nan=allow_nan,
    )


# Built once: json.dumps(**kwargs) would build a new encoder per call (2x slower
# when deriving ids for every row of a large pool).
_ENCODERS = {True: _encoder(True), False: _encoder(False)}


def canonical_json(value: Any, *, allow_nan: bool = True) -> str:
    """Deterministic JSON: sorted keys, no whitespace, UTF-8 text kept as is."""
    return _ENCODERS[bool(allow_nan)].encode(value)


def _type_tag(pa_type: Any) -> str:
    """A coarse type name: int64 and large_string read from different formats agree."""
    import pyarrow as pa

    if pa.types.is_integer(pa_type) or pa.types.is_floating(pa_type) or pa.types.is_boolean(pa_type):
        return "num:" + np.dtype(pa_type.to_pandas_dtype()).str.replace(">", "<")
    if pa.types.is_string(pa_type) or pa.types.is_large_string(pa_type) or pa.types.is_string_view(pa_type):
        return "str"
    if pa.types.is_binary(pa_type) or pa.types.is_large_binary(pa_type) or pa.types.is_binary_view(pa_type):
        return "bin"
    if pa.types.is_list(pa_type) or pa.types.is_large_list(pa_type) or pa.types.is_fixed_size_list(pa_type):
        inner = pa_type.value_type
        if pa.types.is_integer(inner) or pa.types.is_floating(inner) or pa.types.is_boolean(inner):
            # Embeddings, pixels, trajectories: hashed as bytes, not JSON (400x faster).
            return "numlist:" + np.dtype(inner.to_pandas_dtype()).str.replace(">", "<")
    return "json:" + str(pa_type).replace("large_", "")


def _feed_numbers(feed: Any, part: Any, dtype: np.dtype) -> None:
    """Bytes of a numeric Arrow array: the packed null mask (when any), then the values."""
    if part.null_count:
        feed(np.packbits(part.is_null().to_numpy(zero_copy_only=False)).tobytes())
        part = part.fill_null(False if dtype == np.bool_ else 0)
    feed(np.ascontiguousarray(part.to_numpy(zero_copy_only=False), dtype=dtype).tobytes())


def table_fingerprint(table: Any) -> str:
    """sha256 hex of a ``pyarrow.Table``'s column names, coarse types, values and row order.

    Numeric and boolean columns hash their little-endian numpy bytes plus the
    packed null mask; lists of numbers (list, large_list or fixed_size_list
    alike) hash their row lengths and flattened values the same way; every other
    column hashes the canonical JSON of its values.
    File paths and modification times play no part, so the same data read from
    a jsonl, a csv or a parquet file with the same column types agree.
    """
    h = hashlib.sha256()

    def feed(data: bytes) -> None:
        h.update(len(data).to_bytes(8, "little"))
        h.update(data)

    feed(canonical_json({"rows": table.num_rows, "columns": table.column_names}).encode())
    for name in table.column_names:
        column = table.column(name)
        tag = _type_tag(column.type)
        feed(canonical_json([name, tag]).encode())
        for start in range(0, table.num_rows, _BATCH):
            part = column.slice(start, _BATCH)
            if tag.startswith("num:"):
                _feed_numbers(feed, part, np.dtype(tag[4:]))
            elif tag.startswith("numlist:"):
                import pyarrow.compute as pc

                # Row lengths (-1 for a missing row) fix the row boundaries; the
                # flattened values carry the content.
                lengths = pc.list_value_length(part).fill_null(-1)
                feed(np.ascontiguousarray(lengths.to_numpy(zero_copy_only=False), dtype="<i8").tobytes())
                _feed_numbers(feed, pc.list_flatten(part), np.dtype(tag[8:]))
            else:
                feed(canonical_json(part.to_pylist()).encode())
    return h.hexdigest()


def _derive_ids(table: Any) -> list[str]:
    """Content ids: ``pk-`` + 16 hex of sha256(canonical JSON of the row), repeats suffixed."""
    ids: list[str] = []
    seen: Counter = Counter()
    for start in range(0, table.num_rows, _BATCH):
        for row in table.slice(start, _BATCH).to_pylist():
            base = "pk-" + hashlib.sha256(canonical_json(row).encode()).hexdigest()[:16]
            k = seen[base]
            seen[base] += 1
            ids.append(base if k == 0 else f"{base}-{k}")
    return ids


class Pool:
    """Candidate examples with stable ids and a content fingerprint.

    Build one with :meth:`from_file`, :meth:`from_dict` or :meth:`from_dataset`.
    Attributes: ``dataset`` (the ``datasets.Dataset``, including the id column),
    ``id_field`` (the name of the id column; ``"probe_id"`` when ids are derived),
    ``name`` (the source path, or ``"<memory>"``).  Pools pickle.
    """

    def __init__(self, dataset: Any, id_field: str | None = None, *, name: str = "<memory>") -> None:
        import datasets

        validate("Pool", {"id_field": id_field}, {"id_field": AnyOf(None, str)})
        where = f"pool {name!r}"
        if isinstance(dataset, datasets.DatasetDict):
            raise ProbekitUsageError(
                f"{where} is a DatasetDict with splits {sorted(dataset)}; pass one split (e.g. ds['train'])."
            )
        if not isinstance(dataset, datasets.Dataset):
            raise ProbekitUsageError(f"{where} must be a datasets.Dataset. Got {type(dataset).__name__} instead.")
        if dataset.num_rows == 0 or not dataset.column_names:
            raise ProbekitUsageError(f"{where} is empty: a pool needs at least one row and one column.")
        if dataset._indices is not None:  # a select()/shuffle() view: materialise the row order
            dataset = dataset.flatten_indices()
        dataset = dataset.with_format(None)

        if id_field is None and ID_COLUMN in dataset.column_names:
            id_field = ID_COLUMN
        if id_field is None:
            ids = _derive_ids(dataset.data.table)
            dataset = dataset.add_column(ID_COLUMN, ids)
            id_field = ID_COLUMN
        else:
            if id_field not in dataset.column_names:
                raise ProbekitUsageError(
                    f"id_field {id_field!r} is not a column of {where}; columns: {', '.join(dataset.column_names)}."
                )
            raw = dataset.data.table.column(id_field).to_pylist()
            missing = sum(v is None for v in raw)
            if missing:
                raise ProbekitUsageError(
                    f"id column {id_field!r} of {where} has {missing} missing values; ids must all be set."
                )
            ids = [str(v) for v in raw]
            counts = Counter(ids)
            if len(counts) != len(ids):
                dups = [f"{k!r} ({c}x)" for k, c in counts.items() if c > 1]
                raise ProbekitUsageError(
                    f"id column {id_field!r} of {where} has duplicate values: {', '.join(dups[:5])}"
                    f"{' ...' if len(dups) > 5 else ''}; ids must be unique."
                )
        self.dataset = dataset
        self.id_field = id_field
        self.name = name
        self._ids = np.array(ids, dtype=object)
        self._ids.flags.writeable = False
        self._fingerprint: str | None = None
        self._positions: dict[str, int] | None = None

    # -- constructors -------------------------------------------------------
    @classmethod
    def from_dataset(cls, dataset: Any, id_field: str | None = None) -> "Pool":
        """Wrap an in-memory or memory-mapped ``datasets.Dataset``."""
        return cls(dataset, id_field)

    @classmethod
    def from_dict(cls, data: dict, id_field: str | None = None) -> "Pool":
        """Build a pool from ``{column: list_of_values}``."""
        import datasets

        if not isinstance(data, dict):
            raise ProbekitUsageError(f"Pool.from_dict needs a dict of columns. Got {type(data).__name__} instead.")
        lengths = {k: len(v) for k, v in data.items()}
        if len(set(lengths.values())) > 1:
            raise ProbekitUsageError(f"Pool.from_dict columns must have equal lengths. Got {lengths} instead.")
        return cls(datasets.Dataset.from_dict(data), id_field)

    @classmethod
    def from_file(cls, path: str | os.PathLike, id_field: str | None = None) -> "Pool":
        """Load a .jsonl/.json, .csv, .parquet or .arrow file, or a save_to_disk directory.

        A file that cannot be read raises :class:`ProbekitUsageError` with one
        line naming the file and the fault (see :mod:`probekit.pool.files`).
        """
        return cls(read_pool_file(path), id_field, name=str(Path(path)))

    # -- views --------------------------------------------------------------
    def __len__(self) -> int:
        return self.dataset.num_rows

    def __repr__(self) -> str:
        return f"Pool(name={self.name!r}, rows={len(self)}, id_field={self.id_field!r}, columns={self.columns})"

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_positions"] = None  # rebuilt on demand
        state["_canonical"] = None
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._ids.flags.writeable = False

    @property
    def ids(self) -> np.ndarray:
        """The row ids, a read-only numpy array of ``str`` (dtype object)."""
        return self._ids

    @property
    def columns(self) -> list[str]:
        """Column names, id column included."""
        return list(self.dataset.column_names)

    @property
    def fingerprint(self) -> str:
        """sha256 hex of the pool's content (see :func:`table_fingerprint`); cached."""
        if self._fingerprint is None:
            self._fingerprint = table_fingerprint(self._base_table(self._row_map()))
        return self._fingerprint

    @property
    def content_fingerprint(self) -> str:
        """sha256 hex of the pool's rows taken in id order: the same for any row order; cached.

        Selections are row-order invariant, so a probe set made from a shuffled
        copy of this pool picks the same examples; this is how it is recognised.
        """
        if getattr(self, "_content_fingerprint", None) is None:
            table = self._base_table(self._row_map()).take(self.canonical_order)
            self._content_fingerprint = table_fingerprint(table)
        return self._content_fingerprint

    def column(self, name: str) -> np.ndarray:
        """One column as a numpy array: numeric dtype (nulls become NaN), or object for
        strings (nulls stay None) and nested values."""
        if name not in self.dataset.column_names:
            raise ProbekitUsageError(
                f"column {name!r} is not in pool {self.name!r}; columns: {', '.join(self.columns)}."
            )
        rows = self._row_map()
        column = self.dataset.data.table.column(name)
        return (column if rows is None else column.take(rows)).to_numpy()

    def index_of(self, ids: str | Iterable[str]) -> np.ndarray:
        """Row positions (int64) of the given ids, in the given order."""
        if self._positions is None:
            self._positions = {v: i for i, v in enumerate(self._ids.tolist())}
        wanted = [ids] if isinstance(ids, str) else [str(v) for v in ids]
        unknown = [v for v in wanted if v not in self._positions]
        if unknown:
            shown = ", ".join(repr(v) for v in unknown[:5]) + (" ..." if len(unknown) > 5 else "")
            raise ProbekitUsageError(f"{len(unknown)} ids are not in pool {self.name!r}: {shown}")
        return np.fromiter((self._positions[v] for v in wanted), dtype=np.int64, count=len(wanted))

    @property
    def canonical_order(self) -> np.ndarray:
        """Row positions sorted by id: the order selectors see (cached, read-only).

        Selecting from the canonical order makes every selector independent of
        the row order of the file the pool came from.
        """
        if getattr(self, "_canonical", None) is None:
            order = np.argsort(self.ids, kind="stable").astype(np.int64)
            order.flags.writeable = False
            self._canonical = order
        return self._canonical

    def reorder(self, order: Sequence[int] | np.ndarray) -> "Pool":
        """The same examples in another row order: a view, no Arrow data is copied.

        The view carries an index mapping; ``column``, ``rows`` and the embedders
        resolve it and copy only the columns they read.
        """
        order = np.asarray(order, dtype=np.int64)
        if order.shape != (len(self),) or not np.array_equal(np.sort(order), np.arange(len(self))):
            raise ProbekitUsageError(f"Pool.reorder needs a permutation of 0..{len(self) - 1}.")
        view = Pool.__new__(Pool)
        view.dataset = self.dataset.select(order, keep_in_memory=True)  # an indices mapping only
        view.id_field, view.name = self.id_field, self.name
        view._ids = self._ids[order]
        view._ids.flags.writeable = False
        view._fingerprint = view._positions = view._canonical = view._content_fingerprint = None
        return view

    def _row_map(self) -> Any:
        """Positions of this pool's rows in the underlying Arrow table (None: identity)."""
        indices = self.dataset._indices
        return None if indices is None else indices.column(0)

    def _base_table(self, rows: Any) -> Any:
        table = self.dataset.data.table
        return table if rows is None else table.take(rows)

    def rows(self, indices: int | Sequence[int] | np.ndarray) -> list[dict]:
        """The examples at the given positions, as dicts of raw Arrow values (id column included;
        ``datasets`` features such as images are not decoded)."""
        idx = np.atleast_1d(np.asarray(indices))
        if idx.size and (idx.ndim != 1 or not np.issubdtype(idx.dtype, np.integer)):
            raise ProbekitUsageError(
                f"Pool.rows needs a 1-D sequence of ints. Got dtype {idx.dtype} shape {idx.shape} instead."
            )
        bad = idx[(idx < 0) | (idx >= len(self))] if idx.size else idx
        if bad.size:
            raise ProbekitUsageError(
                f"Pool.rows indices must be in the range [0, {len(self) - 1}]. Got {int(bad[0])} instead."
            )
        if not idx.size:
            return []
        rows = self._row_map()
        take = idx.astype(np.int64) if rows is None else rows.take(idx.astype(np.int64))
        return self.dataset.data.table.take(take).to_pylist()
