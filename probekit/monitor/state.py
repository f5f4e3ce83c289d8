"""The monitor's state across a resumed training: what ``Monitor.state_dict()`` holds, and its checks.

The state holds only tensors, Python scalars, strings, lists, dicts and None,
so ``torch.load(path)`` reads it with its default ``weights_only=True`` (torch
>= 2.6), which runs no code from the file. The window's arrays travel as CPU
tensors of the same dtype (float64, int64, bool): a resume is bit-exact.

``load_state`` checks everything before it changes anything: a state with a
missing entry, a value of the wrong type or shape, or one saved by a monitor
of another configuration (probe count, window, detrend, signal, alarm rule)
raises one ``ProbekitUsageError`` line that names it, and leaves the monitor
as it was.
"""
from __future__ import annotations

import copy
import os
import pickle
from typing import Any

import numpy as np

from probekit.errors import ProbekitError, ProbekitUsageError

__all__ = ["STATE_VERSION", "MonitorStateError", "load_state", "load_state_file", "monitor_config", "monitor_state"]

STATE_VERSION = 1
_KEYS = ("config", "rdm", "alarm", "counters", "alarm_steps", "every", "last_step")
_WHERE = "Monitor.load_state_dict"
# DynamicalRDM.state_dict's arrays: dtype kind, and shape as a function of (window W, probes n)
_RDM_ARRAYS = {
    "buf": ("f", lambda w, n: (w, n)), "gram": ("f", lambda w, n: (w, w)), "ref": ("f", lambda w, n: (n,)),
    "same": ("b", lambda w, n: (w,)), "steps": ("i", lambda w, n: (w,)), "last": ("f", lambda w, n: (n,)),
}
_RDM_OPTIONAL = ("ref", "last")  # None until the first admitted record
_RDM_KEYS = ("version", "config", "probe_ids", *_RDM_ARRAYS, "n", "pos", "count", "seen", "rejected", "warned")


class MonitorStateError(ProbekitError):
    """A saved monitor state file is truncated, corrupt, or not a monitor state."""


def _portable(obj: Any) -> Any:
    """numpy arrays -> CPU tensors (a copy, same dtype), numpy scalars -> Python scalars, containers walked."""
    if isinstance(obj, np.ndarray):
        import torch

        return torch.from_numpy(np.array(obj, copy=True))
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, dict):
        return {k: _portable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_portable(v) for v in obj)
    return obj


def monitor_config(monitor: Any) -> dict:
    """What a state must have been saved with to be loaded into ``monitor``."""
    rule = monitor.alarm_rule
    return _portable({"n_probes": monitor.n_probes, "window": monitor.rdm.window, "detrend": monitor.rdm.detrend,
                      "signal": monitor.signal, "alarm": None if rule is None else [rule.name, rule.get_params()]})


def monitor_state(monitor: Any) -> dict:
    """``Monitor.state_dict()``: plain values and CPU tensors only (see the module doc)."""
    online = monitor._online
    return _portable({
        "version": STATE_VERSION,
        "config": monitor_config(monitor),
        "rdm": monitor.rdm.state_dict(),
        "alarm": None if online is None else online.state_dict(),
        "counters": dict(monitor.counters),
        "alarm_steps": [int(s) for s in monitor.alarm_steps],
        "every": int(monitor.every),
        "last_step": monitor._last_step,
    })


def _fail(message: str) -> ProbekitUsageError:
    return ProbekitUsageError(f"{_WHERE}: {message}")


def _is_int(value: Any, low: int | None = None) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool) and (low is None or value >= low)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _diff(theirs: dict, mine: dict) -> tuple[dict, dict]:
    keys = [k for k in {**mine, **theirs} if theirs.get(k, "<missing>") != mine.get(k, "<missing>")]
    return {k: theirs.get(k, "<missing>") for k in keys}, {k: mine.get(k, "<missing>") for k in keys}


