"""Concern-targeted probes: bias, rare-case and query-coverage slices from a declarative spec.

The probes watch what a practitioner is worried about, written as slices
(``probekit.selection.slices``: column predicates, id lists, query sets, ``bias:``,
``rare:``). Each slice orders its own examples; the slices then share the
budget:

- **budget**: the slices get ``1 - background`` of the probes, split by the
  ``budget`` weights (equal by default); ``background`` goes to uniformly
  random examples of the whole pool, a reference for the population's loss
  dynamics. The slices are interleaved by a sequential apportionment: the next
  unit goes to the slice lagging its share most (ties to the earlier slice), so
  every prefix keeps each slice within about one probe of its share (within two
  when counterfactual pairs are used: a pair takes two consecutive places and is
  placed so that they straddle its slice's target). This largest-deficit rule
  can drift slightly past one probe with many skewed slices (1.1 probes seen
  with five); ``probekit.selection.apportionment``'s chairman rule bounds single probes
  strictly but has no unit-of-two form. The first m probes of a
  selection of n are the selection of m. An exhausted slice gives its share
  back; once every slice is exhausted the background ranks the rest of the pool
  (so n = len(pool) always works).
- **overlap**: an example goes to the first slice that reaches it; the others
  skip it. Apart from these skips, a slice's order does not depend on the others.
- **bias** (``bias:PROTECTED,LABEL[,pairs=COL]``): the examples with both values
  set, in strata PROTECTED x LABEL, taken round robin (the next unit is the one
  whose strata have the fewest probes), so the per-stratum counts stay within
  one of each other until a stratum runs out. With ``pairs``, the examples
  sharing a pair value form one unit (a counterfactual pair or tuple: at most one
  example per protected value, else an error) and come consecutively; a pair
  one of whose members another slice took is skipped whole. A prefix of the
  ranking can cut a pair only at its very end (the price of nesting).
- **rare** (``rare:COLUMN`` / ``rare:clusters``): every value of the column (or
  k-means cluster of the embeddings: k from the spec, else round(sqrt(N/2))
  within [2, 32], seeded by the selection seed) gets the same number of probes,
  round robin, rarest value first; so with 9 values, one holding 2% of the pool
  gets 1/9 of the slice. ``below=F`` keeps only values under the fraction F of
  the pool. Probes are labelled ``NAME=VALUE`` (``rare:topic=astronomy``;
  clusters by size rank, 0 the smallest). To target one value rather than
  every value, write a predicate (``topic=astronomy``), or
  ``rare:topic,below=0.05`` for every value under 5% of the pool without
  naming it (on ``builtin:toy-text`` both give the 46 astronomy examples).
- **query** (``query@FILE`` / ``query:PREDICATE``): greedy facility-location
  mutual information (submodlib's FLMI) between the chosen probes A and the
  query set Q over the whole pool,
  ``f(A) = sum_q max_a s(q, a) + eta * sum_a max_q s(a, q)``,
  with s the cosine similarity mapped to [0, 1] or an RBF kernel (bandwidth the
  median squared distance between Q and pool rows). Lazy greedy: gains only
  shrink, so a step recomputes stale gains (32 at a time) until the best one is
  fresh; ties go to the earlier example of the canonical order, so a query slice
  is deterministic. Memory: never N x N; the [N, |Q|] similarities are kept
  (float32) when N |Q| <= 2^25 (128 MiB), else recomputed from the features. Q
  beyond ``max_query`` rows (default 256: cached up to N = 131k) is subsampled,
  seeded, with a warning; the first pass costs O(N |Q| d).
- **predicate / ids**: a seeded random order of the matching examples: an
  unbiased sample of the concern, no embedder needed (coverage orderings are the
  ``cluster`` strategy's job; mix them with ``mixture``).

Every probe carries its slice's label (``Ranking.slices``): the slice name,
``NAME=VALUE`` in rare slices, ``background`` for background probes.

The slice grammar: ``probekit selectors concern``; every form, run on
``builtin:toy-text``: ``docs/slices.md``.
"""
from __future__ import annotations

import math
import numbers
import warnings
from collections import Counter
from typing import TYPE_CHECKING, Any, Callable, ClassVar

import numpy as np

