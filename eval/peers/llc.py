"""The local learning coefficient (LLC) as a detector: devinterp's SGLD estimate at a run's checkpoints.

The LLC (Lau et al. 2023; devinterp) measures the effective complexity of the
model at a point in weight space: SGLD chains started at the checkpoint w*,
localized around it, sample a tempered posterior, and

    LLC(w*) = n_beta * (mean loss along the chains - loss at w*).

Developmental interpretability reads stage boundaries off the LLC curve over
training. Here the curve is estimated at the checkpoints a trajectory keeps
every k records (``load_or_record(checkpoint_every=k)``) with devinterp's own
``llc()`` (its SGLD sampler, its estimator), and the series goes to the same
alarm rules and scoring as every other signal (``probekit.eval.peers``).

What the chains sample: the family's own per-sample loss on its pool's
training rows (``split == "train"``), over the parameters the family trains
(all of them, or the adapters of the misalignment toy). Families whose pool
holds no training rows use the whole pool: for deep-linear and induction heads
that is drawn from the training distribution; for rare drift it is half the
initial stream and half the shifted one, and for the misalignment toy it keeps
the original answers that fine-tuning flips. There the LLC is taken on a loss
the run is not minimising, one reason its estimates come out negative
(``docs/bench/llc_calibration.md``); a family that exposed its current training
data would fix that. devinterp's ``llc()`` is written
for language models (an ``input_ids`` column, a per-token loss); a row index
stands in for the token ids and the loss hook looks the row up, which is how
devinterp's own calibration example passes a non-LM loss (``loss_fn``).

devinterp is optional (``pip install "probekit[peers]"``): it is imported only
when an LLC is asked for, with a message naming the extra when it is missing.
"""
from __future__ import annotations

import contextlib
import dataclasses
import gc
import hashlib
import json
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from probekit.atomic import atomic_file
from probekit.errors import ProbekitUsageError

__all__ = ["LLCSeries", "LLCSettings", "estimate_llc", "llc_series", "require_devinterp"]

DEVINTERP_VERSION = "2.0.1"  # the version the [peers] extra pins
MIN_TRAIN_ROWS = 64  # fewer training rows in the pool than this: use the whole pool


def require_devinterp() -> Any:
    """Import devinterp's ``llc``, or say which extra installs it."""
    try:
        from devinterp.slt.llc import llc
    except ImportError as exc:
        raise ProbekitUsageError(
            f"the LLC signal needs devinterp, which is not installed: pip install \"probekit[peers]\" "
            f"(devinterp {DEVINTERP_VERSION}). ({exc})"
        ) from exc
    return llc