def _array(name: str, value: Any, kind: str, window: int, probes: int | None) -> np.ndarray:
    shape = _RDM_ARRAYS[name][1](window, probes) if probes is not None else (0,)  # (0,): steps before a record
    try:
        arr = np.asarray(value.detach().cpu().numpy() if hasattr(value, "detach") else value)  # a tensor, or not
    except Exception:
        arr = np.asarray(None)
    if arr.dtype.kind not in {"f": "fiu", "i": "iu", "b": "b"}[kind]:
        got = _short(value) if arr.dtype.kind == "O" else f"dtype {arr.dtype}"
        raise _fail(f"rdm {name!r} must be a {dict(f='float', i='int', b='bool')[kind]} tensor. Got {got}.")
    if arr.shape != shape:
        what = "before the first record" if probes is None else f"for a window of {window} records of {probes} probes"
        raise _fail(f"rdm {name!r} must have shape {shape} {what}. Got {tuple(arr.shape)}.")
    if kind == "f" and not np.isfinite(arr).all():
        raise _fail(f"rdm {name!r} holds NaN or inf; the window only ever admits finite losses.")
    return arr.astype({"f": np.float64, "i": np.int64, "b": bool}[kind], copy=True)


def _rdm_state(monitor: Any, state: Any) -> dict:
    """The rdm entry, checked against this monitor and turned back into numpy (what DynamicalRDM loads)."""
    if not isinstance(state, dict):
        raise _fail(f"the 'rdm' entry must be a dict (DynamicalRDM.state_dict()). Got {type(state).__name__}.")
    missing = [k for k in _RDM_KEYS if k not in state]
    if missing:
        raise _fail(f"the 'rdm' entry has no {', '.join(map(repr, missing))}; pass what Monitor.state_dict() returned.")
    rdm = monitor.rdm
    if state["version"] != 1:
        raise _fail(f"rdm 'version' must be 1. Got {_short(state['version'])}.")
    mine = {k: getattr(rdm, k) for k in rdm._CONFIG}
    if not isinstance(state["config"], dict) or state["config"] != mine:
        theirs, mine = _diff(state["config"] if isinstance(state["config"], dict) else {}, mine)
        raise _fail(f"the 'rdm' entry was saved with {theirs} but this monitor's window has {mine}.")
    ids = state["probe_ids"]
    if ids is not None and not (isinstance(ids, (list, tuple)) and all(isinstance(i, str) for i in ids)):
        raise _fail(f"rdm 'probe_ids' must be None or a list of str. Got {_short(ids)}.")
    if (None if ids is None else list(ids)) != rdm.probe_ids:
        raise _fail("the state's probe_ids differ from this monitor's (it was saved for other probes, or "
                    "with probe_ids where this monitor has none, or the reverse).")
    w, n = rdm.window, state["n"]
    if n is not None and not (_is_int(n) and n == monitor.n_probes):
        raise _fail(f"rdm 'n' must be None or {monitor.n_probes} (the probes). Got {_short(n)}.")
    if not (_is_int(state["pos"], 0) and state["pos"] < w):
        raise _fail(f"rdm 'pos' must be an int in [0, {w}). Got {_short(state['pos'])}.")
    for key in ("count", "seen", "rejected"):
        if not _is_int(state[key], 0):
            raise _fail(f"rdm {key!r} must be an int >= 0. Got {_short(state[key])}.")
    if not isinstance(state["warned"], (bool, np.bool_)):
        raise _fail(f"rdm 'warned' must be a bool. Got {_short(state['warned'])}.")
    history = state.get("history", 0)  # absent from states saved before it existed
    if not _is_int(history, 0):
        raise _fail(f"rdm 'history' must be an int >= 0. Got {_short(history)}.")
    out = {k: state[k] for k in ("version", "config", "n", "pos", "count", "seen", "rejected", "warned")}
    out["history"] = history
    out = {k: (int(v) if _is_int(v) else v) for k, v in out.items()}
    out["warned"] = bool(state["warned"])
    out["probe_ids"] = None if ids is None else list(ids)
    for name, (kind, _) in _RDM_ARRAYS.items():
        value = state[name]
        if n is None:  # nothing recorded yet: no arrays, and an empty step list
            if name == "steps":
                out[name] = _array(name, value, kind, w, None)
            elif value is not None:
                raise _fail(f"rdm {name!r} must be None before the first record (rdm 'n' is None).")
            else:
                out[name] = None
        elif value is None and name in _RDM_OPTIONAL:
            out[name] = None
        else:
            out[name] = _array(name, value, kind, w, int(n))
    return out


