"""The live monitor: every k training steps, one no-grad pass over the probes, the 2RDM, the alarm.

    monitor = Monitor(model, (x_probe, y_probe), "classification", every=10, window=32,  # guide: docs/monitor.md
                      sinks=[TensorBoardSink("runs/probekit"),  # needs pip install "probekit[monitor]"
                             JSONLSink("probekit.jsonl")],
                      on_alarm=lambda event: save_checkpoint(event.step))
    for step in range(steps):
        train_step()
        monitor.step(step)          # records when step % every == 0; never raises
    monitor.close()

What a record does, in order: switch the model to eval mode (each module's
own flag is restored afterwards, so frozen submodules stay frozen), run the
probes through ``loss_fn(model, batch)`` without gradients, in chunks of
``batch_size``, on the model's device, under the caller's autocast state (or
the ``autocast`` dtype given); feed the per-sample losses to the streaming
2RDM; feed the chosen statistic to the online alarm; write the record to the
sinks; call ``on_alarm`` when an alarm fires.

It never raises into the training loop: a failing probe pass, non-finite
losses, a sink that cannot write (a full disk) or an ``on_alarm`` that raises
become a warning (the first of each kind; logged instead if warnings are
errors) and a counter in ``monitor.counters``, and training continues; the steps
whose record a sink could not take are in ``monitor.lost_steps``, named at ``close()``.
Configuration errors do raise, at construction, before training starts; a
loss function that does not fit the probe batch can only show when it runs,
so ``monitor.check()`` runs one pass and raises: call it before training. Given ``probe_ids``,
``probe_texts`` or ``probe_labels``, an alarm also names the probes that move together (the
window's leading mode, :mod:`probekit.rdm.modes`): who they are and which slices they
over-represent, in ``AlarmEvent.mode`` and the alarm's record (``record.mode``). ``state_dict()`` /
``load_state_dict()`` carry the window, the alarm state and the counters
across a resumed training.

Under torch.distributed (``distributed="auto"`` and an initialised process
group with more than one rank) the probes are sharded across the ranks and the
statistics computed once, on rank 0 (:mod:`probekit.monitor.distributed`).
"""
from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from probekit.errors import ProbekitUsageError, ProbekitWarning
from probekit.monitor.batches import batch_len
from probekit.monitor.distributed import dist_context, record_distributed, shard_bounds
from probekit.monitor.forward import check_autocast, chunk_count, forward_losses
from probekit.monitor.losses import resolve_loss
from probekit.monitor.pipeline import consume
from probekit.monitor.sinks import MonitorRecord
from probekit.monitor.state import STATE_VERSION, load_state, monitor_state  # noqa: F401 - STATE_VERSION re-exported
from probekit.params import AnyOf, Interval, Options, validate
from probekit.rdm.modes import ProbeDescriptions
from probekit.rdm.signal_table import signal_names
from probekit.registry import SIGNALS  # noqa: F401 - re-exported: the signals the alarm can watch (signal_table)

__all__ = ["SIGNALS", "AlarmEvent", "Monitor", "MonitorWarning"]


class MonitorWarning(ProbekitWarning):
    """Something went wrong inside a record; training goes on (see ``Monitor.counters``)."""


@dataclass
class AlarmEvent:
    """What ``on_alarm`` receives. ``stats`` (the window's RDMStats) is None on ranks other than 0.

    ``mode``: the probes that move together at the alarm (the window's leading mode, described:
    ``mode.lines()``, ``mode.as_dict()``; :class:`probekit.rdm.modes.Mode`), when the monitor was
    given ``probe_ids``, ``probe_texts`` or ``probe_labels``; None otherwise and on ranks other than 0.
    """

    step: int
    record: MonitorRecord
    stats: Any
    monitor: "Monitor"
    mode: Any = None


