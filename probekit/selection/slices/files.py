"""Slice specs that name files or rows: id lists and query sets (``ids@FILE``, ``query@FILE``, query rows)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from probekit.selection.slices.spec import _KIND_ALLOWED, SliceSpec, usage

_QUERY_SUFFIXES = (".jsonl", ".json", ".npy")


def _open(path: Path, source: Any, allowed: str) -> str:
    if not path.is_file():
        raise usage(source, f"file {str(path)!r} does not exist", allowed)
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise usage(source, f"file {str(path)!r} cannot be read ({type(exc).__name__})", allowed) from None


def _read_ids(path: Path, source: Any) -> tuple:
    allowed = _KIND_ALLOWED["ids"]
    text = _open(path, source, allowed)
    if path.suffix.lower() == ".json":
        try:
            ids = json.loads(text)
        except json.JSONDecodeError as exc:
            raise usage(source, f"{str(path)!r} is not valid JSON ({exc.msg})", allowed) from None
        if not isinstance(ids, list) or not all(isinstance(i, (str, int)) and not isinstance(i, bool) for i in ids):
            raise usage(source, f"{str(path)!r} must hold a JSON list of ids", allowed)
        ids = [str(i) for i in ids]
    else:
        ids = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.strip().startswith("#")]
    if not ids:
        raise usage(source, f"{str(path)!r} holds no ids", allowed)
    return tuple(ids)


def _query_file(path: Path, name: str, source: Any) -> SliceSpec:
    allowed = _KIND_ALLOWED["query"]
    suffix = path.suffix.lower()
    if suffix not in _QUERY_SUFFIXES:
        raise usage(source, f"query file {str(path)!r} must end in {', '.join(_QUERY_SUFFIXES)}", allowed)
    if suffix == ".npy":
        if not path.is_file():
            raise usage(source, f"file {str(path)!r} does not exist", allowed)
        try:
            rows = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise usage(source, f"{str(path)!r} is not a numpy array file ({type(exc).__name__})", allowed) from None
    else:
        text = _open(path, source, allowed)
        try:
            rows = ([json.loads(ln) for ln in text.splitlines() if ln.strip()] if suffix == ".jsonl"
                    else json.loads(text))
        except json.JSONDecodeError as exc:
            raise usage(source, f"{str(path)!r} is not valid JSON ({exc.msg})", allowed) from None
    return _query_rows(rows, name, source, where=f"query file {str(path)!r}")


def _query_rows(rows: Any, name: str, source: Any, where: str) -> SliceSpec:
    allowed = _KIND_ALLOWED["query"]
    if isinstance(rows, list) and rows and all(isinstance(r, dict) for r in rows):
        if all("embedding" in r for r in rows):
            rows = [r["embedding"] for r in rows]
        else:
            return SliceSpec(name, "query", str(source), records=tuple(rows))
    try:
        vectors = np.asarray(rows, dtype=np.float64)
    except (TypeError, ValueError):
        vectors = np.empty((0, 0))
    if vectors.ndim != 2 or vectors.size == 0 or not np.isfinite(vectors).all():
        raise usage(source, f"{where} must hold rows with an 'embedding' (finite numbers, one length) "
                            "or an id, or be a [Q, d] array of vectors", allowed)
    return SliceSpec(name, "query", str(source), vectors=vectors)