def _alarm_state(monitor: Any, state: Any) -> Any:
    """A copy of the monitor's online alarm with ``state`` loaded (None without an alarm); raises on junk."""
    online = monitor._online
    if online is None:
        if state is not None:
            raise _fail("the state has an alarm state but this monitor has no alarm (alarm=None).")
        return None
    if state is None:
        raise _fail(f"the state has no alarm state but this monitor runs {type(online.rule).__name__}.")
    trial = copy.deepcopy(online)
    try:
        if not isinstance(state, dict):
            raise TypeError(f"a dict is needed, got {type(state).__name__}")
        for key in ("n_records", "run"):
            if key in state and not _is_int(state[key], 0):
                raise TypeError(f"{key!r} must be an int >= 0, got {_short(state[key])}")
        if "alarms" in state and not (isinstance(state["alarms"], list) and all(_is_int(a, 0) for a in state["alarms"])):
            raise TypeError(f"'alarms' must be a list of ints, got {_short(state['alarms'])}")
        if "last_score" in state and not isinstance(state["last_score"], (int, float)):
            raise TypeError(f"'last_score' must be a float, got {_short(state['last_score'])}")
        _check_rule_state(state.get("rule_state"), online.rule._online_state(online._params))
        trial.load_state_dict(state)
    except (ProbekitError, KeyError, TypeError, ValueError, AttributeError) as exc:
        why = (str(exc).splitlines() or [type(exc).__name__])[0]
        raise _fail(f"the 'alarm' entry is not this alarm's state ({type(online.rule).__name__}): {why}.") from None
    return trial


def _check_rule_state(state: Any, fresh: dict) -> None:
    if state is None:
        return  # OnlineAlarm.load_state_dict names the missing key
    if not isinstance(state, dict):
        raise TypeError(f"'rule_state' must be a dict, got {_short(state)}")
    number = (int, float, np.integer, np.floating)
    for key, value in state.items():
        like = fresh.get(key)
        if isinstance(like, list):
            if not (isinstance(value, list) and all(isinstance(v, number) and not isinstance(v, bool) for v in value)):
                raise TypeError(f"'rule_state'[{key!r}] must be a list of numbers, got {_short(value)}")
        elif isinstance(like, number) and (not isinstance(value, number) or isinstance(value, bool)):
            raise TypeError(f"'rule_state'[{key!r}] must be a number, got {_short(value)}")


