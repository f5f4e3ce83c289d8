"""Declarative slice specs: the concerns a ``ConcernSelector`` targets.

A slice names examples a probe set must watch. Specs come as compact strings
(the CLI passes each ``--slice SPEC`` through unchanged), dicts, inline JSON or
a JSON file; :func:`probekit.selection.slices.parse.parse_slices` turns them into
:class:`SliceSpec` objects (reading id lists and query sets through
:mod:`~probekit.selection.slices.files`), and :mod:`~probekit.selection.slices.rows`
finds their examples in a pool (the strategies themselves live in ``selectors/concern.py``).

This module holds the types, the allowed forms, the one-line error every malformed
spec raises, and the constructors the string and the dict forms share. The grammar
in brief is in :mod:`~probekit.selection.slices.docs` (``probekit selectors concern``
prints it). ``docs/slices.md`` is the full reference: every form with a run on
``builtin:toy-text``, names, value comparison and quoting, query files, the
JSON/dict forms, default names, and what each form does with the budget.
Every malformed spec is a one-line ``ProbekitUsageError`` naming the spec and
what is allowed; a spec matching no example is an error too.
"""
from __future__ import annotations

import json
import math
import numbers
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from probekit.errors import ProbekitUsageError

KINDS = ("ids", "query", "bias", "rare")
RESERVED_NAMES = ("background",)
OPS = ("=", "!=", ">", ">=", "<", "<=", "in", "not in")
ALLOWED = ("COLUMN=VALUE (also != > >= < <=, 'COLUMN in V1,V2', clauses joined by &), ids:ID,ID, ids@FILE, "
           "query@FILE, query:PREDICATE, bias:PROTECTED[,LABEL][,pairs=COLUMN], rare:COLUMN[,below=F], "
           "rare:clusters[,k=K][,below=F], each optionally as 'NAME: SPEC'; a FILE.json or JSON of such specs")
_KIND_ALLOWED = {
    "ids": "ids:ID,ID,... or ids@FILE",
    "query": "query@FILE (.jsonl, .json or .npy) or query:PREDICATE",
    "bias": "bias:PROTECTED[,LABEL][,pairs=COLUMN]",
    "rare": "rare:COLUMN[,below=F] or rare:clusters[,k=K][,below=F]",
}


@dataclass(frozen=True)
class Clause:
    """``column op value``; ``value`` is a tuple for ``in`` / ``not in``."""

    column: str
    op: str
    value: Any

    def __str__(self) -> str:
        if self.op in ("in", "not in"):
            return f"{self.column} {self.op} {','.join(_fmt(v) for v in self.value)}"
        return f"{self.column}{self.op}{_fmt(self.value)}"


@dataclass(frozen=True)
class SliceSpec:
    """One parsed slice: ``kind`` is "where", "ids", "query", "bias" or "rare"."""

    name: str
    kind: str
    source: str  # the spec as written, for messages
    where: tuple = ()  # Clauses ("where"; "query" over pool rows)
    ids: tuple = ()  # pool ids ("ids"; "query" by ids)
    vectors: np.ndarray | None = field(default=None, compare=False)  # [Q, d] ("query")
    records: tuple = ()  # query-file rows naming pool ids, resolved against the pool
    protected: str | None = None  # "bias"
    label: str | None = None
    pairs: str | None = None
    column: str | None = None  # "rare" by a column
    clusters: int | None = None  # "rare" by k-means clusters (0: automatic k)
    below: float | None = None


def usage(source: Any, reason: str, allowed: str = ALLOWED) -> ProbekitUsageError:
    return ProbekitUsageError(f"slice spec {_show(source)} is not understood: {reason}. Allowed: {allowed}.")


def _show(source: Any) -> str:
    text = source if isinstance(source, str) else json.dumps(source, default=str)
    return repr(text if len(text) <= 120 else text[:117] + "...")


def _fmt(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    text = str(value)
    if not text or text != text.strip() or any(c in text for c in ",&:\"'"):
        return json.dumps(text)
    return text


def str_pred(clauses: tuple) -> str:
    return " & ".join(str(c) for c in clauses)


def _ids_name(ids: tuple) -> str:
    shown = ",".join(str(i) for i in ids[:3])
    return f"ids:{shown}" + (f",...(+{len(ids) - 3})" if len(ids) > 3 else "")


def _check_name(name: Any, source: Any) -> None:
    if not isinstance(name, str) or not name.strip():
        raise usage(source, f"a slice name must be a non-empty string; got {name!r}")
    if name.strip() in RESERVED_NAMES:
        raise usage(source, f"the name {name.strip()!r} is reserved for the background probes")


# -- the forms both grammars build (strings and dicts) ------------------------------
def _fraction(text: Any, source: Any, allowed: str) -> float:
    try:
        value = float(text)
    except (TypeError, ValueError):
        value = math.nan
    if isinstance(text, bool) or not 0.0 < value <= 1.0:
        raise usage(source, f"below must be a fraction in (0, 1]; got {text!r}", allowed)
    return value


def _bias(opts: dict, name: str | None, source: Any) -> SliceSpec:
    if "protected" not in opts:
        raise usage(source, "bias needs a protected-attribute column", _KIND_ALLOWED["bias"])
    return SliceSpec(name or "bias", "bias", str(source), protected=opts["protected"],
                     label=opts.get("label"), pairs=opts.get("pairs"))


def _rare(name: str | None, source: Any, *, column: Any = None, clusters: Any = None,
          below: Any = None) -> SliceSpec:
    allowed = _KIND_ALLOWED["rare"]
    if (column is None) == (clusters is None):
        raise usage(source, "rare needs exactly one of a column or clusters", allowed)
    if column is not None and (not isinstance(column, str) or not column):
        raise usage(source, f"column must be a column name; got {column!r}", allowed)
    k = None
    if clusters is not None:
        if clusters is True or clusters == "auto":
            k = 0
        elif isinstance(clusters, numbers.Integral) and not isinstance(clusters, bool) and clusters >= 2:
            k = int(clusters)
        elif isinstance(clusters, str) and clusters.isdigit() and int(clusters) >= 2:
            k = int(clusters)
        else:
            raise usage(source, f"k must be an int >= 2 or 'auto'; got {clusters!r}", allowed)
    below = None if below is None else _fraction(below, source, allowed)
    default = "rare:clusters" if k is not None else f"rare:{column}"
    return SliceSpec(name or default, "rare", str(source), column=column, clusters=k, below=below)
