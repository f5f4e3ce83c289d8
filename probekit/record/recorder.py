"""``probekit.record.record``: a user's checkpoints x pool -> a trajectory in the reference store's format.

For every checkpoint, the per-sample loss of every pool example (batched no-grad forward passes,
``probekit.monitor.forward.forward_losses`` with the monitor's loss functions), plus the order
parameters measured in the same pass. Per-checkpoint results are staged in ``OUT.partial/``
(named by the checkpoint's content hash), so a killed recording continues where it stopped; a
finished trajectory is reused (docs/record.md, "Resume"). Under torch.distributed the
checkpoints are shared round-robin across ranks and rank 0 writes the trajectory.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from probekit.errors import ProbekitUsageError
from probekit.record.batches import Data, Fields, build_data, check_vocab, load_tokenizer
from probekit.record.measure import measure_checkpoint
from probekit.record.order import ACCURACY_LOSSES, OrderSpec, TransitionSpec
from probekit.record.ranks import Ranks
from probekit.record.sources import Checkpoint, find_checkpoints, from_models
from probekit.record.user_code import code_identity, import_object
from probekit.record.store import Staging, is_user_trajectory, reusable

__all__ = ["Outcome", "record", "record_run"]

log = logging.getLogger("probekit.record")
AUTOCAST = {"none": None, "bf16": "bfloat16", "bfloat16": "bfloat16", "fp16": "float16", "float16": "float16"}


@dataclass
class Outcome:
    """What a recording did: the trajectory, and how many checkpoints were computed or reused, in what time."""

    trajectory: Any
    computed: int
    reused: int
    up_to_date: bool
    wall_seconds: float
    hash_seconds: float = 0.0
    load_seconds: float = 0.0
    forward_seconds: float = 0.0


def record(checkpoints: Any, data: Any, out: str | os.PathLike, **options: Any) -> Any:
    """Record ``checkpoints`` over the pool ``data`` into the trajectory directory ``out``; returns the
    :class:`~probekit.eval.store.trajectory.Trajectory`. Options: see :func:`record_run`."""
    return record_run(checkpoints, data, out, **options).trajectory


def record_run(
    checkpoints: Any, data: Any, out: str | os.PathLike, *, loss: Any = "causal_lm", text_field: str | None = None,
    input_field: str | Sequence[str] | None = None, target_field: str | None = None, id_field: str | None = None,
    tokenizer: Any = None, max_length: int | None = None, steps: Sequence[int] | None = None,
    model_class: str | None = None, model_factory: str | None = None, dtype: str = "float32", device: Any = "cpu",
    batch_size: int = 32, autocast: Any = None, name: str | None = None, selection_checkpoint: int | None = None,
    onset: int | None = None, midpoint: int | None = None, order_csv: str | os.PathLike | None = None,
    order_name: str | None = None, order_parameters: Sequence[str] = (), min_change: float | None = None,
    edge_records: int | None = None, overwrite: bool = False, progress: bool | None = None,
    distributed: Any = "auto",
) -> Outcome:
    """Record and return an :class:`Outcome`.

    ``checkpoints``: a path or glob (or a list of them: a Trainer output, model directories,
    state-dict files), a list of :class:`~probekit.record.sources.Checkpoint`, or an iterable of
    ``(step, model)`` pairs. ``data``: a :class:`~probekit.pool.Pool`, a pool file or directory,
    or ``builtin:NAME``. The rest as the CLI's flags of the same names (docs/record.md).
    """
    from probekit.monitor.losses import LOSSES
    from probekit.params import Interval, validate

    t0 = time.perf_counter()
    validate("record", {"batch_size": batch_size}, {"batch_size": Interval(int, 1, None)})
    if max_length is not None:
        validate("record", {"max_length": max_length}, {"max_length": Interval(int, 2, None)})
    out = Path(out).expanduser()
    spec = TransitionSpec(onset, midpoint, None if order_csv is None else str(order_csv), order_name,
                          tuple(order_parameters), min_change, edge_records)
    ops = spec.check()
    loss_name, loss_fn, loss_kind = _resolve_loss(loss, LOSSES)
    if any(op.metric == "accuracy" for op in ops) and loss_kind not in ACCURACY_LOSSES:
        raise ProbekitUsageError(f"an accuracy order parameter needs --loss classification or causal_lm; "
                                 f"got {loss_name!r}.")
    autocast_name, autocast_dtype = _autocast(autocast)
    ranks = Ranks.of(distributed, device)
    device = ranks.device(device)
    if ranks.world > 1 and not ranks.main and progress is None:
        progress = False  # one terminal, several ranks: only rank 0 draws bars (the others still log)
    fields = Fields(text_field, (input_field,) if isinstance(input_field, str) else tuple(input_field or ()),
                    target_field)

    ckpts: list[Checkpoint] | None = None
    if isinstance(checkpoints, (str, os.PathLike)) or (
            isinstance(checkpoints, (list, tuple)) and checkpoints and isinstance(checkpoints[0], (str, os.PathLike))):
        ckpts = find_checkpoints(checkpoints, steps=steps, loss=loss_kind, model_class=model_class,
                                 model_factory=model_factory, dtype=dtype)
    elif isinstance(checkpoints, (list, tuple)) and checkpoints and isinstance(checkpoints[0], Checkpoint):
        ckpts = list(checkpoints)
    if ckpts:  # a class or factory that does not import fails now, not after the pool is tokenized
        loader = ckpts[0].loader
        if loader.kind in ("hf", "state_dict"):
            import_object(loader.model_class if loader.kind == "hf" else loader.factory,
                          "--model-class" if loader.kind == "hf" else "--model-factory")
    if ckpts is not None and len(ckpts) < 2:
        raise ProbekitUsageError(f"a trajectory needs at least two checkpoints; found one ({ckpts[0].label}).")
    _check_output(out, data, ckpts, tokenizer, spec, ops, name)
    pool = _pool(data, id_field)
    staging = Staging(out, "")
    staging.check()
    if ckpts is not None and selection_checkpoint is not None and selection_checkpoint not in [c.step for c in ckpts]:
        raise _no_step("--selection-checkpoint", selection_checkpoint, [c.step for c in ckpts])
    if ckpts is not None and onset is not None:
        from probekit.record.order import given_transition

        given_transition(onset, midpoint, np.array([c.step for c in ckpts]))

    first_dir = ckpts[0].path if ckpts and ckpts[0].loader.kind == "hf" else None

    def tokenizer_provider() -> tuple[Any, str]:
        return load_tokenizer(tokenizer, [first_dir, None if first_dir is None else first_dir.parent])

    build = dict(loss=loss_kind, fields=fields, batch_size=batch_size, tokenizer=tokenizer_provider,
                 max_length=max_length)
    pool_data = build_data(pool, **build)
    evals: dict[str, Data] = {}
    rows: dict[str, np.ndarray] = {}
    for op in ops:
        if op.on_eval and op.where not in evals:
            from probekit.pool import Pool

            evals[op.where] = build_data(Pool.from_file(op.where), where="eval file", **build)
        elif not op.on_eval:
            rows[op.name] = _slice_rows(pool, op)
    loader = (ckpts[0].loader if ckpts else None)
    key_payload = {"data": pool_data.digest, "loss": loss_name, "autocast": autocast_name, "device": device.type,
                   "loader": None if loader is None else {**loader.describe(), "kind": loader.kind}}
    mkey = _sha(key_payload)
    measured = {_sha({"op": op.describe(evals[op.where].digest if op.on_eval else None), "m": mkey})[:16]: op
                for op in ops if op.needs_forward}
    staging = Staging(out, mkey)

    existing = _existing(out)
    stats = {"hash": 0.0, "load": 0.0, "forward": 0.0, "computed": 0}
    if ckpts is not None:
        th = time.perf_counter()
        for c in ckpts:
            c.sha256()
        stats["hash"] += time.perf_counter() - th
        done = _finished(existing, out, name, ckpts, pool, pool_data, loss_name, autocast_name, device, mkey,
                         selection_checkpoint, spec, measured, overwrite)
        if done is not None:
            return Outcome(done, 0, len(ckpts), True, time.perf_counter() - t0, stats["hash"])
    reuse = reusable(existing, mkey, {k: op.name for k, op in measured.items()}) if existing is not None else {}
    results: dict[str, tuple[np.ndarray, dict[str, float]]] = {}  # sha -> (losses, measured values), this rank's

    def one(i: int, c: Checkpoint, total: int | None) -> None:
        if i % ranks.world != ranks.rank:
            return
        sha = c.sha256()
        if sha in reuse or staging.load(sha, list(measured)) is not None:
            return
        tl = time.perf_counter()
        model = c.load(device)
        stats["load"] += time.perf_counter() - tl
        check_vocab(model, pool_data.vocab, c.label, pool_data.describe.get("tokenizer"))
        tf = time.perf_counter()
        losses, values = measure_checkpoint(model, c, pool_data, evals, rows, measured, loss_fn, loss_kind,
                                            autocast_dtype, progress, i, total)
        stats["forward"] += time.perf_counter() - tf
        staging.save(sha, losses, values)
        results[sha] = (losses, values)
        stats["computed"] += 1
        log.info("recorded %s (%d/%s): loaded in %.1f s, forward in %.1f s", c.label, i + 1, total or "?",
                 tf - tl, time.perf_counter() - tf)

    seen: list[Checkpoint] = []
    failure = None
    try:
        if ckpts is not None:
            for i, c in enumerate(ckpts):
                one(i, c, len(ckpts))
            seen = ckpts
        else:
            for i, c in enumerate(from_models(checkpoints)):
                th = time.perf_counter()
                c.sha256()
                stats["hash"] += time.perf_counter() - th
                one(i, c, None)
                c.model = None  # the caller's model: no reference kept
                seen.append(c)
    except BaseException as exc:  # every rank must reach the check below, whatever happened here
        failure = exc
    ranks.agree(failure)
    stats["computed"] = ranks.total(stats["computed"])  # by every rank
    if not seen:
        raise ProbekitUsageError("no checkpoints found: the iterable of (step, model) pairs was empty.")
    if ckpts is None:  # models in memory: their hashes are known only now
        if selection_checkpoint is not None and selection_checkpoint not in [c.step for c in seen]:
            raise _no_step("selection_checkpoint", selection_checkpoint, [c.step for c in seen])
        done = _finished(existing, out, name, seen, pool, pool_data, loss_name, autocast_name, device, mkey,
                         selection_checkpoint, spec, measured, overwrite)
        if done is not None:
            return Outcome(done, stats["computed"], len(seen) - stats["computed"], True, time.perf_counter() - t0,
                           stats["hash"], stats["load"], stats["forward"])
    from probekit.record.assemble import write

    config, key = _config(seen, pool, pool_data, loss_name, autocast_name, device, mkey, selection_checkpoint, spec,
                          measured)
    traj = ranks.on_main(lambda: write(out, name or out.name, config, key, seen, pool, results, reuse, staging,
                                       measured, rows, spec, ops, time.perf_counter() - t0), out)
    return Outcome(traj, stats["computed"], len(seen) - stats["computed"], False, time.perf_counter() - t0,
                   stats["hash"], stats["load"], stats["forward"])


def _resolve_loss(loss: Any, losses: dict) -> tuple[str, Any, str]:
    if isinstance(loss, str) and loss in losses:
        return loss, losses[loss], loss
    if callable(loss):
        qualname = getattr(loss, "__qualname__", type(loss).__name__)
        return f"{getattr(loss, '__module__', '?')}:{qualname}", loss, "custom"
    if isinstance(loss, str) and ":" in loss:
        fn = import_object(loss, "--loss")
        if not callable(fn):
            raise ProbekitUsageError(f"--loss {loss!r} is not callable; it must be a function (model, batch) -> [b].")
        spec, code = code_identity(loss)  # the file's hash: an edited loss is a new recording
        return (spec if code is None else f"{spec}#sha256={code[:16]}"), fn, "custom"
    raise ProbekitUsageError(f"--loss must be one of {', '.join(losses)} or MODULE:FUNCTION (a function "
                             f"(model, batch) -> [b] losses); got {loss!r}.")


def _autocast(value: Any) -> tuple[str | None, Any]:
    import torch

    if value is None or value is False or (isinstance(value, str) and value.lower() == "none"):
        return None, None
    if isinstance(value, torch.dtype) and value in (torch.bfloat16, torch.float16):
        return str(value).removeprefix("torch."), value
    if isinstance(value, str) and value.lower() in AUTOCAST:
        return AUTOCAST[value.lower()], getattr(torch, AUTOCAST[value.lower()])
    raise ProbekitUsageError(f"--autocast must be one of bf16, fp16, none; got {value!r}.")


def _pool(data: Any, id_field: str | None) -> Any:
    from probekit.pool import Pool

    if isinstance(data, Pool):
        return data
    from probekit.cli.common import load_pool

    return load_pool(None if data is None else os.fspath(data), id_field)


def _slice_rows(pool: Any, op: OrderSpec) -> np.ndarray:
    from probekit.selection.slices.parse import parse_slices
    from probekit.selection.slices.rows import member_rows

    specs = parse_slices(op.where)
    if len(specs) != 1 or specs[0].kind not in ("where", "ids"):
        raise ProbekitUsageError(f"--order-parameter {op.name!r}: WHERE must be one predicate (topic=rare, "
                                 f"'score>0.5 & split=test') or an id list (ids:ID,ID), or eval=PATH.")
    return member_rows(pool, specs[0])


def _check_output(out: Path, data: Any, ckpts: list[Checkpoint] | None, tokenizer: Any, spec: TransitionSpec,
                  ops: list[OrderSpec], name: str | None) -> None:
    from probekit.atomic import check_replaceable_directory
    from probekit.cli.outputs import check_not_input, check_parent

    from probekit.pool import Pool

    source = data.name if isinstance(data, Pool) else data  # a Pool read from a file: that file
    inputs: dict[str, Any] = {"--data": source if isinstance(source, (str, os.PathLike))
                              and Path(source).exists() else None}
    inputs.update({f"--checkpoints ({c.label})": c.path for c in ckpts or [] if c.path is not None})
    inputs["--tokenizer"] = tokenizer if isinstance(tokenizer, (str, os.PathLike)) else None
    inputs["--order-csv"] = spec.order_csv
    inputs.update({f"--order-parameter {op.name}": op.where for op in ops if op.on_eval})
    check_not_input(out, "--out", inputs)
    check_parent(out, "--out")
    # only a user trajectory is ever replaced (whether it may be is decided once the sources are known)
    check_replaceable_directory(out, is_user_trajectory, what="probekit user trajectory", overwrite=True)
    if name is not None and (not isinstance(name, str) or not name.strip()):
        raise ProbekitUsageError(f"--name must be a non-empty string; got {name!r}.")
    import re

    label = name if name is not None else out.name
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", label):  # it names the bench's family, its cells and files
        raise ProbekitUsageError(f"the trajectory's name {label!r} (--name, default the --out directory's name) must be "
                                 "letters, digits, '.', '_' and '-'; give --name.")


def _existing(out: Path) -> Any:
    from probekit.eval.store.trajectory import Trajectory, TrajectoryCorruptError

    if not is_user_trajectory(out):
        return None
    try:
        return Trajectory(out)
    except TrajectoryCorruptError as exc:
        log.info("not reusing %s: %s", out, exc)
        return None


def _sha(payload: Any) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def _no_step(option: str, step: int, steps: list[int]) -> ProbekitUsageError:
    shown = ", ".join(map(str, steps[:10])) + (" ..." if len(steps) > 10 else "")
    return ProbekitUsageError(f"{option} {step} is not a checkpoint's step; the steps are {shown}.")


def _config(ckpts: list[Checkpoint], pool: Any, data: Data, loss_name: str, autocast_name: str | None, device: Any,
            mkey: str, selection: int | None, spec: TransitionSpec, measured: dict[str, OrderSpec]) -> tuple[dict, str]:
    """The manifest's config (what the trajectory was recorded from and how) and its sha256."""
    config = {
        "kind": "user",
        "checkpoints": [c.describe() for c in ckpts],
        "loader": ckpts[0].loader.describe(),
        "pool": {"source": str(Path(pool.name).resolve()) if Path(pool.name).exists() else pool.name,
                 "fingerprint": pool.fingerprint, "id_field": pool.id_field, "rows": len(pool)},
        "loss": loss_name,
        **data.describe,
        "dtype": ckpts[0].loader.dtype,
        "autocast": autocast_name,
        "device": device.type,
        "data_digest": data.digest,
        "measurement_key": mkey,
        "selection_checkpoint": ckpts[0].step if selection is None else int(selection),
        "order": {**spec.describe(), "measured": [{"key": k, "name": op.name} for k, op in measured.items()]},
    }
    config = json.loads(json.dumps(config))
    return config, _sha(config)


def _finished(existing: Any, out: Path, name: str | None, ckpts: list[Checkpoint], pool: Any, data: Data,
              loss_name: str, autocast_name: str | None, device: Any, mkey: str, selection: int | None,
              spec: TransitionSpec, measured: dict[str, OrderSpec], overwrite: bool) -> Any:
    """The existing trajectory when it is this very recording; an error when it is another and may not be replaced."""
    _, key = _config(ckpts, pool, data, loss_name, autocast_name, device, mkey, selection, spec, measured)
    if existing is not None and existing.manifest["config_hash"] == key and existing.name == (name or out.name):
        log.info("%s is up to date (%d checkpoints)", out, len(ckpts))
        return existing
    if not overwrite and (existing is not None or (out.exists() and any(out.iterdir()))):
        raise ProbekitUsageError(f"--out {out} already holds a trajectory recorded from other checkpoints or settings; "
                                 "pass --overwrite to replace it (losses of checkpoints it shares are reused).")
    return None
