"""The user's own runs as benchmark families: trajectories recorded by ``probekit record``.

``probekit bench --trajectory DIR [DIR ...] [--null DIR ...]`` scores designs on a user's
trajectories with the same grid, scores, paired tests and report as the reference families. Each
trajectory directory is a family of its own (one report column, one verdict), named by its
directory (``--name`` of ``probekit record``); every ``--null`` trajectory is a null control of
every one of them (a run without the intervention, say), its whole span quiet.

A user trajectory is one training run, not a family of seeds. Its "seeds" are **selection
seeds**: seed s selects each design's probes with seed s on the same run, so the rates, the seed
spread and the paired tests against random are over probe draws on *this* run (would a draw of
this design have warned earlier than a random draw of the same size, here?), not over training
runs. The quiet units are the run's quiet period (and each null run) once per draw: they say how
often a design's draw false-alarms on this run, and are not independent of each other. The report
says so in its rates table.

What the family offers a design comes from the trajectory's manifest (``probekit record``
writes it): the pool's fields (text, or input and target columns), the loss kind (for gradient
designs), the selection-time checkpoint (``Trajectory.model("selection")`` loads it from where
it was recorded), and, from the command line, the concerns (``--concern NAME=SPEC``) and the
pilot span (``--pilot RECORDS``; default: a tenth of the records before the first onset).
"""
from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from probekit.errors import ProbekitUsageError

__all__ = ["UserTrajectory", "family_class", "open_user_runs", "user_family"]

#: The preset name of every user trajectory (``probekit record`` writes it into the manifest).
USER_PRESET = "user"
#: Loss kinds of ``probekit record`` -> the gradient selector's per-sample loss (None: it has none).
GRADIENT_LOSS = {"classification": "cross_entropy", "regression": "mse"}
CAUSAL_LM_CLASS = "transformers:AutoModelForCausalLM"
_NAME = re.compile(r"[A-Za-z0-9_.-]+")


@dataclass(frozen=True)
class UserTrajectory:
    """One user trajectory scored as a family: its directory, its null runs' directories, the
    concerns a design may target (name -> slice specs) and its pilot span (None: the default)."""

    path: str
    nulls: tuple[str, ...] = ()
    concerns: tuple[tuple[str, tuple[str, ...]], ...] = ()
    pilot: int | None = None

    @property
    def name(self) -> str:
        return _manifest(self.path)["name"]

    def content(self) -> dict:
        """What the grid's key holds of it: the trajectories' content hashes, not their paths."""
        return {"name": self.name, "run": _manifest(self.path)["content_hash"],
                "nulls": [_manifest(p)["content_hash"] for p in self.nulls],
                "concerns": [[n, list(s)] for n, s in self.concerns], "pilot": self.pilot}

    def check(self) -> None:
        """Every directory is a user trajectory with a transition to score, named so a file can hold it."""
        manifest = _manifest(self.path)
        if manifest.get("kind") != "user":
            raise ProbekitUsageError(f"--trajectory {self.path}: a trajectory of reference run {manifest['name']!r}; "
                                     "benchmark reference families with --families, your own runs with --trajectory.")
        if not _NAME.fullmatch(self.name):
            raise ProbekitUsageError(f"--trajectory {self.path}: its name {self.name!r} must be letters, digits, "
                                     "'.', '_' and '-' (probekit record --name).")
        if not any(t.get("onset_step") is not None for t in manifest["transitions"]):
            raise ProbekitUsageError(
                f"--trajectory {self.path}: it records no transition to score against (no onset); record it again "
                "with --order-parameter, --order-csv or --onset (docs/record.md).")
        steps = [c["step"] for c in manifest["config"].get("checkpoints", [])]
        first = min(t["onset_step"] for t in manifest["transitions"] if t.get("onset_step") is not None)
        before = sum(1 for s in steps if s < first)  # records before the first onset
        pilot = default_pilot(manifest) if self.pilot is None else int(self.pilot)
        if before - pilot < 2:  # no quiet period and hit window left after the pilot: nothing to score
            raise ProbekitUsageError(
                f"--trajectory {self.path}: its first onset (step {first}) comes after {before} records; a pilot span of "
                f"{pilot} records (--pilot) leaves fewer than 2 to score before it. Record checkpoints from earlier "
                "in the run, or give a smaller --pilot.")
        self._check_concerns()
        for null in self.nulls:
            if _manifest(null).get("kind") != "user":
                raise ProbekitUsageError(f"--null {null}: not a trajectory of probekit record.")
            if _manifest(null)["n_pool"] != manifest["n_pool"]:
                raise ProbekitUsageError(f"--null {null}: its pool has {_manifest(null)['n_pool']} examples, the pool "
                                         f"of {self.path} {manifest['n_pool']}; a null run needs the same pool.")


    def _check_concerns(self) -> None:
        """Each concern's slices parse and name columns of the pool (before any work, not as failed cells)."""
        if not self.concerns:
            return
        from probekit.errors import ProbekitError
        from probekit.eval.store.trajectory import Trajectory
        from probekit.selection.slices.parse import parse_slices
        from probekit.selection.slices.rows import member_rows

        with Trajectory(self.path, verify=False) as traj:
            pool = traj.pool
            for name, specs in self.concerns:
                try:
                    for spec in parse_slices(list(specs)):
                        if spec.kind in ("where", "ids"):
                            member_rows(pool, spec)
                except ProbekitError as exc:
                    raise ProbekitUsageError(f"--concern {name}: {exc}") from None


