"""Hugging Face ``Trainer`` adapter: the monitor as a ``TrainerCallback``.

    monitor = Monitor(model, probe_batch, "causal_lm", every=10, window=32,
                      sinks=[TensorBoardSink(f"{args.logging_dir}/probekit")])
    trainer = Trainer(model=model, args=args, train_dataset=train, callbacks=[ProbekitCallback(monitor)])
    trainer.train()

The monitor runs its own forward pass over the probes after optimizer steps
whose ``global_step`` is a multiple of ``every`` (and at the step training
starts from), never using the Trainer's loss (a mean, scaled by gradient
accumulation). With ``save_state`` the monitor's state goes into every
checkpoint folder as ``probekit_monitor.pt`` (written atomically: a crash
mid-save leaves the previous file, never half of one); ``ProbekitCallback.load(path)``
restores it before ``trainer.train(resume_from_checkpoint=path)``, so the
window and the alarm continue where they stopped.
"""
from __future__ import annotations

import os
from typing import Any

from transformers import TrainerCallback

from probekit.errors import ProbekitUsageError

__all__ = ["STATE_FILE", "ProbekitCallback"]

STATE_FILE = "probekit_monitor.pt"


class ProbekitCallback(TrainerCallback):
    """Drive a :class:`probekit.monitor.Monitor` from a ``transformers.Trainer``."""

    def __init__(self, monitor: Any, *, save_state: bool = True) -> None:
        from probekit.monitor.core import Monitor

        if not isinstance(monitor, Monitor):
            raise ProbekitUsageError(f"ProbekitCallback takes a probekit Monitor. Got {type(monitor).__name__} instead.")
        self.monitor = monitor
        self.save_state = save_state

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.monitor.step(state.global_step)  # step 0 (or the resumed step): the window starts before training

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.monitor.step(state.global_step)

    def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if not (self.save_state and state.is_world_process_zero and self.monitor.is_main):
            return  # one writer per checkpoint, whichever way the process group was set up
        import torch
        from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

        from probekit.atomic import atomic_file

        folder = os.path.join(args.output_dir, f"{PREFIX_CHECKPOINT_DIR}-{state.global_step}")
        try:  # a temporary beside the file, renamed into place when complete: never a half-written state
            with atomic_file(os.path.join(folder, STATE_FILE)) as tmp:
                torch.save(self.monitor.state_dict(), tmp)
        except Exception as exc:  # a checkpoint without the monitor's state is still a checkpoint
            self.monitor.counters["record_errors"] += 1
            self.monitor._warn("hf-save", f"probekit ProbekitCallback: could not save the monitor state in {folder} "
                                          f"({type(exc).__name__}: {exc}).")

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        for sink in self.monitor.sinks:
            try:
                getattr(sink, "flush", lambda: None)()
            except Exception:  # flushing is best effort; close() reports
                pass

    def load(self, checkpoint_dir: str | os.PathLike) -> None:
        """Restore the monitor state saved in a Trainer checkpoint folder (before resuming from it).

        The file is read with ``torch.load(weights_only=True)`` (no code runs from it). A truncated or
        corrupt file raises ``MonitorStateError``; a state of another monitor configuration raises
        ``ProbekitUsageError``; either way the monitor is left unchanged.
        """
        from probekit.monitor.state import load_state_file

        path = os.path.join(os.fspath(checkpoint_dir), STATE_FILE)
        if not os.path.exists(path):
            raise ProbekitUsageError(f"No probekit monitor state in {os.fspath(checkpoint_dir)!r} (expected {STATE_FILE}); "
                                     "was it saved by a ProbekitCallback with save_state=True?")
        state = load_state_file(path)
        try:
            self.monitor.load_state_dict(state)
        except ProbekitUsageError as exc:
            raise ProbekitUsageError(f"{path}: {exc}") from None
