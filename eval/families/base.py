"""Reference runs: trainings with a known phase transition, recorded for scoring.

A :class:`ReferenceRun` is one *family* of reference transitions (a deep linear
network escaping its saddles, grokking, induction heads, ...) or a *null
control* of one (the same kind of run with no transition in the recorded
span). It builds its candidate pool, trains, and at every record (every
``record_every`` steps) stores the per-sample loss of **every pool example**,
so any probe set drawn from the pool is scored later by column selection,
without retraining. It returns that as a :class:`Recording`; the trajectory
store (``probekit.eval.store.trajectory``) writes it to disk once and serves it to
the harness many times.

The contract a family implements (see ``eval/families/deep_linear.py`` for a complete
small one):

- ``name`` (the registry name), ``summary`` (one line), ``kind``
  (``"transition"`` or ``"null"``), ``control_of`` (a null names its family),
  ``paper``, ``transition_order`` (``"first"``, ``"second"`` or ``"none"``, in
  the seeds' terms: a first-order transition rotates the network onto a new
  direction abruptly; a second-order one grows continuously out of a plateau),
  ``version`` (bump it when the training changes: it is part of the cache key);
- ``config_class``: a frozen dataclass whose fields all have defaults and
  include ``seed`` and ``early_step``; ``presets`` maps ``"small"`` (and any
  other preset, ``"default"`` included) to the field overrides that make it
  from those defaults; ``config_options`` names the fields that take one of
  a few values (``make_config`` refuses others before any training);
- ``order_parameters(config)``: the :class:`OrderParameter` specs, one per
  transition, which :func:`find_transition` turns into onset and midpoint;
- ``record(config, progress, checkpoint_every=0)``: train and return a
  :class:`Recording`; ``progress(n)`` advances the progress bar by ``n`` of
  ``total_steps(config)``; ``checkpoint_every`` = k > 0 (the store passes it:
  ``load_or_record(checkpoint_every=k)``) also keeps the model at every k-th
  record, for signals that need the weights (the LLC). A family keeps its
  checkpoints with :meth:`ReferenceRun.keep_selection_checkpoints` and
  :meth:`ReferenceRun.keep_record_checkpoint`, and its ``grad_norm`` baseline
  is :func:`gradient_norm` of the gradients of the parameters it trains;
- ``build_model(config)``: the torch module whose ``state_dict`` the
  checkpoints hold, and ``loss``: the per-sample loss the pool's ``input`` /
  ``target`` columns feed it (a name the gradient selector knows, or a
  module-level callable ``(outputs, targets) -> [B]`` wrapped in
  ``staticmethod`` so an instance does not bind it);
- for the bench: ``design_fields``, ``selection_checkpoint``, ``design_context``, ``concerns``
  and ``pilot_records`` (below).

The pool mirrors the population: every slice at the prevalence the training data has, and what
the order parameter is measured on lives in an evaluation set outside the pool (each family's
docstring states its pool's prevalence).

Checkpoints (:func:`selection_checkpoints_due`): ``init`` is the model at the
start of the recorded span (step 0: the random initialisation, or the
pretrained model for a run whose recorded span starts after pretraining, such
as rare-case drift and the misalignment toy), ``early`` a step before any
onset: the selection times a selector may use (it never sees later losses).

Pool columns every family provides: ``probe_id`` (unique str), ``input``
(the model's input: list of floats or of token ids), ``target`` (int class or
list of floats), ``split`` (``train`` / ``test`` / ``heldout`` ...), plus its
metadata (``slice``, ``protected``, ``pair_id``, ``class``, ``task`` ...).
"""
from __future__ import annotations

import dataclasses
import math
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Iterable

import numpy as np

from probekit.errors import ProbekitUsageError
from probekit.eval.families.ground_truth import (MIDPOINT_FRACTION, ONSET_FRACTION, OrderParameter,  # noqa: F401
                                                 Transition, find_transition)

__all__ = [
    "PILOT_COLUMN",
    "OrderParameter",
    "gradient_norm",
    "record_checkpoint_due",
    "record_checkpoint_name",
    "selection_checkpoints_due",
    "state_copy",
    "Recording",
    "ReferenceRun",
    "Transition",
    "find_transition",
]

