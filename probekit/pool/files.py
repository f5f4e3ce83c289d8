"""Reading pool files: the one boundary between probekit and the file loaders of ``datasets``.

:func:`read_pool_file` turns a path (a .jsonl/.json, .csv, .parquet or .arrow
file, or a ``save_to_disk`` directory) into a ``datasets.Dataset``, or raises
one :class:`~probekit.errors.ProbekitUsageError` whose one-line message names
the file and what is wrong with it: the line of a jsonl or csv file (a line
that is not JSON, not an object, cut off at the end of a truncated file, a
value whose type differs from the same column's on earlier lines, a row with
more fields than the header), or for a parquet file that it is truncated or
not Parquet at all.

``datasets`` reports a failed load twice on its own (an ERROR log record, which
a configured root logger prints a second time) before raising an error that
often names something else (its pandas fallback's "Trailing data at position
26"). Its loggers are silenced for the duration of the load, and when a load
fails the file is read again here, line by line, to find the line at fault.
"""
from __future__ import annotations

import contextlib
import csv
import json
import logging
import sys
from pathlib import Path
from typing import Any, Iterator

from probekit.errors import ProbekitUsageError

# Extension -> loader.  Directories are read with ``datasets.load_from_disk``.
_LOADERS = {".jsonl": "json", ".json": "json", ".csv": "csv", ".parquet": "parquet", ".arrow": "arrow"}
_ALLOWED = ", ".join(_LOADERS) + " or a datasets save_to_disk directory"

_PARQUET_MAGIC = b"PAR1"  # a Parquet file starts and ends with these 4 bytes


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    line = text[0] if text else type(exc).__name__
    return line if len(line) <= 200 else line[:197] + "..."


@contextlib.contextmanager
def quiet_datasets(bars_on_a_terminal: bool = True) -> Iterator[None]:
    """Silence the ``datasets`` loggers (ERROR included) and, off a terminal, its progress bars.

    A failed load logs the failure before raising it; probekit reports the
    raised error once, in its own words.  "Generating train split" bars are
    worth seeing on a terminal for a large file, noise in logs and tests
    (``bars_on_a_terminal=False``: off everywhere, for small internal writes).
    Both settings are restored afterwards.
    """
    from datasets.utils import logging as ds_logging

    logger = logging.getLogger("datasets")
    level = logger.level
    bars = ds_logging.is_progress_bar_enabled()
    logger.setLevel(logging.CRITICAL + 1)
    if not (bars_on_a_terminal and sys.stderr.isatty()):
        ds_logging.disable_progress_bar()
    try:
        yield
    finally:
        logger.setLevel(level)
        if bars:
            ds_logging.enable_progress_bar()


def read_pool_file(path: str | Path) -> Any:
    """The ``datasets.Dataset`` in ``path``; :class:`ProbekitUsageError` naming what is wrong if none."""
    import datasets

    p = Path(path)
    if not p.exists():
        raise ProbekitUsageError(f"pool file {str(p)!r} does not exist; expected {_ALLOWED}.")
    if p.is_dir():
        try:
            with quiet_datasets():
                return datasets.load_from_disk(str(p))
        except Exception as exc:  # noqa: BLE001 - foreign library boundary
            raise ProbekitUsageError(
                f"pool directory {str(p)!r} is not a datasets save_to_disk directory: {_short(exc)}"
            ) from exc
    kind = _LOADERS.get(p.suffix.lower())
    if kind is None:
        raise ProbekitUsageError(f"pool file {str(p)!r} has unknown extension {p.suffix!r}; allowed: {_ALLOWED}.")
    empty = f"pool file {str(p)!r} is empty: a pool needs at least one row."
    if p.stat().st_size == 0:
        raise ProbekitUsageError(empty)
    where = f"pool file {str(p)!r} could not be read as {kind}"
    if kind == "parquet":
        problem = _parquet_problem(p)
        if problem:
            raise ProbekitUsageError(f"{where}: {problem}.")
    try:
        with quiet_datasets():
            dataset = _read_file(p, kind)
    except ProbekitUsageError:
        raise
    except Exception as exc:  # noqa: BLE001 - foreign library boundary
        root = exc
        while root.__cause__ is not None or root.__context__ is not None:
            root = root.__cause__ or root.__context__
        if isinstance(root, StopIteration) or "corresponds to no data" in str(root):
            raise ProbekitUsageError(empty) from exc
        problem = {"json": _jsonl_problem, "csv": _csv_problem}.get(kind, lambda _: None)(p)
        raise ProbekitUsageError(f"{where}: {problem or _short(root)}") from exc
    if kind == "json" and _has_json_feature(dataset.features) and _first_char(p) != "[":
        # datasets stores a column whose lines disagree on the value type as
        # JSON text (its ``Json`` feature); a pool column has one type.
        problem = _jsonl_problem(p)
        if problem:
            raise ProbekitUsageError(f"{where}: {problem}")
    return dataset


