"""The shared kernel of the 2RDM: window Gram matrices -> spectral statistics.

For a window of W records X ([W, n]: W records of n per-sample losses), the
2RDM is C = Xc^T Xc / dof with Xc = Q X, where Q removes what the detrending
mode says is not signal (docs/design.md §1):

    mode     Q ([m, W])                                   dof     reference
    none     I - 11^T / W   (column means)                W - 1   np.cov(X)
    linear   I - A (A^T A)^-1 A^T,  A = [1, t]            W - 2   residuals of a per-probe line fit
    diff     (I - 11^T/(W-1)) D,  D = first differences   W - 2   np.cov(np.diff(X))

Every Q annihilates constant columns (Q 1 = 0), so X may be shifted by any
reference vector r (X - 1 r^T) without changing Xc. probekit keeps its buffers
shifted near the data: inner products of raw losses would lose digits to
cancellation when losses are large and their fluctuations small.

C has rank <= W - 1, so nothing n x n is ever formed. With the W x W Gram
matrix of the shifted records S = X X^T:

    G  = Q S Q^T / dof                 (shares C's non-zero eigenvalues)
    tr C = tr G,   ||C||_F^2 = ||G||_F^2
    SHC = ||C||_F^2 / n - (tr C / n)^2     (variance of all n eigenvalues of C)
    PR  = (tr C)^2 / ||C||_F^2
    v_i = Xc^T u_i / sqrt(dof mu_i)    (C's eigenvectors from G's eigenpairs)

The n - rank zero eigenvalues count in SHC's mean; that is why SHC uses n and
not the number of non-zero eigenvalues.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

#: The detrending modes, declared once: mode -> degrees of freedom a window loses to it.
DETREND_DOF_LOST = {"none": 1, "linear": 2, "diff": 2}
DETREND_MODES = tuple(DETREND_DOF_LOST)
MIN_WINDOW = {mode: lost + 1 for mode, lost in DETREND_DOF_LOST.items()}  # at least one dof


def window_dof(window: int, detrend: str) -> int:
    """Degrees of freedom of a window: W - 1 (none), W - 2 (linear, diff)."""
    return window - DETREND_DOF_LOST[detrend]


@lru_cache(maxsize=64)
def detrend_operator(window: int, detrend: str) -> tuple[np.ndarray, int]:
    """Return (Q, dof) for a window length and detrending mode (read-only Q).

    The explicit operator is the definition; the hot path applies it in
    O(W^2) through ``detrended_gram`` and ``q_transpose`` (tests check they agree).
    """
    w = window
    if detrend == "none":
        q = np.eye(w) - np.full((w, w), 1.0 / w)
        dof = w - 1
    elif detrend == "linear":
        t = np.arange(w, dtype=np.float64)
        a = np.stack([np.ones(w), t - t.mean()], axis=1)  # centred t: orthogonal columns
        q = np.eye(w) - a @ np.linalg.solve(a.T @ a, a.T)
        dof = w - 2
    elif detrend == "diff":
        d = np.zeros((w - 1, w))
        idx = np.arange(w - 1)
        d[idx, idx] = -1.0
        d[idx, idx + 1] = 1.0
        m = w - 1
        q = (np.eye(m) - np.full((m, m), 1.0 / m)) @ d
        dof = w - 2
    else:  # callers validate; this guards internal misuse
        raise ValueError(f"unknown detrend mode {detrend!r}")
    q.setflags(write=False)
    return q, dof


@dataclass(frozen=True, eq=False)
class RDMStats:
    """Statistics of one window of the dynamical 2RDM.

    ``spectrum`` holds every eigenvalue of C that can be non-zero (at most
    min(n, dof)), in descending order; the other ``n_probes - len(spectrum)``
    eigenvalues are exactly zero. ``eigenvalues`` is its first ``top_k``.
    ``loadings[i]`` is the unit eigenvector of C for ``eigenvalues[i]`` over the
    probes (sign fixed so its largest-magnitude entry is positive); rows whose
    eigenvalue is zero are NaN, as the direction is undefined.

    A *degenerate* window is one whose records are all identical: then
    SHC = trace = 0 and PR is NaN (0/0: no direction carries variance).
    """

    shc: float
    pr: float
    trace: float
    frobenius_sq: float
    spectrum: np.ndarray  # [min(n, dof)] descending
    eigenvalues: np.ndarray  # [top_k] descending, zero-padded past the rank
    loadings: np.ndarray | None  # [top_k, n_probes] or None when not requested
    n_probes: int
    window: int
    degenerate: bool
    step: int | None = None
    extras: dict = field(default_factory=dict)

    @property
    def log_shc(self) -> float:
        """Natural log of SHC (-inf for a degenerate window)."""
        return float(log_shc(np.array([self.shc]))[0])

    @property
    def leading_share(self) -> float:
        """Fraction of the trace carried by the leading eigenvalue (NaN if trace is 0)."""
        return float(leading_share(self.spectrum[None], np.array([self.trace]))[0])

    def top_probes(self, k: int = 10, component: int = 0) -> np.ndarray:
        """Indices of the ``k`` probes loading most on one eigenvector, strongest first."""
        if self.loadings is None:
            raise ValueError("these statistics were computed without loadings")
        v = np.abs(self.loadings[component])
        if not np.isfinite(v).all():
            return np.zeros(0, dtype=np.int64)
        return np.argsort(-v, kind="stable")[:k].astype(np.int64)


# -- derived statistics ---------------------------------------------------------
# Each defined once, batched over windows (trace etc. [B], spectrum [B, r]):
# RDMStats (one window), RDMSeries (a series) and SpectralBatch (what the
# signals of probekit.rdm.signal_table read) all call these.


def log_shc(shc: np.ndarray) -> np.ndarray:
    """log SHC [B] (-inf for a degenerate window)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.log(shc)


