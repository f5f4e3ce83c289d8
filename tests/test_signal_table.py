"""The signal table: each 2RDM signal declared once, found through the registry, used by analyze, the Monitor and the bench.

Every value is checked against an independent dense computation: the n x n covariance
(np.cov) diagonalised with eigvalsh, and each signal's formula written again over its eigenvalues.
"""
from __future__ import annotations

import json
import re
import tomllib
from importlib import metadata
from pathlib import Path

import numpy as np
import pytest

from probekit.cli import main
from probekit.errors import ProbekitError, ProbekitUsageError
from probekit.eval.scoring.signals import PEER_SIGNALS, SCALAR_SIGNALS, SignalSpec, compute_signal
from probekit.rdm import DynamicalRDM, rdm_series
from probekit.rdm.analysis import analyze
from probekit.rdm.signal_table import Signal, get_signal, register_signal, signal_names, unregister_signal
from probekit.registry import BUILTIN_SIGNALS, SIGNALS

ROOT = Path(__file__).resolve().parents[1]

# A signal from outside probekit: this declaration, and its registration, are all it takes.
TOP2_SHARE = Signal("top2_share", lambda s: s.spectrum[:, :2].sum(axis=1) / s.trace,
                    "the two leading eigenvalues' share of the trace", log_axis=False)

# Each signal again, over the n eigenvalues of the dense C (descending).
DENSE = {
    "shc": lambda ev: ev.var(),
    "inv_pr": lambda ev: (ev**2).sum() / ev.sum() ** 2,
    "leading_share": lambda ev: ev[0] / ev.sum(),
    "trace": lambda ev: ev.sum(),
    "lambda_1": lambda ev: ev[0],
    "top2_share": lambda ev: ev[:2].sum() / ev.sum(),
}


def dense_series(name: str, x: np.ndarray, window: int) -> np.ndarray:
    """The signal at every record of x ([records, n]), NaN until the window is full."""
    out = np.full(len(x), np.nan)
    for i in range(window - 1, len(x)):
        c = np.atleast_2d(np.cov(x[i - window + 1 : i + 1], rowvar=False))
        out[i] = DENSE[name](np.linalg.eigvalsh(c)[::-1])
    return out


def planted(seed: int = 0, records: int = 80, probes: int = 12) -> np.ndarray:
    """Noise, then probes 0-5 move along two common directions from record 40."""
    rng = np.random.default_rng(seed)
    x = 1.0 + 0.01 * rng.normal(size=(records, probes))
    later = records - 40
    x[40:, :3] += 0.2 * rng.normal(size=(later, 1))
    x[40:, 3:6] += 0.1 * rng.normal(size=(later, 1))
    return x


@pytest.fixture
def top2_plugin(monkeypatch):
    """top2_share registered as a third-party package registers it: an entry point in ``probekit.signals``."""
    real = metadata.entry_points

    class EntryPoint:
        name, value = "top2_share", f"{__name__}:TOP2_SHARE"
        dist = type("Dist", (), {"name": "my-signals"})()

    def entry_points(**kwargs):
        found = list(real(**kwargs))
        return found + [EntryPoint()] if kwargs.get("group") == "probekit.signals" else found

    monkeypatch.setattr(metadata, "entry_points", entry_points)
    monkeypatch.setattr(SIGNALS, "_targets", None)  # discovered again, plugin included; restored afterwards
    monkeypatch.setattr(SIGNALS, "_loaded", {})


@pytest.fixture
def own_registry(monkeypatch):
    """Run-time registrations made in a test are undone afterwards."""
    monkeypatch.setattr(SIGNALS, "_targets", dict(SIGNALS._discover()))
    monkeypatch.setattr(SIGNALS, "_loaded", dict(SIGNALS._loaded))


def test_builtin_table_equals_pyproject_and_each_declaration_carries_its_name():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["entry-points"]["probekit.signals"] == BUILTIN_SIGNALS
    assert signal_names()[: len(BUILTIN_SIGNALS)] == ["shc", "inv_pr", "leading_share", "trace", "lambda_1"]
    for name in BUILTIN_SIGNALS:
        assert get_signal(name).name == name
        assert SIGNALS.describe(name) == get_signal(name).doc  # the doc line is the description
    assert "top2_share" not in signal_names()  # only registering it makes it a signal