def devinterp_version() -> str:
    """The installed devinterp's version (part of an LLC cache key: another sampler, another estimate)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("devinterp")
    except PackageNotFoundError:
        return "not installed"


@dataclass(frozen=True)
class LLCSettings:
    """devinterp SGLD settings for one family (chosen by ``benchmarks/calibrate_llc.py``)."""

    lr: float  # epsilon, the SGLD step size
    localization: float = 100.0  # gamma, the pull towards w*
    batch_size: int = 32
    num_chains: int = 4
    num_draws: int = 100
    num_burnin_steps: int = 0  # devinterp 2 averages every step, burn-in included
    num_init_loss_batches: int = 32  # forward-only batches for the loss at w* (devinterp's default;
    # 4 leaves the init loss so noisy that n_beta times its error swamps a small LLC)
    nbeta: float | None = None  # None: devinterp's default_nbeta(batch_size) = B / log B
    init_seed: int = 100

    def check(self) -> None:
        for name, low in (("batch_size", 1), ("num_chains", 1), ("num_draws", 1), ("num_init_loss_batches", 1),
                          ("num_burnin_steps", 0)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
                raise ProbekitUsageError(
                    f"The {name!r} field of LLCSettings must be an int >= {low}. Got {value!r} instead.")
        for name, positive in (("lr", True), ("localization", False), ("nbeta", True)):
            value = getattr(self, name)
            if name == "nbeta" and value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value) \
                    or value < 0 or (positive and value == 0):
                raise ProbekitUsageError(
                    f"The {name!r} field of LLCSettings must be a finite number "
                    f"{'> 0' if positive else '>= 0'}{' or None' if name == 'nbeta' else ''}. Got {value!r} instead.")

    @property
    def n_beta(self) -> float:
        if self.nbeta is not None:
            return float(self.nbeta)
        b = self.batch_size
        return float(b / np.log(b)) if b > 1 else 1.0  # devinterp.utils.default_nbeta

    @property
    def sgld_steps(self) -> int:
        return self.num_chains * (self.num_burnin_steps + self.num_draws)

    def cost(self) -> dict:
        """Examples through the model per estimate: forward+backward (SGLD) and forward only (loss at w*)."""
        return {"forward_backward_examples": self.sgld_steps * self.batch_size,
                "forward_examples": self.num_chains * self.num_init_loss_batches * self.batch_size}

    def as_dict(self) -> dict:
        return {**dataclasses.asdict(self), "n_beta": self.n_beta, "devinterp": devinterp_version()}

    def key(self) -> str:
        text = json.dumps({**dataclasses.asdict(self), "devinterp": devinterp_version()}, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:12]

    def label(self) -> str:
        return (f"eps={self.lr:g}, gamma={self.localization:g}, n_beta={self.n_beta:.2f}, batch={self.batch_size}, "
                f"{self.num_chains} chains x {self.num_draws} draws"
                + (f" + {self.num_burnin_steps} burn-in" if self.num_burnin_steps else ""))


@dataclass
class LLCData:
    """What the chains sample on: the rows, their inputs and targets, the loss, the sampled parameters."""

    x: Any  # torch tensor [rows, ...]
    y: Any  # torch tensor [rows, ...]
    loss: Any  # (outputs, targets) -> [B]
    parameters: list[str] | None  # None: every parameter
    source: str


def llc_data(traj: Any) -> LLCData:
    """The family's training rows of the pool (or the whole pool), as tensors, and its loss."""
    import torch

    from probekit.embedders.column import column_matrix
    from probekit.selectors.gradient import _LOSSES

    run = traj.reference_run()
    pool = traj.pool
    split = np.asarray(pool.column("split"))
    train = np.flatnonzero(split == "train")
    rows, source = (train, f"{train.size} training rows of the pool") if train.size >= MIN_TRAIN_ROWS else \
        (np.arange(split.size), f"the whole pool ({split.size} rows; no training rows kept)")
    x = column_matrix(pool, "input")
    x = torch.from_numpy(x.astype(np.int64) if np.issubdtype(x.dtype, np.integer) else x.astype(np.float32))
    target = pool.column("target")
    if target.dtype == object:  # lists: regression targets, or token sequences
        y = column_matrix(pool, "target")
        y = torch.from_numpy(y.astype(np.int64) if np.issubdtype(y.dtype, np.integer) else y.astype(np.float32))
    elif np.issubdtype(target.dtype, np.floating) and run.loss == "mse":
        y = torch.from_numpy(target.astype(np.float32))
    else:
        y = torch.from_numpy(target.astype(np.int64))
    loss = _LOSSES[run.loss] if isinstance(run.loss, str) else run.loss
    return LLCData(x[rows], y[rows], loss, run().llc_parameters(), source)


@contextlib.contextmanager
def _quiet_devinterp() -> Iterator[None]:
    """devinterp draws a progress bar per chain (thousands in a benchmark); silence them while we sample."""
    import functools
    import logging

    import devinterp.slt.sampler as sampler
    from tqdm.auto import trange

    original = sampler.trange
    sampler.trange = functools.partial(trange, disable=True)
    logger = logging.getLogger("devinterp")
    level = logger.level
    logger.setLevel(logging.WARNING)
    # devinterp runs gc.collect() before and after every chain (to free GPU memory); with a pool
    # and a model loaded that walks every live object, 0.3 s a time on this machine, more than
    # the sampling itself. gc.freeze() moves the objects alive now out of the collector's reach.
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()
        sampler.trange = original
        logger.setLevel(level)


