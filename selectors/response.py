"""Response-space probes: cluster examples by their loss trajectories in a short pilot run.

Examples the model learns alike carry the same information about training; a
probe set should hold one of each kind of response rather than many of the
most common one. This is the "correctness" clustering of tinyBenchmarks (anchor
points = k-means medoids in the space of per-example responses, weighted by
cluster mass) and the idea behind POLCA, applied to per-sample loss
trajectories. Use it when a pilot run exists; without one, ``cluster``
(embedding space) is the analogue.

Where the trajectories come from
    ``trajectory_field`` (default ``pilot_losses``): a pool column holding one
    list of floats per example (a number per example is a one-record
    trajectory); or ``losses_file``: an ``.npz`` with ``losses``
    [records, probes] and ``probe_ids`` [probes] (the layout ``probekit
    analyze`` reads; parquet/csv with one column per probe id work too),
    matched to the pool **by id**, so its column order does not matter and
    ids it has beyond the pool are ignored. ``losses_file`` wins when both are
    given. ``max_records`` keeps only the first records.

No future losses
    A selector must see only what exists at selection time. The pilot must
    be a separate short run, or the first ``max_records`` records of the
    monitored one, ending before the window the probes are scored on; the
    harness enforces that when it passes a pilot in. This selector only
    reads what it is given and cannot tell.

Features (``normalize``), one row per example, over records t
    ``none``    the losses as they are: level and speed of learning both count;
    ``zscore``  (l_t - mean) / std per example: the shape only (std 0 -> zeros);
    ``drop``    (l_0 - l_t) / (max - min) per example: how far along its own
                drop the example is at each record, whatever its scale; in
                [-1, 1] (a flat trajectory -> zeros).

Ranking (nested: nothing depends on n)
    k-means (scikit-learn, k-means++ seeded by ``seed``, one thread;
    ``n_clusters`` clipped to the number of distinct feature rows) -> each
    cluster's medoid (the member nearest the mean of its members). The
    medoids come first, farthest-first: the heaviest cluster's medoid, then
    repeatedly the medoid farthest from those already chosen, so every
    prefix spreads over response space. The other
    examples follow by sequential apportionment over clusters
    (``probekit.selection.apportionment.apportion``, shares = members left per cluster), in a
    seeded random order within each cluster: a stratified sample whose
    counts track the cluster masses at every prefix. ``n_clusters`` has a
    default that does not depend on n, as nesting requires.

Scores are cluster masses (fraction of the pool in the probe's cluster: the
tinyBenchmarks weights); slices are ``cluster-<rank>`` (rank in the
farthest-first order of the medoids).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from probekit.errors import ProbekitUsageError
from probekit.params import AnyOf, Interval, Options
from probekit.selection.apportionment import apportion
from probekit.selectors.base import Ranking, Selector

if TYPE_CHECKING:
    from probekit.pool import Pool

#: k-means restarts: one k-means++ seeding, scikit-learn's own default for it
#: (each restart costs a full fit; the seed's influence is part of the selection).
KMEANS_N_INIT = 1


def _shown(ids: list[str], limit: int = 3) -> str:
    return ", ".join(repr(v) for v in ids[:limit]) + (" ..." if len(ids) > limit else "")


def response_features(traj: np.ndarray, normalize: str) -> np.ndarray:
    """[examples, records] losses -> [examples, records] features (see module docstring)."""
    x = np.asarray(traj, dtype=np.float64)
    if normalize == "zscore":
        std = x.std(axis=1, keepdims=True)
        centred = x - x.mean(axis=1, keepdims=True)
        return np.divide(centred, std, out=np.zeros_like(x), where=std > 0)
    if normalize == "drop":
        span = x.max(axis=1, keepdims=True) - x.min(axis=1, keepdims=True)
        return np.divide(x[:, :1] - x, span, out=np.zeros_like(x), where=span > 0)
    return x


def farthest_first(points: np.ndarray, start: int) -> np.ndarray:
    """Order rows of ``points`` [k, d]: ``start``, then each time the row farthest from those chosen."""
    k = len(points)
    order = [start]
    nearest = np.linalg.norm(points - points[start], axis=1)
    nearest[start] = -np.inf
    for _ in range(k - 1):
        nxt = int(np.argmax(nearest))  # ties: lowest index
        order.append(nxt)
        nearest = np.minimum(nearest, np.linalg.norm(points - points[nxt], axis=1))
        nearest[order] = -np.inf
    return np.asarray(order, dtype=np.int64)


class ResponseSelector(Selector):
    """Response-space probes: k-means medoids of per-example pilot loss trajectories."""

    name: ClassVar[str] = "response"
    stochastic: ClassVar[bool] = True  # the seed drives k-means and the order within clusters
    _constraints: ClassVar[dict[str, Any]] = {
        "trajectory_field": str,
        "losses_file": AnyOf(None, str, os.PathLike),
        "normalize": Options("none", "zscore", "drop"),
        "n_clusters": Interval(int, 1, None),
        "max_records": AnyOf(None, Interval(int, 1, None)),
    }

    def __init__(
        self,
        *,
        trajectory_field: str = "pilot_losses",
        losses_file: str | os.PathLike | None = None,
        normalize: str = "none",
        # 32 kinds of response: enough to separate the learning speeds a pilot
        # run resolves, few enough that the medoid prefix is a small probe set.
        # Fixed (not a function of n) so that selections stay nested.
        n_clusters: int = 32,
        max_records: int | None = None,
    ) -> None:
        self.trajectory_field = trajectory_field
        self.losses_file = losses_file
        self.normalize = normalize
        self.n_clusters = n_clusters
        self.max_records = max_records

    def _check_params(self, pool: "Pool") -> None:
        if self.losses_file is None:
            self._require_columns(pool, "trajectory_field", hint=" (or pass losses_file=<pilot .npz>)")

    # -- reading the pilot --------------------------------------------------------
    def _from_column(self, pool: "Pool") -> np.ndarray:
        field = self.trajectory_field
        values = pool.column(field)
        where = f"column {field!r} of ResponseSelector's pool"
        if values.dtype != object:  # one number per example
            if not np.issubdtype(values.dtype, np.number):
                raise ProbekitUsageError(f"{where} holds {values.dtype} values, not loss trajectories.")
            return values.astype(np.float64).reshape(-1, 1)
        missing = [i for i, v in enumerate(values) if v is None]
        if missing:
            raise ProbekitUsageError(
                f"{where} has {len(missing)} missing trajectories (ids {_shown(pool.ids[missing].tolist())})."
            )
        lengths = np.fromiter((np.size(v) for v in values), dtype=np.int64, count=len(values))
        if lengths.min() != lengths.max():
            odd = np.flatnonzero(lengths != lengths[0]).tolist()
            raise ProbekitUsageError(
                f"{where} holds trajectories of different lengths ({int(lengths.min())} to {int(lengths.max())} "
                f"records; e.g. ids {_shown(pool.ids[odd].tolist())}); every example needs the same records."
            )
        try:
            return np.stack([np.asarray(v, dtype=np.float64).reshape(-1) for v in values])
        except (TypeError, ValueError) as exc:
            raise ProbekitUsageError(f"{where} does not hold lists of numbers: {exc}") from exc

    def _from_file(self, pool: "Pool") -> np.ndarray:
        from probekit.rdm.loss_files import read_loss_matrix

        path = Path(self.losses_file)
        named = path.suffix.lower() in (".parquet", ".csv")
        if path.suffix.lower() == ".npz" and path.is_file():
            try:
                with np.load(path, allow_pickle=False) as data:
                    named = "probe_ids" in data
            except Exception:  # noqa: BLE001 - read_loss_matrix reports unreadable files below
                named = True
        try:
            matrix = read_loss_matrix(path)
        except ProbekitUsageError as exc:
            raise ProbekitUsageError(f"ResponseSelector losses_file: {exc}") from exc
        if not named:
            raise ProbekitUsageError(
                f"ResponseSelector losses_file {path.name!r} does not name its probes; it needs an array "
                "'probe_ids' beside 'losses' [records, probes] to be matched to the pool by id."
            )
        column = {}
        for j, pid in enumerate(matrix.probe_ids):
            if pid in column:
                raise ProbekitUsageError(f"ResponseSelector losses_file {path.name!r} names probe {pid!r} twice.")
            column[pid] = j
        ids = pool.ids.tolist()
        missing = [v for v in ids if v not in column]
        if missing:
            raise ProbekitUsageError(
                f"{len(missing)} of the pool's {len(ids)} ids are missing from losses_file {path.name!r}: "
                f"{_shown(missing)}."
            )
        cols = np.fromiter((column[v] for v in ids), dtype=np.int64, count=len(ids))
        return matrix.losses[:, cols].T  # [examples, records]

    def trajectories(self, pool: "Pool") -> np.ndarray:
        """The pilot losses of ``pool``'s rows, [examples, records], first ``max_records`` only."""
        traj = self._from_file(pool) if self.losses_file is not None else self._from_column(pool)
        if self.max_records is not None:
            traj = traj[:, : self.max_records]
        bad = ~np.isfinite(traj)
        if bad.any():
            rows = np.flatnonzero(bad.any(axis=1)).tolist()
            raise ProbekitUsageError(
                f"the pilot trajectories of ResponseSelector hold {int(bad.sum())} non-finite losses "
                f"(ids {_shown(pool.ids[rows].tolist())})."
            )
        if self.normalize != "none" and traj.shape[1] < 2:
            raise ProbekitUsageError(
                f"ResponseSelector normalize={self.normalize!r} needs at least 2 records per trajectory; "
                f"the pilot has {traj.shape[1]}."
            )
        return traj

    # -- ranking ------------------------------------------------------------------
    def _rank(self, pool: "Pool", n: int, seed: int) -> Ranking:
        from sklearn.cluster import KMeans
        from threadpoolctl import threadpool_limits

        traj = self.trajectories(pool)
        x = response_features(traj, self.normalize)
        size = len(x)
        distinct = len(np.unique(x, axis=0))
        k = min(self.n_clusters, distinct)
        if k > 1:
            # One thread: on a shared 2-core box OpenMP threads made the fit 4x slower
            # (docs/findings.md: pin one thread per worker); the result does not change.
            with threadpool_limits(limits=1):
                # scikit-learn takes seeds below 2**32; probekit seeds are any int >= 0.
                state = int(np.random.SeedSequence(seed).generate_state(1)[0])
                km = KMeans(n_clusters=k, n_init=KMEANS_N_INIT, random_state=state).fit(x)
            labels = km.labels_.astype(np.int64)
        else:
            labels = np.zeros(size, dtype=np.int64)
        clusters = np.unique(labels)  # nonempty only
        members = [np.flatnonzero(labels == c) for c in clusters]
        centres = np.stack([x[m].mean(axis=0) for m in members])
        medoids = np.array(
            [m[np.argmin(np.linalg.norm(x[m] - centres[j], axis=1))] for j, m in enumerate(members)], dtype=np.int64
        )
        sizes = np.array([len(m) for m in members])
        order = farthest_first(x[medoids], start=int(np.argmax(sizes)))  # ties: first cluster

        width = len(str(len(order) - 1))
        names = [f"cluster-{r:0{width}d}" for r in range(len(order))]
        rng = np.random.default_rng(seed)
        rest = {}
        for name, j in zip(names, order):
            others = members[j][members[j] != medoids[j]]
            rest[name] = rng.permutation(others)
        head = medoids[order][:n]
        head_labels = names[: len(head)]
        tail, tail_labels = apportion(rest, {s: float(len(v)) for s, v in rest.items()}, n - len(head))
        idx = np.concatenate([head, tail]).astype(np.int64)
        slices = head_labels + tail_labels
        mass = {name: sizes[j] / size for name, j in zip(names, order)}
        info = {
            "source": f"losses_file {str(self.losses_file)!r}" if self.losses_file is not None
            else f"column {self.trajectory_field!r}",
            "records": int(traj.shape[1]),
            "n_clusters": int(len(order)),
            "cluster_mass": {name: float(v) for name, v in mass.items()},
            "kmeans": {"backend": "sklearn", "n_init": KMEANS_N_INIT, "seed": seed},
        }
        return Ranking(indices=idx, scores=np.array([mass[s] for s in slices]), slices=slices, info=info)

    @classmethod
    def example(cls) -> "ResponseSelector":
        # make_test_pool has 200 examples whose topics learn at 9 rates.
        return cls(n_clusters=12)
