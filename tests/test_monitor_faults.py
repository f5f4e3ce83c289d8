"""The monitor under faults a new user met: a full disk, torch.load's defaults, junk states,
truncated checkpoints, a missing extra, and what ``dir()`` shows."""
from __future__ import annotations

import copy
import errno
import os
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pd = pytest.importorskip("pandas")
F = torch.nn.functional

import probekit  # noqa: E402
import probekit.monitor  # noqa: E402
from probekit.errors import ProbekitError, ProbekitUsageError  # noqa: E402
from probekit.monitor import JSONLSink, Monitor, MonitorWarning, TensorBoardSink  # noqa: E402


def _setup(seed=0, n=24):
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(6, 12), torch.nn.Tanh(), torch.nn.Linear(12, 3))
    x = torch.randn(n, 6, generator=g)
    y = torch.randint(0, 3, (n,), generator=g)
    return model, x, y


def _train_step(model, x, y, opt):
    loss = F.cross_entropy(model(x), y)
    opt.zero_grad()
    loss.backward()
    opt.step()


def _run(mon, model, x, y, steps, start=0):
    opt = torch.optim.SGD(model.parameters(), lr=0.3)
    for step in range(start, start + steps):
        mon.step(step)
        _train_step(model, x, y, opt)


def _same(a, b):
    """Nested equality of states that may hold tensors and arrays (NaN equal to NaN)."""
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return isinstance(b, (list, tuple)) and len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, (torch.Tensor, np.ndarray)):
        a, b = np.asarray(a), np.asarray(b)
        return a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a, b, equal_nan=a.dtype.kind == "f")
    if isinstance(a, float) and isinstance(b, float) and a != a:
        return b != b
    return type(a) is type(b) and a == b


# -- 1. JSONLSink on a full disk ----------------------------------------------------------------------------


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="RLIMIT_FSIZE short writes are Linux behaviour")
def test_jsonl_sink_on_a_full_disk_keeps_whole_lines_and_names_the_lost_steps(tmp_path):
    """The kernel's own short write: RLIMIT_FSIZE makes a write stop at the limit (a partial line),
    then fail with EFBIG, as a filling disk does with ENOSPC."""
    import resource
    import signal

    model, x, y = _setup()
    path = tmp_path / "m.jsonl"
    mon = Monitor(model, (x, y), "classification", every=1, window=3, sinks=[JSONLSink(path)])
    mon.record(0)
    mon.record(1)
    size = path.stat().st_size
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    old_handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    try:
        with pytest.warns(MonitorWarning) as caught:
            resource.setrlimit(resource.RLIMIT_FSIZE, (size + 40, hard))  # room for part of one line
            try:
                mon.record(2)
                mon.record(3)
            finally:
                resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
            # what a reader (or a run killed now) finds: whole lines only, nothing held back for later
            assert pd.read_json(path, lines=True)["step"].tolist() == [0, 1]
            mon.record(4)  # the disk has room again
            mon.close()
    finally:
        signal.signal(signal.SIGXFSZ, old_handler)
    messages = " | ".join(str(w.message) for w in caught)
    assert "sink JSONLSink failed at step 2" in messages and "the record of step 2 is not in it" in messages
    assert "sink JSONLSink lost the records of steps 2, 3 (2 of 5 records)" in messages
    frame = pd.read_json(path, lines=True)  # the real consumer: every line whole
    assert frame["step"].tolist() == [0, 1, 4]
    assert mon.counters["sink_errors"] == 2 and mon.counters["records"] == 5


