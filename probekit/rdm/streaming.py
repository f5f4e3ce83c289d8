"""The dynamical 2RDM as a streaming statistic (torchmetrics style).

``DynamicalRDM`` keeps the last W admitted records in a ring buffer together
with their W x W Gram matrix, updated in O(W n) per record; ``compute()``
turns the Gram matrix into SHC, PR, the spectrum and the leading probe
loadings through :mod:`probekit.rdm.spectral` (no n x n matrix, ever).

    rdm = DynamicalRDM(window=32)
    for step in range(steps):
        train_step()
        if step % 10 == 0:
            rdm.update(per_sample_losses(model, probes), step=step)
            stats = rdm.compute()        # None until W records are in
            if stats is not None:
                log(stats.shc, stats.pr)

``rdm_series`` (in :mod:`probekit.rdm.offline`) computes the same numbers for a
whole [records, probes] matrix at once.
"""
from __future__ import annotations

import copy
import warnings
import zlib
from typing import Any, Sequence

import numpy as np

from probekit.errors import ProbekitUsageError, ProbekitWarning
from probekit.params import AnyOf, validate
from probekit.rdm.inputs import as_loss_vector, check_rdm_params
from probekit.rdm.spectral import RDMStats, loadings_from_coef, spectral_stats

__all__ = ["DynamicalRDM", "RDMStats"]