def load_state(monitor: Any, state: Any) -> None:
    """``Monitor.load_state_dict``: check all of ``state``, then apply it (nothing applied on failure)."""
    if not isinstance(state, dict) or state.get("version") != STATE_VERSION:
        raise ProbekitUsageError(f"{_WHERE} takes what Monitor.state_dict() returned (version {STATE_VERSION}); "
                                 f"got {_describe(state)}.")
    missing = [k for k in _KEYS if k not in state]
    if missing:
        raise _fail(f"the state has no {', '.join(map(repr, missing))}; pass what Monitor.state_dict() returned.")
    mine = monitor_config(monitor)
    if not isinstance(state["config"], dict):
        raise _fail(f"the state's 'config' must be a dict. Got {_short(state['config'])}.")
    if _portable(state["config"]) != mine:
        theirs, ours = _diff(state["config"], mine)
        raise _fail(f"the state was saved by a monitor with {theirs} but this one has {ours}; the probe count, "
                    "window, detrend, signal and alarm rule must match.")
    counters = state["counters"]
    if not isinstance(counters, dict) or set(counters) != set(monitor.counters):
        raise _fail(f"'counters' must have the keys {', '.join(sorted(monitor.counters))}. "
                    f"Got {_short(sorted(counters) if isinstance(counters, dict) else counters)}.")
    for key, value in counters.items():
        if not _is_int(value, 0):
            raise _fail(f"'counters'[{key!r}] must be an int >= 0. Got {_short(value)}.")
    if not _is_int(state["every"], 1):
        raise _fail(f"'every' must be an int >= 1. Got {_short(state['every'])}.")
    if state["last_step"] is not None and not _is_int(state["last_step"]):
        raise _fail(f"'last_step' must be an int or None. Got {_short(state['last_step'])}.")
    steps = state["alarm_steps"]
    if not isinstance(steps, (list, tuple)) or not all(_is_int(s) for s in steps):
        raise _fail(f"'alarm_steps' must be a list of ints (training steps). Got {_short(steps)}.")
    rdm_state = _rdm_state(monitor, state["rdm"])
    trial = copy.deepcopy(monitor.rdm)
    try:
        trial.load_state_dict(rdm_state)
    except Exception as exc:  # checked above; anything left is still the state's fault
        raise _fail(f"the 'rdm' entry does not load ({type(exc).__name__}: {exc}).".splitlines()[0]) from None
    online = _alarm_state(monitor, state["alarm"])
    # Everything checked: apply. The same inputs loaded into copies above, so these cannot fail half-way.
    monitor.rdm.load_state_dict(rdm_state)
    if online is not None:
        monitor._online.load_state_dict(online.state_dict())
    monitor.counters = {k: int(v) for k, v in counters.items()}
    monitor.alarm_steps = [int(s) for s in steps]
    monitor._every = int(state["every"])
    monitor._last_step = None if state["last_step"] is None else int(state["last_step"])


def _describe(state: Any) -> str:
    if isinstance(state, dict):
        return f"a dict with version {_short(state.get('version'))} and keys {_short(sorted(map(str, state)))}"
    return f"a {type(state).__name__}"


def _numpy_globals() -> list:
    """What a state saved before the arrays became tensors (numpy arrays inside) needs under weights_only."""
    core = getattr(np, "_core", None) or np.core
    rebuild = core.multiarray._reconstruct
    scalar = core.multiarray.scalar
    names = [np.ndarray, np.dtype, bytes, rebuild, (rebuild, "numpy.core.multiarray._reconstruct"),
             (rebuild, "numpy._core.multiarray._reconstruct"), scalar, (scalar, "numpy.core.multiarray.scalar"),
             (scalar, "numpy._core.multiarray.scalar")]
    dtypes = getattr(np, "dtypes", None)
    if dtypes is not None:
        names += [dtypes.Float64DType, dtypes.Int64DType, dtypes.BoolDType]
    return names


def load_state_file(path: str | os.PathLike) -> dict:
    """A state saved with ``torch.save``, read with ``weights_only=True``; one MonitorStateError line if unreadable."""
    import torch

    path = os.fspath(path)
    try:
        try:
            return torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as first:
            safe = getattr(torch.serialization, "safe_globals", None)
            if safe is None:
                raise
            try:
                with safe(_numpy_globals()):
                    return torch.load(path, map_location="cpu", weights_only=True)
            except Exception:
                raise first from None
    except Exception as exc:
        why = (str(exc).strip().splitlines() or [""])[0][:200]
        raise MonitorStateError(f"{path} is truncated or corrupt, or not a probekit monitor state "
                                f"({type(exc).__name__}: {why}); resume from an earlier checkpoint, or "
                                "without the monitor's state.") from None