def _read_file(p: Path, kind: str) -> Any:
    import datasets

    if kind == "json" and _first_char(p) == "[":
        # A JSON array of records.  datasets reads these through pandas, whose
        # default float parser is not exact (1/7 comes back one ulp off), so the
        # fingerprint would not match the same data in jsonl/csv; parse them here.
        try:
            with open(p, encoding="utf-8") as fh:
                records = json.load(fh)
        except json.JSONDecodeError as exc:
            raise ProbekitUsageError(
                f"pool file {str(p)!r} could not be read as json: line {exc.lineno} is not valid JSON "
                f"({exc.msg} at column {exc.colno})."
            ) from None
        if not all(isinstance(r, dict) for r in records):
            raise ProbekitUsageError(f"pool file {str(p)!r} must be a JSON array of objects or JSON lines.")
        if not records:
            raise ProbekitUsageError(f"pool file {str(p)!r} is empty: a pool needs at least one row.")
        return datasets.Dataset.from_list(records)
    loader = {
        "json": datasets.Dataset.from_json,
        "csv": datasets.Dataset.from_csv,
        "parquet": datasets.Dataset.from_parquet,
        "arrow": datasets.Dataset.from_file,
    }[kind]
    return loader(str(p))


def _first_char(p: Path) -> str:
    with open(p, "rb") as fh:
        head = fh.read(4096).lstrip(b"\xef\xbb\xbf \t\r\n")
    return head[:1].decode("latin-1")


# -- finding the fault in a file the loader refused ---------------------------------
def _parquet_problem(p: Path) -> str | None:
    """What is wrong with a file that cannot be Parquet (magic bytes), or None."""
    with open(p, "rb") as fh:
        head = fh.read(4)
        fh.seek(max(p.stat().st_size - 4, 0))
        tail = fh.read(4)
    if head == _PARQUET_MAGIC and tail != _PARQUET_MAGIC:
        return "it is truncated or not a Parquet file (it starts like one, but the Parquet footer at its end is missing)"
    if head != _PARQUET_MAGIC:
        return "it is not a Parquet file (it does not start with the Parquet magic bytes 'PAR1')"
    return None


_KINDS = ((bool, "a boolean"), ((int, float), "a number"), (str, "a string"), (list, "an array"),
          (dict, "an object"))


def _kind(value: Any) -> str:
    return next(name for types, name in _KINDS if isinstance(value, types))


def _merge(shape: Any, value: Any, path: str, lineno: int) -> tuple[Any, str | None]:
    """Fold ``value`` (on line ``lineno``) into the type ``shape`` seen so far; the second
    item names a conflict.

    A shape is None (only nulls so far), ``(kind, first line)``, ``("an array",
    first line, element shape)`` or ``("an object", first line, {key: shape})``;
    missing keys and nulls fit anything, ints and floats are both numbers, as
    Arrow's JSON reader has it.
    """
    if value is None:
        return shape, None
    kind = _kind(value)
    if shape is not None and shape[0] != kind:
        return shape, f"column {path!r} is {shape[0]} on line {shape[1]} but {kind} here"
    first = lineno if shape is None else shape[1]
    if kind == "an array":
        inner = None if shape is None else shape[2]
        for item in value:
            inner, conflict = _merge(inner, item, path + "[]", lineno)
            if conflict:
                return shape, conflict
        return (kind, first, inner), None
    if kind == "an object":
        fields = {} if shape is None else dict(shape[2])
        for key, item in value.items():
            fields[key], conflict = _merge(fields.get(key), item, f"{path}.{key}", lineno)
            if conflict:
                return shape, conflict
        return (kind, first, fields), None
    return (kind, first), None


def _jsonl_problem(p: Path) -> str | None:
    """The first line of a JSON-lines file that is not JSON, not an object, or of another type."""
    shapes: dict[str, Any] = {}
    with open(p, "rb") as fh:  # streamed: a pool file may be larger than memory
        for lineno, raw in enumerate(fh, start=1):
            try:
                text = raw.decode("utf-8-sig" if lineno == 1 else "utf-8").strip()
            except UnicodeDecodeError:
                return f"line {lineno} is not UTF-8 text."
            if not text:
                continue
            try:
                value = json.loads(text)
            except json.JSONDecodeError as exc:
                ran_out = exc.pos >= len(text) or exc.msg.startswith("Unterminated")
                if ran_out and not raw.endswith(b"\n"):  # the last line, cut off
                    return f"line {lineno} ends in the middle of a JSON value: the file looks truncated."
                return f"line {lineno} is not valid JSON ({exc.msg} at column {exc.colno})."
            if not isinstance(value, dict):
                what = "null" if value is None else _kind(value)
                return f"line {lineno} is {what}, not an object: a JSON-lines pool has one JSON object per line."
            for key, item in value.items():
                shapes[key], conflict = _merge(shapes.get(key), item, key, lineno)
                if conflict:
                    return f"line {lineno}: {conflict}; a column holds one type of value."
    return None


def _csv_problem(p: Path) -> str | None:
    """The first row of a csv file with more fields than its header, or an unclosed quote."""
    try:
        with open(p, encoding="utf-8", newline="") as fh:
            reader = csv.reader(fh, strict=True)
            header = next(reader, None)
            if header is None:
                return None
            for row in reader:
                if len(row) > len(header):
                    return (f"line {reader.line_num} has {len(row)} fields, "
                            f"but the header (line 1) has {len(header)}.")
    except UnicodeDecodeError:
        return "it is not UTF-8 text."
    except csv.Error as exc:
        return f"line {reader.line_num} is not valid csv ({exc})."
    return None


def _has_json_feature(features: Any) -> bool:
    import datasets.features

    json_feature = getattr(datasets.features, "Json", None)  # absent from older datasets releases
    if json_feature is None:
        return False
    if isinstance(features, json_feature):
        return True
    if isinstance(features, dict):
        return any(_has_json_feature(f) for f in features.values())
    if isinstance(features, (list, tuple)):
        return any(_has_json_feature(f) for f in features)
    inner = getattr(features, "feature", None)  # List / Sequence / LargeList
    return inner is not None and _has_json_feature(inner)
