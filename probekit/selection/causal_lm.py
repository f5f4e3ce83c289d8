"""A Hugging Face causal LM checkpoint and a text pool, in the form the gradient sketches take.

``GradientSelector(checkpoint=DIR)`` sketches the gradient of each sequence's causal-LM loss at
a saved model (a ``save_pretrained`` directory, e.g. a Trainer ``checkpoint-N`` folder, loaded
with ``AutoModelForCausalLM.from_pretrained(DIR, local_files_only=True)``: nothing is downloaded).
``probekit.selection.grad_sketch.gradient_sketches`` calls ``model(*inputs)`` and
``loss_fn(outputs, targets) -> [B]``; this module supplies the four:

- ``inputs``: ``(input_ids, attention_mask)``, both [N, T]: the ``text_field`` tokenized, right
  padded to the pool's longest sequence (pad token: the tokenizer's, else its eos), truncated at
  ``max_length``;
- ``targets``: [N, T] labels, token t + 1 at position t, -100 where the target or the context is
  padding and at the last position (``probekit.monitor.losses.causal_lm_loss``'s targets);
- ``loss_fn``: :func:`sequence_loss`, the mean next-token cross-entropy over each sequence's
  real targets, exactly ``causal_lm_loss``;
- ``model``: :class:`CausalLMForSketch`, the checkpoint's model with a positional signature
  returning the logits.

The tokenizer is ``tokenizer`` when given, else the one saved in the checkpoint directory, else
in the folder above it (the Trainer output's top), as ``probekit record`` finds it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from probekit.errors import ProbekitUsageError
from probekit.monitor.losses import mean_target_loss, next_token_targets

if TYPE_CHECKING:
    from probekit.pool import Pool

__all__ = ["CausalLMForSketch", "CausalLMData", "causal_lm_labels", "check_params", "load_causal_lm",
           "sequence_loss"]

TOKENIZER_OPTION = "--param tokenizer=PATH"  # how a user of the selector names a tokenizer (messages)
_CONFLICTS = ("model", "input_field", "embedding_field")  # other sources of the model or its inputs


class CausalLMForSketch(torch.nn.Module):
    """``forward(input_ids, attention_mask) -> logits [B, T, V]`` of a transformers causal LM.

    The attention mask is not handed to the model. Under ``torch.func.vmap``, transformers'
    mask builders branch on the mask's values (is every token real?), data-dependent control
    flow that vmap refuses. It is not needed: the padding is on the right and attention is
    causal, so a real token never sees a pad token, and the real positions' logits (the only
    ones the loss reads) are those of the unpadded sequence. The argument stays so that the
    inputs say which tokens are real. (:func:`load_causal_lm` also clears the config's
    ``pad_token_id``, which a forward without a mask tests the ids against.)
    """

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model
        self.trim = False  # cut each batch at its longest sequence (not under vmap: the width would depend on data)
        self.train(model.training)  # the wrapped model's mode (eval, as loaded)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        if self.trim:  # right padding: the columns past the batch's longest sequence hold padding only
            input_ids = input_ids[:, :int(attention_mask.sum(dim=1).max())]
        out = self.model(input_ids=input_ids, use_cache=False)  # no cache: nothing to build under vmap
        return out.logits if hasattr(out, "logits") else out[0]


def causal_lm_labels(input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """[B, T] targets: token t + 1 at position t; -100 at the last position and wherever the target
    or the context is padding (left or right), as ``causal_lm_loss`` shifts them."""
    return next_token_targets(input_ids, attention_mask)


def sequence_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """[B] mean next-token cross-entropy over each sequence's targets (labels != -100), in float32.

    No check for a sequence without targets: it runs under vmap, where a value cannot be tested;
    the tokenization refuses sequences under two tokens before any gradient is taken.
    """
    labels = labels[:, :logits.shape[1]]  # a trimmed batch: the labels cut off are padding (IGNORE_INDEX) only
    return mean_target_loss(logits.float(), labels)


@dataclass
class CausalLMData:
    """What ``gradient_sketches`` takes for a causal LM checkpoint, and what the provenance says of it."""

    model: CausalLMForSketch
    inputs: tuple[torch.Tensor, torch.Tensor]  # input_ids, attention_mask: [N, T] on the device
    labels: torch.Tensor  # [N, T] on the device, -100 where ignored
    info: dict = field(default_factory=dict)  # checkpoint, tokenizer, max_length, text_field


# -- checks before any work ----------------------------------------------------------------
def _device(owner: str, device: Any) -> torch.device:
    from probekit.torch_params import torch_device

    return torch_device(device, f"The 'device' parameter of {owner}")


def _model_dir(owner: str, checkpoint: Any) -> Path:
    path = Path(checkpoint).expanduser()
    if not path.exists():
        raise ProbekitUsageError(f"The 'checkpoint' parameter of {owner} names {path}, which does not exist.")
    if not (path / "config.json").is_file():
        subs = sorted((p.name for p in path.glob("checkpoint-*") if (p / "config.json").is_file()),
                      key=lambda name: int(name.split("-")[1]) if name.split("-")[1].isdigit() else -1)
        hint = (f"; it is a Trainer output: name one of its checkpoints, e.g. {path / subs[-1]}" if subs else
                "; give a directory written by save_pretrained, e.g. a Trainer checkpoint-N folder")
        raise ProbekitUsageError(f"The 'checkpoint' parameter of {owner} must be a transformers model directory "
                                 f"(with a config.json); {path} is not one{hint}.")
    return path


def text_column(params: dict) -> str:
    """The text column a checkpoint's model reads: ``text_field``, else ``text``."""
    return params.get("text_field") or "text"


