"""Modes a person can read: the probes that move together, what they are, and which slices dominate.

A *mode* is one eigenvector of a window's 2RDM C, as loadings over the probes
(docs/design.md §1). The probes loading most on the leading one move together.
This module says who they are, once for ``probekit analyze`` and the Monitor:

- :class:`ProbeDescriptions`: per probe, its id, a short text (an excerpt of a text
  column, or a few ``field=value`` pairs) and slice labels (one or more label fields:
  a probe set's own ``slices``, pool columns);
- :func:`describe_probes`: those descriptions from a pool and a probe set;
- :func:`over_represented`: which labels the top-k probes hold more of than their share;
- :func:`describe_mode`: the top-k probes of one eigenvector of an ``RDMStats``, described.

**Over-representation** (defined once, here). The probe set has n probes; the mode's
top k are the k probes with the largest absolute loading (``RDMStats.top_probes``). For a
label field f and a value v, N = the probes of the whole set with f = v, c = the top-k
probes with f = v, and expected = k N / n (v's share of the set, times k). v is
over-represented when c > expected. Those are listed by ratio c / expected, highest first
(ties: larger c, then field and value), each with c, k, N, n, expected, the ratio and
p = P(X >= c) for X hypergeometric (k draws without replacement from n probes of which N
have the label): the chance that k probes taken at random hold c or more of them.
Unlabelled probes (None) count in n and are never a label of their own.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import numpy as np

from probekit.errors import ProbekitUsageError

if TYPE_CHECKING:  # pragma: no cover
    from probekit.pool import Pool
    from probekit.rdm.spectral import RDMStats

__all__ = [
    "PROBE_SET", "ProbeDescriptions", "Mode", "ModeProbe", "SliceExcess",
    "describe_mode", "describe_probes", "excerpt", "over_represented", "text_column",
]

#: Label field of a probe set's own ``slices`` (a pool column is named by its column name).
PROBE_SET = "probe_set"
#: Columns taken as a probe's text when present and holding strings, first match wins.
TEXT_COLUMNS = ("text", "prompt", "sentence", "question", "content", "document", "input")
#: A pool column used as a slice field by default, when present (the reference families' convention).
DEFAULT_SLICE_COLUMN = "slice"
EXCERPT_CHARS = 80
DEFAULT_FIELDS = 3  # without a text column: this many fields describe a probe


def excerpt(value: Any, width: int = EXCERPT_CHARS) -> str:
    """One line of at most ``width`` characters: whitespace collapsed, cut with '...'."""
    if isinstance(value, float):
        text = f"{value:.4g}"
    elif isinstance(value, (list, tuple, np.ndarray)):
        text = "[" + ", ".join(excerpt(v, width) for v in list(value)[:8]) + (", ...]" if len(value) > 8 else "]")
    else:
        text = str(value)
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 3].rstrip() + "..."


def _label(value: Any) -> str | None:
    """A label value as str; None and NaN are unlabelled."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, np.generic):
        value = value.item()
    return excerpt(value, 60)


