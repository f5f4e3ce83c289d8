"""Peer signals in the benchmark: the LLC (devinterp) beside the 2RDM, scored the same way, with their costs.

A peer cell is one (family, peer signal, alarm rule). Its signal lives on the
checkpoint grid (every ``llc_checkpoint_every[preset]`` records, as the family
declares it (``ReferenceRun``), with its SGLD step size: the LLC costs
thousands of forward+backward passes per estimate, so it is estimated at
~25 checkpoints per run, not at every record):

- ``llc``: the LLC estimate itself (it rises as the model takes on structure);
  a non-positive estimate (the chains found lower loss than at the checkpoint:
  no local minimum there) is undefined (NaN) to the rules;
- ``llc_dev``: |LLC - median of the previous ``LLC_DEV_WINDOW`` estimates|, a
  direction-free change detector (a stage boundary shows as the curve bending
  either way: the LLC of a grokking network can fall as it generalises).

The alarm rules are the grid's, with their record-counted parameters put in
checkpoints (:func:`checkpoint_rule`): persistence 1 (not 3 checkpoints: up to
150 records of delay), the z-score baseline and the running minimum's memory
divided by the stride (at least 8 and 4 checkpoints). Episodes and false-alarm
rates are the harness's own (``score_signals``), with each onset put at the
last checkpoint at or before it; leads and times to onset are counted in
trajectory records up to the true onset (:func:`score_on_checkpoints`), so
they compare with every other signal, exactly.

Costs (:func:`measure_costs`), per trajectory record, in examples through the
model: the 2RDM on n probes is one forward pass over the n probes; the mean
loss and the classical indicators on the same probes share that pass; the
gradient norm is the training step's own (no extra pass); the LLC is
chains x draws x batch forward+backward examples (plus the forward-only
loss at w*) per checkpoint, divided by the checkpoint stride. Wall times are
measured on the machine that runs the benchmark, one thread.
"""
from __future__ import annotations

import os
import time
import traceback
from typing import Any

import numpy as np

from probekit.eval.peers.llc import LLCSeries, LLCSettings
from probekit.eval.scoring.signals import PEER_SIGNALS

__all__ = ["PEER_SIGNALS", "base_settings", "checkpoint_every", "checkpoint_rule", "family_of", "peer_signal",
           "settings_for", "score_on_checkpoints"]

LLC_DEV_WINDOW = 4

# Per family, declared by the family (ReferenceRun.llc_checkpoint_every, llc_lr, llc_calibrated) and
# read here through the registry: the record stride of the kept checkpoints per preset (~25 LLC
# estimates a run), and the SGLD step size from benchmarks/calibrate_llc.py (devinterp's guidance:
# the largest eps whose chains settle, stay finite and positive; docs/bench/llc_calibration.md).


def base_settings() -> LLCSettings:
    """The settings every family shares; the step size is calibrated per family."""
    return LLCSettings(lr=1e-4, localization=100.0, batch_size=32, num_chains=4, num_draws=100)


def family_of(name: str) -> str:
    """A null control's family (its own name for a family)."""
    from probekit.registry import TRANSITIONS

    return TRANSITIONS.load(name).control_of or name


def _declared(name: str) -> Any:
    """The class whose LLC declarations a run uses: its family's (a null control is scored with it)."""
    from probekit.registry import TRANSITIONS

    return TRANSITIONS.load(family_of(name))


def settings_for(family: str) -> LLCSettings:
    """The LLC settings of a family (or its null control): the base ones with the family's step size."""
    import dataclasses

    lr = _declared(family).llc_lr
    return base_settings() if lr is None else dataclasses.replace(base_settings(), lr=lr)


def checkpoint_every(name: str, preset: str) -> int:
    """The checkpoint stride (records) of a family or null control under a preset."""
    from probekit.errors import ProbekitUsageError

    strides = _declared(name).llc_checkpoint_every
    if preset not in strides:
        raise ProbekitUsageError(
            f"no LLC checkpoint stride for {name!r} under preset {preset!r}; the peers run on presets "
            f"{', '.join(sorted(strides)) or '(none: the family declares no llc_checkpoint_every)'}.")
    return int(strides[preset])