def estimate_llc(model: Any, data: LLCData, settings: LLCSettings) -> dict:
    """One LLC estimate at the model's current weights, with the diagnostics calibration reads.

    Returns ``llc`` (mean over chains), ``llc_std`` (over chains), ``per_chain``,
    ``init_loss``, ``flat``: the mean loss of the trace's last quarter minus its
    third quarter, over (last quarter - init loss), small when the chains have
    settled; ``below_init``: the share of (chain, step) losses under the loss at
    w* (the chains found lower ground: w* is not a local minimum, or the step
    is too large); ``seconds``.
    """
    import warnings

    from datasets import Dataset

    llc = require_devinterp()
    settings.check()
    n = int(data.x.shape[0])
    ids = Dataset.from_dict({"input_ids": [[i, i] for i in range(n)]}).with_format("torch")

    def loss_fn(m: Any, input_ids: Any) -> Any:  # devinterp's per-token hook: (batch, seq-1)
        idx = input_ids[:, 0]
        return data.loss(m(data.x[idx]), data.y[idx]).reshape(-1, 1)

    masks = None if data.parameters is None else {name: None for name in data.parameters}
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="probekit-llc-") as tmp, _quiet_devinterp(), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*Chain failed.*")  # a failed chain shows as NaN below
        res = llc(model, ids, {}, lr=settings.lr, n_beta=settings.n_beta, param_masks=masks, loss_fn=loss_fn,
                  localization=settings.localization, num_chains=settings.num_chains,
                  num_draws=settings.num_draws, num_burnin_steps=settings.num_burnin_steps,
                  batch_size=min(settings.batch_size, n), num_init_loss_batches=settings.num_init_loss_batches,
                  init_seed=settings.init_seed, device="cpu", output_path=str(Path(tmp) / "samples.zarr"))
        trace = np.asarray(res["loss_trace"].values, dtype=np.float64)  # [chains, steps]
        per_chain = np.asarray(res["llc_per_chain"].values, dtype=np.float64)
        init = float(res["init_loss"])
    q = max(1, trace.shape[1] // 4)
    last, third = trace[:, -q:].mean(), trace[:, -2 * q:-q].mean()
    with np.errstate(invalid="ignore", divide="ignore"):
        flat = float(abs(last - third) / max(abs(last - init), 1e-12))
    return {"llc": float(np.mean(per_chain)), "llc_std": float(np.std(per_chain)), "per_chain": per_chain.tolist(),
            "init_loss": init, "flat": flat, "below_init": float(np.mean(trace < init)),
            "seconds": time.perf_counter() - t0}


@dataclass
class LLCSeries:
    """The LLC at every kept checkpoint of one trajectory."""

    records: list[int]  # record indices (0, k, 2k, ...)
    steps: list[int]
    llc: list[float]
    llc_std: list[float]
    below_init: list[float]
    flat: list[float]
    seconds: float  # wall time of every estimate together
    stride: int  # k
    settings: dict
    source: str


def _series_path(traj: Any, settings: LLCSettings) -> Path:
    # beside the trajectory directory, not in it: the trajectory verifies its own file list
    return traj.path.parent / f"{traj.path.name}.peers" / f"llc-{settings.key()}.json"


def llc_series(traj: Any, settings: LLCSettings, *, stride: int | None = None, cache: bool = True) -> LLCSeries:
    """The LLC every ``stride`` records (default: at every checkpoint the trajectory keeps), cached beside it.

    ``stride`` must be a multiple of the trajectory's checkpoint stride (a store
    that kept more checkpoints serves a coarser series). The cache file names
    the settings' hash (devinterp's version included) and holds the trajectory's
    content hash and the stride: another of any of them computes it again.
    """
    import torch

    have = traj.checkpoint_every
    stride = have if stride is None else stride
    kept = {r: name for r, name in traj.record_checkpoints().items() if have and r % stride == 0}
    expected = range(0, traj.manifest["n_records"], stride) if have and stride % have == 0 else ()
    if not kept or sorted(kept) != list(expected):
        raise ProbekitUsageError(
            f"{traj.name} seed {traj.seed} keeps checkpoints every {have or 'no'} records, not at every "
            f"{stride}-th record: record it with load_or_record(..., checkpoint_every={stride}) for the LLC signal.")
    path = _series_path(traj, settings)
    content = traj.manifest["content_hash"]
    if cache and path.is_file():
        try:
            stored = json.loads(path.read_text())
            if stored.get("trajectory") == content and stored["series"]["stride"] == stride:
                return LLCSeries(**stored["series"])
        except (OSError, ValueError, TypeError, KeyError):
            pass  # unreadable or another stride: compute again
    data = llc_data(traj)
    steps = np.asarray(traj.steps)
    rows: dict[str, list] = {"llc": [], "llc_std": [], "below_init": [], "flat": []}
    seconds = 0.0
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # one core per trajectory, as the recordings
    try:
        for record, name in sorted(kept.items()):
            est = estimate_llc(traj.model(name), data, settings)
            for key in rows:
                rows[key].append(est[key])
            seconds += est["seconds"]
    finally:
        torch.set_num_threads(threads)
    series = LLCSeries(records=sorted(kept), steps=[int(steps[r]) for r in sorted(kept)], seconds=seconds,
                       stride=stride, settings=settings.as_dict(), source=data.source, **rows)
    if cache:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_file(path) as tmp:
            tmp.write_text(json.dumps({"trajectory": content, "series": dataclasses.asdict(series)}, default=float))
    return series