@pytest.mark.parametrize("name", list(BUILTIN_SIGNALS))
def test_every_builtin_signal_equals_the_dense_computation_in_analyze_the_stream_and_the_bench(name):
    x, window = planted(), 10
    expected = dense_series(name, x, window)
    np.testing.assert_allclose(compute_signal(SignalSpec(name, window=window), x), expected, rtol=1e-9)
    np.testing.assert_allclose(analyze(x, window=window, signal=name).signal, expected, rtol=1e-9)
    rdm, streamed = DynamicalRDM(window), []  # the Monitor's path: one window at a time
    for row in x:
        rdm.update(row)
        stats = rdm.compute()
        streamed.append(np.nan if stats is None else get_signal(name).value(stats))
    np.testing.assert_allclose(streamed, expected, rtol=1e-9)


def test_a_new_signal_reaches_analyze_through_the_cli(top2_plugin, tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["analyze", "--help"])
    assert "  top2_share      the two leading eigenvalues' share of the trace" in capsys.readouterr().out
    x = planted()
    np.save(tmp_path / "x.npy", x)
    out = tmp_path / "out"
    assert main(["analyze", str(tmp_path / "x.npy"), "--signal", "top2_share", "--window", "10",
                 "--alarm-param", "ratio=1.5", "--out-dir", str(out)]) == 0
    assert "alarm rule running-min" in capsys.readouterr().out
    summary = json.loads((out / "summary.json").read_text())
    assert summary["signal"] == "top2_share" and summary["alarms"]
    expected = dense_series("top2_share", x, 10)
    for alarm in summary["alarms"]:
        assert alarm["record"] >= 40 and alarm["signal"] == pytest.approx(expected[alarm["record"]], rel=1e-9)
    assert (out / "analyze.png").is_file()


def test_a_new_signal_reaches_the_monitor(top2_plugin, one_torch_thread):
    torch = pytest.importorskip("torch")
    from probekit.alarms import make_rule
    from probekit.monitor import Monitor

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3))
    inputs, targets = torch.randn(24, 4), torch.randint(0, 3, (24,))
    given, records = [], []

    def loss_fn(model, batch):  # keeps what it hands the monitor
        out = torch.nn.functional.cross_entropy(model(batch[0]), batch[1], reduction="none")
        given.append(out.double().numpy().copy())
        return out

    sink = type("ListSink", (), {"write": lambda self, record: records.append(record)})()
    mon = Monitor(model, (inputs, targets), loss_fn, every=1, window=6, signal="top2_share", sinks=[sink])
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    for step in range(30):
        mon.step(step)
        loss = torch.nn.functional.cross_entropy(model(inputs), targets)
        opt.zero_grad()
        loss.backward()
        opt.step()
    expected = dense_series("top2_share", np.array(given), 6)
    assert [r.signal for r in records] == ["top2_share"] * 30
    np.testing.assert_allclose([r.signal_value for r in records], expected, rtol=1e-9)
    # and the alarm watched it: its scores are the rule's on the dense series
    np.testing.assert_allclose([r.score for r in records], make_rule("running-min").scores(expected), rtol=1e-9)
    for name in signal_names():  # every registered signal is accepted
        assert Monitor(model, (inputs, targets), loss_fn, window=6, signal=name).signal == name


def test_a_new_signal_reaches_the_bench(top2_plugin):
    from probekit.eval.scoring.design_score import trajectory_signal

    x = planted()
    np.testing.assert_allclose(compute_signal(SignalSpec("top2_share", window=10), x),
                               dense_series("top2_share", x, 10), rtol=1e-9)

    class Trajectory:  # what the bench reads of a stored trajectory
        losses, steps, baselines = x, np.arange(len(x)) * 10, {}

        def probe_losses(self, probes):
            return x[:, probes]

    signal, steps = trajectory_signal(Trajectory(), np.arange(6), SignalSpec("top2_share", window=5, stride=2))
    np.testing.assert_array_equal(steps, np.arange(0, len(x), 2) * 10)
    np.testing.assert_allclose(signal, dense_series("top2_share", x[::2, :6], 5), rtol=1e-9)


def test_register_at_run_time(own_registry):
    register_signal(TOP2_SHARE)
    assert get_signal("top2_share") is TOP2_SHARE and signal_names()[-1] == "top2_share"
    x = planted()
    np.testing.assert_allclose(analyze(x, window=10, signal="top2_share").signal,
                               dense_series("top2_share", x, 10), rtol=1e-9)
    with pytest.raises(ProbekitUsageError, match=r"The signal 'top2_share' is already registered"):
        register_signal(TOP2_SHARE)
    unregister_signal("top2_share")
    with pytest.raises(ProbekitUsageError, match=r"The 'signal' parameter of analyze must be one of 'shc', .*"
                                                 r"Got 'top2_share' instead\."):
        analyze(x, window=10, signal="top2_share")


