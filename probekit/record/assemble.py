"""The last step of a recording: every checkpoint's losses -> series, transitions -> the trajectory directory."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from probekit.atomic import atomic_directory
from probekit.errors import ProbekitError, ProbekitUsageError
from probekit.record.order import OrderSpec, TransitionSpec, given_transition, on_steps, read_order_csv, transition_of
from probekit.record.store import Staging, is_user_trajectory, write_user_trajectory

__all__ = ["write"]


def write(out: Path, name: str, config: dict, key: str, ckpts: list, pool: Any, results: dict, reuse: dict,
          staging: Staging, measured: dict[str, OrderSpec], rows: dict[str, np.ndarray], spec: TransitionSpec,
          ops: list[OrderSpec], wall: float) -> Any:
    """Gather every checkpoint's row (this process's results, the reused trajectory, the staging
    directory), find the transitions, write the trajectory atomically, remove the staging directory."""
    from probekit.eval.store.trajectory import Trajectory

    needed = list(measured)
    losses = np.empty((len(ckpts), len(pool)), dtype=np.float32)  # [records, pool]
    values = {k: np.empty(len(ckpts), dtype=np.float64) for k in needed}
    for i, c in enumerate(ckpts):
        sha = c.sha256()
        got = results.get(sha) or reuse.get(sha) or staging.load(sha, needed)
        if got is None:
            raise ProbekitError(f"checkpoint {c.label}: its losses are neither staged in {staging.path} nor in the "
                                "existing trajectory (was the staging directory removed while recording?); rerun.")
        losses[i] = got[0]
        for k in needed:
            values[k][i] = got[1][k]
    steps = np.array([c.step for c in ckpts], dtype=np.int64)
    series = {"baseline/mean_loss": losses.astype(np.float64).mean(axis=1)}
    by_name = {op.name: k for k, op in measured.items()}
    for op in ops:
        series[f"op/{op.name}"] = values[by_name[op.name]] if op.needs_forward else \
            losses[:, rows[op.name]].astype(np.float64).mean(axis=1)
    transitions = []
    common = dict(min_change=spec.min_change, edge_records=spec.edge_records)
    if spec.onset is not None:
        transitions.append(given_transition(spec.onset, spec.midpoint, steps))
    elif spec.order_csv is not None:
        csv_name, csv_steps, csv_values = read_order_csv(spec.order_csv, spec.order_name)
        series[f"op/{csv_name}"] = on_steps(csv_name, csv_steps, csv_values, steps)
        # read off the CSV's own steps: it may be finer than the checkpoints
        t = transition_of(csv_name, f"from {Path(spec.order_csv).name}", csv_steps, csv_values,
                          metric=None, option="--order-csv", **common)
        for what, step in (("onset", t.onset_step), ("midpoint", t.midpoint_step)):
            if step is not None and not steps[0] <= step <= steps[-1]:  # scored on the checkpoints: it must be there
                raise ProbekitUsageError(
                    f"--order-csv {csv_name!r}: its {what} at step {step} is outside the recorded checkpoints' steps "
                    f"{steps[0]}..{steps[-1]}; record checkpoints that span the transition.")
        transitions.append(t)
    for op in ops:
        transitions.append(transition_of(op.name, f"{op.metric} on {op.where}", steps, series[f"op/{op.name}"],
                                         metric=op.metric, option="--order-parameter", **common))
    selection = int(config["selection_checkpoint"])
    chosen = next(c for c in ckpts if c.step == selection)
    source = {"selection": {**chosen.describe(), "loader": chosen.loader.describe()}}
    if len(steps) < 2:
        raise ProbekitUsageError(f"a trajectory needs at least two checkpoints; found one ({ckpts[0].label}).")
    with atomic_directory(out, replace_if=is_user_trajectory, what="probekit user trajectory", overwrite=True) as tmp:
        write_user_trajectory(tmp, name=name, config=config, key=key, steps=steps, losses=losses, series=series,
                              pool=pool, transitions=transitions, selection=selection, source=source,
                              wall_seconds=wall)
    staging.remove()
    return Trajectory(out)
