"""Probe sets: a ranked selection of pool examples plus where it came from.

A :class:`ProbeSet` is immutable and compared by content.  Its parts:

* ``ids`` — ranked probe ids (tuple of str); rank r is ``ids[r]`` (0-based),
* ``indices`` — the probes' row positions in the pool (read-only int64 array),
* ``slices`` — one label (str or None) per probe, or None when unlabelled,
* ``scores`` — one float64 per probe (the selector's own score), or None,
* ``provenance`` — a :class:`Provenance`: strategy, params, seed, pool
  fingerprint, probekit version, schema version.  No timestamps anywhere: the
  same selection always serialises to the same bytes.

Every selector returns a ranking, so ``ps.head(m)`` is the selection of m
probes (docs/design.md §3).  ``head`` keeps the provenance unchanged: it records how
the ranking was made, and the ranking is the same.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Iterator, Sequence

import numpy as np

from probekit._version import __version__
from probekit.errors import PoolMismatchError, ProbekitUsageError
from probekit.params import AnyOf, Interval, validate
from probekit.pool import canonical_json

if TYPE_CHECKING:  # pragma: no cover
    from probekit.pool import Pool

#: Version of the probe-set serialisation (the Parquet file and the content hash).
SCHEMA_VERSION = 1


@dataclass(frozen=True)
class Provenance:
    """How a probe set was made.  ``params`` must be JSON-serialisable (it is
    normalised through canonical JSON: tuples become lists, numpy scalars become
    Python numbers) and is treated as read-only."""

    strategy: str
    params: dict = field(default_factory=dict)
    seed: int | None = None
    pool_fingerprint: str | None = None
    probekit_version: str = __version__
    schema_version: int = SCHEMA_VERSION
    # What the selector found out while selecting (e.g. how many points really
    # trained faiss's centroids): facts, not settings, so kept apart from params.
    info: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        validate(
            "Provenance",
            {"strategy": self.strategy, "params": self.params, "seed": self.seed,
             "pool_fingerprint": self.pool_fingerprint, "probekit_version": self.probekit_version,
             "schema_version": self.schema_version, "info": self.info},
            {"strategy": str, "params": dict, "info": dict, "seed": AnyOf(None, Interval(int, 0, None)),
             "pool_fingerprint": AnyOf(None, str), "probekit_version": str,
             "schema_version": Interval(int, 1, None)},
        )
        if not self.strategy:
            raise ProbekitUsageError("The 'strategy' parameter of Provenance must be a non-empty str. Got '' instead.")
        if any(not isinstance(k, str) for k in self.params):
            raise ProbekitUsageError(
                "The 'params' parameter of Provenance must have str keys. "
                f"Got {sorted(map(repr, self.params))} instead."
            )
        for name in ("params", "info"):
            try:
                value = json.loads(canonical_json(getattr(self, name), allow_nan=False))
            except (TypeError, ValueError) as exc:
                raise ProbekitUsageError(
                    f"The {name!r} parameter of Provenance must be JSON-serialisable (finite numbers, str keys): {exc}."
                ) from None
            object.__setattr__(self, name, value)
        if self.seed is not None:
            object.__setattr__(self, "seed", int(self.seed))
        object.__setattr__(self, "schema_version", int(self.schema_version))

    def to_dict(self) -> dict:
        """A JSON-ready dict (a copy: editing it does not touch the provenance)."""
        return {
            "strategy": self.strategy,
            "params": json.loads(canonical_json(self.params)),
            "seed": self.seed,
            "pool_fingerprint": self.pool_fingerprint,
            "probekit_version": self.probekit_version,
            "schema_version": self.schema_version,
            "info": json.loads(canonical_json(self.info)),
        }

    @classmethod
    def from_dict(cls, data: dict) -> "Provenance":
        expected = {"strategy", "params", "seed", "pool_fingerprint", "probekit_version", "schema_version"}
        if isinstance(data, dict) and "info" in data:
            expected = expected | {"info"}
        if not isinstance(data, dict) or set(data) != expected:
            got = sorted(data) if isinstance(data, dict) else type(data).__name__
            raise ProbekitUsageError(f"provenance must have exactly the keys {sorted(expected)}. Got {got} instead.")
        return cls(**data)

    def replace(self, **changes: Any) -> "Provenance":
        return Provenance(**{**self.to_dict(), **changes})

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Provenance):
            return NotImplemented
        return canonical_json(self.to_dict()) == canonical_json(other.to_dict())

    def __hash__(self) -> int:
        return hash(canonical_json(self.to_dict()))


def _frozen(array: np.ndarray) -> np.ndarray:
    array = np.array(array, copy=True)
    array.flags.writeable = False
    return array


@dataclass(frozen=True, eq=False, repr=False)
class ProbeSet:
    """Ranked probe ids + pool indices + optional slice labels and scores + provenance."""

    ids: tuple
    indices: np.ndarray
    slices: tuple | None = None
    scores: np.ndarray | None = None
    provenance: Provenance = field(kw_only=True)
    _hash: str = field(init=False, default="", compare=False)

    def __post_init__(self) -> None:
        ids = self.ids
        if isinstance(ids, np.ndarray) and ids.ndim != 1:
            raise ProbekitUsageError(f"ProbeSet ids must be 1-D. Got shape {ids.shape} instead.")
        ids = tuple(ids.tolist() if isinstance(ids, np.ndarray) else ids)
        bad = [v for v in ids if not isinstance(v, str)]
        if bad:
            raise ProbekitUsageError(f"ProbeSet ids must all be str. Got {bad[0]!r} ({type(bad[0]).__name__}) instead.")
        n = len(ids)
        if n == 0:
            raise ProbekitUsageError("A ProbeSet needs at least one probe. Got 0 instead.")
        if len(set(ids)) != n:
            seen: set = set()
            dup = next(v for v in ids if v in seen or seen.add(v))
            raise ProbekitUsageError(f"ProbeSet ids must be unique. Got {dup!r} more than once.")

        idx = np.asarray(self.indices)
        if idx.ndim != 1:
            raise ProbekitUsageError(f"ProbeSet indices must be 1-D. Got shape {idx.shape} instead.")
        if idx.size and not np.issubdtype(idx.dtype, np.integer):
            raise ProbekitUsageError(f"ProbeSet indices must be integers. Got dtype {idx.dtype} instead.")
        if idx.size != n:
            raise ProbekitUsageError(f"ProbeSet indices must have one entry per id ({n}). Got {idx.size} instead.")
        idx = idx.astype(np.int64)
        if (idx < 0).any():
            raise ProbekitUsageError(f"ProbeSet indices must be non-negative. Got {int(idx[idx < 0][0])} instead.")
        if np.unique(idx).size != n:
            raise ProbekitUsageError("ProbeSet indices must be unique. Got a repeated index.")

        slices = self.slices
        if slices is not None:
            slices = tuple(slices.tolist() if isinstance(slices, np.ndarray) else slices)
            if len(slices) != n:
                raise ProbekitUsageError(
                    f"ProbeSet slices must have one label per probe ({n}). Got {len(slices)} instead."
                )
            wrong = [s for s in slices if s is not None and not isinstance(s, str)]
            if wrong:
                raise ProbekitUsageError(f"ProbeSet slice labels must be str or None. Got {wrong[0]!r} instead.")

        scores = self.scores
        if scores is not None:
            try:
                scores = np.asarray(scores, dtype=np.float64)
            except (TypeError, ValueError):
                raise ProbekitUsageError("ProbeSet scores must be real numbers.") from None
            if scores.shape != (n,):
                raise ProbekitUsageError(f"ProbeSet scores must have shape ({n},). Got {scores.shape} instead.")
            scores = _frozen(scores)
        if not isinstance(self.provenance, Provenance):
            raise ProbekitUsageError(
                f"ProbeSet provenance must be a Provenance. Got {type(self.provenance).__name__} instead."
            )
        object.__setattr__(self, "ids", ids)
        object.__setattr__(self, "indices", _frozen(idx))
        object.__setattr__(self, "slices", slices)
        object.__setattr__(self, "scores", scores)
        object.__setattr__(self, "_hash", "")

    # -- construction helpers ----------------------------------------------
    @classmethod
    def from_indices(
        cls,
        pool: "Pool",
        indices: Sequence[int] | np.ndarray,
        *,
        strategy: str,
        params: dict | None = None,
        seed: int | None = None,
        slices: Sequence[str | None] | str | None = None,
        scores: Sequence[float] | np.ndarray | None = None,
        info: dict | None = None,
    ) -> "ProbeSet":
        """Build a probe set from ranked pool positions, stamping the pool fingerprint.

        ``slices`` is either one label per probe or the name of a pool column
        whose values (as str; missing values stay None) label the probes.
        """
        idx = np.asarray(indices)
        if idx.ndim != 1 or (idx.size and not np.issubdtype(idx.dtype, np.integer)):
            raise ProbekitUsageError(
                f"ProbeSet.from_indices needs a 1-D array of ints. Got dtype {idx.dtype} shape {idx.shape} instead."
            )
        out = idx[(idx < 0) | (idx >= len(pool))]
        if out.size:
            raise ProbekitUsageError(
                f"ProbeSet.from_indices indices must be in the range [0, {len(pool) - 1}]. Got {int(out[0])} instead."
            )
        if isinstance(slices, str):
            column = pool.column(slices)[idx]
            slices = tuple(
                None if v is None or (isinstance(v, float) and np.isnan(v)) else str(v) for v in column.tolist()
            )
        provenance = Provenance(strategy=strategy, params=dict(params or {}), seed=seed,
                                pool_fingerprint=pool.fingerprint, info=dict(info or {}))
        return cls(tuple(pool.ids[idx].tolist()), idx, slices, scores, provenance=provenance)

    # -- content ------------------------------------------------------------
    def canonical_payload(self) -> dict:
        """The JSON-ready dict the content hash is computed from (scores as float.hex)."""
        return {
            "schema_version": SCHEMA_VERSION,
            "ids": list(self.ids),
            "indices": self.indices.tolist(),
            "slices": None if self.slices is None else list(self.slices),
            "scores": None if self.scores is None else [float.hex(float(s)) for s in self.scores],
            "provenance": self.provenance.to_dict(),
        }

    @property
    def content_hash(self) -> str:
        """sha256 hex of :meth:`canonical_payload`; equality and hashing use it."""
        if not self._hash:
            digest = hashlib.sha256(canonical_json(self.canonical_payload()).encode("utf-8")).hexdigest()
            object.__setattr__(self, "_hash", digest)
        return self._hash

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ProbeSet):
            return NotImplemented
        return self.content_hash == other.content_hash

    def __hash__(self) -> int:
        return hash(self.content_hash)

    def __reduce__(self):
        # Rebuild through the constructor: unpickled numpy arrays would be writeable.
        return (_rebuild, (self.ids, self.indices, self.slices, self.scores, self.provenance))

    def __repr__(self) -> str:
        p = self.provenance
        pool = (p.pool_fingerprint or "none")[:12]
        return (f"ProbeSet(n={len(self)}, strategy={p.strategy!r}, seed={p.seed}, pool={pool}, "
                f"slices={self.slices is not None}, scores={self.scores is not None}, hash={self.content_hash[:12]})")

    # -- sequence behaviour -------------------------------------------------
    def __len__(self) -> int:
        return len(self.ids)

    def __iter__(self) -> Iterator[str]:
        return iter(self.ids)

    def __getitem__(self, rank: int) -> str:
        if isinstance(rank, bool) or not isinstance(rank, (int, np.integer)):
            raise TypeError(
                f"ProbeSet indices must be int ranks (use head(m) for prefixes). Got {type(rank).__name__}."
            )
        return self.ids[rank]

    def head(self, m: int) -> "ProbeSet":
        """The first m probes: the probe set of size m from the same ranking."""
        validate(f"ProbeSet.head (a probe set of {len(self)})", {"m": m}, {"m": Interval(int, 1, len(self))})
        m = int(m)
        return ProbeSet(
            self.ids[:m], self.indices[:m],
            None if self.slices is None else self.slices[:m],
            None if self.scores is None else self.scores[:m],
            provenance=self.provenance,
        )

    # -- pools ----------------------------------------------------------------
    def validate_against(self, pool: "Pool", ignore_fingerprint: bool = False) -> "ProbeSet":
        """Check this probe set belongs to ``pool`` and return the one to use with it.

        Strict (default): a recorded pool fingerprint must equal ``pool.fingerprint``
        (a probe set with no recorded fingerprint, e.g. imported without a pool,
        skips that check) and every index must point at the probe's id; returns ``self``.
        ``ignore_fingerprint=True``: probes are matched by id only and a copy
        re-indexed against ``pool`` is returned, its provenance's
        ``pool_fingerprint`` set to this pool (indices and fingerprint always
        describe the same pool; everything else in the provenance is kept).
        Raises :class:`PoolMismatchError` when ids are missing or do not line up.
        """
        recorded = self.provenance.pool_fingerprint
        if not ignore_fingerprint and recorded is not None and recorded != pool.fingerprint:
            same_rows = self.provenance.info.get("pool_content_fingerprint")
            if same_rows is not None and same_rows == pool.content_fingerprint:
                ignore_fingerprint = True  # the same examples in another row order: re-index by id
            else:
                was, now = _id_source(self.provenance.info.get("pool_id_field")), _id_source(pool.id_field)
                why = ("its content differs from the selection's pool"
                       if was == now else "give the same --id-field, or")
                raise PoolMismatchError(
                    f"probe set was made from pool {recorded[:12]} (ids: {was}) but pool {pool.name!r} is "
                    f"{pool.fingerprint[:12]} (ids: {now}); {why}{';' if was == now else ''} pass "
                    "ignore_fingerprint=True (CLI: --ignore-fingerprint) to match probes by id."
                )
        known = set(pool.ids.tolist())
        missing = [v for v in self.ids if v not in known]
        if missing:
            shown = ", ".join(repr(v) for v in missing[:5]) + (" ..." if len(missing) > 5 else "")
            raise PoolMismatchError(f"{len(missing)} of {len(self)} probe ids are not in pool {pool.name!r}: {shown}")
        if ignore_fingerprint:
            indices = pool.index_of(self.ids)
            provenance = self.provenance.replace(pool_fingerprint=pool.fingerprint)
            return ProbeSet(self.ids, indices, self.slices, self.scores, provenance=provenance)
        in_range = self.indices < len(pool)
        if not in_range.all() or pool.ids[self.indices].tolist() != list(self.ids):
            raise PoolMismatchError(
                f"probe indices do not point at the probe ids in pool {pool.name!r}; "
                "pass ignore_fingerprint=True (CLI: --ignore-fingerprint) to re-index probes by id."
            )
        return self

    # -- files ----------------------------------------------------------------
    def save(self, path: str | os.PathLike) -> None:
        """Write the canonical Parquet file (see :mod:`probekit.probeset.file`)."""
        from probekit.probeset.file import save

        save(self, path)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "ProbeSet":
        """Read a canonical Parquet file, checking schema version and content hash."""
        from probekit.probeset.file import load

        return load(path)


def _id_source(id_field: str | None) -> str:
    from probekit.pool import ID_COLUMN

    if id_field is None:
        return "not recorded"
    return "derived from content" if id_field == ID_COLUMN else f"column {id_field!r}"


def _rebuild(ids, indices, slices, scores, provenance) -> ProbeSet:
    return ProbeSet(ids, indices, slices, scores, provenance=provenance)