from probekit.embedders.base import Embedder, resolve_embedder
from probekit.errors import ProbekitUsageError, ProbekitWarning
from probekit.params import AnyOf, Interval, Options
from probekit.selection.slices.parse import parse_slices
from probekit.selection.slices.rows import member_rows, need_column, nothing, query_set
from probekit.selection.slices.spec import SliceSpec
from probekit.selection.slices.streams import BiasStream, OrderStream, QueryStream, interleave
from probekit.selectors.base import Ranking, Selector
from probekit.selectors.random_sampling import MISSING, stratum_labels

if TYPE_CHECKING:
    from probekit.pool import Pool

class ConcernSelector(Selector):
    """Concern-targeted probes: bias, rare-case and query-coverage slices from a declarative spec."""

    name: ClassVar[str] = "concern"
    stochastic: ClassVar[bool] = True
    _constraints: ClassVar[dict[str, Any]] = {
        "slices": AnyOf(None, str, dict, list, tuple),
        "budget": AnyOf(None, list, tuple, dict),
        "background": Interval(float, 0, 1, closed="left"),
        "similarity": Options("cosine", "rbf"),
        "eta": Interval(float, 0, None),
        "max_query": Interval(int, 1, 1_000_000),
        "embedder": AnyOf(None, Embedder),
        "embedding_field": AnyOf(None, str),
        "text_field": AnyOf(None, str),
    }

    def __init__(self, *, slices: Any = None, budget: Any = None, background: float = 0.0,
                 similarity: str = "cosine", eta: float = 1.0, max_query: int = 256,
                 embedder: Embedder | None = None, embedding_field: str | None = None,
                 text_field: str | None = None) -> None:
        self.slices = slices  # spec strings / dicts (grammar below; docs/slices.md); the CLI's --slice
        self.budget = budget  # weights per slice (list, or {name: weight}); None: equal
        self.background = background  # share of uniformly random background probes; 0: only after the slices
        self.similarity = similarity  # cosine: scale-free, submodlib's default for FLMI
        self.eta = eta  # 1.0: submodlib's default weight of the query-relevance term
        self.max_query = max_query  # bounds the FLMI cost, O(N |Q| d); 256: [N, Q] kept in memory to N = 131k
        self.embedder = embedder  # query and cluster slices only
        self.embedding_field = embedding_field
        self.text_field = text_field

    def _specs(self) -> list[SliceSpec]:
        if self.slices is None or (isinstance(self.slices, (list, tuple)) and not self.slices):
            raise ProbekitUsageError(
                "The 'slices' parameter of ConcernSelector needs at least one slice spec, e.g. "
                f"'bias:group,label' or 'rare:topic' (--slice on the command line). Got {self.slices!r} instead.")
        return parse_slices(self.slices)

    def _weights(self, specs: list[SliceSpec]) -> np.ndarray:
        names = [s.name for s in specs]
        budget = self.budget
        if budget is None:
            return np.ones(len(specs))
        if isinstance(budget, dict):
            unknown = [k for k in budget if k not in names]
            missing = [k for k in names if k not in budget]
            if unknown or missing:
                raise ProbekitUsageError(
                    f"The 'budget' parameter of ConcernSelector must give a weight to each slice by name "
                    f"({', '.join(map(repr, names))}); unknown: {unknown}, missing: {missing}.")
            budget = [budget[k] for k in names]
        ok = len(budget) == len(specs) and all(
            isinstance(w, numbers.Real) and not isinstance(w, bool) and math.isfinite(w) and w >= 0 for w in budget)
        if not ok or not sum(budget) > 0:
            raise ProbekitUsageError(
                f"The 'budget' parameter of ConcernSelector must be {len(specs)} finite weights >= 0, not all 0 "
                f"(one per slice: {', '.join(map(repr, names))}). Got {self.budget!r} instead.")
        return np.asarray(budget, dtype=np.float64)

    def _check_params(self, pool: "Pool") -> None:
        self._weights(self._specs())

    def _rank(self, pool: "Pool", n: int, seed: int) -> Ranking:
        specs = self._specs()
        weights = self._weights(specs)
        shares = np.append(weights / weights.sum() * (1.0 - self.background), self.background)
        rngs = [np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(len(specs) + 1)]
        cache: dict[str, np.ndarray] = {}

        def features() -> np.ndarray:
            if "x" not in cache:
                embedder = resolve_embedder(pool, self.embedder, text_field=self.text_field,
                                            embedding_field=self.embedding_field)
                cache["x"] = embedder.embed(pool)  # [N, d] float32
            return cache["x"]

        streams, facts = [], []
        for spec, rng in zip(specs, rngs):
            stream, fact = self._stream(spec, pool, rng, features)
            streams.append(stream)
            facts.append({"name": spec.name, "kind": spec.kind, **fact})
        streams.append(OrderStream(rngs[-1].permutation(len(pool)), lambda i: "background"))
        idx, labels, counts = interleave(streams, shares, n, len(pool))
        for fact, share, count in zip(facts, shares, counts):
            fact.update(share=round(float(share), 6), probes=count)
        info = {"slices": facts, "background": {"share": float(self.background), "probes": counts[-1]}}
        return Ranking(indices=np.asarray(idx, dtype=np.int64), slices=labels, info=info)

    def _stream(self, spec: SliceSpec, pool: "Pool", rng: np.random.Generator,
                features: Callable[[], np.ndarray]) -> tuple[Any, dict]:
        name = spec.name
        if spec.kind in ("where", "ids"):
            rows = member_rows(pool, spec)
            return OrderStream(rng.permutation(rows), lambda i: name), {"examples": int(rows.size)}
        if spec.kind == "bias":
            return _bias_stream(spec, pool, rng)
        if spec.kind == "rare":
            return _rare_stream(spec, pool, rng, features)
        rows, q = query_set(pool, spec)
        x = features()
        if q is None:
            q = x[rows]
        elif q.shape[1] != x.shape[1]:
            raise ProbekitUsageError(f"slice {name!r}: query vectors have {q.shape[1]} dimensions, "
                                     f"the pool's features {x.shape[1]}.")
        fact: dict[str, Any] = {"query": len(q)}
        if len(q) > self.max_query:
            warnings.warn(f"slice {name!r}: {len(q)} query examples; a seeded sample of max_query="
                          f"{self.max_query} defines the concern.", ProbekitWarning, stacklevel=4)
            q = q[np.sort(rng.choice(len(q), self.max_query, replace=False))]
            fact["query_used"] = self.max_query
        stream = QueryStream(x, q, self.similarity, float(self.eta), name)
        fact.update(similarity=self.similarity, eta=float(self.eta))
        if stream.bandwidth is not None:
            fact["bandwidth"] = stream.bandwidth
        return stream, fact

    @classmethod
    def example(cls) -> "ConcernSelector":
        return cls(slices=["bias:group,label,pairs=pair_id", "rare:topic"])


