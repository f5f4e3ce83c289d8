"""Mean-pooled hidden states of a ``transformers`` encoder loaded from a local directory.

The model is never downloaded: ``model_path`` must be a directory written by
``save_pretrained`` (model and tokenizer), read with ``local_files_only=True``.
Download one yourself first if you want a public checkpoint::

    huggingface-cli download sentence-transformers/all-MiniLM-L6-v2 --local-dir ./minilm

A sentence's embedding is the mean of the hidden states of layer ``layer`` over
its real tokens (the attention mask; special tokens such as [CLS]/[SEP] count,
padding does not), the pooling sentence-transformers uses. Padding therefore
does not change a sentence's embedding, whatever the batch it lands in.

Rows are run in batches sorted by text length (less padding, so less work),
ties broken by pool id, and put back in the pool's order: the batches are the
same for any row order of the pool, so the features are exactly row-order
invariant. The embedder holds only its parameters (it pickles small); the last
model loaded is kept in a process-wide cache of one, so repeated ``embed``
calls do not reload it (see :func:`load_local_model`).
"""
from __future__ import annotations

import functools
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from probekit.embedders.base import Embedder
from probekit.errors import ProbekitUsageError
from probekit.params import AnyOf, Interval

if TYPE_CHECKING:
    from probekit.pool import Pool

logger = logging.getLogger(__name__)


def _short(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    line = lines[0] if lines else type(exc).__name__
    return line if len(line) <= 200 else line[:197] + "..."


def load_local_model(model_path: str | os.PathLike, device: Any) -> tuple[Any, Any]:
    """(tokenizer, model) from a local ``save_pretrained`` directory, eval mode, on ``device``.

    Never downloads: a path that is not such a directory is a one-line
    ``ProbekitUsageError`` naming it. The last model loaded is kept (a selector
    may embed the same pool many times); saving a new model into the directory
    changes its files' sizes or times and so loads it afresh.
    ``load_local_model.cache_clear()`` frees it.
    """
    path = Path(model_path).expanduser()
    if not path.exists():
        raise ProbekitUsageError(
            f"model path {str(path)!r} does not exist; TransformerEmbedder loads only local "
            "directories written by save_pretrained (it never downloads)."
        )
    if not path.is_dir() or not (path / "config.json").is_file():
        raise ProbekitUsageError(
            f"model path {str(path)!r} is not a transformers model directory (no config.json); "
            "give a directory written by save_pretrained."
        )
    stamp = tuple(sorted((f.name, f.stat().st_size, f.stat().st_mtime_ns) for f in path.iterdir() if f.is_file()))
    return _load_cached(str(path), str(device), stamp)


@functools.lru_cache(maxsize=1)
def _load_cached(path_text: str, device: str, stamp: tuple) -> tuple[Any, Any]:
    from transformers import AutoModel, AutoTokenizer
    from transformers.utils import logging as hf_logging

    path = Path(path_text)
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # its "Loading weights" bar, even off a TTY
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
        model = AutoModel.from_pretrained(str(path), local_files_only=True)
    except Exception as exc:  # noqa: BLE001 - foreign library boundary
        raise ProbekitUsageError(
            f"model path {str(path)!r} could not be loaded as a transformers model and tokenizer: {_short(exc)}"
        ) from exc
    finally:
        if bars:
            hf_logging.enable_progress_bar()
    if tokenizer.pad_token is None:  # decoder-style tokenizers (GPT-2) have no pad token
        if tokenizer.eos_token is None:
            raise ProbekitUsageError(
                f"the tokenizer in {str(path)!r} has neither a pad nor an eos token; batching needs one."
            )
        tokenizer.pad_token = tokenizer.eos_token
    # Right padding keeps the real tokens at positions 0..len-1, as when run alone.
    tokenizer.padding_side = "right"
    model.to(device).eval()
    return tokenizer, model


load_local_model.cache_clear = _load_cached.cache_clear  # type: ignore[attr-defined]


class TransformerEmbedder(Embedder):
    """Mean-pooled hidden states of a local transformers encoder (never downloaded)."""

    name: ClassVar[str] = "transformer"
    _constraints: ClassVar[dict[str, Any]] = {
        "model_path": AnyOf(str, os.PathLike),
        "text_field": str,
        "max_length": Interval(int, 1, None),
        "batch_size": Interval(int, 1, None),
        "layer": Interval(int),  # checked against the model's layer count once it is loaded
        "device": str,
    }

    def __init__(self, *, model_path: str | os.PathLike, text_field: str = "text",
                 max_length: int = 128, batch_size: int = 32, layer: int = -1,
                 device: str = "cpu") -> None:
        self.model_path = model_path
        self.text_field = text_field
        self.max_length = max_length  # 128 tokens: whole sentences and short passages, cheap on CPU
        self.batch_size = batch_size  # 32: fits CPU caches; raise it on a GPU
        self.layer = layer  # -1: the last layer; 0 is the embedding layer's output
        self.device = device

    def _embed(self, pool: "Pool") -> np.ndarray:
        import torch
        from probekit.progress import Progress

        if self.text_field not in pool.columns:
            raise ProbekitUsageError(
                f"text column {self.text_field!r} is not in the pool; columns: {', '.join(pool.columns)}."
            )
        from probekit.torch_params import torch_device

        device = torch_device(self.device, f"The 'device' parameter of {type(self).__name__}")
        tokenizer, model = load_local_model(self.model_path, device)
        n_states = model.config.num_hidden_layers + 1  # the embedding output, then each layer
        if not -n_states <= self.layer < n_states:
            raise ProbekitUsageError(
                f"The 'layer' parameter of {type(self).__name__} must be an int in the range "
                f"[{-n_states}, {n_states - 1}] for this model. Got {self.layer} instead."
            )
        # Never ask for more tokens than the model has positions for.
        max_length = min(self.max_length, tokenizer.model_max_length,
                         getattr(model.config, "max_position_embeddings", None) or self.max_length)

        texts = ["" if t is None else str(t) for t in pool.column(self.text_field).tolist()]
        ids = pool.ids
        order = sorted(range(len(texts)), key=lambda i: (len(texts[i]), ids[i]))
        out: np.ndarray | None = None  # [N, hidden], allocated when the width is known
        starts = range(0, len(order), self.batch_size)
        logger.info("embedding %d rows with %s in %d batches", len(order), self.model_path, len(starts))
        with torch.no_grad():
            bar = Progress(len(starts), "transformer embed", unit="batch", logger=logger, every=10.0,
                           line="{desc}: batch {n}/{total}")
            for start in bar.track(starts):
                rows = order[start:start + self.batch_size]
                batch = tokenizer([texts[i] for i in rows], padding=True, truncation=True,
                                  max_length=max_length, return_tensors="pt")
                mask = batch["attention_mask"]  # [B, T]
                if mask.shape[1] == 0:  # every text empty and no special tokens: zeros
                    continue
                hidden = model(**batch.to(device), output_hidden_states=True).hidden_states[self.layer]
                mask = mask.to(device).unsqueeze(-1).to(torch.float32)  # [B, T, 1]
                summed = (hidden.to(torch.float32) * mask).sum(dim=1)  # [B, hidden]
                pooled = summed / mask.sum(dim=1).clamp(min=1.0)  # a row without tokens stays 0
                if out is None:
                    out = np.zeros((len(texts), pooled.shape[1]), dtype=np.float32)
                out[rows] = pooled.cpu().numpy()
        if out is None:  # no row had a token
            out = np.zeros((len(texts), model.config.hidden_size), dtype=np.float32)
        return out