def test_a_name_is_a_2rdm_signal_or_a_bench_scalar_never_both(own_registry):
    assert not set(BUILTIN_SIGNALS) & set(SCALAR_SIGNALS + PEER_SIGNALS)
    register_signal(Signal("mean_drop", lambda s: s.trace, "a clash"))
    with pytest.raises(ProbekitError, match=r"the 2RDM signal 'mean_drop' is registered under the name of the "
                                            r"bench's scalar baseline 'mean_drop'"):
        SignalSpec("shc").check()
    unregister_signal("mean_drop")
    register_signal(Signal("llc", lambda s: s.trace, "a clash"))
    with pytest.raises(ProbekitError, match=r"the bench's peer signal 'llc'"):
        compute_signal(SignalSpec("shc"), planted())


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"name": "top-2"}, r"A signal name must be letters, digits and '_' \(not first\)\. Got 'top-2' instead\."),
        ({"name": "_x"}, r"A signal name must be .* Got '_x' instead\."),
        ({"compute": 3}, r"The compute of signal 'x' must be callable\. Got 3 instead\."),
        ({"doc": "two\nlines"}, r"The doc of signal 'x' must be one non-empty line\. Got 'two\\nlines' instead\."),
        ({"doc": " "}, r"The doc of signal 'x' must be one non-empty line"),
        ({"log_axis": "yes"}, r"The log_axis of signal 'x' must be a bool\. Got 'yes' instead\."),
    ],
)
def test_a_bad_declaration_is_refused(kwargs, match):
    args = {"name": "x", "compute": lambda s: s.trace, "doc": "a doc line", **kwargs}
    with pytest.raises(ProbekitUsageError, match=match):
        Signal(**args)


def test_lookup_errors(own_registry):
    with pytest.raises(ProbekitUsageError, match=r"^Unknown signal 'shcc'\. Did you mean: shc\? Available: inv_pr, "):
        get_signal("shcc")
    SIGNALS.register("not_a_signal", "json:dumps")
    with pytest.raises(ProbekitError, match=r"the signal 'not_a_signal' must be registered as a Signal named "
                                            r"'not_a_signal'\. Got function instead\."):
        get_signal("not_a_signal")
    SIGNALS.register("renamed", TOP2_SHARE)
    with pytest.raises(ProbekitError, match=r"Got one named 'top2_share' instead\."):
        get_signal("renamed")
    with pytest.raises(ProbekitUsageError, match=r"Registering a signal needs a Signal\. Got str instead\."):
        register_signal("top2_share")
    register_signal(Signal("scalar_out", lambda s: 1.0, "one number for the whole batch"))
    with pytest.raises(ProbekitError, match=r"the signal 'scalar_out' must give one value per window, shape \(80,\)\. "
                                            r"Got shape \(\)\."):
        analyze(planted(), window=10, signal="scalar_out")


def test_detrend_modes_are_declared_once():
    from probekit.rdm.spectral import DETREND_MODES, MIN_WINDOW

    assert DETREND_MODES == ("none", "linear", "diff") and MIN_WINDOW == {"none": 2, "linear": 3, "diff": 3}
    with pytest.raises(ProbekitUsageError, match=r"'detrend' field of SignalSpec must be one of none, linear, diff\."):
        SignalSpec(detrend="cubic").check()
    with pytest.raises(ProbekitUsageError, match=r"'detrend' parameter of rdm_series must be one of 'none', 'linear', "
                                                 r"'diff'\."):
        analyze(planted(), window=10, detrend="cubic")


def test_the_documents_show_the_table():
    contributing = (ROOT / "CONTRIBUTING.md").read_text()
    code = next(b for b in re.findall(r"```python\n(.*?)```", contributing, re.S) if "TOP2_SHARE = Signal(" in b)
    namespace: dict = {}
    exec(compile(code, "CONTRIBUTING.md", "exec"), namespace)
    documented = namespace["TOP2_SHARE"]
    assert (documented.name, documented.doc, documented.log_axis) == ("top2_share", TOP2_SHARE.doc, False)
    x = planted()
    np.testing.assert_allclose(documented.values(rdm_series(x, 10)), dense_series("top2_share", x, 10), rtol=1e-9)
    readme = (ROOT / "README.md").read_text()
    listed = readme[readme.index("The alarm reads one signal"):].split("\n\n")[0]
    assert all(f"`{name}`" in listed for name in BUILTIN_SIGNALS)