#: The pool column that carries a design's pilot losses (:meth:`ReferenceRun.design_context`).
PILOT_COLUMN = "pilot_losses"


def state_copy(model: Any) -> dict:
    """A detached copy of a torch module's state_dict (what a checkpoint holds)."""
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def record_checkpoint_name(record_index: int) -> str:
    """The name of the checkpoint kept at a record (``load_or_record(checkpoint_every=k)``)."""
    return f"record-{int(record_index):05d}"


def record_checkpoint_due(record_index: int, checkpoint_every: int) -> str | None:
    """The checkpoint to keep at record ``record_index`` (records 0, k, 2k, ... for k > 0), or None."""
    k = int(checkpoint_every)
    return record_checkpoint_name(record_index) if k > 0 and record_index % k == 0 else None


def selection_checkpoints_due(step: int, config: Any) -> list[str]:
    """The selection checkpoints to keep at training step ``step``: ``init`` at step 0 (the
    start of the recorded span) and ``early`` at ``config.early_step``."""
    return [name for name, at in (("init", 0), ("early", config.early_step)) if step == at]


def gradient_norm(grads: Iterable[Any]) -> float:
    """The ``grad_norm`` baseline: the L2 norm, accumulated in float64, of the gradients of the
    parameters the run trains (torch tensors or numpy arrays; a None, a frozen parameter's, is skipped).

    One definition for every family, so the baseline means the same thing across them; each
    element is squared in float64 (a float32 sum of squares loses digits on large models).
    """
    total = 0.0
    for g in grads:
        if g is None:
            continue
        if hasattr(g, "detach"):  # a torch tensor: reduce where it lives, one float back
            total += float((g.detach().double() ** 2).sum())
        else:
            total += float(np.square(np.asarray(g, dtype=np.float64)).sum())
    return math.sqrt(total)


@dataclass
class Recording:
    """What one reference run produced, in memory (the store writes it to disk).

    ``losses[r, j]`` is pool example j's loss at record r, taken *before* the
    optimizer step numbered ``steps[r]`` (so record 0 is the initialisation).
    """

    steps: np.ndarray  # [records] int64, increasing
    losses: np.ndarray  # [records, pool] float32
    pool: dict[str, list]  # columns; probe_id, input, target, split + metadata
    # name -> [records]; the series an OrderParameter spec names define the
    # transitions, any others are extra ground truth (train accuracy, ...)
    order_parameters: dict[str, np.ndarray]
    baselines: dict[str, np.ndarray]  # "train_loss", "grad_norm" (and others) -> [records]
    checkpoints: dict[str, tuple[int, dict]] = field(default_factory=dict)  # name -> (step, state_dict)
    info: dict[str, Any] = field(default_factory=dict)  # small JSON-able extras (teacher spectrum ...)

    def check(self) -> None:
        """Refuse a malformed recording before anything is written."""
        steps = np.asarray(self.steps)
        r = steps.shape[0] if steps.ndim == 1 else -1
        if r < 2:
            raise ValueError(f"steps must be a 1-D array of >= 2 records; got shape {steps.shape}")
        bad = np.nonzero(np.diff(steps) <= 0)[0]
        if bad.size:
            i = int(bad[0])
            raise ValueError(f"steps must increase; record {i + 1} (step {steps[i + 1]}) follows step {steps[i]}")
        if steps[0] != 0:
            raise ValueError(f"record 0 must be step 0 (the start of the recorded span); got step {steps[0]}")
        if self.losses.ndim != 2 or self.losses.shape[0] != r:
            raise ValueError(f"losses must be [records={r}, pool]; got {self.losses.shape}")
        n = self.losses.shape[1]
        for col, values in self.pool.items():
            if len(values) != n:
                raise ValueError(f"pool column {col!r} has {len(values)} rows; the losses have {n} columns")
        for col in ("probe_id", "input", "target", "split"):
            if col not in self.pool:
                raise ValueError(f"the pool needs a {col!r} column; it has {sorted(self.pool)}")
        if len(set(self.pool["probe_id"])) != n:
            raise ValueError("pool probe_id values must be unique")
        missing = {"train_loss", "grad_norm"} - set(self.baselines)
        if missing:
            raise ValueError(f"the baselines need {sorted(missing)}; they have {sorted(self.baselines)}")
        for kind, table in (("order parameter", self.order_parameters), ("baseline", self.baselines)):
            for key, series in table.items():
                if np.shape(series) != (r,):
                    raise ValueError(f"{kind} {key!r} must have one value per record ({r}); got {np.shape(series)}")
                if not np.all(np.isfinite(np.asarray(series, dtype=np.float64))):
                    raise ValueError(f"{kind} {key!r} holds NaN or inf values (did the run diverge?)")
        ckpt = {k: v[0] for k, v in self.checkpoints.items()}
        if ckpt.get("init") != 0 or "early" not in ckpt or not 0 < ckpt["early"] <= steps[-1]:
            raise ValueError(
                f"checkpoints must include 'init' at step 0 and 'early' inside (0, {steps[-1]}]; got {ckpt}"
            )
        if not np.all(np.isfinite(self.losses)):
            raise ValueError("losses hold NaN or inf values")