class DynamicalRDM:
    """Streaming dynamical 2RDM over a sliding window of per-sample loss records.

    Parameters
    ----------
    window : int, default 32
        W, the number of records in the sliding window. The 2RDM has rank
        <= W - 1, so W bounds both the cost and the resolution.
    stride : int, default 1
        Admit every ``stride``-th call to ``update`` (the others are skipped
        without being read); lets a caller feed every step and record every k.
    detrend : {"none", "linear", "diff"}, default "none"
        What to remove inside the window before the covariance: the column
        means (the paper's definition), a per-probe linear trend, or use first
        differences. Drift dominates raw SHC during transitions (docs/findings.md).
    top_k : int, default 3
        How many leading eigenvalues (and loadings) to report; 0 skips the
        W x W eigendecomposition entirely.
    loadings : bool, default True
        Whether ``compute()`` also returns the top-k eigenvectors of C as probe
        loadings (O(W n k) extra).
    probe_ids : sequence of str, optional
        Names of the probes, carried through ``merge`` so loadings stay labelled.

    Records with NaN or inf are rejected: counted in ``n_rejected``, never
    admitted, so they cannot poison the window.
    """

    def __init__(
        self,
        window: int = 32,
        *,
        stride: int = 1,
        detrend: str = "none",
        top_k: int = 3,
        loadings: bool = True,
        probe_ids: Sequence[str] | None = None,
    ) -> None:
        self.window = window
        self.stride = stride
        self.detrend = detrend
        self.top_k = top_k
        self.loadings = loadings
        self.probe_ids = None if probe_ids is None else list(probe_ids)
        self._checked = False
        self.reset()

    # -- state ---------------------------------------------------------------
    def reset(self) -> None:
        """Forget every record (configuration is kept)."""
        self._n: int | None = None
        self._buf: np.ndarray | None = None  # [W, n] records minus _ref, ring order
        self._gram: np.ndarray | None = None  # [W, W] inner products of _buf rows
        self._ref: np.ndarray | None = None  # [n] shift reference
        self._same: np.ndarray | None = None  # [W] record equals the previous admitted one
        self._steps = np.zeros(0, dtype=np.int64)
        self._pos = 0  # next ring slot
        self._count = 0  # records admitted since reset
        self._seen = 0  # update() calls since reset
        self._rejected = 0
        self._history = 0  # crc32 of every update's (index, step, admitted): shards must agree on it
        self._last: np.ndarray | None = None  # last admitted raw record (equality run)
        self._cache: RDMStats | None = None
        self._cache_valid = False
        self._warned = False

    @property
    def n_records(self) -> int:
        """Records admitted since the last reset."""
        return self._count

    @property
    def n_rejected(self) -> int:
        """Records refused because they held NaN or inf."""
        return self._rejected

    @property
    def n_probes(self) -> int | None:
        return self._n

    @property
    def ready(self) -> bool:
        """True once W records are in the window."""
        return self._count >= self.window

    def _check_params(self) -> None:
        if self._checked:
            return
        check_rdm_params("DynamicalRDM", self.window, self.stride, self.detrend, self.top_k)
        validate(
            "DynamicalRDM",
            {"loadings": self.loadings, "probe_ids": self.probe_ids},
            {"loadings": bool, "probe_ids": AnyOf(None, list)},
        )
        self._checked = True

    # -- update --------------------------------------------------------------
    def update(self, losses: Any, step: int | None = None) -> None:
        """Add one record: the n per-sample losses of the probes at one time."""
        self._check_params()
        x = as_loss_vector(losses)
        if self._n is None:
            self._allocate(x.size)
        elif x.size != self._n:
            raise ProbekitUsageError(
                f"DynamicalRDM.update got {x.size} losses but the window holds records of "
                f"{self._n} probes; every record must cover the same probes in the same order."
            )
        self._seen += 1
        if (self._seen - 1) % self.stride:
            return
        admitted = bool(np.isfinite(x).all())
        mark = np.array([self._seen - 1, -1 if step is None else int(step), admitted], dtype="<i8")
        self._history = zlib.crc32(mark.tobytes(), self._history)
        if not admitted:
            self._rejected += 1
            if not self._warned:
                self._warned = True
                warnings.warn(
                    f"DynamicalRDM rejected a record with NaN or inf losses "
                    f"({int((~np.isfinite(x)).sum())} of {x.size}); further rejections are "
                    "counted in .n_rejected without a warning.",
                    ProbekitWarning,
                    stacklevel=2,
                )
            return
        self._admit(x, self._seen - 1 if step is None else int(step))

    def _allocate(self, n: int) -> None:
        if self.probe_ids is not None and len(self.probe_ids) != n:
            raise ProbekitUsageError(
                f"DynamicalRDM was given {len(self.probe_ids)} probe_ids but the first "
                f"record has {n} losses; they must match."
            )
        w = self.window
        self._n = n
        self._buf = np.zeros((w, n))
        self._gram = np.zeros((w, w))
        self._same = np.zeros(w, dtype=bool)
        self._steps = np.zeros(w, dtype=np.int64)

    def _admit(self, x: np.ndarray, step: int) -> None:
        w, slot = self.window, self._pos
        if self._ref is None:
            self._ref = x.copy()
        y = x - self._ref
        self._buf[slot] = y
        filled = min(self._count + 1, w)
        # O(W n): one new row and column of the Gram matrix.
        dots = self._buf[:filled] @ y
        self._gram[slot, :filled] = dots
        self._gram[:filled, slot] = dots
        self._same[slot] = self._last is not None and np.array_equal(x, self._last)
        self._last = x
        self._steps[slot] = step
        self._count += 1
        self._pos = (slot + 1) % w
        self._cache_valid = False
        if self._pos == 0:
            self._rereference()

    def _rereference(self) -> None:
        # Once per W records, move the reference to the window mean and rebuild
        # the Gram matrix exactly (O(W^2 n), amortised O(W n)): the shifted
        # records stay small, so their inner products keep their digits however
        # far the losses drift.
        shift = self._buf.mean(axis=0)
        self._buf -= shift
        self._ref = self._ref + shift
        self._gram = self._buf @ self._buf.T

    # -- compute -------------------------------------------------------------
    def _order(self) -> np.ndarray:
        """Ring slots in chronological order (oldest first)."""
        return (self._pos + np.arange(self.window)) % self.window

    def compute(self) -> RDMStats | None:
        """Statistics of the current window, or None before W records are in.

        Pure: it reads the state and never changes it; the result is cached
        until the next admitted record.
        """
        self._check_params()
        if self._cache_valid:
            return self._cache
        if not self.ready:
            return None
        order = self._order()
        gram = self._gram[np.ix_(order, order)][None]
        degenerate = np.array([bool(self._same[order[1:]].all())])
        want = self.loadings and self.top_k > 0
        out = spectral_stats(gram, self.detrend, self._n, self.top_k, degenerate, vectors=want)
        loadings = None
        if want:
            # Put the coefficients in ring order instead of copying the records
            # into chronological order (a W x n copy per record).
            coef = np.empty_like(out["coef"][0])
            coef[:, order] = out["coef"][0]
            loadings = loadings_from_coef(coef, self._buf)
        self._cache = RDMStats(
            shc=float(out["shc"][0]),
            pr=float(out["pr"][0]),
            trace=float(out["trace"][0]),
            frobenius_sq=float(out["frobenius_sq"][0]),
            spectrum=out["spectrum"][0],
            eigenvalues=out["eigenvalues"][0] if self.top_k > 0 else np.zeros(0),
            loadings=loadings,
            n_probes=self._n,
            window=self.window,
            degenerate=bool(degenerate[0]),
            step=int(self._steps[order[-1]]),
        )
        self._cache_valid = True
        return self._cache

    def window_records(self) -> np.ndarray:
        """The records in the window, oldest first ([W or fewer, n], a copy)."""
        if self._count == 0:
            return np.zeros((0, self._n or 0))
        filled = min(self._count, self.window)
        order = self._order()[-filled:] if self._count >= self.window else np.arange(filled)
        return self._buf[order] + self._ref

    def window_steps(self) -> np.ndarray:
        filled = min(self._count, self.window)
        order = self._order()[-filled:] if self._count >= self.window else np.arange(filled)
        return self._steps[order].copy()

    # -- merge ---------------------------------------------------------------
    def merge(self, *others: "DynamicalRDM") -> "DynamicalRDM":
        """Join probe shards: self and ``others`` saw the same records, each for its probes.

        This is the 2RDM's parallel combination: Gram matrices are sums over
        probes, so shards computed on separate workers (or ranks) add up to the
        statistics of all probes together. The merged probes are self's, then
        each other's in order. Mutates and returns self; when a shard does not
        fit (another window, another record history), raises and leaves self as it was.
        """
        joined = copy.deepcopy(self)
        for other in others:
            joined._merge_one(other)
        self.__dict__.update(joined.__dict__)
        return self

    def _merge_one(self, other: "DynamicalRDM") -> None:
        if not isinstance(other, DynamicalRDM):
            raise ProbekitUsageError(
                f"DynamicalRDM.merge takes DynamicalRDM shards; got {type(other).__name__}."
            )
        mine = (self.window, self.stride, self.detrend)
        theirs = (other.window, other.stride, other.detrend)
        if mine != theirs:
            raise ProbekitUsageError(
                f"DynamicalRDM.merge needs shards with the same window, stride and detrend; "
                f"got {mine} and {theirs}."
            )
        if other._seen == 0 and self._seen == 0:
            return  # two accumulators that saw nothing: nothing to join
        if self._seen == 0 and self._n is None:
            self._adopt(other)  # a fresh accumulator used as the merge target
            return
        # Shards must have seen the same records, admitted and rejected alike: a record
        # rejected on one shard only would pair one shard's loss at step t with another's at t+1.
        mine = {"updates": self._seen, "admitted records": self._count, "rejected records": self._rejected}
        theirs = {"updates": other._seen, "admitted records": other._count, "rejected records": other._rejected}
        differ = [f"{k} {mine[k]} vs {theirs[k]}" for k in mine if mine[k] != theirs[k]]
        if not differ and self._count and not np.array_equal(self._steps, other._steps):
            differ.append("the steps of the records in the window")
        if not differ and self._history != other._history:
            differ.append("which records were admitted and which rejected (same counts, other records)")
        if differ:
            raise ProbekitUsageError(
                "DynamicalRDM.merge needs shards with the same record history; these differ in "
                + "; ".join(differ) + " (a record rejected on one shard only, or shards fed different records)."
            )
        if (self.probe_ids is None) != (other.probe_ids is None):
            raise ProbekitUsageError(
                "DynamicalRDM.merge: either every shard has probe_ids or none has."
            )
        self._buf = np.concatenate([self._buf, other._buf], axis=1)
        if self._count:  # nothing admitted yet (every record rejected): no reference to join
            self._ref = np.concatenate([self._ref, other._ref])
            self._last = np.concatenate([self._last, other._last])
        self._gram = self._gram + other._gram  # inner products add over disjoint probes
        self._same = self._same & other._same
        self._n += other._n  # the same records, rejected alike: n_rejected stays as it is
        if self.probe_ids is not None:
            self.probe_ids = self.probe_ids + other.probe_ids
        self._cache_valid = False

    def _adopt(self, other: "DynamicalRDM") -> None:
        state = copy.deepcopy(other.state_dict())
        self.load_state_dict(state)

    # -- persistence ---------------------------------------------------------
    _CONFIG = ("window", "stride", "detrend", "top_k", "loadings")
    _ARRAYS = ("_buf", "_gram", "_ref", "_same", "_steps", "_last")
    _SCALARS = ("_n", "_pos", "_count", "_seen", "_rejected", "_warned", "_history")

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume the window exactly (plain numpy and ints)."""
        state: dict[str, Any] = {"version": 1}
        state["config"] = {k: getattr(self, k) for k in self._CONFIG}
        state["probe_ids"] = None if self.probe_ids is None else list(self.probe_ids)
        for name in self._ARRAYS:
            value = getattr(self, name)
            state[name.lstrip("_")] = None if value is None else value.copy()
        for name in self._SCALARS:
            state[name.lstrip("_")] = getattr(self, name)
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a ``state_dict``; the configuration must match this instance's."""
        if not isinstance(state, dict) or state.get("version") != 1:
            raise ProbekitUsageError(
                "DynamicalRDM.load_state_dict takes a dict made by DynamicalRDM.state_dict "
                "(version 1)."
            )
        config = {k: getattr(self, k) for k in self._CONFIG}
        if state["config"] != config:
            raise ProbekitUsageError(
                f"DynamicalRDM.load_state_dict: the state was saved with {state['config']} "
                f"but this instance has {config}."
            )
        self.reset()
        self.probe_ids = None if state["probe_ids"] is None else list(state["probe_ids"])
        for name in self._ARRAYS:
            value = state[name.lstrip("_")]
            setattr(self, name, None if value is None else np.array(value, copy=True))
        for name in self._SCALARS:
            # states saved before the history fingerprint existed resume without one (0)
            setattr(self, name, state.get("history", 0) if name == "_history" else state[name.lstrip("_")])

    def __repr__(self) -> str:
        return (
            f"DynamicalRDM(window={self.window}, stride={self.stride}, detrend={self.detrend!r}, "
            f"top_k={self.top_k}, records={self._count}, probes={self._n})"
        )
