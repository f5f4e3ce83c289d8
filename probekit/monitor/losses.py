"""Per-sample loss functions for the monitor: ``loss_fn(model, batch) -> [b]`` float32 losses.

The monitor runs them itself, in its own no-grad forward pass over the probes:
a training step's loss is a mean (scaled by gradient accumulation, or not
computed at all under some trainers) and cannot be split back into the
per-sample losses the 2RDM needs.

- :func:`classification_loss`: cross-entropy of each row (``batch = (inputs,
  targets)`` or a dict with ``labels``; the other keys go to the model).
- :func:`regression_loss`: squared error averaged over each row's outputs.
- :func:`causal_lm_loss`: next-token cross-entropy of each sequence, averaged
  over its target tokens; padding (``attention_mask == 0``, left or right,
  whatever the labels say there) and labels of -100 are masked, so a
  sequence's loss does not depend on how much padding the batch gave it.

Logits are upcast to float32 before the loss, so a bf16/fp16 forward under
autocast still gives losses the 2RDM can difference.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Callable

from probekit.errors import ProbekitUsageError

__all__ = ["LOSSES", "causal_lm_loss", "classification_loss", "regression_loss", "resolve_loss"]

IGNORE_INDEX = -100  # the label value torch and Hugging Face ignore


def _outputs(out: Any) -> Any:
    """Logits of a model output: a tensor, an object with ``.logits`` (Hugging Face), or a tuple's first."""
    if hasattr(out, "logits"):
        return out.logits
    if isinstance(out, (tuple, list)):
        return out[0]
    return out


def _split(batch: Any, owner: str) -> tuple[Any, Any]:
    """(model input, targets) of a supervised batch."""
    if isinstance(batch, Mapping):
        if "labels" not in batch:
            raise ProbekitUsageError(f"{owner} needs the targets: a dict batch must have a 'labels' key. "
                                     f"Got keys {sorted(batch)}.")
        return {k: v for k, v in batch.items() if k != "labels"}, batch["labels"]
    if isinstance(batch, (tuple, list)) and len(batch) == 2:
        return batch[0], batch[1]
    raise ProbekitUsageError(f"{owner} takes a batch (inputs, targets) or a dict with 'labels'. "
                             f"Got {type(batch).__name__} instead.")


def _call(model: Any, inputs: Any) -> Any:
    return model(**inputs) if isinstance(inputs, Mapping) else model(inputs)


def classification_loss(model: Any, batch: Any) -> Any:
    """Cross-entropy of each probe: logits [b, classes] (or [b, ..., classes], averaged over the middle)."""
    import torch.nn.functional as F

    inputs, targets = _split(batch, "classification_loss")
    logits = _outputs(_call(model, inputs)).float()
    if logits.ndim == 2:
        return F.cross_entropy(logits, targets, reduction="none")
    # [b, ..., C] against [b, ...]: the mean over each row's targets (labels of -100 ignored)
    targets = targets.reshape(logits.shape[0], -1)
    loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=IGNORE_INDEX,
                           reduction="none").reshape(targets.shape)
    counts = (targets != IGNORE_INDEX).sum(dim=1)
    _no_targets("classification_loss", counts, "all its labels are -100")
    return loss.sum(dim=1) / counts


def regression_loss(model: Any, batch: Any) -> Any:
    """Squared error of each probe, averaged over its output dimensions."""
    inputs, targets = _split(batch, "regression_loss")
    pred = _outputs(_call(model, inputs)).float()
    pred, targets = pred.reshape(pred.shape[0], -1), targets.float().reshape(targets.shape[0], -1)
    if pred.shape != targets.shape:  # no silent broadcasting of [b, k] against [b, 1]
        raise ProbekitUsageError(f"regression_loss: the model gives {tuple(pred.shape[1:])} outputs per probe but the "
                                 f"targets have {tuple(targets.shape[1:])}; they must match.")
    diff = pred - targets
    return (diff * diff).mean(dim=1)


def causal_lm_loss(model: Any, batch: Any) -> Any:
    """Next-token cross-entropy of each sequence, averaged over its target tokens.

    ``batch``: a tensor of input ids [b, T], or a dict with ``input_ids`` and
    optionally ``attention_mask`` and ``labels`` (default: the input ids with
    padded positions ignored). Position t predicts token t + 1, as in Hugging
    Face's causal LM loss.
    """
    if isinstance(batch, Mapping):
        if "input_ids" not in batch:
            raise ProbekitUsageError(f"causal_lm_loss needs 'input_ids' in a dict batch. Got keys {sorted(batch)}.")
        inputs = {k: v for k, v in batch.items() if k != "labels"}
        labels = batch.get("labels")
    else:
        inputs, labels = {"input_ids": batch}, None
    labels = inputs["input_ids"] if labels is None else labels
    mask = inputs.get("attention_mask")
    logits = _outputs(model(**inputs)).float()  # [b, T, V]
    shift_labels = next_token_targets(labels, mask)
    counts = (shift_labels != IGNORE_INDEX).sum(dim=1)  # [b]
    _no_targets("causal_lm_loss", counts, "all padding or ignored labels, or length 1; every probe needs at "
                                          "least two real tokens")
    return mean_target_loss(logits, shift_labels)


def next_token_targets(labels: Any, mask: Any = None) -> Any:
    """[b, T] targets: label t + 1 at position t; IGNORE_INDEX at the last position and, with an
    attention mask, wherever the target or the context is padding (left or right)."""
    import torch

    # Position t predicts token t + 1. Shift the labels, not the logits: logits[:, :-1] would copy
    # the largest tensor of the pass.
    shift_labels = torch.full_like(labels, IGNORE_INDEX)
    shift_labels[:, :-1] = labels[:, 1:]
    if mask is not None:  # padding is neither a target nor a context that predicts one (left or right)
        shift_labels[:, :-1] = shift_labels[:, :-1].masked_fill(mask[:, 1:] == 0, IGNORE_INDEX)
        shift_labels = shift_labels.masked_fill(mask == 0, IGNORE_INDEX)
    return shift_labels


def mean_target_loss(logits: Any, targets: Any) -> Any:
    """[b] cross-entropy of [b, T, V] logits averaged over each row's targets (IGNORE_INDEX skipped)."""
    import torch.nn.functional as F

    tokens = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1),
                             ignore_index=IGNORE_INDEX, reduction="none").reshape(targets.shape)
    return tokens.sum(dim=1) / (targets != IGNORE_INDEX).sum(dim=1)


def _no_targets(owner: str, counts: Any, why: str) -> None:
    import torch

    if bool((counts == 0).any()):
        bad = torch.nonzero(counts == 0).flatten()[:5].tolist()
        raise ProbekitUsageError(f"{owner}: probes {bad} have no target ({why}).")


LOSSES: dict[str, Callable[[Any, Any], Any]] = {
    "classification": classification_loss,
    "regression": regression_loss,
    "causal_lm": causal_lm_loss,
}


def resolve_loss(loss_fn: Any) -> Callable[[Any, Any], Any]:
    """A loss name (``classification``, ``regression``, ``causal_lm``) or a callable ``(model, batch) -> [b]``."""
    if callable(loss_fn):
        return loss_fn
    if isinstance(loss_fn, str) and loss_fn in LOSSES:
        return LOSSES[loss_fn]
    raise ProbekitUsageError(f"The 'loss_fn' parameter of Monitor must be one of {', '.join(LOSSES)} or a callable "
                             f"(model, batch) -> per-sample losses [b]. Got {loss_fn!r} instead.")
