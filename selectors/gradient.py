"""Gradient diversity: probes whose loss gradients point in the most different directions.

A probe set watches the per-sample losses, and a loss moves by its gradient
times the update: probes with aligned gradients move together, and carry one
signal. So this strategy spreads the probes over gradient space at a
checkpoint. Each example's loss gradient is sketched to ``sketch_dim`` numbers
(``probekit.selection.grad_sketch``): ``projection``, a seeded Gaussian projection of
the per-sample gradients from ``torch.func`` grad + vmap; ``factorized``, every
layer's gradient projected from its inputs and output gradients, never formed, at
about the cost of one backward pass (``probekit.selection.factorized_sketch``);
``badge``, the last linear layer only. ``auto`` (the default) takes ``factorized``
above ``AUTO_FACTORIZED`` trainable parameters and ``projection`` below. The
sketches are then ordered by

- ``kcenter``: greedy farthest-first, each probe the example farthest from the
  probes already taken (the 2-approximation of k-center). Distances to the
  taken set are updated in O(N * dim) per step: no N x N matrix. Score: that
  distance when the probe was taken, i.e. the coverage radius of the probes
  before it;
- ``kmeans++``: seeded D^2 sampling (Arthur & Vassilvitskii, 2007). Score: the
  distance to the nearest earlier probe when it was drawn.

Both are sequential, so the first m probes of a selection of n are the
selection of m. ``start`` picks the first probe: the largest sketch norm
(``norm``, scored by that norm: its distance to a zero gradient) or a seeded
uniform draw (``random``).

The checkpoint. ``model`` is a torch module taking the pool's inputs (the
``input_field`` column, or the automatic embedding: ``resolve_embedder`` with
``text_field`` / ``embedding_field``) and ``loss`` its per-sample loss. With
``model=None`` (what the CLI uses, unless it names a ``checkpoint``) the checkpoint
is a small MLP, input -> ``hidden`` -> tanh -> classes, freshly initialised from
the seed, on the standardised embedding: *gradients at initialisation*. There,
dloss/dlogits = softmax - onehot is near 1/C - onehot, so the sketches mix the
label with the hidden features and the ordering covers classes and input
regions. Keep a user model in ``eval()`` mode (``probekit.selection.grad_sketch``).

A causal LM checkpoint. ``checkpoint`` names a transformers model directory (a
Trainer ``checkpoint-N`` folder; the CLI's ``--param checkpoint=DIR``): its
``AutoModelForCausalLM`` reads the ``text_field`` column (default ``text``),
tokenized by ``tokenizer`` (default: the one saved in the checkpoint or the folder
above it), and each example's loss is its mean next-token cross-entropy over its
real tokens (``probekit.selection.causal_lm``). ``target_field`` is then unused.

Targets: integer labels >= 0 are class indices as they are; other labels
(strings, booleans, negative integers) are numbered in sorted order. ``mse``
and callable losses take float targets (a number or a list per row).

The seed sets the projection, the default model's initialisation and the
kmeans++ / random-start draws. The selector pickles when its parameters do: a
torch model does, a lambda ``loss`` does not (use a module-level function).
"""
from __future__ import annotations

import contextlib
import logging
import os
from typing import TYPE_CHECKING, Any, Callable, ClassVar

import numpy as np
import torch
from torch.nn import functional as F

from probekit.errors import ProbekitUsageError
from probekit.params import AnyOf, Interval, Options
from probekit.progress import stage
from probekit.selection.grad_sketch import gradient_sketches
from probekit.selection.orderings import farthest_first, kmeans_pp
from probekit.selectors.base import Ranking, Selector

if TYPE_CHECKING:
    from probekit.pool import Pool

log = logging.getLogger(__name__)

__all__ = ["GradientSelector", "default_model", "farthest_first", "kmeans_pp"]


class _PerSampleLoss:
    """Constraint: a callable (outputs, targets) -> [B] losses (not a string or a class)."""

    def accepts(self, value: Any) -> bool:
        return callable(value) and not isinstance(value, (str, type))

    def describe(self) -> str:
        return "a callable (outputs, targets) -> per-sample losses"


