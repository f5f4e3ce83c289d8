"""The pool as forward batches: its columns turned into tensors once, in chunks of ``batch_size`` rows.

What a chunk holds depends on the loss (docs/record.md, "Pools and losses"):

- ``causal_lm``: the ``text_field`` tokenized, ``{"input_ids", "attention_mask"}``, each chunk
  padded to its own longest sequence (the loss masks padding, so it does not depend on it);
- ``classification`` / ``regression``: ``(inputs, targets)`` from numeric ``input_fields``
  (scalars side by side, or one column of vectors: ``[b, d]`` float32) and the
  ``target_field``; or, from a text column, the tokenized dict with ``labels``;
- a custom loss gets the same forms (targets only where a ``target_field`` is given).

Chunks are built once and hashed (``Data.digest``): the losses depend on the checkpoint and on
exactly these tensors, which is what decides whether losses recorded before can be reused.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from probekit.errors import ProbekitUsageError

__all__ = ["Data", "Fields", "build_data", "check_vocab", "load_tokenizer"]

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.json", "tokenizer.model", "spiece.model",
                   "vocab.txt")


@dataclass(frozen=True)
class Fields:
    """Which pool columns feed the model."""

    text: str | None = None
    inputs: tuple[str, ...] = ()
    target: str | None = None

    def describe(self) -> dict:
        return {"text_field": self.text, "input_fields": list(self.inputs), "target_field": self.target}


@dataclass
class Data:
    """The pool's rows as forward chunks ``(start, stop, batch)``, in row order."""

    chunks: list[tuple[int, int, Any]]
    n: int
    digest: str  # sha256 of every tensor of every chunk, with the chunk bounds
    describe: dict = field(default_factory=dict)
    vocab: int | None = None  # len(tokenizer) when the rows were tokenized


def _has_tokenizer(directory: Path) -> bool:
    return directory.is_dir() and any((directory / f).is_file() for f in TOKENIZER_FILES)


def load_tokenizer(tokenizer: Any, candidates: Sequence[Path], option: str = "--tokenizer PATH") -> tuple[Any, str]:
    """A tokenizer object (and a description of it): the one given (object or path), else the first of
    ``candidates`` (the first checkpoint, the Trainer output above it) that holds tokenizer files.
    ``option`` is how the caller's user names a tokenizer, PATH standing for the path (the messages say it)."""
    if tokenizer is not None and not isinstance(tokenizer, (str, Path)):
        return tokenizer, f"{type(tokenizer).__name__} object"
    if tokenizer is None:
        found = next((Path(c) for c in candidates if c is not None and _has_tokenizer(Path(c))), None)
        if found is None:
            where = ", ".join(str(c) for c in candidates if c is not None) or "no checkpoint directory"
            raise ProbekitUsageError(f"the pool must be tokenized, but there are no tokenizer files in {where}; "
                                     f"give {option}.")
        tokenizer = found
    path = Path(tokenizer).expanduser()
    if not path.exists():
        raise ProbekitUsageError(f"{option.replace('PATH', str(path))} does not exist.")
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(str(path), local_files_only=True), str(path.resolve())
    except Exception as exc:  # noqa: BLE001 - any tokenizer failure, in one line
        first = (str(exc).strip().splitlines() or [""])[0]
        raise ProbekitUsageError(f"{option.replace('PATH', str(path))} failed to load: {type(exc).__name__}: "
                                 f"{first}") from None


def check_vocab(model: Any, vocab: int | None, label: str, tokenizer_desc: str | None,
                option: str = "--tokenizer PATH") -> None:
    """A tokenizer with more tokens than the model's embedding has rows: the wrong tokenizer (``option``: as in
    :func:`load_tokenizer`)."""
    if vocab is None or not hasattr(model, "get_input_embeddings"):
        return
    emb = model.get_input_embeddings()
    rows = getattr(emb, "num_embeddings", None)
    if rows is not None and vocab > rows:
        raise ProbekitUsageError(
            f"tokenizer mismatch: the tokenizer ({tokenizer_desc}) has {vocab} tokens but checkpoint {label} embeds "
            f"{rows}; give the run's own tokenizer with {option}.")


