"""The bench's designs: every strategy is one, a family's concerns and pilot span shape them.

- the default grids score every built-in strategy (random, cluster, gradient, concern, response,
  mixture), the quick grid included, and any registered one by name;
- a design whose strategy takes ``slices`` and leaves them unset stands, on each family, for one
  design per concern the family declares (``concern[rare]``); labels are file-name safe, and the
  grid's key and cell names are deterministic;
- ``response`` reads the first ``pilot`` records only (what exists at selection time), and carries
  ``pilot`` so that the scoring can ignore them;
- every built-in family declares at least one concern, which names examples of its pool.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import re

import numpy as np
import pytest

from probekit.errors import ProbekitUsageError
from probekit.eval.bench.designs import Design, parse_design
from probekit.eval.bench.grid import DESIGNS, FULL, QUICK, BenchGrid
from probekit.eval.families.base import PILOT_COLUMN
from probekit.registry import BUILTIN_TRANSITIONS, SELECTORS, TRANSITIONS

BUILTIN_FAMILIES = sorted(n for n in BUILTIN_TRANSITIONS if TRANSITIONS.load(n).kind == "transition")
FILE_SAFE = re.compile(r"[\w.,=()\[\]:+-]+")


# -- every strategy is a design -------------------------------------------------------------------
def test_the_default_grids_score_every_builtin_strategy():
    builtin = {"random", "cluster", "gradient", "concern", "response", "mixture"}
    assert builtin <= set(SELECTORS.names())
    assert {d.strategy for d in DESIGNS} == builtin
    assert FULL.designs == DESIGNS
    assert "concern" in {d.strategy for d in QUICK.designs}
    mixture = next(d for d in DESIGNS if d.strategy == "mixture")
    assert dict(mixture.params)["components"] == "cluster:0.75,concern:0.25"  # the bench's default mixture


def test_parse_design_takes_a_pilot_beside_the_selector_parameters():
    design = parse_design("response:pilot=12,n_clusters=8")
    assert (design.strategy, design.params, design.pilot) == ("response", (("n_clusters", 8),), 12)
    assert design.label == "response(n_clusters=8,pilot=12)"
    assert parse_design("response:pilot=5").label == "response(pilot=5)"
    with pytest.raises(ProbekitUsageError, match=r"^The pilot of design 'response\(pilot=-1\)' must be an int >= 0"):
        parse_design("response:pilot=-1")


# -- what a family makes of a design ------------------------------------------------------------
class _Family:
    """A stand-in for a ReferenceRun class: what Design.for_family reads."""

    name = "toy"
    concerns = {"rare": ["rare=true"], "bias-a": ["bias:group,label"]}
    pilot_records = {"small": 7}


def test_a_concern_design_stands_for_one_design_per_concern():
    made = Design("concern").for_family(_Family, "small")
    assert [d.label for d in made] == ["concern[rare]", "concern[bias-a]"]
    assert [dict(d.params)["slices"] for d in made] == [("rare=true",), ("bias:group,label",)]
    assert all(d.pilot == 0 and FILE_SAFE.fullmatch(d.label) for d in made)
    mixture = Design("mixture", (("components", "cluster:0.75,concern:0.25"),), name="mixture")
    assert [d.label for d in mixture.for_family(_Family, "small")] == ["mixture[rare]", "mixture[bias-a]"]
    # a design that names its slices, a strategy that takes none, and a mixture without a concern part
    # stand for themselves
    plain = Design("mixture", (("components", "cluster:0.75,random:0.25"),))
    assert plain.for_family(_Family, "small") == (plain,)
    assert Design("mixture").for_family(_Family, "small") == (Design("mixture"),)  # its default: cluster + random
    own = Design("concern", (("slices", ("label=1",)),), name="mine")
    assert own.for_family(_Family, "small") == (own,)
    assert Design("random").for_family(_Family, "small") == (Design("random"),)
    # a family without concerns has no concern design
    assert Design("concern").for_family(type("Bare", (), {"name": "bare"}), "small") == ()


def test_a_concern_needs_a_file_safe_name_and_a_spec():
    bad = type("Bad", (), {"name": "bad", "concerns": {"rare class": ["rare=true"]}})
    with pytest.raises(ProbekitUsageError, match=r"^The concerns of reference run 'bad' need names of letters, "
                                                 r"digits, '_' and '-'\. Got 'rare class' instead\.$"):
        Design("concern").for_family(bad, "small")
    empty = type("Empty", (), {"name": "empty", "concerns": {"rare": []}})
    with pytest.raises(ProbekitUsageError, match=r"^Concern 'rare' of reference run 'empty' names no slice spec\.$"):
        Design("concern").for_family(empty, "small")


def test_a_pilot_design_gets_the_family_pilot_span_unless_it_has_its_own():
    (made,) = Design("response").for_family(_Family, "small")
    assert (made.label, made.pilot) == ("response", 7)
    own = Design("response", pilot=3)
    assert own.for_family(_Family, "small") == (own,)
    with_file = Design("response", (("losses_file", "pilot.npz"),))
    assert with_file.for_family(_Family, "small") == (with_file,)  # its pilot comes from elsewhere
    with pytest.raises(ProbekitUsageError, match=r"^Design 'response' reads a pilot run, but reference run 'toy' "
                                                 r"declares no pilot span for preset 'default'"):
        Design("response").for_family(_Family, "default")


def test_a_mixture_with_a_response_part_gets_the_pilot_span_and_one_without_does_not():
    part = Design("mixture", (("components", "response:0.5,random:0.5"),))
    (made,) = part.for_family(_Family, "small")
    assert made.pilot == 7 and made.label == "mixture(components=response:0.5,random:0.5)"  # as response's
    plain = Design("mixture", (("components", "cluster:0.5,random:0.5"),))
    assert plain.for_family(_Family, "default") == (plain,)  # no pilot needed, none asked for
    own_column = Design("mixture", (("components", '[{"strategy": "response", "params": '
                                                   '{"trajectory_field": "mine"}}]'),))
    assert not own_column.needs_pilot()


def test_a_mixture_with_a_response_part_selects_from_the_pilot_records_only(pool):
    from probekit.eval.families.deep_linear import DeepLinear

    rng = np.random.default_rng(0)
    losses = rng.gamma(2.0, size=(50, len(pool))).astype(np.float32)
    design = Design("mixture", (("components", "response:0.5,random:0.5"),), pilot=10)
    run = DeepLinear()
    first = design.ranking(run, _Trajectory(pool, losses), 40)
    later = losses.copy()
    later[10:] = rng.gamma(2.0, size=later[10:].shape)
    assert design.ranking(run, _Trajectory(pool, later), 40) == first
    earlier = losses.copy()
    earlier[:10] = rng.gamma(2.0, size=earlier[:10].shape)
    assert design.ranking(run, _Trajectory(pool, earlier), 40) != first


def test_the_grid_expands_designs_per_family_with_deterministic_labels_keys_and_cells():
    grid = BenchGrid(families=("rare-drift", "late-bias"), designs=DESIGNS)
    grid.check()
    labels = {fam: [d.label for d in grid.designs_for(fam)] for fam in grid.families}
    assert labels["rare-drift"] == ["random", "cluster", "gradient", "concern[rare]", "response", "mixture[rare]"]
    assert labels["late-bias"] == ["random", "cluster", "gradient", "concern[slice]", "concern[protected]",
                                   "response", "mixture[slice]", "mixture[protected]"]
    cells = grid.cells()
    again = BenchGrid(families=("rare-drift", "late-bias"), designs=tuple(dataclasses.replace(d) for d in DESIGNS))
    assert again.key() == grid.key() and again.cells() == cells
    assert [c["design"] for c in cells if c["family"] == "rare-drift" and c["design"] != "scalar"] == \
        labels["rare-drift"]
    assert all(FILE_SAFE.fullmatch(c["design"]) for c in cells)
    assert grid.design("response", "late-bias").pilot == TRANSITIONS.load("late-bias").pilot_records["small"]
    assert grid.design("concern[rare]") == grid.design("concern[rare]", "rare-drift")
    with pytest.raises(ProbekitUsageError, match=r"^Design 'response' differs by family; name the family"):
        grid.design("response")
    with pytest.raises(ProbekitUsageError, match=r"^Design 'concern\[rare\]' is not a design of the grid there "
                                                 r"\(family 'late-bias'\)\.$"):
        grid.design("concern[rare]", "late-bias")


def test_the_key_covers_the_concerns_and_keeps_grids_without_expansion_as_they_were(monkeypatch):
    plain = BenchGrid(families=("deep-linear",), designs=("random", "cluster"))
    fields = {k: v for k, v in dataclasses.asdict(plain).items() if k not in ("peers", "null_seeds", "trajectories")}
    for d in fields["designs"]:
        del d["pilot"]  # the key of a grid before designs had pilots
    expected = hashlib.sha256(json.dumps(fields, sort_keys=True, default=str).encode()).hexdigest()[:16]
    assert plain.key() == expected
    grid = BenchGrid(families=("rare-drift",), designs=("random", "concern"))
    before = grid.key()
    concerns = {"rare": ["rare=true"], "drifting": ["drifting=true"]}
    monkeypatch.setattr(TRANSITIONS.load("rare-drift"), "concerns", concerns)
    assert grid.key() != before and [d.label for d in grid.designs_for("rare-drift")] == \
        ["random", "concern[rare]", "concern[drifting]"]


# -- the pilot: only the records that exist at selection time ---------------------------------------
class _Trajectory:
    """What Design.ranking reads of a trajectory: pool, losses, seed, name."""

    def __init__(self, pool, losses):
        self.pool, self.losses, self.seed, self.name = pool, losses, 0, "toy"


def test_response_selects_from_the_pilot_records_only(pool):
    from probekit.eval.families.deep_linear import DeepLinear

    rng = np.random.default_rng(0)
    losses = rng.gamma(2.0, size=(50, len(pool))).astype(np.float32)  # [records, pool]
    design = Design("response", (("n_clusters", 6),), pilot=10)
    run = DeepLinear()
    first = design.ranking(run, _Trajectory(pool, losses), 40)
    later = losses.copy()
    later[10:] = rng.gamma(2.0, size=later[10:].shape)  # what happens after the pilot changes nothing
    assert design.ranking(run, _Trajectory(pool, later), 40) == first
    earlier = losses.copy()
    earlier[:10] = rng.gamma(2.0, size=earlier[:10].shape)
    assert design.ranking(run, _Trajectory(pool, earlier), 40) != first
    context = run.design_context(_Trajectory(pool, losses), pilot=10)
    assert context["trajectory_field"]() == PILOT_COLUMN
    np.testing.assert_array_equal(np.asarray(context[PILOT_COLUMN]()), losses[:10].T.astype(np.float64))
    assert PILOT_COLUMN not in run.design_context(_Trajectory(pool, losses))
    with pytest.raises(ProbekitUsageError, match=r"^The pilot span of 'deep-linear' must be 1 to 49 records\. "
                                                 r"Got 50 instead\.$"):
        run.design_context(_Trajectory(pool, losses), pilot=50)


# -- every built-in family's concerns and pilot span --------------------------------------------------
@pytest.mark.parametrize("family", BUILTIN_FAMILIES)
def test_every_family_declares_concerns_that_name_examples_of_its_pool(family, trajectory_cache, one_torch_thread):
    from probekit.eval.store.runner import load_or_record

    cls = TRANSITIONS.load(family)
    assert cls.concerns and all(re.fullmatch(r"[A-Za-z0-9_-]+", name) for name in cls.concerns)
    assert set(cls.pilot_records) == {"default", "small"}
    # checkpoint_every=10: the stride tests/test_transitions_families.py asks for, so it reuses this run
    traj = load_or_record(family, "small", 0, cache_dir=trajectory_cache, progress=False, checkpoint_every=10)
    run = cls()
    onset = min(int(np.searchsorted(traj.steps, t.onset_step)) for t in traj.transitions)
    assert cls.pilot_records["small"] + 16 <= onset  # a window of quiet records after the pilot, before onset
    grid = BenchGrid(families=(family,), designs=DESIGNS)
    for design in grid.designs_for(family):
        if design.strategy != "concern":
            continue
        selected = design.selector(run, traj).select(traj.pool, 8, seed=0)
        assert "background" not in selected.slices, (design.label, selected.slices)  # the slice has >= 8 examples


def test_the_full_grid_has_enough_runs_for_its_rates_and_tests():
    # >= 10 episodes and >= 40 quiet units per family, and a design better than random on every seed
    # must survive Holm over all of its family's paired comparisons (10 seeds could not: 2/2^10 > 0.05/60).
    from probekit.eval.bench.grid import FULL

    grid = FULL.with_families()
    for fam in grid.families:
        run = TRANSITIONS.load(fam)()
        transitions = len(run.order_parameters(run.make_config("default", 0)))
        episodes = transitions * len(grid.seeds)
        quiet = len(grid.control_seeds) + episodes  # null runs + the episodes' quiet periods
        comparisons = (len(grid.designs_for(fam)) - 1) * len(grid.sizes) * 2  # vs random, each size, two scores
        assert episodes >= 10 and quiet >= 40, fam
        assert 2 / 2 ** len(grid.seeds) <= 0.05 / comparisons, (fam, comparisons)
