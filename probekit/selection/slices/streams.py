"""The per-slice orderings a ConcernSelector interleaves, and the interleaving itself.

Each stream hands out *units* (one probe, or a counterfactual pair) in its own
order: ``OrderStream`` a fixed order (predicate, id and rare slices),
``BiasStream`` round robin over protected attribute x label strata,
``QueryStream`` greedy facility-location mutual information against a query
set. ``interleave`` apportions the budget among streams unit by unit, so every
prefix keeps the shares (within one probe, two with pairs).
"""
from __future__ import annotations

import heapq
from collections import deque
from typing import Callable

import numpy as np

FLMI_CHUNK = 1 << 22  # similarity entries per chunk of the first FLMI pass (32 MiB of float64)
FLMI_CACHE = 1 << 25  # the [N, Q] similarities are kept (float32, <= 128 MiB) when they fit here


class OrderStream:
    """A fixed order of pool positions; items another slice took are skipped."""

    def __init__(self, order: np.ndarray, labels: Callable[[int], str]) -> None:
        self.order, self.label, self.pos = order, labels, 0

    def peek(self, taken: np.ndarray) -> list[int] | None:
        while self.pos < len(self.order) and taken[self.order[self.pos]]:
            self.pos += 1
        return [int(self.order[self.pos])] if self.pos < len(self.order) else None

    def commit(self, unit: list[int]) -> None:
        self.pos += 1


class BiasStream:
    """Round robin over PROTECTED x LABEL strata; a counterfactual pair is one unit."""

    def __init__(self, units: list[list[int]], stratum: np.ndarray, rng: np.random.Generator, name: str) -> None:
        self.units, self.stratum, self.label = units, stratum, (lambda i: name)
        groups: dict[tuple, list[int]] = {}
        for u, rows in enumerate(units):  # a unit's signature: the strata it adds a probe to
            groups.setdefault(tuple(sorted(int(stratum[r]) for r in rows)), []).append(u)
        self.signatures = sorted(groups)
        self.queues = [deque(np.asarray(groups[sig])[rng.permutation(len(groups[sig]))].tolist())
                       for sig in self.signatures]
        self.counts = [0] * (int(stratum.max()) + 1)  # probes per stratum so far
        self._next = -1

    def peek(self, taken: np.ndarray) -> list[int] | None:
        best, counts = None, self.counts
        for j, sig in enumerate(self.signatures):
            queue = self.queues[j]
            while queue and any(taken[r] for r in self.units[queue[0]]):
                queue.popleft()  # another slice took a member: the unit cannot stay whole
            if queue:
                key = (max(counts[s] for s in sig), sum(counts[s] for s in sig), j)
                best = key if best is None or key < best else best
        if best is None:
            return None
        self._next = best[2]
        rows = self.units[self.queues[self._next][0]]
        return sorted(rows, key=lambda r: (counts[self.stratum[r]], self.stratum[r], r))

    def commit(self, unit: list[int]) -> None:
        self.queues[self._next].popleft()
        for r in unit:
            self.counts[self.stratum[r]] += 1


