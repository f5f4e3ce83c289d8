"""Pieces shared by the CLI subcommands: pools, KEY=VALUE parameters."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from probekit.errors import ProbekitUsageError

class PoolUnreachableError(ProbekitUsageError):
    """The probe set names a pool that cannot be loaded from here (and no --data was given)."""


BUILTIN_PREFIX = "builtin:"
DEFAULT_POOL = "builtin:digits"


def load_pool(data: str | None, id_field: str | None = None):
    """``builtin:NAME`` (or nothing: the default built-in pool) or a data file/directory."""
    spec = data or DEFAULT_POOL
    if spec.startswith(BUILTIN_PREFIX):
        if id_field is not None:
            raise ProbekitUsageError("--id-field applies to data files; built-in pools have their own ids.")
        from probekit.pool.builtin import load_builtin

        return load_builtin(spec[len(BUILTIN_PREFIX):])
    from probekit.pool import Pool

    return Pool.from_file(spec, id_field=id_field)


def pool_for(probeset, data: str | None, id_field: str | None = None, ignore_fingerprint: bool = False):
    """The pool a probe set was selected from: ``--data``, else the one its provenance names."""
    source = data or probeset.provenance.info.get("pool")
    if not source or source.startswith("<"):
        raise PoolUnreachableError(
            "this probe set does not say which pool it came from; give --data PATH (or builtin:NAME)."
        )
    if data is None and not source.startswith(BUILTIN_PREFIX) and not Path(source).exists():
        raise PoolUnreachableError(
            f"the pool this probe set came from ({source}) is not there any more; give --data PATH."
        )
    given_id_field = id_field
    if id_field is None and not source.startswith(BUILTIN_PREFIX):
        from probekit.pool import ID_COLUMN

        recorded = probeset.provenance.info.get("pool_id_field")
        if recorded is not None and recorded != ID_COLUMN:
            id_field = recorded  # derived ids are derived again; the id column it was selected with is reused
    try:
        pool = load_pool(source, id_field)
    except ProbekitUsageError as exc:
        if given_id_field is not None or id_field is None or repr(id_field) not in str(exc):
            raise  # not about the id column it reused
        raise ProbekitUsageError(
            f"{exc} (--id-field {id_field!r} is the id column the probe set was selected with; "
            "give --id-field for this pool)"
        ) from None
    probeset = probeset.validate_against(pool, ignore_fingerprint=ignore_fingerprint)
    return pool, probeset


def parse_value(raw: str) -> Any:
    """int, float, true/false, none, JSON lists, objects and quoted strings, else the text itself.

    A JSON-quoted value is always a string: ``stratify='"2024"'`` names a column 2024.
    """
    text = raw.strip()
    if text[:1] in '[{"':
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise ProbekitUsageError(f"value {raw!r} looks like JSON but does not parse: {exc.msg}.") from None
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered == "none":
        return None
    return text


def parse_key_values(items: list[str], option: str) -> dict:
    """``["ratio=10", "persistence=3"]`` -> ``{"ratio": 10, "persistence": 3}``."""
    out: dict = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ProbekitUsageError(f"{option} takes KEY=VALUE; got {item!r}.")
        out[key.strip()] = parse_value(raw)
    return out


def embedder_from_provenance(params: dict, text_field: str | None, embedding_field: str | None):
    """The embedder a selection used, rebuilt from its recorded parameters.

    Flags given on the command line win; otherwise the recorded embedder (when
    it can be rebuilt from its parameters) or the recorded text/embedding field.
    """
    import probekit.embedders as embedders

    if text_field is None and embedding_field is None:
        recorded = params.get("embedder")
        if isinstance(recorded, dict) and isinstance(recorded.get("params"), dict):
            cls = getattr(embedders, str(recorded.get("class")), None)
            if cls is not None and cls.__name__ != "TorchModelEmbedder":  # a callable is not recorded
                try:
                    return cls(**recorded["params"]), None, None
                except TypeError:
                    pass
        text_field, embedding_field = params.get("text_field"), params.get("embedding_field")
    return None, text_field, embedding_field