def _cross_entropy(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(outputs, targets, reduction="none")


def _mse(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    diff = outputs - targets.reshape(outputs.shape).to(outputs.dtype)
    return (diff**2).reshape(outputs.shape[0], -1).mean(1)


_LOSSES: dict[str, Callable] = {"cross_entropy": _cross_entropy, "mse": _mse}

# method="auto": the factorized sketch above this many trainable parameters. Below it the dense projection
# (exact Gaussian JL spread) costs under ~1 ms per example on one core; above it the dense projection
# grows as P x dim per example while the factorized one stays near one backward pass (docs/gradients.md).
AUTO_FACTORIZED = 1_000_000


# -- the default checkpoint -----------------------------------------------------------
def default_model(n_in: int, hidden: int, n_out: int, seed: int) -> torch.nn.Module:
    """input -> hidden -> tanh -> n_out, PyTorch's default init bounds, drawn from ``seed``."""
    # skip_init and an own generator: the global torch RNG is neither read nor advanced.
    linear = torch.nn.utils.skip_init
    model = torch.nn.Sequential(linear(torch.nn.Linear, n_in, hidden), torch.nn.Tanh(),
                                linear(torch.nn.Linear, hidden, n_out))
    state = np.random.SeedSequence([seed, 1]).generate_state(1, np.uint64)[0]
    gen = torch.Generator().manual_seed(int(state))
    with torch.no_grad():
        for layer in (model[0], model[2]):
            bound = 1.0 / np.sqrt(layer.in_features)
            layer.weight.uniform_(-bound, bound, generator=gen)
            layer.bias.uniform_(-bound, bound, generator=gen)
    return model.eval()


class GradientSelector(Selector):
    """Probes spread over per-sample loss-gradient sketches (k-center greedy or k-means++)."""

    name: ClassVar[str] = "gradient"
    # the model's inputs: a column of them, or an embedding of the examples
    alternatives: ClassVar[tuple[tuple[str, ...], ...]] = (("input_field", "text_field", "embedding_field"),)
    stochastic: ClassVar[bool] = True
    _constraints: ClassVar[dict[str, Any]] = {
        "model": AnyOf(None, torch.nn.Module),
        "loss": AnyOf(Options("cross_entropy", "mse"), _PerSampleLoss()),
        "input_field": AnyOf(None, str),
        "text_field": AnyOf(None, str),
        "embedding_field": AnyOf(None, str),
        "target_field": str,
        "sketch_dim": Interval(int, 1, 65536),
        "method": Options("auto", "factorized", "projection", "badge"),
        "factor_dim": Interval(int, 1, 4096),
        "ordering": Options("kcenter", "kmeans++"),
        "start": Options("norm", "random"),
        "batch_size": Interval(int, 1, None),
        "hidden": Interval(int, 1, 65536),
        "checkpoint": AnyOf(None, str, os.PathLike),
        "tokenizer": AnyOf(None, str, os.PathLike),
        "max_length": AnyOf(None, Interval(int, 2, None)),  # 2: one token has no next token to predict
        "device": str,
        "autocast": Options("none", "bf16", "fp16"),
    }

    def __init__(
        self,
        *,
        model: Any = None,
        loss: Any = "cross_entropy",
        input_field: str | None = None,
        text_field: str | None = None,
        embedding_field: str | None = None,
        target_field: str = "label",
        sketch_dim: int = 256,  # JL: distances kept to ~1/sqrt(256) = 6% relative noise
        method: str = "auto",  # factorized above AUTO_FACTORIZED sketched parameters, else projection
        ordering: str = "kcenter",
        start: str = "norm",
        batch_size: int = 256,  # per-sample gradients held at once: batch_size x P floats
        hidden: int = 64,  # default model width: ~65 * (d + C) parameters, sketched in ms
        factor_dim: int = 32,  # factorized: each layer's gradient projected to factor_dim x factor_dim first
        checkpoint: Any = None,  # a transformers causal LM directory (Trainer checkpoint-N); reads text_field
        tokenizer: Any = None,  # with checkpoint; None: the one saved in the checkpoint, else the folder above
        max_length: int | None = None,  # tokens kept per text; None: the tokenizer's limit, <= model positions
        device: str = "cpu",  # where a checkpoint's model runs, e.g. 'cuda:0'
        autocast: str = "none",  # the forward and backward under torch.autocast to bf16 / fp16; sketches in float32
    ) -> None:
        self.model = model
        self.loss = loss
        self.input_field = input_field
        self.text_field = text_field
        self.embedding_field = embedding_field
        self.target_field = target_field
        self.sketch_dim = sketch_dim
        self.method = method
        self.ordering = ordering
        self.start = start
        self.batch_size = batch_size
        self.hidden = hidden
        self.factor_dim = factor_dim
        self.checkpoint = checkpoint
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.device = device
        self.autocast = autocast

    def _check_params(self, pool: "Pool") -> None:
        owner = type(self).__name__
        if self.checkpoint is not None:  # a causal LM checkpoint: its own inputs and targets
            from probekit.selection.causal_lm import check_params

            check_params(owner, self.get_params(), pool)
            return
        given = [k for k, v in (("tokenizer", self.tokenizer), ("max_length", self.max_length),
                                ("device", None if self.device == "cpu" else self.device)) if v is not None]
        if given:  # they describe how a checkpoint is loaded and read: silently unused otherwise
            raise ProbekitUsageError(f"The {given[0]!r} parameter of {owner} applies with checkpoint=DIR (a causal LM "
                                     "directory); a model given as 'model' runs on its own device, and the default "
                                     "model on the CPU.")
        self._require_columns(pool, "target_field", "input_field")
        if self.input_field is not None and (self.text_field or self.embedding_field) is not None:
            raise ProbekitUsageError(
                f"The 'text_field' and 'embedding_field' parameters of {owner} choose the automatic "
                f"embedding; they do not apply with input_field={self.input_field!r}."
            )

    # -- pool -> tensors ----------------------------------------------------------------
    def _inputs(self, pool: "Pool") -> tuple[torch.Tensor, str]:
        """[N, ...] model inputs and a description of where they came from."""
        from probekit.embedders import resolve_embedder
        from probekit.embedders.column import column_matrix

        if self.input_field is None:
            embedder = resolve_embedder(pool, text_field=self.text_field, embedding_field=self.embedding_field)
            x = embedder.embed(pool)
            return torch.from_numpy(x), f"{embedder.name} embedder {embedder.get_params()}"
        x = column_matrix(pool, self.input_field)
        if np.issubdtype(x.dtype, np.integer):
            return torch.from_numpy(x.astype(np.int64)), f"column {self.input_field!r} (integers)"
        x = x.astype(np.float32)
        if not np.isfinite(x).all():
            raise ProbekitUsageError(f"input column {self.input_field!r} has NaN or inf values.")
        return torch.from_numpy(x), f"column {self.input_field!r}"

    def _targets(self, pool: "Pool") -> tuple[torch.Tensor, int]:
        """Targets as the loss takes them, and the output width a default model needs."""
        from probekit.embedders.column import column_matrix

        field = self.target_field
        values = pool.column(field)
        if values.dtype == object and any(isinstance(v, (list, tuple, np.ndarray)) for v in values):
            if self.loss == "cross_entropy":
                raise ProbekitUsageError(
                    f"loss='cross_entropy' needs one class label per row; target column {field!r} holds lists."
                )
            y = column_matrix(pool, field).astype(np.float32)
            if not np.isfinite(y).all():
                raise ProbekitUsageError(f"target column {field!r} has NaN or inf values.")
            return torch.from_numpy(y), y.shape[1]
        if values.dtype == object:
            if any(v is None for v in values):
                raise ProbekitUsageError(f"target column {field!r} has missing values.")
            if self.loss == "mse":
                raise ProbekitUsageError(
                    f"loss='mse' needs numeric targets; target column {field!r} holds "
                    f"{type(values[0]).__name__} values."
                )
            return self._classes(values)
        if np.issubdtype(values.dtype, np.floating):
            if not np.isfinite(values).all():
                raise ProbekitUsageError(f"target column {field!r} has missing, NaN or inf values.")
            if self.loss == "cross_entropy":
                if not np.all(values == np.round(values)):
                    raise ProbekitUsageError(
                        f"loss='cross_entropy' needs class labels; target column {field!r} holds "
                        "non-integer numbers (use loss='mse')."
                    )
                return self._classes(values.astype(np.int64))
            return torch.from_numpy(values.astype(np.float32)), 1
        if self.loss == "mse":
            return torch.from_numpy(values.astype(np.float32)), 1
        return self._classes(values)

    @staticmethod
    def _classes(values: np.ndarray) -> tuple[torch.Tensor, int]:
        if np.issubdtype(values.dtype, np.integer) and not np.issubdtype(values.dtype, np.bool_) \
                and values.min() >= 0:
            y = values.astype(np.int64)  # class indices as they are
        else:
            keys = [str(v) for v in values] if values.dtype == object else values
            _, y = np.unique(np.asarray(keys), return_inverse=True)
        y = np.asarray(y, dtype=np.int64).reshape(-1)
        return torch.from_numpy(y), max(2, int(y.max()) + 1)  # 2: one class would give zero gradients

    # -- the strategy --------------------------------------------------------------------
    def _rank(self, pool: "Pool", n: int, seed: int) -> Ranking:
        loss = _LOSSES[self.loss] if isinstance(self.loss, str) else self.loss
        extra: dict = {}  # what the provenance says beyond the common facts
        if self.checkpoint is not None:  # a causal LM on the tokenized text: probekit.selection.causal_lm
            from probekit.selection.causal_lm import load_causal_lm, sequence_loss

            lm = load_causal_lm(type(self).__name__, self.get_params(), pool)
            model, x, y, loss, extra = lm.model, lm.inputs, lm.labels, sequence_loss, lm.info
            checkpoint, source = extra["checkpoint"], f"column {extra['text_field']!r}, tokenized"
        else:
            x, source = self._inputs(pool)
            y, n_out = self._targets(pool)
            if self.model is None:
                if not torch.is_floating_point(y):
                    # The default model only needs distinct classes, not their codes: renumber
                    # them 0..C-1, so an id-like label (100000) does not build a 100001-way head.
                    codes, dense = np.unique(y.numpy(), return_inverse=True)
                    y, n_out = torch.from_numpy(dense.reshape(-1).astype(np.int64)), max(2, len(codes))
                x = x.to(torch.float32).reshape(len(pool), -1)
                std = x.std(0)
                x = (x - x.mean(0)) / torch.where(std > 0, std, torch.ones(()))  # init assumes unit scale
                model = default_model(x.shape[1], self.hidden, n_out, seed)
                checkpoint = f"default-init MLP({x.shape[1]}-{self.hidden}-{n_out}), seed {seed}"
            else:
                model, checkpoint = self.model, type(self.model).__name__
                first = next(iter(model.parameters()), None)
                if first is not None:
                    x = x.to(first.device) if not x.is_floating_point() else x.to(first.device, first.dtype)
                    y = y.to(first.device) if not y.is_floating_point() else y.to(first.device, first.dtype)
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
        method = self.method
        if method == "auto":  # docs/gradients.md: the measured costs behind the threshold
            method = "factorized" if trainable > AUTO_FACTORIZED else "projection"
        order = None
        if self.checkpoint is not None and method == "factorized":
            # sequences of like length batched together, each batch cut at its longest: a pool of ragged texts
            # costs its tokens, not rows x the longest (vmap, the projection path, needs one fixed width)
            order = torch.argsort(x[1].sum(dim=1), stable=True)
            x, y = tuple(t[order] for t in x), y[order]
            model.trim = True
        first = next(iter(model.parameters()), None)
        device_type = first.device.type if first is not None else "cpu"
        half = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(self.autocast)
        cast = torch.autocast(device_type, dtype=half) if half is not None else contextlib.nullcontext()
        with stage(f"gradient sketches: {len(pool)} examples, {method}, dim {self.sketch_dim}", logger=log), cast:
            sketches = gradient_sketches(model, x, y, loss, dim=self.sketch_dim, seed=seed,
                                         batch_size=self.batch_size, method=method,
                                         **({"factor_dim": self.factor_dim} if method == "factorized" else {}))
        if order is not None:
            model.trim = False
            unsorted = np.empty_like(sketches)
            unsorted[order.cpu().numpy()] = sketches  # back in pool order
            sketches = unsorted
        rng = np.random.default_rng([seed, 2])  # its own stream: not the projection's
        if self.start == "norm":
            start = int(np.argmax(np.einsum("ij,ij->i", sketches, sketches, dtype=np.float64)))
        else:
            start = int(rng.integers(len(pool)))
        if self.ordering == "kcenter":
            order, scores = farthest_first(sketches, n, start)
        else:
            order, scores = kmeans_pp(sketches, n, start, rng)
        n_params = sum(p.numel() for p in model.parameters())
        if method == "badge":
            head = [m for m in model.modules() if isinstance(m, torch.nn.Linear)][-1]
            sketched = head.weight.numel() + (0 if head.bias is None else head.bias.numel())
        else:
            sketched = trainable
        info = {"sketch": method, **({"factor_dim": self.factor_dim} if method == "factorized" else {}),
                **({"autocast": self.autocast} if half is not None else {}),
                "sketch_dim": self.sketch_dim, "n_params": n_params,
                "n_sketched": sketched, "checkpoint": checkpoint, "inputs": source,
                "ordering": self.ordering, **extra}
        return Ranking(indices=order, scores=scores, info=info)

    @classmethod
    def example(cls) -> "GradientSelector":
        return cls(sketch_dim=64, hidden=32)