def check_params(owner: str, params: dict, pool: "Pool") -> None:
    """What can be known without loading anything: parameters that do not go with a checkpoint,
    the checkpoint and tokenizer paths, the device, the text column."""
    for name in _CONFLICTS:
        if params.get(name) is not None:
            raise ProbekitUsageError(
                f"The {name!r} parameter of {owner} does not apply with a checkpoint: the checkpoint's causal LM "
                f"reads the tokenized text column (text_field); give one of checkpoint and {name}.")
    if params.get("loss") != "cross_entropy":
        raise ProbekitUsageError(
            f"The 'loss' parameter of {owner} must be 'cross_entropy' with a checkpoint (each sequence's mean "
            f"next-token cross-entropy). Got {params.get('loss')!r} instead.")
    _model_dir(owner, params["checkpoint"])
    if params.get("tokenizer") is not None and not Path(params["tokenizer"]).expanduser().exists():
        raise ProbekitUsageError(f"The 'tokenizer' parameter of {owner} names "
                                 f"{Path(params['tokenizer']).expanduser()}, which does not exist.")
    _device(owner, params.get("device", "cpu"))
    column = text_column(params)
    if column not in pool.columns:
        given = "names column" if params.get("text_field") else "is None, so the model reads column"
        raise ProbekitUsageError(
            f"The 'text_field' parameter of {owner} {given} {column!r}, which the pool does not have; "
            f"columns: {', '.join(pool.columns)}.")


# -- loading -------------------------------------------------------------------------------
def _positions(config: Any) -> int | None:
    """How many positions the model has (GPT-2's n_positions answers to this name too), if it says."""
    n = getattr(config, "max_position_embeddings", None)
    return int(n) if isinstance(n, int) and n > 0 else None


def _max_length(owner: str, given: int | None, tokenizer: Any, positions: int | None) -> int | None:
    """The truncation length: ``given``, else the tokenizer's model_max_length when it is a real limit
    (transformers puts ~1e30 there when there is none), never past the model's positions."""
    if given is not None:
        if positions is not None and given > positions:
            raise ProbekitUsageError(f"The 'max_length' parameter of {owner} must be at most the model's "
                                     f"{positions} positions. Got {given} instead.")
        return int(given)
    limit = getattr(tokenizer, "model_max_length", None)
    limits = [n for n in (limit if isinstance(limit, int) and 0 < limit < 1_000_000 else None, positions)
              if n is not None]
    return min(limits) if limits else None


def _load(owner: str, path: Path, what: str, fn) -> Any:
    try:
        return fn()
    except ProbekitUsageError:
        raise
    except Exception as exc:  # noqa: BLE001 - foreign library boundary: any failure, in one line
        first = (str(exc).strip().splitlines() or [""])[0]
        raise ProbekitUsageError(f"The 'checkpoint' parameter of {owner}: {path} failed to load ({what}): "
                                 f"{type(exc).__name__}: {first}") from None


def load_causal_lm(owner: str, params: dict, pool: "Pool") -> CausalLMData:
    """The checkpoint's model (eval mode, float32, on ``device``) and the pool's tokenized text.

    The cheap steps come first: the model's config, the tokenizer, the tokenization (a sequence
    under two tokens is an error naming it), then the weights and the vocabulary check.
    """
    from transformers import AutoConfig

    from probekit.record.batches import _texts, _tokenized, check_vocab, load_tokenizer
    from probekit.record.sources import Loader, load_model

    path = _model_dir(owner, params["checkpoint"])
    device = _device(owner, params.get("device", "cpu"))
    config = _load(owner, path, "config.json",
                   lambda: AutoConfig.from_pretrained(str(path), local_files_only=True))
    tokenizer, desc = load_tokenizer(params.get("tokenizer"), [path, path.parent], option=TOKENIZER_OPTION)
    max_length = _max_length(owner, params.get("max_length"), tokenizer, _positions(config))
    column = text_column(params)
    texts = _texts(pool, column, "pool")
    # One chunk: every sequence padded to the pool's longest, the form gradient_sketches batches.
    (_, _, batch), = _tokenized(tokenizer, desc, texts, pool, "causal_lm", None, len(texts), max_length)
    loader = Loader("hf", model_class="transformers:AutoModelForCausalLM", dtype="float32")
    model = _load(owner, path, "AutoModelForCausalLM", lambda: load_model(path, loader).to(device))
    check_vocab(model, len(tokenizer), str(path), desc, option=TOKENIZER_OPTION)
    # A causal LM's forward reads pad_token_id only to warn when the ids look padded and no mask is
    # given: a test on the ids' values, which vmap refuses. The labels take care of the padding here.
    model.config.pad_token_id = None
    ids, mask = batch["input_ids"].to(device), batch["attention_mask"].to(device)
    info = {"checkpoint": str(path.resolve()), "tokenizer": desc, "max_length": max_length, "text_field": column,
            "tokens": int(mask.sum())}
    return CausalLMData(CausalLMForSketch(model), (ids, mask), causal_lm_labels(ids, mask), info)