@dataclass(frozen=True)
class ProbeDescriptions:
    """Who the probes are: ids, optional short texts, optional slice labels (field -> one per probe)."""

    ids: tuple
    texts: tuple | None = None
    labels: Mapping[str, tuple] = field(default_factory=dict)

    @classmethod
    def build(cls, ids: Sequence[str], texts: Sequence[Any] | None = None,
              labels: Sequence[Any] | Mapping[str, Sequence[Any]] | None = None, *,
              owner: str = "ProbeDescriptions") -> "ProbeDescriptions":
        """Check and normalise: texts become one-line excerpts, labels str or None.

        ``labels``: one label per probe (the field :data:`PROBE_SET`, as a ``ProbeSet``'s
        ``slices``), or a mapping field -> one label per probe (pool columns).
        """
        ids = tuple(str(v) for v in ids)
        n = len(ids)
        if texts is not None:
            if isinstance(texts, str) or len(texts) != n:
                raise ProbekitUsageError(f"{owner}: probe_texts must hold one text per probe ({n}). "
                                         f"Got {'a str' if isinstance(texts, str) else len(texts)} instead.")
            texts = tuple(None if t is None else excerpt(t) for t in texts)
        fields: dict[str, tuple] = {}
        if labels is not None:
            given = labels if isinstance(labels, Mapping) else {PROBE_SET: labels}
            for name, values in given.items():
                if not isinstance(name, str) or isinstance(values, str) or len(values) != n:
                    got = "a str" if isinstance(values, str) else len(values)
                    raise ProbekitUsageError(f"{owner}: probe_labels {name!r} must hold one label per probe ({n}). "
                                             f"Got {got} instead.")
                fields[name] = tuple(_label(v) for v in values)
        return cls(ids, texts, fields)

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def detailed(self) -> bool:
        """True when there is more to say than the ids."""
        return self.texts is not None or bool(self.labels)


def label_text(field_name: str, value: str) -> str:
    """How a label reads: ``slice 'VALUE'`` for a probe set's own slices, ``FIELD=VALUE`` for a column."""
    return f"slice '{value}'" if field_name == PROBE_SET else f"{field_name}={value}"


def _percent(part: int, whole: int) -> str:
    x = 100.0 * part / whole
    return f"{x:.0f}" if x >= 10 else f"{x:.2g}"


@dataclass(frozen=True)
class SliceExcess:
    """One over-represented label of a mode's top k (the module doc has the definition)."""

    field: str
    value: str
    in_top: int  # c
    top: int  # k
    in_set: int  # N
    n_probes: int  # n
    expected: float  # k N / n
    ratio: float  # c / expected
    p_value: float  # P(X >= c), X ~ hypergeometric(n, N, k)

    @property
    def label(self) -> str:
        return label_text(self.field, self.value)

    def sentence(self) -> str:
        verb = "are in" if self.field == PROBE_SET else "are"
        return (f"{self.in_top} of the top {self.top} probes {verb} {self.label}, "
                f"{_percent(self.in_set, self.n_probes)}% of the probes ({self.in_set} of {self.n_probes}; "
                f"expected {self.expected:.3g}, {self.ratio:.3g}x; p = {self.p_value:.2g})")

    def as_dict(self) -> dict:
        return {"field": self.field, "value": self.value, "label": self.label, "in_top": self.in_top,
                "top": self.top, "in_set": self.in_set, "probes": self.n_probes,
                "expected": round(self.expected, 6), "ratio": round(self.ratio, 6),
                "p_value": float(f"{self.p_value:.6g}"), "text": self.sentence()}


def _upper_tail(n: int, n_label: int, k: int, c: int) -> float:
    """P(X >= c) for X ~ hypergeometric: k draws from n items of which n_label are marked."""
    from scipy.stats import hypergeom

    return float(hypergeom.sf(c - 1, n, n_label, k))


def over_represented(top: Sequence[int], labels: Mapping[str, Sequence[str | None]],
                     n_probes: int) -> list[SliceExcess]:
    """Labels the probes at positions ``top`` hold more of than their share of all ``n_probes``, by ratio."""
    k = len(top)
    out = []
    if k == 0:
        return out
    for name, values in labels.items():
        whole: dict[str, int] = {}
        for v in values:
            if v is not None:
                whole[v] = whole.get(v, 0) + 1
        counts: dict[str, int] = {}
        for j in top:
            v = values[int(j)]
            if v is not None:
                counts[v] = counts.get(v, 0) + 1
        for value, c in counts.items():
            big_n = whole[value]
            expected = k * big_n / n_probes
            if c > expected:
                out.append(SliceExcess(name, value, c, k, big_n, n_probes, expected, c / expected,
                                       _upper_tail(n_probes, big_n, k, c)))
    out.sort(key=lambda e: (-e.ratio, -e.in_top, e.field, e.value))
    return out