class ReferenceRun(ABC):
    """One family of reference transitions, or a null control of one."""

    name: ClassVar[str]
    summary: ClassVar[str]
    kind: ClassVar[str] = "transition"  # or "null"
    control_of: ClassVar[str | None] = None
    paper: ClassVar[str] = ""
    transition_order: ClassVar[str] = "second"  # "first", "second" or "none"
    version: ClassVar[int] = 1
    config_class: ClassVar[type]
    presets: ClassVar[dict[str, dict]] = {}
    config_options: ClassVar[dict[str, tuple]] = {}  # field -> its allowed values
    loss: ClassVar[Any] = "cross_entropy"
    # -- what the benchmark takes from a family: declared here, never listed in the bench --------
    #: Selector parameters a probe design may take from this family's pool, by parameter name: the
    #: bench passes each one that a design's selector accepts and does not set itself.
    design_fields: ClassVar[dict[str, Any]] = {"embedding_field": "input", "input_field": "input",
                                               "target_field": "target"}
    #: The checkpoint that designs needing the model (gradients, embeddings) see: selection time.
    selection_checkpoint: ClassVar[str] = "init"
    #: What a user worried about this family's failure would watch: name -> slice specs over the pool
    #: (docs/slices.md); a design taking ``slices`` it does not set is scored once per concern, as
    #: ``DESIGN[NAME]`` (names: letters, digits, ``_``, ``-``).
    concerns: ClassVar[dict[str, list[str]]] = {}
    #: Per preset, the pilot span: the first records, well before every onset, that a design reading
    #: loss trajectories (``response``) sees at selection time; its alarms are scored after them.
    pilot_records: ClassVar[dict[str, int]] = {}
    # -- what the LLC peer (eval/peers/scoring.py) takes from a family: declared here, never listed there --
    # A null control subclasses its family and so shares these; peers.py reads its family's anyway.
    #: Record stride of the checkpoints the LLC is estimated at, per preset (~25 estimates a run,
    #: passed to ``record`` as ``checkpoint_every``); a preset without one has no LLC peer.
    llc_checkpoint_every: ClassVar[dict[str, int]] = {}
    #: The SGLD step size (benchmarks/calibrate_llc.py); None: the shared base settings' own.
    llc_lr: ClassVar[float | None] = None
    #: Whether ``llc_lr`` passed the calibration (False: none did, or none was run).
    llc_calibrated: ClassVar[bool] = False

    # -- configuration -------------------------------------------------------
    @classmethod
    def preset_names(cls) -> list[str]:
        return ["default", *sorted(p for p in cls.presets if p != "default")]

    @classmethod
    def make_config(cls, preset: str = "default", seed: int = 0, **overrides: Any) -> Any:
        """The config of a preset, with ``seed`` and any field overrides applied."""
        if preset not in cls.preset_names():
            raise ProbekitUsageError(
                f"Unknown config {preset!r} for reference run {cls.name!r}. Available: {', '.join(cls.preset_names())}."
            )
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ProbekitUsageError(f"The seed must be an int >= 0. Got {seed!r} instead.")
        fields = {f.name for f in dataclasses.fields(cls.config_class)}
        unknown = sorted(set(overrides) - fields)
        if unknown:
            raise ProbekitUsageError(
                f"Invalid config field {unknown[0]!r} for reference run {cls.name!r}. Valid fields: {', '.join(sorted(fields))}."
            )
        values = {**cls.presets.get(preset, {}), **overrides, "seed": int(seed)}
        config = cls.config_class(**values)
        for name, allowed in cls.config_options.items():
            value = getattr(config, name)
            if value not in allowed:
                raise ProbekitUsageError(
                    f"The {name!r} field of {cls.config_class.__name__} must be one of "
                    f"{', '.join(map(str, allowed))}. Got {value!r} instead."
                )
        return config

    # -- the run: every family keeps its checkpoints on one schedule ----------------------------
    def keep_selection_checkpoints(self, checkpoints: dict, step: int, config: Any, state: Callable[[], Any]) -> None:
        """At training step ``step``, keep ``state()`` as ``init`` / ``early`` when due
        (:func:`selection_checkpoints_due`).

        A family calls this at every step of its recorded span, before the step's update.
        """
        for name in selection_checkpoints_due(step, config):
            checkpoints[name] = (int(step), state())

    def keep_record_checkpoint(self, checkpoints: dict, record_index: int, step: int, checkpoint_every: int,
                               state: Callable[[], Any]) -> None:
        """At record ``record_index``, keep ``state()`` as checkpoint ``record-<index>`` if the store asked for it.

        A family calls this at every record, before appending the record (``state`` is called
        only when kept, so a run with ``checkpoint_every`` = 0 copies nothing).
        """
        name = record_checkpoint_due(record_index, checkpoint_every)
        if name is not None:
            checkpoints[name] = (int(step), state())

    @abstractmethod
    def order_parameters(self, config: Any) -> list[OrderParameter]:
        """One spec per transition (a null control uses its family's specs)."""

    @abstractmethod
    def total_steps(self, config: Any) -> int:
        """The progress bar's total (training steps, pretraining included)."""

    @abstractmethod
    def record(self, config: Any, progress: Callable[[int], None], checkpoint_every: int = 0) -> Recording:
        """Build the pool, train, record every pool example's loss; keep the model at every
        ``checkpoint_every``-th record too (0: only ``init`` and ``early``). The stride is not
        part of the config: the losses do not depend on it."""

    @abstractmethod
    def build_model(self, config: Any) -> Any:
        """A fresh torch module with the architecture the checkpoints hold."""

    def design_context(self, traj: Any, pilot: int = 0) -> dict[str, Callable[[], Any]]:
        """What a design's selector may take from one of this family's trajectories, by parameter
        name; each value is made only when asked for (loading a model costs). ``pilot`` = P > 0 also
        offers the first P records' losses (all that exists at selection time): ``trajectory_field``
        names the column :data:`PILOT_COLUMN`, ``context[PILOT_COLUMN]()`` its values per pool row."""
        context: dict[str, Callable[[], Any]] = {k: (lambda v=v: v) for k, v in self.design_fields.items()}
        context["model"] = lambda: traj.model(self.selection_checkpoint)
        context["loss"] = lambda: self.loss
        if pilot:
            records = int(pilot)
            n_records = int(traj.losses.shape[0])
            if not 0 < records < n_records:
                raise ProbekitUsageError(
                    f"The pilot span of {self.name!r} must be 1 to {n_records - 1} records. Got {pilot!r} instead.")
            context["trajectory_field"] = lambda: PILOT_COLUMN
            context[PILOT_COLUMN] = lambda: np.asarray(traj.losses[:records], dtype=np.float64).T.tolist()
        return context

    def llc_parameters(self) -> list[str] | None:
        """The parameter names the run trains (what the LLC's SGLD samples over); None: all of them."""
        return None

    def transitions(self, config: Any, recording: Recording) -> list[Transition]:
        return [
            find_transition(spec, recording.steps, recording.order_parameters[spec.name])
            for spec in self.order_parameters(config)
        ]

    @classmethod
    def describe(cls) -> str:
        return cls.summary