def _column(pool: Any, name: str, option: str, where: str) -> np.ndarray:
    if name not in pool.columns:
        raise ProbekitUsageError(f"column {name!r} ({option}) is not in {where} {pool.name}; its columns: "
                                 f"{', '.join(pool.columns)}.")
    return pool.column(name)


def _bad_row(pool: Any, mask: np.ndarray, what: str) -> ProbekitUsageError:
    ids = [str(i) for i in pool.ids[np.flatnonzero(mask)[:5]]]
    return ProbekitUsageError(f"{what}: examples {', '.join(ids)}{' ...' if mask.sum() > 5 else ''}.")


def _numeric(pool: Any, names: Sequence[str], option: str, where: str) -> np.ndarray:
    """[n, d] float64: scalar columns side by side, or a column of equal-length vectors."""
    parts = []
    for name in names:
        col = _column(pool, name, option, where)
        if col.dtype.kind in "biuf":
            parts.append(col.astype(np.float64)[:, None])
            continue
        missing = np.array([v is None for v in col])
        if missing.any():
            raise _bad_row(pool, missing, f"column {name!r} ({option}) has missing values")
        if any(isinstance(v, str) for v in col):
            raise ProbekitUsageError(f"column {name!r} ({option}) holds text; numeric inputs are numbers or lists of "
                                     "numbers (a text column goes through a tokenizer: give it as --text-field).")
        rows = [np.asarray(v, dtype=np.float64).reshape(-1) for v in col]
        if len({r.size for r in rows}) > 1:
            raise ProbekitUsageError(f"column {name!r} ({option}) holds vectors of different lengths "
                                     f"{sorted({r.size for r in rows})[:5]}; they must all have one length.")
        parts.append(np.stack(rows))
    x = np.concatenate(parts, axis=1)
    bad = ~np.isfinite(x).all(axis=1)
    if bad.any():
        raise _bad_row(pool, bad, f"{option} {', '.join(names)} holds NaN, inf or missing values")
    return x


def _targets(pool: Any, name: str, loss: str, where: str) -> Any:
    import torch

    col = _column(pool, name, "--target-field", where)
    if col.dtype.kind not in "biuf" and any(isinstance(v, str) for v in col):
        raise ProbekitUsageError(f"column {name!r} (--target-field) holds text; {loss} needs "
                                 f"{'integer class ids' if loss == 'classification' else 'numbers'}.")
    y = _numeric(pool, [name], "--target-field", where)
    y = y[:, 0] if y.shape[1] == 1 else y
    integral = bool(np.all(y == np.round(y)))
    if loss == "classification" and not integral:
        raise ProbekitUsageError(f"column {name!r} (--target-field) holds non-integer values; classification needs "
                                 "integer class ids.")
    if loss == "classification" or (loss not in ("regression",) and integral and col.dtype.kind in "biu"):
        return torch.as_tensor(y.astype(np.int64))
    return torch.as_tensor(y.astype(np.float32))


def _texts(pool: Any, name: str, where: str) -> list[str]:
    col = _column(pool, name, "--text-field", where)
    bad = np.array([not isinstance(v, str) for v in col])
    if bad.any():
        raise _bad_row(pool, bad, f"column {name!r} (--text-field) must hold text; it holds other values")
    return list(col)


def _digest(chunks: list[tuple[int, int, Any]]) -> str:
    from probekit.record.sources import feed_tensor

    digest = hashlib.sha256()

    def feed(path: str, x: Any) -> None:
        if isinstance(x, dict):
            for k in sorted(x):
                feed(f"{path}/{k}", x[k])
        elif isinstance(x, (tuple, list)):
            for i, v in enumerate(x):
                feed(f"{path}/{i}", v)
        else:
            feed_tensor(digest, path, x)

    for a, b, batch in chunks:
        feed(f"{a}:{b}", batch)
    return digest.hexdigest()