class QueryStream:
    """Lazy greedy facility-location mutual information with a query set."""

    BATCH = 32  # stale gains recomputed together: one small matrix product instead of 32

    def __init__(self, x: np.ndarray, q: np.ndarray, similarity: str, eta: float, name: str) -> None:
        self.label = lambda i: name
        self.x, self.similarity, self.eta = x, similarity, eta  # x: [N, d] as embedded (float32)
        q = np.asarray(q, dtype=np.float64)
        self.cache: np.ndarray | None = None
        self.x2 = np.einsum("ij,ij->i", x, x, dtype=np.float64)  # [N] squared norms
        self.bandwidth = None
        if similarity == "cosine":
            norm = np.linalg.norm(q, axis=1, keepdims=True)
            self.q = q / np.where(norm > 0, norm, 1.0)
            self.scale = 1.0 / np.sqrt(np.where(self.x2 > 0, self.x2, np.inf))  # [N] 1 / |x|, 0 for x = 0
        else:
            self.q, self.q2 = q, (q * q).sum(1)
            sample = np.arange(0, len(x), max(1, len(x) // 2048))  # a fixed subsample: deterministic
            self.bandwidth = float(np.median(self._d2(sample))) or 1.0
        self.best_q = np.zeros(len(self.q))  # [Q] max similarity to the chosen probes so far
        self.r = np.empty(len(x))  # [N] max_q s(a, q): the modular eta term
        bound = np.empty(len(x))  # [N] gain of each example given no probe
        cache = np.empty((len(x), len(q)), dtype=np.float32) if len(x) * len(q) <= FLMI_CACHE else None
        rows = max(1, FLMI_CHUNK // max(1, len(self.q)))
        for start in range(0, len(x), rows):
            s = self._sim(np.arange(start, min(start + rows, len(x))))
            if cache is not None:
                cache[start:start + rows] = s
                s = cache[start:start + rows].astype(np.float64)  # what later steps will read
            self.r[start:start + rows] = s.max(axis=1)
            bound[start:start + rows] = s.sum(axis=1) + eta * self.r[start:start + rows]
        self.cache = cache
        self.heap = list(zip((-bound).tolist(), range(len(x))))
        heapq.heapify(self.heap)
        self.fresh = np.full(len(x), -1)  # the version a heap key was computed at
        self.version = 0

    def _d2(self, idx: np.ndarray) -> np.ndarray:
        dots = self.x[idx].astype(np.float64) @ self.q.T
        return np.maximum(self.x2[idx, None] + self.q2[None, :] - 2.0 * dots, 0.0)

    def _sim(self, idx: np.ndarray) -> np.ndarray:
        """[len(idx), Q] similarities of pool rows idx to the query set."""
        if self.cache is not None:
            return self.cache[idx].astype(np.float64)
        if self.similarity == "cosine":
            dots = self.x[idx].astype(np.float64) @ self.q.T
            return np.clip(0.5 * (1.0 + dots * self.scale[idx, None]), 0.0, 1.0)
        return np.exp(-self._d2(idx) / self.bandwidth)

    def peek(self, taken: np.ndarray) -> list[int] | None:
        heap = self.heap
        while heap:
            a = heap[0][1]
            if taken[a]:
                heapq.heappop(heap)
            elif self.fresh[a] == self.version:
                return [a]  # its exact gain beats every other upper bound (ties: lower index)
            else:
                batch = []
                while heap and len(batch) < self.BATCH:
                    b = heap[0][1]
                    if taken[b]:
                        heapq.heappop(heap)
                    elif self.fresh[b] == self.version:
                        break
                    else:
                        batch.append(heapq.heappop(heap)[1])
                idx = np.asarray(batch)
                gains = np.maximum(self._sim(idx) - self.best_q, 0.0).sum(axis=1) + self.eta * self.r[idx]
                for g, b in zip(gains.tolist(), batch):
                    heapq.heappush(heap, (-g, b))
                self.fresh[idx] = self.version
        return None

    def commit(self, unit: list[int]) -> None:
        heapq.heappop(self.heap)
        self.best_q = np.maximum(self.best_q, self._sim(np.asarray(unit[:1]))[0])
        self.version += 1


def interleave(streams: list, shares: np.ndarray, n: int, size: int) -> tuple[list[int], list[str], list[int]]:
    """Sequential apportionment of the streams' units: every prefix tracks ``shares``."""
    taken = np.zeros(size, dtype=bool)
    counts = [0] * len(streams)
    out: list[int] = []
    labels: list[str] = []
    weights = [float(w) for w in shares]
    last_open, p = None, {}
    while len(out) < n:
        units = [s.peek(taken) for s in streams]
        open_ = [i for i, u in enumerate(units) if u]
        if not open_:
            break
        if open_ != last_open:  # exhausted slices give their share back
            w = [weights[i] for i in open_]
            w = w if sum(w) > 0 else [1.0] * len(open_)
            p, last_open = {i: wi / sum(w) for i, wi in zip(open_, w)}, open_
        k = len(out) + 1
        # The largest deficit at the unit's centre: a pair is placed so that its two places
        # straddle the slice's target (for single probes, the usual largest deficit).
        best, best_key = -1, None
        for i in open_:
            if p[i] > 0:
                half = (len(units[i]) - 1) / 2
                key = p[i] * (k + half) - counts[i] - half
                if best_key is None or key > best_key:
                    best, best_key = i, key
        streams[best].commit(units[best])
        for r in units[best][: n - len(out)]:  # a prefix may cut a pair only at its very end
            taken[r] = True
            out.append(r)
            labels.append(streams[best].label(r))
            counts[best] += 1
    return out, labels, counts