def _codes(pool: "Pool", column: str) -> tuple[np.ndarray, np.ndarray]:
    """[N] int codes of the column's values (-1: missing) and the sorted values they index."""
    values, codes = np.unique(stratum_labels(pool, column), return_inverse=True)
    codes = codes.astype(np.int64)
    if MISSING in values:
        gone = int(np.flatnonzero(values == MISSING)[0])
        codes = np.where(codes == gone, -1, codes - (codes > gone))
        values = values[values != MISSING]
    return codes, values


def _bias_stream(spec: SliceSpec, pool: "Pool", rng: np.random.Generator) -> tuple[BiasStream, dict]:
    columns = [c for c in (spec.protected, spec.label) if c is not None] + ([spec.pairs] if spec.pairs else [])
    for column in columns:
        need_column(pool, column, spec)
    g, g_values = _codes(pool, spec.protected)
    y, y_values = _codes(pool, spec.label) if spec.label else (np.zeros(len(pool), np.int64), np.array([""]))
    rows = np.flatnonzero((g >= 0) & (y >= 0))
    if rows.size == 0:
        raise nothing(spec, f" (every example misses a value of {' or '.join(map(repr, columns[:2]))})")
    stratum = np.where((g >= 0) & (y >= 0), g * len(y_values) + y, -1)  # [N] PROTECTED x LABEL code
    if spec.pairs is None:
        units = [[r] for r in rows.tolist()]
    else:
        pair, pair_values = _codes(pool, spec.pairs)
        key = np.where(pair[rows] >= 0, pair[rows], -1 - rows)  # no pair value: a unit of its own
        order = np.lexsort((rows, key))
        rows, key = rows[order], key[order]
        per_group, counts = np.unique(key * len(g_values) + g[rows], return_counts=True)
        if (counts > 1).any():
            first = int(np.argmax(counts > 1))
            bad = int(per_group[first])
            raise ProbekitUsageError(
                f"slice {spec.name!r}: pair {pair_values[bad // len(g_values)]!r} of column {spec.pairs!r} holds "
                f"{int(counts[first])} examples of {spec.protected}={g_values[bad % len(g_values)]!r}; "
                "a counterfactual pair holds one example per protected value.")
        cuts = np.flatnonzero(np.diff(key)) + 1
        units = [part.tolist() for part in np.split(rows, cuts)]
    sizes = np.bincount(stratum[rows], minlength=len(g_values) * len(y_values))
    strata = {f"{gv}/{yv}" if spec.label else str(gv): int(sizes[i * len(y_values) + j])
              for i, gv in enumerate(g_values) for j, yv in enumerate(y_values) if sizes[i * len(y_values) + j]}
    fact = {"examples": int(rows.size), "units": len(units), "strata": strata}
    return BiasStream(units, stratum, rng, spec.name), fact