@dataclass(frozen=True)
class ModeProbe:
    index: int  # position in the probe set
    probe: str
    loading: float
    text: str | None = None
    labels: Mapping[str, str | None] = field(default_factory=dict)

    def as_dict(self, detailed: bool) -> dict:
        out = {"probe": self.probe, "loading": round(self.loading, 6)}
        if detailed:
            out["text"] = self.text
            out["slices"] = dict(self.labels)
        return out


@dataclass(frozen=True)
class Mode:
    """The top probes of one eigenvector, described, and the labels over-represented among them."""

    probes: tuple  # ModeProbe, strongest first
    n_probes: int
    component: int = 0
    over_represented: tuple = ()  # SliceExcess, by ratio
    detailed: bool = False  # texts or labels were given
    labelled: bool = False  # labels were given: over_represented was computed

    def as_dict(self) -> dict:
        """JSON-ready: ``top_probes`` (``probe``, ``loading``; with descriptions also ``text`` and
        ``slices``) and, when the probes carry labels, ``over_represented``."""
        out: dict[str, Any] = {"top_probes": [p.as_dict(self.detailed) for p in self.probes]}
        if self.labelled:
            out["over_represented"] = [e.as_dict() for e in self.over_represented]
        return out

    def probe_lines(self, id_width: int = 24) -> list[str]:
        """One line per probe: rank, id, loading, then its labels and text when known."""
        lines = []
        for rank, p in enumerate(self.probes, 1):
            line = f"  {rank:>3}  {p.probe:<{id_width}} {p.loading:+.4f}"
            tags = [label_text(f, v) for f, v in p.labels.items() if v is not None]
            if tags:
                line += "  [" + ", ".join(tags) + "]"
            if p.text is not None:
                line += f"  {p.text}"
            lines.append(line)
        return lines

    def excess_lines(self, limit: int = 5) -> list[str]:
        """What the top k over-represent (at most ``limit`` labels); nothing when no labels were given."""
        if not self.labelled:
            return []
        k = len(self.probes)
        if not self.over_represented:
            return [f"  no slice is over-represented among the top {k} probes (of {self.n_probes})"]
        lines = [f"  over-represented among the top {k} probes (of {self.n_probes}), by ratio to their share:"]
        lines += [f"    {e.sentence()}" for e in self.over_represented[:limit]]
        if len(self.over_represented) > limit:
            lines.append(f"    ... and {len(self.over_represented) - limit} more (summary.json has them all)")
        return lines

    def lines(self) -> list[str]:
        return self.probe_lines() + self.excess_lines()


def describe_mode(stats: "RDMStats", descriptions: ProbeDescriptions | None, k: int = 10,
                  component: int = 0) -> Mode | None:
    """The ``k`` probes loading most on eigenvector ``component`` of ``stats``, described.

    None when the window has no loadings for it (computed without, or a zero eigenvalue).
    """
    if stats.loadings is None or stats.loadings.shape[0] <= component:
        return None
    top = stats.top_probes(k, component)
    if top.size == 0:
        return None
    n = stats.n_probes
    d = descriptions if descriptions is not None else ProbeDescriptions(tuple(str(i) for i in range(n)))
    if len(d) != n:
        raise ProbekitUsageError(f"describe_mode: {len(d)} probe descriptions for {n} probes.")
    probes = tuple(
        ModeProbe(int(j), d.ids[j], float(stats.loadings[component, j]),
                  None if d.texts is None else d.texts[j], {f: v[j] for f, v in d.labels.items()})
        for j in top.tolist()
    )
    excess = tuple(over_represented(top, d.labels, n)) if d.labels else ()
    return Mode(probes, n, component, excess, d.detailed, bool(d.labels))


def _is_string(pool: "Pool", name: str) -> bool:
    import pyarrow as pa

    kind = pool.dataset.data.table.schema.field(name).type
    return pa.types.is_string(kind) or pa.types.is_large_string(kind)


