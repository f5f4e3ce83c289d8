"""Parsing slice specs: the string grammar, inline JSON, dicts and spec files -> :class:`SliceSpec` objects.

:func:`parse_slices` is the entry point (``ConcernSelector`` and ``--slice`` go through it);
the types, the allowed forms and the error template are in :mod:`probekit.selection.slices.spec`.
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np

from probekit.errors import ProbekitUsageError
from probekit.selection.slices.files import _open, _query_file, _query_rows, _read_ids
from probekit.selection.slices.spec import (
    _KIND_ALLOWED,
    ALLOWED,
    KINDS,
    OPS,
    Clause,
    SliceSpec,
    _bias,
    _check_name,
    _ids_name,
    _rare,
    _show,
    str_pred,
    usage,
)

_KIND_RE = re.compile(r"^(ids|query|bias|rare)\s*([:@])\s*(.*)$", re.S)
_NAME_RE = re.compile(r"^([^:=!<>@&,\"'\[\]{}]+?)\s*:\s*(.*)$", re.S)
_CMP_RE = re.compile(r"^(?P<col>[^=!<>]+?)\s*(?P<op>==|!=|>=|<=|=|>|<)\s*(?P<val>.*)$", re.S)
_IN_RE = re.compile(r"^(?P<col>.+?)\s+(?P<op>not\s+in|in)\s+(?P<val>.+)$", re.S)


# -- strings -----------------------------------------------------------------------
def _split(text: str, sep: str, source: Any) -> list[str]:
    """Split on ``sep`` outside quotes; unbalanced quotes are an error."""
    parts, buf, quote = [], [], None
    for ch in text:
        if quote:
            quote = None if ch == quote else quote
        elif ch in "\"'":
            quote = ch
        elif ch == sep:
            parts.append("".join(buf))
            buf = []
            continue
        buf.append(ch)
    if quote:
        raise usage(source, f"unbalanced quote {quote}")
    parts.append("".join(buf))
    return [p.strip() for p in parts]


def _unquote(token: str) -> str:
    token = token.strip()
    if len(token) >= 2 and token[0] == token[-1] and token[0] in "\"'":
        return token[1:-1]
    return token


def parse_predicate(text: str, source: Any) -> tuple[Clause, ...]:
    clauses = []
    for part in _split(text, "&", source):
        if not part:
            raise usage(source, "an empty clause (a stray '&'?)")
        cmp_, in_ = _CMP_RE.match(part), _IN_RE.match(part)
        if in_ and (cmp_ is None or len(in_["col"]) < len(cmp_["col"])):
            values = [_unquote(v) for v in _split(in_["val"], ",", source)]
            if not all(values):
                raise usage(source, f"clause {part!r} has an empty value in its list")
            clauses.append(Clause(in_["col"].strip(), " ".join(in_["op"].split()), tuple(values)))
        elif cmp_:
            raw = cmp_["val"].strip()
            if not raw:
                raise usage(source, f"clause {part!r} has no value")
            op = "=" if cmp_["op"] == "==" else cmp_["op"]
            clauses.append(Clause(cmp_["col"].strip(), op, _unquote(raw)))
        else:
            raise usage(source, f"{part!r} is not a clause COLUMN OP VALUE (OP one of {', '.join(OPS)})")
    return tuple(clauses)


def _options(body: str, kind: str, source: Any, positional: tuple, keys: tuple) -> tuple[dict, set]:
    """``a,b,key=value`` -> ({positional[0]: a, positional[1]: b, key: value}, {keys given as key=})."""
    allowed = _KIND_ALLOWED[kind]
    out: dict[str, str] = {}
    keyed: set[str] = set()
    tokens = _split(body, ",", source) if body.strip() else []
    for i, token in enumerate(tokens):
        key, sep, value = token.partition("=")
        key, value = (key.strip(), _unquote(value)) if sep else (None, _unquote(token))
        if not value:
            raise usage(source, f"{kind} option {i + 1} is empty", allowed)
        if key is None:
            slot = next((p for p in positional if p not in out), None)
            if slot is None or keyed:
                why = "a value after key=value options" if keyed else "too many values"
                raise usage(source, f"{why} ({value!r})", allowed)
            out[slot] = value
        elif key in keys and key not in out:
            out[key] = value
            keyed.add(key)
        elif kind == "rare" and i == 0 and key not in keys:  # rare:topic=astronomy: one value was meant
            raise usage(source, f"rare:COLUMN spreads its share over every value of the column, it takes no "
                                f"value; to target {key}={value} alone, write the predicate '{key}={value}' "
                                f"(or rare:{key},below=F for every value under the fraction F of the pool)", allowed)
        else:
            raise usage(source, f"unknown or repeated option {key!r}", allowed)
    return out, keyed


def _parse_string(text: str, base: Path | None, source: str, named: bool = True) -> list[SliceSpec]:
    s = text.strip()
    if not s:
        raise usage(source, "it is empty")
    if s[0] in "{[":
        try:
            data = json.loads(s)
        except json.JSONDecodeError as exc:
            raise usage(source, f"invalid JSON ({exc.msg} at character {exc.pos})") from None
        return _parse_items(data, base, source)
    m = _KIND_RE.match(s)
    if m:
        kind, sep, body = m.groups()
        return [_parse_kind(kind, sep, body.strip(), None, base, source)]
    m = _NAME_RE.match(s)
    if m and named and not _IN_RE.match(m[1]):
        name = m[1].strip()
        _check_name(name, source)
        inner = _parse_string(m[2], base, source, named=False)
        return [_renamed(spec, name) for spec in inner]
    if s.lower().endswith(".json") and not any(c in s for c in "=<>!&"):
        return _parse_file(Path(s) if base is None else base / s, source)
    where = parse_predicate(s, source)
    return [SliceSpec(str_pred(where), "where", source, where=where)]


def _renamed(spec: SliceSpec, name: str) -> SliceSpec:
    from dataclasses import replace

    return replace(spec, name=name)


def _parse_kind(kind: str, sep: str, body: str, name: str | None, base: Path | None, source: Any) -> SliceSpec:
    allowed = _KIND_ALLOWED[kind]
    if sep == "@":
        if kind not in ("ids", "query") or not body:
            raise usage(source, f"{kind}@ needs a file" if body else "a file path is missing", allowed)
        path = Path(_unquote(body))
        path = path if base is None or path.is_absolute() else base / path
        if kind == "ids":
            return SliceSpec(name or f"ids@{_unquote(body)}", "ids", str(source), ids=_read_ids(path, source))
        return _query_file(path, name or f"query@{_unquote(body)}", source)
    if not body:
        raise usage(source, f"{kind}: needs something after the colon", allowed)
    if kind == "ids":
        ids = tuple(_unquote(t) for t in _split(body, ",", source))
        if not all(ids):
            raise usage(source, "an empty id in the list", allowed)
        return SliceSpec(name or _ids_name(ids), "ids", str(source), ids=ids)
    if kind == "query":
        where = parse_predicate(body, source)
        return SliceSpec(name or f"query:{str_pred(where)}", "query", str(source), where=where)
    if kind == "bias":
        opts, _ = _options(body, "bias", source, ("protected", "label"), ("protected", "label", "pairs"))
        return _bias(opts, name, source)
    opts, keyed = _options(body, "rare", source, ("column",), ("column", "k", "below"))
    if opts.get("column") == "clusters" and "column" not in keyed:
        return _rare(name, source, clusters=opts.get("k", "auto"), below=opts.get("below"))
    if "k" in opts:
        raise usage(source, "k applies to rare:clusters only", _KIND_ALLOWED["rare"])
    return _rare(name, source, column=opts.get("column"), below=opts.get("below"))


# -- files and lists -----------------------------------------------------------------
def _parse_file(path: Path, source: Any) -> list[SliceSpec]:
    text = _open(path, source, ALLOWED)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise usage(source, f"{str(path)!r} is not valid JSON ({exc.msg} at character {exc.pos})") from None
    return _parse_items(data, path.parent, source, nested=True)


def _parse_items(data: Any, base: Path | None, source: Any, nested: bool = False) -> list[SliceSpec]:
    items = data if isinstance(data, list) else [data]
    if not items:
        raise usage(source, "an empty list of specs")
    out: list[SliceSpec] = []
    for item in items:
        if isinstance(item, dict):
            out.append(_parse_dict(item, base))
        elif isinstance(item, str) and not (nested and item.strip().lower().endswith(".json")):
            out.extend(_parse_string(item, base, item))
        else:
            raise usage(source, f"an item {item!r} that is neither a spec string nor a dict"
                                if not isinstance(item, str) else "a spec file inside a spec file")
    return out


# -- dicts -------------------------------------------------------------------------
def _parse_dict(d: dict, base: Path | None) -> SliceSpec:
    keys = [k for k in d if k != "name"]
    if len(keys) != 1 or keys[0] not in ("where",) + KINDS:
        raise usage(d, f"a dict spec takes 'name' and exactly one of where, {', '.join(KINDS)}; got keys {list(d)}")
    kind, body = keys[0], d[keys[0]]
    name = d.get("name")
    if name is not None:
        _check_name(name, d)
        name = name.strip()
    if kind == "where":
        clauses = _where_dict(body, d)
        return SliceSpec(name or str_pred(clauses), "where", str(d), where=clauses)
    if isinstance(body, str):
        sep = "@" if kind in ("ids", "query") else ":"
        return _parse_kind(kind, sep, body, name, base, d)
    allowed = _KIND_ALLOWED[kind]
    if kind == "ids":
        if not isinstance(body, (list, tuple)) or not body or not all(
                isinstance(i, (str, int)) and not isinstance(i, bool) for i in body):
            raise usage(d, "ids must be a non-empty list of ids or a file path", allowed)
        ids = tuple(str(i) for i in body)
        return SliceSpec(name or _ids_name(ids), "ids", str(d), ids=ids)
    if kind == "query":
        if isinstance(body, dict) and list(body) == ["where"]:
            where = _where_dict(body["where"], d)
            return SliceSpec(name or f"query:{str_pred(where)}", "query", str(d), where=where)
        if isinstance(body, dict) and list(body) == ["ids"]:
            inner = _parse_dict({"ids": body["ids"]}, base)
            return SliceSpec(name or f"query:{inner.name}", "query", str(d), ids=inner.ids)
        if isinstance(body, (list, tuple, np.ndarray)):
            return _query_rows(list(body) if isinstance(body, tuple) else body, name or f"query[{len(body)}]",
                               d, where="the query list")
        raise usage(d, "query must be a file path, {'where': ...}, {'ids': [...]} or a list of vectors", allowed)
    if not isinstance(body, dict):
        raise usage(d, f"{kind} must be a dict or a string", allowed)
    if kind == "bias":
        unknown = set(body) - {"protected", "label", "pairs"}
        bad = [k for k, v in body.items() if v is not None and not isinstance(v, str)]
        if unknown or bad:
            raise usage(d, f"bias takes string keys protected, label, pairs; got {sorted(body)}", allowed)
        return _bias({k: v for k, v in body.items() if v is not None}, name, d)
    unknown = set(body) - {"column", "clusters", "below"}
    if unknown:
        raise usage(d, f"rare takes keys column or clusters, and below; got {sorted(body)}", allowed)
    return _rare(name, d, column=body.get("column"), clusters=body.get("clusters"), below=body.get("below"))


def _where_dict(body: Any, source: Any) -> tuple[Clause, ...]:
    if isinstance(body, str):
        return parse_predicate(body, source)
    if not isinstance(body, dict) or not body:
        raise usage(source, "where must be a predicate string or a non-empty dict {COLUMN: VALUE | {OP: VALUE}}")
    clauses = []
    for column, cond in body.items():
        items = cond.items() if isinstance(cond, dict) else [("=", cond)]
        if isinstance(cond, dict) and not cond:
            raise usage(source, f"column {column!r} has an empty condition")
        for op, value in items:
            op = "=" if op == "==" else op
            if op not in OPS:
                raise usage(source, f"unknown operator {op!r} (allowed: {', '.join(OPS)})")
            values = value if op in ("in", "not in") else [value]
            if op in ("in", "not in") and (not isinstance(value, (list, tuple)) or not value):
                raise usage(source, f"{op!r} needs a non-empty list of values")
            if any(v is None or isinstance(v, (dict, list, tuple)) for v in values):
                raise usage(source, f"values of {column!r} must be numbers or strings; got {value!r}")
            clauses.append(Clause(str(column), op, tuple(values) if op in ("in", "not in") else value))
    return tuple(clauses)


# -- the entry point -----------------------------------------------------------------
def parse_slices(slices: Any) -> list[SliceSpec]:
    """A spec string, dict, or a list of them -> the slices, names unique."""
    items = list(slices) if isinstance(slices, (list, tuple)) else [slices]
    if not items:
        raise usage("", "no slice was given")
    specs: list[SliceSpec] = []
    for item in items:
        if isinstance(item, str):
            specs.extend(_parse_string(item, None, item))
        elif isinstance(item, dict):
            specs.append(_parse_dict(item, None))
        else:
            raise usage(item, f"a spec must be a string or a dict, not {type(item).__name__}")
    seen: dict[str, str] = {}
    for spec in specs:
        if spec.name in seen:
            raise ProbekitUsageError(
                f"two slices are named {spec.name!r} ({_show(seen[spec.name])} and {_show(spec.source)}); "
                "name them apart with 'NAME: SPEC' or a dict's 'name'.")
        seen[spec.name] = spec.source
    return specs
