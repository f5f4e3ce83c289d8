"""One checkpoint's measurement: the pool's per-sample losses (and the order parameters read in the same pass).

Chunk by chunk through ``probekit.monitor.forward.forward_losses`` (no grad, eval mode, each
module's train flag restored, under the chosen autocast) with the monitor's loss functions; an
accuracy is read off the logits the loss function's forward produced, so it costs no second pass.
"""
from __future__ import annotations

import logging
import warnings
from typing import Any

import numpy as np

from probekit.errors import ProbekitUsageError, ProbekitWarning
from probekit.record.batches import Data
from probekit.record.order import OrderSpec
from probekit.record.sources import Checkpoint

__all__ = ["measure_checkpoint"]

log = logging.getLogger("probekit.record")


class _Capture:
    """The model as the loss function calls it, keeping the logits for the accuracy."""

    def __init__(self, model: Any) -> None:
        self.model, self.logits = model, None

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        from probekit.monitor.losses import _outputs

        out = self.model(*args, **kwargs)
        self.logits = _outputs(out)
        return out


def measure_checkpoint(model: Any, c: Checkpoint, pool_data: Data, evals: dict[str, Data], rows: dict,
                       measured: dict[str, OrderSpec], loss_fn: Any, loss_kind: str, autocast: Any,
                       progress: bool | None, i: int, total: int | None) -> tuple[np.ndarray, dict[str, float]]:
    """([pool] float32 losses, {order-parameter key: value}) of one loaded checkpoint, with a progress bar
    (a log line every 10 s off a terminal). ``rows``: the pool rows of each slice order parameter."""
    from probekit.progress import Progress

    pool_acc = any(op.metric == "accuracy" and not op.on_eval for op in measured.values())
    n_batches = len(pool_data.chunks) + sum(len(d.chunks) for d in evals.values())
    bar = Progress(n_batches, f"step {c.step} ({i + 1}/{total or '?'})", unit="batch", logger=log, enabled=progress,
                   every=10.0, line="{desc}: batch {n}/{total}")
    try:
        losses, correct = _measure(model, pool_data, loss_fn, loss_kind, autocast, pool_acc, bar, c.label, "pool")
        values: dict[str, float] = {}
        for key, op in measured.items():
            if not op.on_eval:
                values[key] = float(np.mean(correct[rows[op.name]]))
        for path, data in evals.items():
            acc = any(op.metric == "accuracy" and op.where == path for op in measured.values())
            e_losses, e_correct = _measure(model, data, loss_fn, loss_kind, autocast, acc, bar, c.label, "eval file")
            for key, op in measured.items():
                if op.on_eval and op.where == path:
                    values[key] = float(np.mean(e_correct if op.metric == "accuracy" else e_losses))
    finally:
        bar.close()
    bad = int((~np.isfinite(losses)).sum())
    if bad:
        warnings.warn(f"checkpoint {c.label}: {bad} of {losses.size} pool losses are NaN or inf", ProbekitWarning,
                      stacklevel=3)
    return losses.astype(np.float32), values


def _measure(model: Any, data: Data, loss_fn: Any, loss_kind: str, autocast: Any, want_correct: bool, bar: Any,
             label: str, where: str) -> tuple[np.ndarray, np.ndarray | None]:
    """[n] losses (and [n] per-sample accuracies) of every row of ``data``, chunk by chunk."""
    from probekit.monitor.forward import forward_losses
    from probekit.record.order import per_sample_correct

    losses = np.empty(data.n, dtype=np.float64)
    correct = np.empty(data.n, dtype=np.float64) if want_correct else None
    kept: dict[str, Any] = {}

    def fn(m: Any, batch: Any) -> Any:
        if not want_correct:
            return loss_fn(m, batch)
        cap = _Capture(m)
        value = loss_fn(cap, batch)
        kept["correct"] = per_sample_correct(loss_kind, cap.logits, batch).detach().to("cpu")
        return value

    for a, b, batch in data.chunks:
        try:
            losses[a:b] = forward_losses(model, batch, fn, 0, b - a, 1, batch_size=None, autocast=autocast)
        except ProbekitUsageError as exc:
            raise ProbekitUsageError(f"checkpoint {label}, {where} rows {a}..{b - 1}: {exc}") from exc
        except Exception as exc:  # noqa: BLE001 - a forward that fails is one line naming where
            first = (str(exc).strip().splitlines() or [""])[0]
            raise ProbekitUsageError(f"checkpoint {label}: the forward pass failed on {where} rows {a}..{b - 1}: "
                                     f"{type(exc).__name__}: {first}") from exc
        if want_correct:
            correct[a:b] = kept["correct"].double().numpy()
        bar.update()
    return losses, correct