def text_column(pool: "Pool") -> str | None:
    """The pool's obvious text column: the first of :data:`TEXT_COLUMNS` that holds strings."""
    for name in TEXT_COLUMNS:
        if name in pool.columns and name != pool.id_field and _is_string(pool, name):
            return name
    return None


def _scalar_columns(pool: "Pool", skip: set[str]) -> list[str]:
    """Columns of one value per row (no lists, structs), not in ``skip``, and not the same on every row."""
    import pyarrow as pa

    table = pool.dataset.data.table
    out = []
    for name in table.column_names:
        kind = table.schema.field(name).type
        if name in skip or pa.types.is_nested(kind) or pa.types.is_binary(kind):
            continue
        if len(set(table.column(name).slice(0, 10_000).to_pylist())) > 1:  # a sample of the rows suffices
            out.append(name)
    return out


def _check_columns(pool: "Pool", names: Sequence[str], flag: str) -> None:
    missing = [c for c in names if c not in pool.columns]
    if missing:
        raise ProbekitUsageError(f"{flag} {missing[0]!r} is not a column of the pool; "
                                 f"columns: {', '.join(pool.columns)}.")


def describe_probes(pool: "Pool | None", probes: Any = None, *, describe_fields: Sequence[str] | None = None,
                    slice_fields: Sequence[str] | None = None) -> ProbeDescriptions:
    """Descriptions of ``probes`` (a ``ProbeSet``, probe ids, or None: every pool row, in row order).

    - text: the ``describe_fields`` columns (one string column: its value; else ``field=value`` pairs),
      else the pool's text column (:data:`TEXT_COLUMNS`), else up to three columns of one
      value per row that are not the same on every row (not the id nor a slice field);
    - labels: a ``ProbeSet``'s own slices (field :data:`PROBE_SET`; left out when a slice field
      gives every probe the same labels), and the ``slice_fields`` columns (default: the column
      ``slice`` when the pool has one; ``[]`` for none).

    Without a pool only the ids and a probe set's slices are known.
    """
    from probekit.probeset import ProbeSet

    labels: dict[str, Sequence[Any]] = {}
    if isinstance(probes, ProbeSet):
        ids = list(probes.ids)
        if probes.slices is not None:
            labels[PROBE_SET] = probes.slices
    elif probes is None:
        if pool is None:
            raise ProbekitUsageError("describe_probes needs a pool, probes, or both.")
        ids = pool.ids.tolist()
    else:
        ids = [str(v) for v in probes]
    if pool is None:
        return ProbeDescriptions.build(ids, None, labels or None, owner="describe_probes")
    _check_columns(pool, list(describe_fields or []), "--describe-field")
    if slice_fields is None:
        slice_fields = [DEFAULT_SLICE_COLUMN] if DEFAULT_SLICE_COLUMN in pool.columns else []
    _check_columns(pool, list(slice_fields), "--slice-field")
    rows = pool.index_of(ids)
    for name in slice_fields:
        labels[name] = pool.column(name)[rows].tolist()
    if PROBE_SET in labels and any(  # a probe set stratified by a column: say it once, by the column
            [_label(v) for v in values] == [_label(v) for v in labels[PROBE_SET]]
            for name, values in labels.items() if name != PROBE_SET):
        del labels[PROBE_SET]
    fields = list(describe_fields or [])
    if not fields:
        text = text_column(pool)
        fields = [text] if text else _scalar_columns(pool, {pool.id_field, *slice_fields})[:DEFAULT_FIELDS]
    texts = None
    if fields:
        values = {f: pool.column(f)[rows].tolist() for f in fields}
        if len(fields) == 1 and _is_string(pool, fields[0]):  # a text: shown as it is
            texts = [None if v is None else excerpt(v) for v in values[fields[0]]]
        else:
            texts = [excerpt(" ".join(f"{f}={excerpt(values[f][i], 40)}" for f in fields)) for i in range(len(ids))]
    return ProbeDescriptions.build(ids, texts, labels or None, owner="describe_probes")