@functools.lru_cache(maxsize=256)
def _manifest_cached(path: str, mtime_ns: int) -> dict:
    return json.loads((Path(path) / "manifest.json").read_text())


def _manifest(path: str) -> dict:
    """A trajectory directory's manifest (read once per version of the file)."""
    file = Path(path) / "manifest.json"
    try:
        return _manifest_cached(str(Path(path).resolve()), file.stat().st_mtime_ns)
    except FileNotFoundError:
        raise ProbekitUsageError(f"{path} is not a trajectory directory (no manifest.json); record one with "
                                 "probekit record.") from None
    except ValueError as exc:
        raise ProbekitUsageError(f"{file}: unreadable manifest ({exc}).") from None


def user_family(grid: Any, family: str) -> UserTrajectory | None:
    """The user trajectory the grid scores as ``family``, or None for a registered family."""
    return next((u for u in getattr(grid, "trajectories", ()) if u.name == family), None)


def unscored_designs(grid: Any, family: str) -> dict[str, str]:
    """The grid's designs that make no design on a user family, and why (none for a reference family)."""
    if user_family(grid, family) is None:
        return {}
    run = family_class(grid, family)
    made = {d.strategy for d in grid.designs_for(family)}
    out = {}
    for d in grid.designs:
        if d.strategy in made or d.label in out:
            continue
        out[d.label] = run.unscored.get(d.strategy) or (
            "no concern given (--concern NAME=SPEC)" if d.expands_by_concern() else "not applicable here")
    return out


