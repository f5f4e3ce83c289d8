"""The dynamical 2RDM over a whole [records, probes] loss matrix at once.

``rdm_series`` gives, for every admitted record, the statistics that
``DynamicalRDM.compute()`` would return after that record: same admission
rules (stride, then NaN/inf rejection), same kernel (:mod:`probekit.rdm.spectral`).
It batches windows instead of streaming: the Gram matrix of a chunk of records
is one matrix product, each window's W x W block is cut out of it, and all
windows of the chunk are decomposed in one batched ``eigh``. Scoring a probe
set on a stored trajectory is therefore column selection plus this call.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from probekit.errors import ProbekitUsageError, ProbekitWarning
from probekit.rdm import spectral
from probekit.rdm.inputs import as_float64_array, check_rdm_params
from probekit.rdm.spectral import RDMStats, loadings_from_coef, spectral_stats, window_dof

__all__ = ["RDMSeries", "rdm_series", "as_loss_matrix", "window_stats"]


@dataclass(frozen=True, eq=False)
class RDMSeries:
    """2RDM statistics per admitted record (NaN until the window is full).

    ``record_index[i]`` is the row of the input matrix that series position i
    came from; ``steps[i]`` its training step. ``loadings`` maps series
    positions (those asked for with ``loadings_at``) to [top_k, n] arrays.
    """

    record_index: np.ndarray  # [T]
    steps: np.ndarray  # [T]
    mean_loss: np.ndarray  # [T] mean probe loss of the newest record
    shc: np.ndarray  # [T]
    pr: np.ndarray  # [T]
    trace: np.ndarray  # [T]
    frobenius_sq: np.ndarray  # [T]
    eigenvalues: np.ndarray  # [T, top_k]
    spectrum: np.ndarray  # [T, min(n, dof)]
    degenerate: np.ndarray  # [T] bool
    window: int
    stride: int
    detrend: str
    n_probes: int
    n_rejected: int
    loadings: dict[int, np.ndarray] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.shc)

    @property
    def ready(self) -> np.ndarray:
        """True where the window was full (the statistics are defined)."""
        return np.arange(len(self.shc)) >= self.window - 1

    # Derived statistics: the one definition of each is in probekit.rdm.spectral.
    @property
    def log_shc(self) -> np.ndarray:
        return spectral.log_shc(self.shc)

    @property
    def leading_share(self) -> np.ndarray:
        return spectral.leading_share(self.spectrum, self.trace)

    @property
    def spectral_entropy(self) -> np.ndarray:
        return spectral.spectral_entropy(self.spectrum, self.trace)

    def columns(self) -> dict[str, np.ndarray]:
        """Flat columns for a table: one row per admitted record."""
        cols = {
            "record": self.record_index,
            "step": self.steps,
            "mean_loss": self.mean_loss,
            "shc": self.shc,
            "log_shc": self.log_shc,
            "pr": self.pr,
            "trace": self.trace,
            "leading_share": self.leading_share,
            "spectral_entropy": self.spectral_entropy,
        }
        for i in range(self.eigenvalues.shape[1]):
            cols[f"lambda_{i + 1}"] = self.eigenvalues[:, i]
        return cols


def as_loss_matrix(losses: Any, owner: str = "rdm_series") -> np.ndarray:
    """A [records, probes] float64 matrix from numpy, torch or nested lists."""
    x = as_float64_array(losses, owner, "a [records, probes] matrix")
    if x.ndim != 2 or x.shape[0] == 0 or x.shape[1] == 0:
        raise ProbekitUsageError(
            f"{owner} takes a non-empty 2-D [records, probes] matrix; got shape {x.shape}."
        )
    return x


def rdm_series(
    losses: Any,
    window: int = 32,
    *,
    stride: int = 1,
    detrend: str = "none",
    top_k: int = 3,
    steps: Sequence[int] | np.ndarray | None = None,
    loadings_at: Sequence[int] | None = None,
) -> RDMSeries:
    """2RDM statistics for every admitted record of a [records, probes] matrix.

    Parameters are those of :class:`probekit.rdm.DynamicalRDM`; ``steps``
    gives each input row's training step (default: the row number), and
    ``loadings_at`` lists series positions whose probe loadings to return
    (negative positions count from the end).
    """
    check_rdm_params("rdm_series", window, stride, detrend, top_k)
    x = as_loss_matrix(losses)
    t_in, n = x.shape
    if steps is None:
        steps_in = np.arange(t_in, dtype=np.int64)
    else:
        steps_in = np.asarray(steps)
        if steps_in.shape != (t_in,) or not np.issubdtype(steps_in.dtype, np.integer):
            raise ProbekitUsageError(
                f"The 'steps' parameter of rdm_series must be {t_in} integers, one per record; "
                f"got an array of shape {steps_in.shape} and dtype {steps_in.dtype}."
            )
    rows = np.arange(0, t_in, stride)
    finite = np.isfinite(x[rows]).all(axis=1)
    n_rejected = int((~finite).sum())
    if n_rejected:
        warnings.warn(
            f"rdm_series rejected {n_rejected} record(s) with NaN or inf losses.",
            ProbekitWarning,
            stacklevel=2,
        )
    adm = rows[finite]
    xa = x[adm]  # [T, n] admitted records
    t = len(adm)

    shc, pr, trace, fro2 = (np.full(t, np.nan) for _ in range(4))
    dof = window_dof(window, detrend)
    spectrum = np.full((t, min(dof, n)), np.nan)
    eig = np.full((t, top_k), np.nan)
    degenerate = np.zeros(t, dtype=bool)

    # Record i is "degenerate-continuing" when it equals record i-1; a window is
    # degenerate when its last W-1 records all are.
    same = np.zeros(t, dtype=np.int64)
    if t > 1:
        same[1:] = (xa[1:] == xa[:-1]).all(axis=1)
    same_cum = np.concatenate([[0], np.cumsum(same)])

    wanted = _normalise_positions(loadings_at, t)
    loadings: dict[int, np.ndarray] = {}
    # Chunks of ~2W windows share one Gram product; each chunk is shifted by its
    # own mean, so the shift stays local to the data as in the streaming path.
    chunk = int(max(16, min(2 * window, 2**22 // (window * window))))
    offsets = np.arange(window)
    for start in range(window - 1, t, chunk):
        stop = min(start + chunk, t)
        lo = start - window + 1
        block = xa[lo:stop]
        block = block - block.mean(axis=0)  # shift near the data (see spectral.py)
        s = block @ block.T
        first = np.arange(start, stop) - window + 1 - lo  # window start within block
        idx = first[:, None] + offsets  # [b, W]
        grams = s[idx[:, :, None], idx[:, None, :]]
        ends = np.arange(start, stop)
        deg = (same_cum[ends + 1] - same_cum[ends - window + 2]) == window - 1
        need = [pos for pos in wanted if start <= pos < stop]
        out = spectral_stats(grams, detrend, n, top_k, deg, vectors=bool(need))
        sl = slice(start, stop)
        shc[sl], pr[sl], trace[sl], fro2[sl] = out["shc"], out["pr"], out["trace"], out["frobenius_sq"]
        spectrum[sl] = out["spectrum"]
        degenerate[sl] = deg
        if top_k > 0:
            eig[sl] = out["eigenvalues"]
            for pos in need:
                j = pos - start
                loadings[pos] = loadings_from_coef(out["coef"][j], block[idx[j]])

    return RDMSeries(
        record_index=adm,
        steps=steps_in[adm].astype(np.int64),
        mean_loss=xa.mean(axis=1),
        shc=shc,
        pr=pr,
        trace=trace,
        frobenius_sq=fro2,
        eigenvalues=eig,
        spectrum=spectrum,
        degenerate=degenerate,
        window=window,
        stride=stride,
        detrend=detrend,
        n_probes=n,
        n_rejected=n_rejected,
        loadings=loadings,
    )


def _normalise_positions(positions: Sequence[int] | None, length: int) -> list[int]:
    if positions is None:
        return []
    out = []
    for p in positions:
        if isinstance(p, bool) or not isinstance(p, (int, np.integer)):
            raise ProbekitUsageError(
                f"The 'loadings_at' parameter of rdm_series must be a list of ints; got {p!r}."
            )
        q = int(p) + length if p < 0 else int(p)
        if not 0 <= q < length:
            raise ProbekitUsageError(
                f"The 'loadings_at' parameter of rdm_series must hold positions in "
                f"[-{length}, {length - 1}]; got {p}."
            )
        out.append(q)
    return out


def window_stats(
    records: Any, *, detrend: str = "none", top_k: int = 3, loadings: bool = True
) -> "RDMStats":
    """Statistics of one [W, n] block treated as a single window.

    Used where the rows are not a time series but draws (the Gaussian 2RDM's
    parameter draws around one checkpoint); equal to the last entry of
    ``rdm_series(records, window=len(records))``.
    """
    x = as_loss_matrix(records, owner="window_stats")
    w, n = x.shape
    check_rdm_params("window_stats", w, 1, detrend, top_k)
    if not np.isfinite(x).all():
        raise ProbekitUsageError(
            f"window_stats got {int((~np.isfinite(x)).sum())} NaN or inf losses; "
            "every draw must give finite losses."
        )
    shifted = x - x.mean(axis=0)
    deg = np.array([bool((x == x[0]).all())])
    out = spectral_stats((shifted @ shifted.T)[None], detrend, n, top_k, deg,
                         vectors=loadings and top_k > 0)
    vecs = None
    if loadings and top_k > 0:
        vecs = loadings_from_coef(out["coef"][0], shifted)
    return RDMStats(
        shc=float(out["shc"][0]),
        pr=float(out["pr"][0]),
        trace=float(out["trace"][0]),
        frobenius_sq=float(out["frobenius_sq"][0]),
        spectrum=out["spectrum"][0],
        eigenvalues=out["eigenvalues"][0] if top_k > 0 else np.zeros(0),
        loadings=vecs,
        n_probes=n,
        window=w,
        degenerate=bool(deg[0]),
    )