def _tokenized(tokenizer: Any, desc: str, texts: list[str], pool: Any, loss: str, targets: Any, batch_size: int,
               max_length: int | None) -> list[tuple[int, int, Any]]:
    """Chunks of tokenized texts, right-padded (the real tokens keep positions 0..len-1, as when run alone);
    the tokenizer's own padding settings are restored afterwards."""
    saved = tokenizer.pad_token, tokenizer.padding_side
    if tokenizer.pad_token is None:  # a GPT-2 tokenizer has none; the attention mask hides it anyway
        fill = tokenizer.eos_token or tokenizer.unk_token
        if fill is None:
            raise ProbekitUsageError(f"the tokenizer ({desc}) has no pad, eos or unk token to pad with.")
        tokenizer.pad_token = fill
    tokenizer.padding_side = "right"
    chunks = []
    try:
        for a in range(0, len(texts), batch_size):
            b = min(a + batch_size, len(texts))
            enc = tokenizer(texts[a:b], padding=True, truncation=max_length is not None, max_length=max_length,
                            return_tensors="pt")
            batch = {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}
            if loss == "causal_lm":
                short = (batch["attention_mask"].sum(dim=1) < 2).numpy()
                if short.any():
                    rows = np.zeros(len(texts), dtype=bool)
                    rows[a:b] = short
                    raise _bad_row(pool, rows, "a causal LM loss needs at least two tokens per example; these have "
                                   "fewer")
            elif targets is not None:
                batch["labels"] = targets[a:b]
            chunks.append((a, b, batch))
    finally:
        if saved[0] is None:
            tokenizer.pad_token = None
        tokenizer.padding_side = saved[1]
    return chunks


def build_data(pool: Any, *, loss: str, fields: Fields, batch_size: int, tokenizer: Callable[[], tuple] | None = None,
               max_length: int | None = None, where: str = "pool") -> Data:
    """Every row of ``pool`` as forward chunks for ``loss`` ("causal_lm", "classification", "regression",
    or "custom"); ``tokenizer()`` gives (tokenizer, its description), called only when a text column is read."""
    import torch

    text = fields.text
    if loss == "causal_lm" and text is None:
        if "text" not in pool.columns:
            raise ProbekitUsageError(f"causal_lm needs --text-field (the text column); {where} {pool.name} has "
                                     f"columns {', '.join(pool.columns)}.")
        text = "text"
    if text is None and len(fields.inputs) == 1 and fields.inputs[0] in pool.columns \
            and any(isinstance(v, str) for v in pool.column(fields.inputs[0])[:1]):
        text = fields.inputs[0]  # a text input column: tokenized, as a sequence classifier takes it
    if loss in ("classification", "regression") and fields.target is None:
        raise ProbekitUsageError(f"{loss} needs --target-field (the column holding the targets).")
    if text is None and not fields.inputs:
        raise ProbekitUsageError(f"{loss} needs --input-field (numeric input columns) or --text-field (a text column).")
    n = len(pool)
    targets = None if fields.target is None or loss == "causal_lm" else _targets(pool, fields.target, loss, where)
    chunks: list[tuple[int, int, Any]] = []
    describe = {"fields": Fields(text, () if text else fields.inputs, fields.target).describe(),
                "batch_size": int(batch_size), "rows": n}
    if text is not None:
        if tokenizer is None:
            raise ProbekitUsageError("a text column needs a tokenizer (--tokenizer PATH).")
        tokenizer, tokenizer_desc = tokenizer()
        if max_length is None:
            limit = getattr(tokenizer, "model_max_length", None)
            max_length = int(limit) if isinstance(limit, int) and 0 < limit < 1_000_000 else None
        texts = _texts(pool, text, where)
        chunks = _tokenized(tokenizer, tokenizer_desc, texts, pool, loss, targets, batch_size, max_length)
        describe.update(tokenizer=tokenizer_desc, max_length=max_length)
        vocab = len(tokenizer)
    else:
        x = torch.as_tensor(_numeric(pool, fields.inputs, "--input-field", where).astype(np.float32))
        for a in range(0, n, batch_size):
            b = min(a + batch_size, n)
            chunks.append((a, b, x[a:b] if targets is None else (x[a:b], targets[a:b])))
        describe.update(tokenizer=None, max_length=None)
        vocab = None
    return Data(chunks, n, _digest(chunks), describe, vocab)