def default_pilot(manifest: dict) -> int:
    """A tenth of the records before the first onset (at least 2), the records a pilot design may read."""
    steps = [c["step"] for c in manifest["config"].get("checkpoints", [])]
    onsets = [t["onset_step"] for t in manifest["transitions"] if t.get("onset_step") is not None]
    first = min(onsets) if onsets else None
    before = sum(1 for s in steps if first is not None and s < first) if steps else manifest["n_records"] // 2
    return max(2, before // 10)


def family_class(grid: Any, family: str) -> Any:
    """The family's run class: the registered reference run, or a user trajectory's adapter."""
    user = user_family(grid, family)
    if user is None:
        from probekit.registry import TRANSITIONS

        return TRANSITIONS.load(family)
    return _adapter(user)


@functools.lru_cache(maxsize=64)
def _adapter(user: UserTrajectory) -> type:
    """A ReferenceRun subclass standing for a user trajectory: what the bench's designs read of a family."""
    from probekit.eval.families.base import ReferenceRun

    manifest = _manifest(user.path)
    config = manifest["config"]
    fields = config.get("fields", {})
    offered: dict[str, Any] = {}
    if fields.get("text_field"):
        offered["text_field"] = fields["text_field"]
    inputs = fields.get("input_fields") or []
    if len(inputs) == 1:
        offered.update(embedding_field=inputs[0], input_field=inputs[0])
    if fields.get("target_field"):
        offered["target_field"] = fields["target_field"]
    pilot = default_pilot(manifest) if user.pilot is None else int(user.pilot)
    unscored = {}  # strategy -> why it cannot run on this recording (said in the report, not a failed cell)
    source = manifest.get("source", {}).get("selection", {})
    loader = source.get("loader", {})
    # a causal LM recorded from a transformers directory: the gradient selector reads it as checkpoint=DIR
    causal = config.get("loss") == "causal_lm" and loader.get("kind") == "hf" \
        and loader.get("model_class") in (None, CAUSAL_LM_CLASS) and fields.get("text_field")
    if loader.get("kind") == "memory" or source.get("path") is None:
        unscored["gradient"] = "it was recorded from models in memory: no selection-time model to reload"
    elif config.get("loss") not in GRADIENT_LOSS and not causal:
        unscored["gradient"] = (f"its loss {config.get('loss')!r} is not one the gradient selector takes "
                                "(causal_lm on a transformers AutoModelForCausalLM directory; classification, "
                                "regression)")

    def _recorded_elsewhere(self: Any, *args: Any, **kwargs: Any) -> Any:
        raise ProbekitUsageError(f"{user.path} is a user trajectory: it is recorded with probekit record, "
                                 "not by the benchmark.")

    attrs = {
        "name": user.name, "summary": f"your run {user.name} ({user.path})", "kind": "transition",
        "design_fields": offered, "selection_checkpoint": "selection",
        "loss": GRADIENT_LOSS.get(config.get("loss"), config.get("loss")),
        "concerns": {n: list(s) for n, s in user.concerns}, "pilot_records": {USER_PRESET: pilot},
        "unscored": unscored,
        "order_parameters": _recorded_elsewhere, "total_steps": _recorded_elsewhere,
        "record": _recorded_elsewhere, "build_model": _recorded_elsewhere,
    }
    if causal and "gradient" not in unscored:
        attrs["design_context"] = _causal_lm_context(config)
    return type(f"UserRun[{user.name}]", (ReferenceRun,), attrs)


def _causal_lm_context(config: dict) -> Any:
    """design_context for a causal LM recording: the selection checkpoint's directory (hash checked), the
    recorded tokenizer and max_length, for ``GradientSelector(checkpoint=...)``; no torch model or loss."""
    from probekit.eval.families.base import ReferenceRun

    tokenizer, max_length = config.get("tokenizer"), config.get("max_length")

    def design_context(self: Any, traj: Any, pilot: int = 0) -> dict:
        from probekit.record.store import checkpoint_source

        context = ReferenceRun.design_context(self, traj, pilot)
        context.pop("model", None)
        context.pop("loss", None)
        context["checkpoint"] = lambda: str(checkpoint_source(traj, "selection")[0])
        if tokenizer and Path(tokenizer).exists():  # else the one beside the checkpoint, as recording found it
            context["tokenizer"] = lambda: str(tokenizer)
        if max_length:
            context["max_length"] = lambda: int(max_length)
        return context

    return design_context


class SeededTrajectory:
    """A trajectory seen under a selection seed and a run name: everything else is the trajectory's."""

    def __init__(self, traj: Any, name: str, seed: int) -> None:
        self._traj, self.name, self.seed = traj, name, int(seed)

    def __getattr__(self, attr: str) -> Any:
        return getattr(self._traj, attr)

    def close(self) -> None:
        self._traj.close()


def open_user_runs(user: UserTrajectory, seeds: tuple[int, ...], null_seeds: tuple[int, ...]) -> tuple[list, list]:
    """The family's runs (the trajectory under each selection seed) and null runs (each null
    trajectory under each null seed), opened and verified."""
    from probekit.eval.store.trajectory import Trajectory

    run = Trajectory(user.path)
    runs = [SeededTrajectory(run, user.name, s) for s in seeds]
    nulls = []
    for j, path in enumerate(user.nulls):
        null = Trajectory(path)
        nulls += [SeededTrajectory(null, f"{user.name}-null{j}", s) for s in null_seeds]
    return runs, nulls


def parse_concern(text: str) -> tuple[str, tuple[str, ...]]:
    """``NAME=SPEC[;SPEC...]`` of ``--concern`` -> (name, specs)."""
    name, sep, specs = str(text).partition("=")
    if not sep or not re.fullmatch(r"[A-Za-z0-9_-]+", name) or not specs.strip():
        raise ProbekitUsageError(f"argument --concern: takes NAME=SLICE_SPEC (a name of letters, digits, '_' and "
                                 f"'-'; slice specs as --slice takes them, ';' between several). Got {text!r} instead.")
    return name, tuple(s.strip() for s in specs.split(";") if s.strip())


def quiet_note(user: UserTrajectory, seeds: int) -> str:
    """What a user family's rates rest on, in words, for the report."""
    nulls = len(user.nulls)
    draws = f"one run, {seeds} selection seed{'s' if seeds != 1 else ''} (probe draws on the same run, not training runs)"
    if not nulls:
        return draws + "; no null run: false alarms come from the quiet period alone, one span drawn on each seed"
    return draws + (f"; {nulls} null run{'s' if nulls != 1 else ''}: the quiet units are {1 + nulls} spans, "
                    "each drawn on once per seed")
