"""Every registered reference run meets the contract; its small config records, caches,
reloads identically and shows its planted transition (or, for a null control, none)."""
from __future__ import annotations

import dataclasses
import inspect
import tomllib
from pathlib import Path

import numpy as np
import pytest

from probekit.eval.families.base import ReferenceRun
from probekit.eval.store.runner import load_or_record, record
from probekit.eval.store.suite import SuiteRow, problems
from probekit.registry import BUILTIN_TRANSITIONS, TRANSITIONS

ROOT = Path(__file__).resolve().parents[1]
NAMES = TRANSITIONS.names()  # every registered run, built-in or not, meets the contract
FAMILIES = [n for n in NAMES if TRANSITIONS.load(n).kind == "transition"]
BUILTIN_FAMILIES = {"deep-linear", "grokking", "induction-heads", "late-bias", "misalignment", "rare-drift"}
SMALL_QUIET_RECORDS = 20  # the small configs' room before onset (the default configs': 60, suite.py)


def test_builtin_table_equals_pyproject_entry_points():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["entry-points"]["probekit.transitions"] == BUILTIN_TRANSITIONS
    assert set(BUILTIN_TRANSITIONS) <= set(NAMES)


def test_every_registered_family_has_a_null_control():
    controls = {TRANSITIONS.load(n).control_of for n in NAMES if TRANSITIONS.load(n).kind == "null"}
    assert controls == set(FAMILIES)
    builtin = {n for n in BUILTIN_TRANSITIONS if TRANSITIONS.load(n).kind == "transition"}
    assert builtin == BUILTIN_FAMILIES and len(BUILTIN_TRANSITIONS) == 2 * len(BUILTIN_FAMILIES)


@pytest.mark.parametrize("name", NAMES)
def test_contract(name):
    cls = TRANSITIONS.load(name)
    assert issubclass(cls, ReferenceRun) and not inspect.isabstract(cls) and cls.name == name
    assert cls.kind in ("transition", "null") and cls.transition_order in ("first", "second", "none")
    assert (cls.kind == "null") == (cls.control_of is not None) == (cls.transition_order == "none")
    if cls.control_of is not None:
        assert cls.control_of in NAMES
    assert cls.summary and "\n" not in cls.summary and cls.paper
    assert "small" in cls.preset_names() and dataclasses.is_dataclass(cls.config_class)
    fields = {f.name: f for f in dataclasses.fields(cls.config_class)}
    assert "seed" in fields and "early_step" in fields
    assert all(f.default is not dataclasses.MISSING for f in fields.values()), "every field needs a default"
    record = inspect.signature(cls.record).parameters  # the schedule is an argument, never set on the run
    assert "checkpoint_every" in record and record["checkpoint_every"].default == 0
    strides = cls.llc_checkpoint_every  # the LLC peer's declarations (a null inherits its family's)
    assert set(strides) <= set(cls.preset_names()) and all(isinstance(k, int) and k > 0 for k in strides.values())
    assert cls.llc_lr is None or cls.llc_lr > 0
    if name in BUILTIN_TRANSITIONS:
        assert set(strides) == {"default", "small"} and cls.llc_lr == 1e-2
    module_doc = inspect.getmodule(cls).__doc__ or ""
    for topic in ("order parameter", "onset", "null"):  # the family's documentation (issue 4, section 3)
        assert topic in module_doc.lower(), f"{name}: module docstring does not describe the {topic}"


@pytest.mark.parametrize("name", NAMES)
def test_small_config_records_caches_reloads_and_finds_its_transition(name, trajectory_cache, one_torch_thread):
    run = TRANSITIONS.load(name)()
    config = run.make_config("small", 0)
    expected, _ = record(run, config, progress=False)  # in memory, never written
    # a second, independent run, keeping the model at every 10th record too: the same losses
    traj = load_or_record(name, "small", 0, cache_dir=trajectory_cache, progress=False, checkpoint_every=10)
    np.testing.assert_array_equal(traj.losses, expected.losses)  # deterministic, and stored losslessly
    np.testing.assert_array_equal(traj.steps, expected.steps)
    for key, series in expected.order_parameters.items():
        np.testing.assert_array_equal(traj.order_parameters[key], series)
    assert set(traj.baselines) >= {"train_loss", "grad_norm"}
    assert list(traj.pool.ids) == [str(i) for i in expected.pool["probe_id"]]
    assert set(traj.checkpoints) >= {"init", "early"}
    assert traj.checkpoints["init"] == 0 < traj.checkpoints["early"]
    kept = traj.record_checkpoints()
    assert sorted(kept) == list(range(0, len(traj.steps), 10))
    assert all(traj.checkpoints[c] == traj.steps[r] for r, c in kept.items())

    row = SuiteRow.from_trajectory(traj, run.kind)
    assert not problems(row, quiet_records=SMALL_QUIET_RECORDS, quiet_fraction=0.05, budget_seconds=60)
    if run.kind == "transition":
        assert traj.transitions and all(t.happened for t in traj.transitions)
        assert min(t.onset_step for t in traj.transitions) > traj.checkpoints["early"]
    else:
        assert traj.transitions and not any(t.happened for t in traj.transitions)

    # the checkpoint serves a gradient selector: the model the run rebuilds takes the pool's
    # `input` column and its loss the `target` column
    from probekit.selectors.gradient import GradientSelector

    probes = GradientSelector(model=traj.model("init"), input_field="input", target_field="target",
                              loss=run.loss, sketch_dim=32).select(traj.pool, 16, seed=0)
    assert len(set(probes.ids)) == 16

    written = (traj.path / "losses.npy").stat().st_mtime_ns
    reloaded = load_or_record(name, "small", 0, cache_dir=trajectory_cache, progress=False)
    assert reloaded.path == traj.path and (reloaded.path / "losses.npy").stat().st_mtime_ns == written