def test_jsonl_sink_rolls_back_a_short_write_and_a_failed_one(tmp_path, monkeypatch):
    model, x, y = _setup()
    path = tmp_path / "m.jsonl"
    sink = JSONLSink(path)
    mon = Monitor(model, (x, y), "classification", every=1, window=3, sinks=[sink])
    mon.record(0)
    real_write = os.write
    mode = {"fail": None}

    def full_disk(fd, data):
        if fd != sink._fd or mode["fail"] is None:
            return real_write(fd, data)
        if mode["fail"] == "short":  # part of the line reaches the disk, then the disk is full
            return real_write(fd, data[: len(data) // 2])
        real_write(fd, data[:7])
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "write", full_disk)
    with pytest.warns(MonitorWarning, match=r"sink JSONLSink failed at step 1 \(OSError: \[Errno 28\] .*"
                                            r"the record of step 1 is not in it"):
        mode["fail"] = "short"
        mon.record(1)
        mode["fail"] = "raise"
        mon.record(2)
        mode["fail"] = None
        mon.record(3)
        with pytest.warns(MonitorWarning, match=r"sink JSONLSink lost the records of steps 1, 2 \(2 of 4 records\)"):
            mon.close()
    assert pd.read_json(path, lines=True)["step"].tolist() == [0, 3]
    assert path.read_bytes().endswith(b"\n") and mon.counters["sink_errors"] == 2


# -- 2. state_dict through torch.save / torch.load with its defaults ----------------------------------------


@pytest.mark.parametrize("alarm", ["zscore", "running-min", "kendall", None])
def test_state_dict_loads_with_torch_load_defaults_and_resumes_exactly(tmp_path, alarm):
    model, x, y = _setup()
    ids = [f"p{i}" for i in range(len(x))]
    full = Monitor(model, (x, y), "classification", every=1, window=5, alarm=alarm, probe_ids=ids)
    _run(full, model, x, y, 12)
    torch.save(full.state_dict(), tmp_path / "state.pt")
    loaded = torch.load(tmp_path / "state.pt")  # the default: weights_only=True
    resumed = Monitor(model, (x, y), "classification", every=1, window=5, alarm=alarm, probe_ids=ids)
    resumed.load_state_dict(loaded)
    opt = torch.optim.SGD(model.parameters(), lr=0.3)
    for step in range(12, 20):  # both read the same weights: every record after the resume agrees
        expected, got = full.record(step), resumed.record(step)
        assert got.as_dict() == expected.as_dict()
        _train_step(model, x, y, opt)
    assert resumed.counters == full.counters and resumed.alarm_steps == full.alarm_steps
    assert np.array_equal(resumed.rdm.window_records(), full.rdm.window_records())


def test_state_dict_of_a_fresh_monitor_round_trips(tmp_path):
    model, x, y = _setup()
    mon = Monitor(model, (x, y), "classification", every=1, window=3)
    torch.save(mon.state_dict(), tmp_path / "state.pt")
    other = Monitor(model, (x, y), "classification", every=1, window=3)
    other.load_state_dict(torch.load(tmp_path / "state.pt"))
    assert other.record(0).as_dict() == mon.record(0).as_dict()


# -- 3. load_state_dict on junk --------------------------------------------------------------------------


def _mutate(state, path, value):
    *head, last = path
    target = state
    for key in head:
        target = target[key]
    if value is KeyError:
        del target[last]
    else:
        target[last] = value


@pytest.mark.parametrize(
    "path, value, message",
    [
        (("counters",), KeyError, r"Monitor.load_state_dict: the state has no 'counters'"),
        (("config",), KeyError, r"Monitor.load_state_dict: the state has no 'config'"),
        (("counters", "records"), "many", r"'counters'.*'records'.*must be an int >= 0.*Got 'many'"),
        (("counters", "admitted"), KeyError, r"'counters' must have the keys .*admitted"),
        (("every",), 0, r"'every' must be an int >= 1\. Got 0"),
        (("last_step",), "7", r"'last_step' must be an int or None\. Got '7'"),
        (("alarm_steps",), [1, "x"], r"'alarm_steps' must be a list of ints"),
        (("rdm", "buf"), torch.zeros(5, 3, dtype=torch.float64), r"rdm 'buf' must have shape \(5, 24\).*Got \(5, 3\)"),
        (("rdm", "pos"), 9, r"rdm 'pos' must be an int in \[0, 5\)\. Got 9"),
        (("rdm", "steps"), KeyError, r"the 'rdm' entry has no 'steps'"),
        (("rdm",), "window", r"the 'rdm' entry must be a dict"),
        (("alarm", "n_records"), "abc", r"the 'alarm' entry is not this alarm's state"),
        (("alarm", "rule_state"), KeyError, r"the 'alarm' entry is not this alarm's state"),
        (("alarm",), None, r"the state has no alarm state but this monitor runs RobustZScore"),
        (("version",), 99, r"Monitor.load_state_dict takes what Monitor.state_dict\(\) returned \(version 1\)"),
    ],
)
def test_load_state_dict_refuses_junk_in_one_line_and_changes_nothing(path, value, message):
    model, x, y = _setup()
    donor = Monitor(model, (x, y), "classification", every=1, window=5, alarm="zscore")
    _run(donor, model, x, y, 9)
    state = copy.deepcopy(donor.state_dict())
    _mutate(state, path, value)
    mon = Monitor(model, (x, y), "classification", every=2, window=5, alarm="zscore")
    _run(mon, model, x, y, 4)
    before = copy.deepcopy(mon.state_dict())
    with pytest.raises(ProbekitUsageError, match=message) as info:
        mon.load_state_dict(state)
    assert "\n" not in str(info.value)
    assert _same(mon.state_dict(), before)


def test_load_state_dict_refuses_another_configuration_and_changes_nothing():
    model, x, y = _setup()
    donor = Monitor(model, (x, y), "classification", every=1, window=5, alarm="zscore")
    _run(donor, model, x, y, 9)
    cases = [
        (Monitor(model, (x[:20], y[:20]), "classification", window=5, alarm="zscore"),
         r"saved by a monitor with \{'n_probes': 24\} but this one has \{'n_probes': 20\}"),
        (Monitor(model, (x, y), "classification", window=6, alarm="zscore"),
         r"saved by a monitor with \{'window': 5\} but this one has \{'window': 6\}"),
        (Monitor(model, (x, y), "classification", window=5, alarm="running-min"),
         r"saved by a monitor with \{'alarm': \['zscore'"),
        (Monitor(model, (x, y), "classification", window=5, alarm="zscore", probe_ids=[str(i) for i in range(24)]),
         r"the state's probe_ids differ from this monitor's"),
    ]
    for mon, message in cases:
        before = copy.deepcopy(mon.state_dict())
        with pytest.raises(ProbekitUsageError, match=message):
            mon.load_state_dict(donor.state_dict())
        assert _same(mon.state_dict(), before)


def test_a_failed_alarm_load_leaves_the_window_alone():
    """The rdm part of a state is fine, its alarm part is not: nothing of it may be applied."""
    model, x, y = _setup()
    donor = Monitor(model, (x, y), "classification", every=1, window=5, alarm="zscore")
    _run(donor, model, x, y, 9)
    state = donor.state_dict()
    state["alarm"]["run"] = "two"
    mon = Monitor(model, (x, y), "classification", every=1, window=5, alarm="zscore")
    with pytest.raises(ProbekitUsageError, match=r"the 'alarm' entry is not this alarm's state"):
        mon.load_state_dict(state)
    assert mon.rdm.n_records == 0 and mon.counters["records"] == 0


# -- 4. ProbekitCallback: corrupt state files, atomic saves --------------------------------------------------


def _callback_setup(tmp_path):
    pytest.importorskip("transformers")
    from probekit.monitor import ProbekitCallback

    model, x, y = _setup()
    mon = Monitor(model, (x, y), "classification", every=1, window=3)
    _run(mon, model, x, y, 4)
    return ProbekitCallback(mon), mon


def test_callback_load_of_a_truncated_state_file_names_the_file(tmp_path):
    callback, mon = _callback_setup(tmp_path)
    path = tmp_path / "checkpoint-4" / "probekit_monitor.pt"
    path.parent.mkdir()
    torch.save(mon.state_dict(), path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ProbekitError, match=r"checkpoint-4/probekit_monitor\.pt is truncated or corrupt") as info:
        callback.load(path.parent)
    assert type(info.value).__name__ == "MonitorStateError" and "\n" not in str(info.value)
    path.write_bytes(b"")
    with pytest.raises(ProbekitError, match=r"probekit_monitor\.pt is truncated or corrupt"):
        callback.load(path.parent)
    torch.save({"weights": torch.zeros(3)}, path)  # a loadable file, but not a monitor state
    with pytest.raises(ProbekitUsageError, match=r"Monitor.load_state_dict takes what Monitor.state_dict\(\) returned"):
        callback.load(path.parent)


def test_callback_loads_a_state_saved_with_numpy_arrays(tmp_path):
    """Checkpoints written before the state became tensors (numpy arrays inside) still load."""
    callback, mon = _callback_setup(tmp_path)
    state = mon.state_dict()
    state["rdm"] = {k: (v.numpy() if isinstance(v, torch.Tensor) else v) for k, v in state["rdm"].items()}
    (tmp_path / "ck").mkdir()
    torch.save(state, tmp_path / "ck" / "probekit_monitor.pt")
    model, x, y = _setup()
    fresh = Monitor(model, (x, y), "classification", every=1, window=3)
    type(callback)(fresh).load(tmp_path / "ck")
    assert np.array_equal(fresh.rdm.window_records(), mon.rdm.window_records())


def test_callback_on_save_is_atomic(tmp_path, monkeypatch):
    from types import SimpleNamespace

    callback, mon = _callback_setup(tmp_path)
    args = SimpleNamespace(output_dir=str(tmp_path))
    state = SimpleNamespace(global_step=4, is_world_process_zero=True)
    callback.on_save(args, state, None)
    path = tmp_path / "checkpoint-4" / "probekit_monitor.pt"
    good = path.read_bytes()
    real_save = torch.save

    def dying_save(obj, f, *a, **k):  # half the file reaches the disk, then the process "dies"
        real_save(obj, f, *a, **k)
        with open(f, "rb+") as fh:
            fh.truncate(len(good) // 2)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(torch, "save", dying_save)
    with pytest.warns(MonitorWarning, match=r"could not save the monitor state"):
        callback.on_save(args, state, None)
    assert path.read_bytes() == good  # the previous complete file, untouched
    assert sorted(p.name for p in path.parent.iterdir()) == ["probekit_monitor.pt"]  # no temporary left


# -- 5. a missing tensorboard ---------------------------------------------------------------------------------


def test_tensorboard_sink_without_tensorboard_names_the_extra(tmp_path, monkeypatch):
    monkeypatch.delitem(sys.modules, "torch.utils.tensorboard", raising=False)
    monkeypatch.setitem(sys.modules, "tensorboard", None)  # `import tensorboard` now fails
    with pytest.raises(ProbekitError, match=r'TensorBoardSink needs tensorboard: pip install "probekit\[monitor\]"') as info:
        TensorBoardSink(tmp_path / "tb")
    assert isinstance(info.value, ImportError) and "\n" not in str(info.value)


# -- 6. dir() of the lazy modules ------------------------------------------------------------------------------


def test_dir_lists_the_lazy_public_names():
    assert set(probekit.monitor.__all__) <= set(dir(probekit.monitor))
    assert {"Monitor", "JSONLSink", "ProbekitCallback"} <= set(dir(probekit.monitor))
    assert set(probekit.__all__) <= set(dir(probekit))
    assert {"DynamicalRDM", "Monitor", "__version__"} <= set(dir(probekit))