def _rare_stream(spec: SliceSpec, pool: "Pool", rng: np.random.Generator,
                 features: Callable[[], np.ndarray]) -> tuple[OrderStream, dict]:
    fact: dict[str, Any] = {}
    if spec.column is not None:
        need_column(pool, spec.column, spec)
        values = stratum_labels(pool, spec.column)
    else:
        x = features()
        k = spec.clusters or int(np.clip(round(math.sqrt(len(x) / 2)), 2, 32))
        k = min(k, len(x))
        values = _kmeans_sizes_ranked(x, k, rng)
        fact["k"] = k
    sizes = Counter(values.tolist())
    strata = sorted(sizes, key=lambda v: (sizes[v], v))  # rarest first
    if spec.below is not None:
        strata = [v for v in strata if sizes[v] < spec.below * len(values)]
        if not strata:
            raise nothing(spec, f" (no value holds less than {spec.below:g} of the pool)")
    orders = [rng.permutation(np.flatnonzero(values == v)) for v in strata]
    # Round robin: the j-th example of every stratum before the (j+1)-th of any, rarest stratum first.
    step = np.concatenate([np.arange(len(o)) for o in orders])
    which = np.concatenate([np.full(len(o), s) for s, o in enumerate(orders)])
    order = np.concatenate(orders)[np.lexsort((which, step))]
    fact.update(examples=int(order.size), values=len(strata),
                rarest={str(v): sizes[v] for v in strata[:10]})
    return OrderStream(order, lambda i, v=values, name=spec.name: f"{name}={v[i]}"), fact


def _kmeans_sizes_ranked(x: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """k-means (k-means++ seeding, Lloyd) labels as strings of the cluster's size rank ("0": smallest).

    Plain numpy: k is small (<= 32 by default), so [N, k] distances are cheap; like faiss,
    the centroids train on at most 256 * k points (a seeded sample), then every row is assigned.
    """
    def dist2(points: np.ndarray, c: np.ndarray) -> np.ndarray:  # [len(points), len(c)]
        return np.maximum((points * points).sum(1)[:, None] - 2.0 * points @ c.T + (c * c).sum(1)[None, :], 0.0)

    train = x if len(x) <= 256 * k else x[np.sort(rng.choice(len(x), 256 * k, replace=False))]
    centers = train[[int(rng.integers(len(train)))]]
    closest = dist2(train, centers)[:, 0].astype(np.float64)
    for _ in range(1, k):  # k-means++: the next seed drawn with probability ~ squared distance
        cumulative = np.cumsum(closest)
        pick = min(int(np.searchsorted(cumulative, rng.random() * cumulative[-1], side="right")), len(train) - 1)
        centers = np.vstack([centers, train[pick]])
        closest = np.minimum(closest, dist2(train, train[pick:pick + 1])[:, 0])
    labels = dist2(train, centers).argmin(1)
    for _ in range(50):
        onehot = (labels[:, None] == np.arange(k)[None, :]).astype(train.dtype)  # [n, k]
        sizes = onehot.sum(0)
        sums = (train.T @ onehot).T  # [k, d]; this operand order is ~100x faster in OpenBLAS than onehot.T @ x
        centers = np.where(sizes[:, None] > 0, sums / np.maximum(sizes, 1)[:, None], centers)
        new = dist2(train, centers).argmin(1)
        if np.array_equal(new, labels):
            break
        labels = new
    labels = dist2(x, centers).argmin(1) if train is not x else labels
    sizes = np.bincount(labels, minlength=k)
    present = [c for c in range(k) if sizes[c]]
    order = sorted(present, key=lambda c: (sizes[c], int(np.flatnonzero(labels == c)[0])))
    rank = np.zeros(k, dtype=np.int64)
    rank[order] = np.arange(len(order))
    return np.array([str(v) for v in rank[labels]], dtype=object)