class Monitor:
    """Watch a training run with a fixed probe set: the dynamical 2RDM of its losses, and an alarm.

    Parameters
    ----------
    model : torch.nn.Module
        The model being trained (the monitor only reads it).
    probes : tensor, tuple/list of tensors, or dict of tensors
        The probe batch, dim 0 = probes: ``(inputs, targets)``, or a tokenizer's
        output with ``input_ids``/``attention_mask`` (and ``labels``).
    loss_fn : {"classification", "regression", "causal_lm"} or callable
        ``loss_fn(model, batch) -> [b]`` per-sample losses (``probekit.monitor.losses``).
    every : int, default 10
        Record every ``every`` training steps (``step % every == 0``). May be
        changed during training, e.g. by ``on_alarm`` (see ``set_every``).
    window : int, default 32
        W, records in the 2RDM's sliding window.
    alarm : str, AlarmRule or None, default "running-min"
        A registered rule name (``probekit.alarms``), a rule instance, or None.
    signal : str, default "shc"
        The statistic of the window the alarm watches: any registered 2RDM signal
        (``probekit.rdm.signal_table``: "shc", "inv_pr", "leading_share", "trace", "lambda_1", yours).
    detrend, top_k : passed to ``DynamicalRDM``.
    sinks : sequence of sinks
        Objects with ``write(record)`` (``JSONLSink``, ``TensorBoardSink``, your own).
    on_alarm : callable(AlarmEvent) or None
        Called when an alarm fires (e.g. save a checkpoint, lower ``every``).
    batch_size : int or None
        Forward the probes in chunks of this many (None: one pass).
    autocast : torch.dtype, False or None
        None: the caller's autocast state; a dtype: autocast to it on the
        model's device type; False: autocast disabled for the probe pass.
    probe_ids : sequence of str, optional
        Names of the probes (a ``ProbeSet``'s ids), carried into the loadings.
    probe_texts : sequence of str, optional
        One text per probe (cut to a one-line excerpt), shown beside the probes an alarm names.
    probe_labels : sequence of str, or mapping of field -> sequence, optional
        Slice labels, one per probe (None: unlabelled): a ``ProbeSet``'s ``slices``, or
        ``{"topic": [...], ...}``. An alarm lists the labels over-represented among the probes
        it names (``probekit.rdm.modes``; ``describe_probes(pool, probeset)`` builds all three).
    mode_top : int, default 10
        How many probes an alarm names (the top of the leading mode).
    distributed : "auto", True or False
        Shard the probes across torch.distributed ranks (see the module doc).
    """

    def __init__(
        self,
        model: Any,
        probes: Any,
        loss_fn: Any,
        *,
        every: int = 10,
        window: int = 32,
        alarm: Any = "running-min",
        signal: str = "shc",
        detrend: str = "none",
        top_k: int = 3,
        sinks: Sequence[Any] = (),
        on_alarm: Callable[[AlarmEvent], Any] | None = None,
        batch_size: int | None = None,
        autocast: Any = None,
        probe_ids: Sequence[str] | None = None,
        distributed: Any = "auto",
        probe_texts: Sequence[str] | None = None,
        probe_labels: Any = None,
        mode_top: int = 10,
    ) -> None:
        # Unlike a selector, the monitor validates at construction: the alternative is an
        # error inside the training loop, which it must never raise into.
        from probekit.alarms import AlarmRule, make_rule
        from probekit.rdm import DynamicalRDM, check_rdm_params

        validate("Monitor", {"every": every, "batch_size": batch_size, "signal": signal, "mode_top": mode_top},
                 {"every": Interval(int, 1, None), "batch_size": AnyOf(None, Interval(int, 1, None)),
                  "signal": Options(*signal_names()), "mode_top": Interval(int, 1, None)})
        check_rdm_params("Monitor", window, 1, detrend, top_k)
        if not hasattr(model, "modules") or not callable(model):
            raise ProbekitUsageError(f"The 'model' parameter of Monitor must be a torch.nn.Module. Got {type(model).__name__} instead.")
        for k, sink in enumerate(sinks):
            if not callable(getattr(sink, "write", None)):
                raise ProbekitUsageError(f"sinks[{k}] has no write(record) method; use JSONLSink, TensorBoardSink or an "
                                         f"object with write/flush/close. Got {type(sink).__name__}.")
        if on_alarm is not None and not callable(on_alarm):
            raise ProbekitUsageError(f"The 'on_alarm' parameter of Monitor must be a callable or None. Got {on_alarm!r} instead.")
        self._autocast = check_autocast(autocast)
        self.model = model
        self.probes = probes
        self.n_probes = batch_len(probes)
        if probe_ids is not None and len(probe_ids) != self.n_probes:
            raise ProbekitUsageError(f"probe_ids has {len(probe_ids)} names for {self.n_probes} probes.")
        self.descriptions = None  # who the probes are, for the mode an alarm names
        if probe_ids is not None or probe_texts is not None or probe_labels is not None:
            if top_k == 0:
                raise ProbekitUsageError("Monitor: probe_ids, probe_texts and probe_labels name the probes of the "
                                         "leading mode at an alarm, which needs top_k >= 1. Got top_k=0.")
            ids = probe_ids if probe_ids is not None else [str(i) for i in range(self.n_probes)]
            self.descriptions = ProbeDescriptions.build(ids, probe_texts, probe_labels, owner="Monitor")
        self.mode_top = mode_top
        self.loss_fn = resolve_loss(loss_fn)
        if isinstance(alarm, str):
            alarm = make_rule(alarm)
        elif alarm is not None and not isinstance(alarm, AlarmRule):
            raise ProbekitUsageError(f"The 'alarm' parameter of Monitor must be a rule name, an AlarmRule or None. "
                                     f"Got {alarm!r} instead.")
        self.alarm_rule = alarm
        self.signal = signal
        self.sinks = list(sinks)
        self.on_alarm = on_alarm
        self.batch_size = batch_size
        self._every = every
        self._distributed = distributed
        self._dist = None
        self._dist_resolved = False
        dist_context(distributed)  # checks the value, and that True has a process group to use
        self._shard, self._n_chunks = (0, self.n_probes), 1  # "auto": set again at the first record
        if distributed is True:
            self._resolve_distributed()
        self.rdm = DynamicalRDM(window, detrend=detrend, top_k=top_k, probe_ids=probe_ids)
        self._online = None if alarm is None else alarm.online()  # validates the rule's parameters
        self.counters = {"records": 0, "admitted": 0, "failed_batches": 0, "nonfinite_records": 0,
                         "sink_errors": 0, "callback_errors": 0, "record_errors": 0}
        self.alarm_steps: list[int] = []
        self.last: MonitorRecord | None = None
        self._stats = None  # the last record's window statistics, for on_alarm
        self._mode = None  # the last record's leading mode, described (alarm records only)
        self._last_step: int | None = None
        self._warned: set[str] = set()
        self.lost_steps: dict[int, list[int]] = {}  # sink index -> steps whose record that sink could not take

    # -- schedule ------------------------------------------------------------
    @property
    def every(self) -> int:
        return self._every

    @every.setter
    def every(self, value: int) -> None:
        validate("Monitor", {"every": value}, {"every": Interval(int, 1, None)})
        self._every = int(value)

    def set_every(self, every: int, *, restart: bool = True) -> None:
        """Change the record interval; with ``restart``, start a fresh window and alarm baseline.

        A window spans W records, so a new interval changes the training time it
        covers, and with it the scale of SHC (records 2 steps apart differ less
        than records 10 apart): the alarm's baseline would see a step change and
        fire on it. Restarting avoids that, at the cost of W records (and the rule's
        baseline) before the next statistic and alarm. Counters and alarm history stay.
        """
        self.every = every
        if restart:
            self.rdm.reset()
            if self._online is not None:
                self._online.reset()

    @property
    def is_main(self) -> bool:
        """True on the rank that computes the statistics and writes the sinks (always, without distributed)."""
        self._resolve_distributed()
        return self._dist is None or self._dist.main

    def step(self, step: int) -> MonitorRecord | None:
        """Call once per training step: records when ``step % every == 0`` (once per step number)."""
        if isinstance(step, bool) or not isinstance(step, (int, np.integer)):
            self._warn("step", f"probekit Monitor.step takes the training step as an int; got {step!r}, not recorded.")
            return None
        if step % self._every or step == self._last_step:
            return None
        return self.record(int(step))

    # -- one record ------------------------------------------------------------
    def record(self, step: int) -> MonitorRecord | None:
        """Measure the probes now and update everything. Never raises (an Exception becomes a warning).

        Returns the record (None if the record itself failed). Under torch.distributed,
        ranks other than 0 get a record without statistics (``record == -1``) that
        carries rank 0's alarm decision.
        """
        self._last_step = step
        try:
            self._resolve_distributed()
        except Exception as exc:
            return self._record_failed(step, exc)
        local, error = self._probe_losses()
        if self._dist is None:
            if error is not None:
                self.counters["failed_batches"] += 1
            try:
                rec = consume(self, local, step, failed=error is not None)
            except Exception as exc:
                return self._record_failed(step, exc)
            if rec.alarm:
                self._call_on_alarm(rec)
            return rec
        return record_distributed(self, step, local, error is not None)

    def _record_failed(self, step: int, exc: Exception) -> None:
        self.counters["record_errors"] += 1
        self._warn("record", f"probekit Monitor: record at step {step} failed ({type(exc).__name__}: {exc}).")
        return None

    def _resolve_distributed(self) -> None:
        """``distributed="auto"``: look for a process group at the first record, not at construction
        (a Trainer's TrainingArguments, built after the monitor, is what initialises it)."""
        if self._dist_resolved:
            return
        self._dist = dist_context(self._distributed)
        world = (0, 1) if self._dist is None else (self._dist.rank, self._dist.world)
        self._shard = shard_bounds(self.n_probes, *world)
        self._n_chunks = chunk_count(-(-self.n_probes // world[1]), self.batch_size)
        self._dist_resolved = True

    def _probe_losses(self) -> tuple[np.ndarray, str | None]:
        """This rank's shard of per-sample losses (float64) and None, or NaN and what went wrong."""
        start, stop = self._shard
        try:
            return self._forward(start, stop, self._n_chunks), None
        except Exception as exc:
            message = f"{type(exc).__name__}: {exc}"
            self._warn("probes", f"probekit Monitor: the probe pass failed ({message}); the record is skipped.")
            return np.full(stop - start, np.nan), message

    def _forward(self, start: int, stop: int, n_chunks: int) -> np.ndarray:
        """Losses of probes [start, stop) (float64): :func:`probekit.monitor.forward.forward_losses`."""
        return forward_losses(self.model, self.probes, self.loss_fn, start, stop, n_chunks,
                              batch_size=self.batch_size, autocast=self._autocast)

    def check(self) -> None:
        """Run one probe pass now, on this process, and raise on any problem: call it before training.

        A record never raises, so a loss function that does not fit the probe batch
        (no ``labels``, a sequence with no target token, a wrong output shape) would
        otherwise only show as a warning at the first record.
        """
        losses = self._forward(0, self.n_probes, chunk_count(self.n_probes, self.batch_size))
        bad = int((~np.isfinite(losses)).sum())
        if bad:
            raise ProbekitUsageError(f"Monitor.check: {bad} of {losses.size} probe losses are NaN or inf "
                                     "with the current weights.")

    def _call_on_alarm(self, rec: MonitorRecord) -> None:
        if self.on_alarm is None:
            return
        try:
            main = self.is_main  # off rank 0 there are no statistics, so no mode either
            self.on_alarm(AlarmEvent(rec.step, rec, self._stats if main else None, self,
                                     self._mode if main else None))
        except Exception as exc:
            self.counters["callback_errors"] += 1
            self._warn("callback", f"probekit Monitor: on_alarm raised at step {rec.step} ({type(exc).__name__}: {exc}).")

    def _warn(self, kind: str, message: str, *, summary: bool = False) -> None:
        if kind in self._warned:  # the first of each kind; the counters keep the rest
            return
        self._warned.add(kind)
        if not summary:
            message += " Further problems of this kind are counted in Monitor.counters."
        try:
            warnings.warn(message, MonitorWarning, stacklevel=3)
        except Exception:  # warnings turned into errors (-W error) must not reach the training loop either
            logging.getLogger("probekit.monitor").warning(message)

    # -- state (probekit.monitor.state) -------------------------------------------
    def state_dict(self) -> dict:
        """Everything a resumed training needs to continue the window and the alarm.

        Only tensors, Python scalars, str, lists and dicts: ``torch.save`` it and read it back
        with a plain ``torch.load(path)`` (``weights_only=True``).
        """
        return monitor_state(self)

    def load_state_dict(self, state: dict) -> None:
        """Restore a ``state_dict`` of a monitor with the same probe count, window, detrend, signal and rule.

        Everything is checked first: junk, or a state of another configuration, raises one
        ``ProbekitUsageError`` line naming what is wrong, and the monitor is left unchanged.
        """
        load_state(self, state)

    def close(self) -> None:
        """Flush and close the sinks (errors are warnings, as in a record); warn of each sink's lost steps."""
        for k, sink in enumerate(self.sinks):
            try:
                getattr(sink, "close", lambda: None)()
            except Exception as exc:
                self.counters["sink_errors"] += 1
                self._warn(f"close{id(sink)}", f"probekit Monitor: closing sink {type(sink).__name__} failed ({exc}).")
            lost = self.lost_steps.get(k)
            if lost:
                shown = ", ".join(map(str, lost[:20])) + (f", ... ({len(lost) - 20} more)" if len(lost) > 20 else "")
                self._warn(f"lost{id(sink)}", f"probekit Monitor: sink {type(sink).__name__} lost the records of steps "
                                              f"{shown} ({len(lost)} of {self.counters['records']} records); "
                                              "Monitor.lost_steps has them all.", summary=True)

    def __enter__(self) -> "Monitor":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return (f"Monitor(n_probes={self.n_probes}, every={self._every}, window={self.rdm.window}, "
                f"signal={self.signal!r}, records={self.counters['records']}, alarms={self.alarm_steps})")