def inverse_pr(pr: np.ndarray) -> np.ndarray:
    """1 / PR [B]: 1 when one direction carries the window, 1/rank when all share it (NaN if degenerate)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return 1.0 / pr


def leading_share(spectrum: np.ndarray, trace: np.ndarray) -> np.ndarray:
    """Fraction of the trace carried by the leading eigenvalue [B] (NaN where the trace is 0)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(trace > 0, spectrum[:, 0] / trace, np.nan)


def spectral_entropy(spectrum: np.ndarray, trace: np.ndarray) -> np.ndarray:
    """Shannon entropy (nats) of the normalised eigenvalues [B] (NaN where the trace is 0)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        p = spectrum / trace[:, None]
        terms = np.where(p > 0, -p * np.log(np.where(p > 0, p, 1.0)), 0.0)
    return np.where(trace > 0, terms.sum(axis=1), np.nan)


@dataclass(frozen=True, eq=False)
class SpectralBatch:
    """The spectral statistics of B windows: what a 2RDM signal reads (probekit.rdm.signal_table).

    ``spectrum`` holds every eigenvalue of C that can be non-zero (r = min(n, dof)),
    descending, whatever ``top_k`` the statistics were computed with. A window that
    is not full yet (the first W - 1 records of a series) is NaN throughout.
    """

    shc: np.ndarray  # [B]
    pr: np.ndarray  # [B] NaN for a degenerate window
    trace: np.ndarray  # [B]
    frobenius_sq: np.ndarray  # [B]
    spectrum: np.ndarray  # [B, r] descending
    degenerate: np.ndarray  # [B] bool: every record of the window identical
    n_probes: int

    @classmethod
    def of(cls, stats) -> "SpectralBatch":
        """From an ``RDMStats`` (one window: B = 1) or an ``RDMSeries`` (B = its length; no copies)."""
        if np.ndim(stats.trace) == 0:  # one window
            return cls(np.array([stats.shc]), np.array([stats.pr]), np.array([stats.trace]),
                       np.array([stats.frobenius_sq]), stats.spectrum[None], np.array([stats.degenerate]),
                       stats.n_probes)
        return cls(stats.shc, stats.pr, stats.trace, stats.frobenius_sq, stats.spectrum, stats.degenerate,
                   stats.n_probes)

    @property
    def log_shc(self) -> np.ndarray:
        return log_shc(self.shc)

    @property
    def inverse_pr(self) -> np.ndarray:
        return inverse_pr(self.pr)

    @property
    def leading_share(self) -> np.ndarray:
        return leading_share(self.spectrum, self.trace)

    @property
    def spectral_entropy(self) -> np.ndarray:
        return spectral_entropy(self.spectrum, self.trace)


@lru_cache(maxsize=64)
def _null_basis(m: int, detrend: str) -> np.ndarray:
    """Orthonormal basis [m, r] of what detrending removes (constants, and a line)."""
    cols = [np.full(m, 1.0 / np.sqrt(m))]
    if detrend == "linear":
        t = np.arange(m, dtype=np.float64)
        t -= t.mean()
        cols.append(t / np.linalg.norm(t))
    basis = np.stack(cols, axis=1)
    basis.setflags(write=False)
    return basis


def detrended_gram(gram: np.ndarray, detrend: str) -> np.ndarray:
    """dof * G = Q S Q^T for a batch [B, W, W], in O(W^2) per window.

    Q is a first difference (diff only) followed by the projection
    I - B B^T away from a rank-1 or rank-2 basis, so Q S Q^T is computed
    as S - (SB)B^T - B(SB)^T + B(B^T S B)B^T instead of two W x W products.
    """
    s = gram
    if detrend == "diff":
        s = s[:, 1:, 1:] - s[:, 1:, :-1] - s[:, :-1, 1:] + s[:, :-1, :-1]
    basis = _null_basis(s.shape[-1], detrend)  # [m, r]
    sb = s @ basis  # [B, m, r]
    core = basis.T @ sb  # [B, r, r]
    return s - sb @ basis.T - basis @ np.swapaxes(sb, -1, -2) + basis @ core @ basis.T


def q_transpose(u: np.ndarray, detrend: str) -> np.ndarray:
    """Q^T u for vectors u [..., m, k] -> [..., W, k] (the loadings' W-space coefficients)."""
    basis = _null_basis(u.shape[-2], detrend)
    w = u - basis @ (basis.T @ u)
    if detrend != "diff":
        return w
    # D^T w for D with -1 on the diagonal and +1 above it.
    pad = np.zeros(w.shape[:-2] + (1, w.shape[-1]))
    return np.concatenate([pad, w], axis=-2) - np.concatenate([w, pad], axis=-2)


def spectral_stats(
    gram: np.ndarray,  # [B, W, W] Gram matrices of shifted records, chronological order
    detrend: str,
    n_probes: int,
    top_k: int,
    degenerate: np.ndarray,  # [B] bool: all records of the window identical
    vectors: bool = True,
) -> dict[str, np.ndarray]:
    """Batched statistics from window Gram matrices (the hot path; no n x n work).

    Returns arrays over the batch: shc, pr, trace, frobenius_sq, spectrum
    [B, min(n, dof)], and (when top_k > 0) eigenvalues [B, top_k]; with
    ``vectors`` also the W-space coefficients ``coef`` [B, top_k, W] such that
    loadings = coef @ X_window.
    """
    dof = window_dof(gram.shape[-1], detrend)
    g = detrended_gram(gram, detrend) / dof  # [B, m, m]
    g = 0.5 * (g + np.swapaxes(g, -1, -2))  # exact symmetry for eigh
    want_vectors = vectors and top_k > 0
    if want_vectors:
        mu, u = np.linalg.eigh(g)  # ascending; G is m x m with m <= W
        u = u[..., ::-1]
    else:
        mu = np.linalg.eigvalsh(g)
    mu = np.clip(mu[..., ::-1], 0.0, None)  # PSD: negatives are rounding
    mu = np.where(degenerate[:, None], 0.0, mu)
    # C has n eigenvalues and rank <= min(n, dof); those can be non-zero.
    rank = min(dof, n_probes, mu.shape[-1])
    spectrum = mu[:, :rank]
    # trace, ||C||_F^2, SHC and PR all come from these clipped eigenvalues:
    # equal to tr G and ||G||_F^2 in exact arithmetic, and mutually consistent
    # in floating point (PR stays in [1, rank] even at rounding-level variance,
    # where G's raw entries can make ||G||_F^2 exceed (tr G)^2).
    trace = spectrum.sum(axis=1)
    fro2 = (spectrum**2).sum(axis=1)
    # SHC is the variance of all n eigenvalues. Computed as deviations from the
    # mean, with the n - rank zeros added in closed form; the equal form
    # ||C||_F^2/n - (tr C/n)^2 cancels catastrophically when n <= W (n = 1
    # gives exactly 0 this way).
    mean = trace / n_probes
    dev = ((spectrum - mean[:, None]) ** 2).sum(axis=1) + (n_probes - rank) * mean**2
    shc = np.where(degenerate, 0.0, dev / n_probes)
    with np.errstate(invalid="ignore", divide="ignore"):
        pr = np.where(fro2 > 0, trace**2 / np.where(fro2 > 0, fro2, 1.0), np.nan)
    out = {"shc": shc, "pr": pr, "trace": trace, "frobenius_sq": fro2, "spectrum": spectrum}
    if top_k > 0:
        k = min(top_k, rank)
        eig = np.zeros((gram.shape[0], top_k))
        eig[:, :k] = mu[:, :k]
        out["eigenvalues"] = eig
    if want_vectors:
        # v_i = X^T Q^T u_i / sqrt(dof mu_i); return the W-space coefficients.
        with np.errstate(divide="ignore", invalid="ignore"):
            scale = np.where(mu[:, :k] > 0, 1.0 / np.sqrt(dof * mu[:, :k]), np.nan)
        coef = np.full((gram.shape[0], top_k, gram.shape[-1]), np.nan)
        coef[:, :k, :] = np.swapaxes(q_transpose(u[..., :k], detrend), -1, -2) * scale[..., None]
        out["coef"] = coef
    return out


def loadings_from_coef(coef: np.ndarray, window_records: np.ndarray) -> np.ndarray:
    """C's unit eigenvectors [k, n] from W-space coefficients [k, W] and records [W, n]."""
    v = coef @ window_records
    with np.errstate(invalid="ignore", divide="ignore"):
        v = v / np.linalg.norm(v, axis=1, keepdims=True)  # exact unit norm despite rounding
    # Deterministic sign: the largest-magnitude loading is positive.
    for row in v:
        if np.isfinite(row).all():
            j = int(np.argmax(np.abs(row)))
            if row[j] < 0:
                row *= -1.0
    return v