def peer_signal(series: LLCSeries, statistic: str, window: int = LLC_DEV_WINDOW) -> np.ndarray:
    """The peer signal on the checkpoint grid, one value per kept checkpoint (NaN where undefined)."""
    x = np.asarray(series.llc, dtype=np.float64)
    if statistic == "llc":
        # A non-positive estimate is not an LLC: the chains found lower loss than at w* (it is not a
        # local minimum, or the step is too large). The rules see it as undefined, not as a value.
        return np.where(x > 0, x, np.nan)
    if statistic == "llc_dev":
        out = np.full(x.shape, np.nan)
        for t in range(window, x.size):
            out[t] = abs(x[t] - np.median(x[t - window:t]))
        return out
    raise ValueError(f"unknown peer signal {statistic!r}; the peers are {', '.join(PEER_SIGNALS)}")


def checkpoint_rule(rule: Any, stride: int) -> Any:
    """The grid's RuleSpec with its record-counted parameters put on a grid ``stride`` times coarser.

    The rule says which parameters count records (``AlarmRule.coarse_params``); the spec keeps
    the parameters it named and adds those the coarser grid changed.
    """
    from probekit.eval.bench import RuleSpec

    fine = rule.make()
    before, after = fine.get_params(), fine.coarse_params(stride)
    params = dict(rule.params)
    params.update({k: v for k, v in after.items() if k in params or v != before[k]})
    return RuleSpec(rule.name, tuple(sorted(params.items())))


def _grid_episodes(traj: Any, k: int, n_grid: int, hit_fraction: float,
                   pilot: int = 0) -> list[tuple[Any, int, int]]:
    """The run's episodes as the harness defines them in records, placed on the grid of every k-th record.

    Returns (episode on the grid, onset record, time to onset in records) per episode. The
    quiet period, hit window and late window are the record-grid episode's own (start at the
    previous midpoint, the hit window the last ``hit_fraction`` of the time to onset), each
    holding the checkpoints inside it: the onset goes to the last checkpoint at or before it,
    the window's start to the first checkpoint at or after it. A hit window with no
    checkpoint in it cannot be hit: the signal is too coarse for that episode. ``pilot``:
    records ``[0, pilot)`` are not scored, as on the record grid (the family's designs
    selected on them; the peers are scored on the same episodes).
    """
    import math

    from probekit.eval.scoring.lead import Episode, check_pilot

    index = {int(step): i for i, step in enumerate(np.asarray(traj.steps))}
    last = int(np.asarray(traj.steps).size - 1)
    out = []
    previous_mid = check_pilot(pilot)
    for t in sorted((t for t in traj.transitions if t.onset_step is not None), key=lambda t: t.onset_step):
        onset = index[int(t.onset_step)]
        mid = index[int(t.midpoint_step)] if t.midpoint_step is not None else last
        start = previous_mid
        if onset > start:
            window = onset - max(1, math.ceil(hit_fraction * (onset - start)))
            g_onset = onset // k
            g_start = min(-(-start // k), g_onset)
            g_window = max(g_start, -(-max(window, start) // k))  # may pass g_onset: no checkpoint to hit
            g_mid = min(max(mid // k, g_onset), n_grid - 1)
            out.append((Episode(t.name, g_start, g_window, g_onset, g_mid), onset, onset - start))
        previous_mid = max(previous_mid, mid)
    return out


def score_on_checkpoints(trajs: list, nulls: list, signals: dict, k: int, *, spec: Any, rule: Any,
                         hit_fraction: float, pilot: int = 0) -> Any:
    """Score signals that live on every k-th record, with the record grid's episodes and exact leads.

    The harness's own episodes are defined in records; on a grid k times coarser
    their boundaries fall between checkpoints, and rounding them to the grid
    would give a coarse signal a hit window of at least one checkpoint (more than
    the record grid's half of a short episode) and credit alarms after the onset.
    So each episode keeps its record boundaries (:func:`_grid_episodes`), and a
    hit's lead is counted in records from the alarm's checkpoint to the true onset
    record, its time to onset as on the record grid. ``signals`` maps
    id(trajectory) -> (signal on the grid, grid steps). ``pilot``: records ``[0, pilot)``
    are not scored (episodes start after them, null runs are quiet from the first
    checkpoint at or after them), as for the family's designs.
    """
    import dataclasses

    from probekit.eval.scoring.design_score import DesignScore
    from probekit.eval.scoring.lead import Curve, check_pilot, score_episode, sweep

    pilot = check_pilot(pilot)

    class RecordScore(DesignScore):  # leads are already in trajectory records
        @property
        def unit(self) -> int:
            return 1

    out = RecordScore(spec, rule, curve=None)  # type: ignore[arg-type]
    pairs, onsets, ttos = [], [], []
    for t in trajs:
        signal = signals[id(t)][0]
        ps, alarms = rule.persistent_scores(signal), rule.alarms(signal)
        for ep, onset, tto in _grid_episodes(t, k, len(signal), hit_fraction, pilot):
            pairs.append((ps, ep))
            e = score_episode(alarms, ep)
            lead = None if e.lead is None else onset - e.alarm * k
            out.episodes.append((t.name, t.seed, dataclasses.replace(
                e, lead=lead, lead_fraction=None if lead is None else lead / max(tto, 1))))
            onsets.append(onset)
            ttos.append(tto)
    first = -(-pilot // k)  # the first checkpoint at or after the pilot
    for t in nulls:
        signal = signals[id(t)][0]
        out.null_false_alarms.append((t.name, t.seed, int(np.count_nonzero(rule.alarms(signal) >= first))))
    c = sweep(pairs, [rule.persistent_scores(signals[id(t)][0])[first:] for t in nulls])
    g_onset = np.asarray([ep.onset for _, ep in pairs], dtype=np.int64)[:, None]
    onset = np.asarray(onsets, dtype=np.int64)[:, None]
    tto = np.asarray(ttos, dtype=np.int64)[:, None]
    hits = c.episode_leads >= 0
    leads = np.where(hits, onset - (g_onset - c.episode_leads) * k, -1)  # alarm checkpoint -> true onset
    n = max(len(pairs), 1)
    mean = np.where(hits, leads / np.maximum(tto, 1), 0.0).sum(axis=0) / n
    med = np.array([np.median(leads[hits[:, j], j]) if hits[:, j].any() else np.nan for j in range(leads.shape[1])])
    out.curve = Curve(c.thresholds, c.far, c.detection, mean, med, c.n_quiet, c.n_episodes, leads)
    out.time_to_onset = [int(v) for v in ttos]
    return out


def llc_job(job: tuple) -> dict:
    """Compute (or load) one trajectory's LLC series in a worker; never raises."""
    name, preset, seed, cache_dir = job
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    try:
        from probekit.eval.peers.llc import llc_series
        from probekit.eval.store.runner import load_or_record

        k = checkpoint_every(name, preset)
        traj = load_or_record(name, preset, seed, cache_dir=cache_dir, progress=False, checkpoint_every=k)
        try:
            series = llc_series(traj, settings_for(family_of(name)), stride=k)
        finally:
            traj.close()
        return {"name": name, "seed": seed, "seconds": series.seconds, "error": None}
    except Exception as exc:  # recorded in the cells that need it
        return {"name": name, "seed": seed, "error": f"{type(exc).__name__}: {exc}"}


def _forward_seconds(traj: Any, n: int, repeats: int = 20) -> float:
    """Median wall time of one forward pass over n pool rows at the run's init checkpoint, one thread."""
    import torch

    from probekit.eval.peers.llc import llc_data

    data = llc_data(traj)
    x = data.x[:n] if data.x.shape[0] >= n else data.x
    model = traj.model("init")
    times = []
    with torch.no_grad():
        model(x)  # warm-up
        for _ in range(repeats):
            t0 = time.perf_counter()
            model(x)
            times.append(time.perf_counter() - t0)
    return float(np.median(times)) * (n / x.shape[0])  # scaled when the rows are fewer than n


def measure_costs(traj: Any, sizes: list[int], series: list[LLCSeries], settings: LLCSettings) -> dict:
    """Per trajectory record: examples through the model and wall seconds, for each signal kind."""
    from probekit.eval.scoring.signals import SignalSpec, compute_signal

    out: dict[str, dict] = {}
    pool = traj.losses.shape[1]
    rng = np.random.default_rng(0)
    for n in [*sizes, pool]:
        n = min(n, pool)
        fwd = _forward_seconds(traj, n)
        losses = np.asarray(traj.losses[:, rng.choice(pool, n, replace=False)])
        t0 = time.perf_counter()
        compute_signal(SignalSpec("shc", window=32), losses)
        rdm = (time.perf_counter() - t0) / losses.shape[0]
        out[f"probes:{n}"] = {"forward_examples": n, "forward_backward_examples": 0,
                              "seconds": fwd + rdm, "forward_seconds": fwd, "signal_seconds": rdm}
    c = settings.cost()
    k = series[0].stride if series else 1
    per_ckpt = [s.seconds / max(len(s.records), 1) for s in series]
    out["llc"] = {"forward_examples": c["forward_examples"] / k,
                  "forward_backward_examples": c["forward_backward_examples"] / k,
                  "seconds": float(np.median(per_ckpt)) / k if per_ckpt else None,
                  "seconds_per_checkpoint": float(np.median(per_ckpt)) if per_ckpt else None,
                  "checkpoint_every": k}
    out["grad_norm"] = {"forward_examples": 0, "forward_backward_examples": 0, "seconds": 0.0}
    return out


def peer_job(job: tuple) -> list[dict]:
    """The peer cells of one family: every peer signal under every rule, and the family's costs. Never raises."""
    grid, family, cells, cache_dir = job
    os.environ.setdefault("OMP_NUM_THREADS", "1")

    def failed(cell: dict, exc: Exception) -> dict:
        return {**cell, "points": [], "error": f"{type(exc).__name__}: {exc}",
                "traceback": traceback.format_exc(limit=5)}

    trajs: list = []
    nulls: list = []
    try:
        import torch

        torch.set_num_threads(1)
        from probekit.eval.bench import RuleSpec
        from probekit.eval.peers.llc import llc_series
        from probekit.eval.scoring.signals import SignalSpec
        from probekit.eval.store.runner import load_or_record
        from probekit.registry import TRANSITIONS

        k = checkpoint_every(family, grid.preset)
        settings = settings_for(family)
        null_names = [n for n in TRANSITIONS.names() if TRANSITIONS.load(n).control_of == family]
        for s in grid.seeds:
            trajs.append(load_or_record(family, grid.preset, s, cache_dir=cache_dir, progress=False,
                                        checkpoint_every=k))
        for n in null_names:
            for s in grid.control_seeds:
                nulls.append(load_or_record(n, grid.preset, s, cache_dir=cache_dir, progress=False,
                                            checkpoint_every=k))
        series = {id(t): llc_series(t, settings, stride=k) for t in trajs + nulls}
        costs = measure_costs(trajs[0], list(grid.sizes), list(series.values()), settings)
    except Exception as exc:
        for t in trajs + nulls:
            t.close()
        return [failed(c, exc) for c in cells]
    out = []
    for cell in cells:
        try:
            spec = SignalSpec(**cell["signal"])
            signals = {key: (peer_signal(s, spec.statistic), np.asarray(s.steps)) for key, s in series.items()}
            rule = checkpoint_rule(RuleSpec.from_dict(cell["rule"]), k)
            score = score_on_checkpoints(trajs, nulls, signals, k, spec=spec, rule=rule.make(),
                                         hit_fraction=grid.hit_fraction, pilot=grid.pilot_for(family))
            point = {"size": 0, "fidelity": None, **score.summary(), "episodes": score.episode_rows()}
            out.append({**cell, "points": [point], "checkpoint_rule": rule.as_dict(), "costs": costs,
                        "llc_seconds": [series[id(t)].seconds for t in trajs + nulls],
                        "llc_source": series[id(trajs[0])].source, "error": None})
        except Exception as exc:
            out.append(failed(cell, exc))
    for t in trajs + nulls:
        t.close()
    return out


def peer_cells(grid: Any) -> list[dict]:
    """The peer cells of a grid, per family: each peer signal under each rule."""
    import dataclasses

    from probekit.eval.scoring.signals import SignalSpec

    from probekit.eval.bench.user_runs import user_family

    out = []
    for fam in grid.families:
        if user_family(grid, fam) is not None:  # a user's run keeps no checkpoints every k records
            continue
        settings = settings_for(fam)
        for stat in grid.peers:
            spec = SignalSpec(stat, window=LLC_DEV_WINDOW, stride=checkpoint_every(fam, grid.preset))
            for rule in grid.rules:
                out.append({"family": fam, "design": "peer", "signal": dataclasses.asdict(spec),
                            "rule": rule.as_dict(), "llc": {**settings.as_dict(), "key": settings.key(),
                                                            "calibrated": bool(_declared(fam).llc_calibrated)}})
    return out
