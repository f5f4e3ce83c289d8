"""Readable modes (probekit.rdm.modes): over-representation, probe descriptions, and analyze's use of them."""
from __future__ import annotations

import math

import numpy as np
import pytest

from probekit.errors import ProbekitUsageError
from probekit.rdm.analysis import analyze
from probekit.rdm.modes import (
    PROBE_SET, ProbeDescriptions, describe_probes, excerpt, over_represented,
)

N_PROBES, N_RARE = 200, 5


def rare_comove_matrix(seed: int = 0, records: int = 80, onset: int = 50) -> np.ndarray:
    """Independent noise on all 200 probes; from ``onset`` on, only probes 0-4 (topic 'rare') drift, together."""
    rng = np.random.default_rng(seed)
    x = 1.0 + 1e-3 * rng.normal(size=(records, N_PROBES))
    ramp = np.clip(np.arange(records) - onset, 0, None) * 0.05
    x[:, :N_RARE] += ramp[:, None] * np.array([1.0, 0.9, 0.8, 0.7, 0.6])
    return x


def rare_labels() -> list[str]:
    return ["rare"] * N_RARE + [("sports", "music", "cooking")[i % 3] for i in range(N_PROBES - N_RARE)]


def test_only_the_rare_slice_comoves_so_the_top_5_are_all_rare():
    ids = [f"p{i:03d}" for i in range(N_PROBES)]
    texts = [f"a sentence about topic {t}   with\nwhitespace" for t in rare_labels()]
    d = ProbeDescriptions.build(ids, texts, {"topic": rare_labels()})
    result = analyze(rare_comove_matrix(), window=16, n_top=5, descriptions=d)
    assert result.focus_is_alarm
    mode = result.mode
    assert sorted(p.probe for p in mode.probes) == ids[:N_RARE]
    assert [p.labels["topic"] for p in mode.probes] == ["rare"] * 5
    assert mode.probes[0].text == "a sentence about topic rare with whitespace"  # one line, collapsed
    (excess,) = mode.over_represented  # the other topics have no probe in the top 5: not listed
    expected_p = 1 / math.comb(N_PROBES, N_RARE)  # all 5 rare probes in 5 draws from 200
    assert (excess.field, excess.value, excess.in_top, excess.top, excess.in_set, excess.n_probes) == (
        "topic", "rare", 5, 5, 5, 200)
    assert excess.expected == pytest.approx(5 * 5 / 200)
    assert excess.ratio == pytest.approx(5 / (5 * 5 / 200))
    assert excess.p_value == pytest.approx(expected_p, rel=1e-12)
    assert excess.sentence().startswith("5 of the top 5 probes are topic=rare, 2.5% of the probes (5 of 200;")
    focus = result.summary()["focus"]
    assert focus["over_represented"][0]["text"] == excess.sentence()
    assert focus["top_probes"][0]["slices"] == {"topic": "rare"}
    assert any("5 of the top 5 probes are topic=rare" in line for line in mode.lines())


def test_over_representation_counts_shares_ratios_and_the_hypergeometric_tail():
    # 20 probes: A x10, B x5, C x4, one unlabelled; second field: x for probes 0-1, y for the rest
    letters = ["A"] * 10 + ["B"] * 5 + ["C"] * 4 + [None]
    parity = ["x", "x"] + ["y"] * 18
    top = [0, 10, 11, 15, 1]  # A, B, B, C, A (probe 1 is also 'x')
    got = over_represented(top, {"letter": letters, "half": parity}, 20)
    # expected counts k N / n with k = 5, n = 20: A 2.5 (got 2: not over), B 1.25 (got 2), C 1.0 (got 1: not
    # strictly over), x 0.5 (got 2), y 4.5 (got 3: not over); by ratio: x 4.0, then B 1.6
    assert [(e.field, e.value, e.in_top, e.in_set) for e in got] == [("half", "x", 2, 2), ("letter", "B", 2, 5)]
    assert [e.ratio for e in got] == pytest.approx([2 / 0.5, 2 / 1.25])
    for e in got:
        # P(X >= c), counted exactly: ways to draw x >= c labelled of the 5 over all ways to draw 5 of 20
        expected = sum(math.comb(e.in_set, x) * math.comb(20 - e.in_set, 5 - x)
                       for x in range(e.in_top, min(5, e.in_set) + 1)) / math.comb(20, 5)
        assert e.p_value == pytest.approx(expected, rel=1e-10)
    assert got[1].sentence().startswith("2 of the top 5 probes are letter=B, 25% of the probes (5 of 20;")
    assert over_represented([], {"letter": letters}, 20) == []


def test_probe_set_slices_read_as_slice_labels_and_unlabelled_probes_are_no_label():
    labels = ["rare=astronomy", "rare=astronomy", None, None, "background", "background"]
    d = ProbeDescriptions.build([f"p{i}" for i in range(6)], labels=labels)
    assert set(d.labels) == {PROBE_SET}
    (e,) = over_represented([0, 1], d.labels, 6)
    assert e.label == "slice 'rare=astronomy'" and e.in_top == 2 and e.in_set == 2
    assert e.sentence().startswith("2 of the top 2 probes are in slice 'rare=astronomy', 33% of the probes (2 of 6;")


def test_descriptions_are_checked():
    with pytest.raises(ProbekitUsageError, match=r"probe_texts must hold one text per probe \(3\)\. Got 2 instead"):
        ProbeDescriptions.build(["a", "b", "c"], texts=["x", "y"])
    with pytest.raises(ProbekitUsageError, match=r"probe_labels 'topic' must hold one label per probe \(3\)\. Got 1"):
        ProbeDescriptions.build(["a", "b", "c"], labels={"topic": ["x"]})
    with pytest.raises(ProbekitUsageError, match=r"analyze got 3 probe descriptions for 200 probes"):
        analyze(rare_comove_matrix(), window=16, descriptions=ProbeDescriptions.build(["a", "b", "c"]))


def test_excerpt_is_one_short_line():
    assert excerpt("a  b\n\tc") == "a b c"
    long = excerpt("word " * 100, 30)
    assert len(long) <= 30 and long.endswith("...")
    assert excerpt(0.123456789) == "0.1235"


def test_describe_probes_from_a_pool_text_column_slice_fields_and_a_probe_set(text_pool):
    from probekit.pool import Pool
    from probekit.probeset import ProbeSet, Provenance

    pool = Pool.from_file(text_pool, id_field="uid")
    whole = describe_probes(pool, slice_fields=["topic"])
    assert whole.ids == tuple(pool.ids.tolist())
    assert whole.texts[0] == pool.column("prompt")[0]  # the obvious text column, as it is (short)
    assert whole.labels == {"topic": tuple(pool.column("topic").tolist())}
    fields = describe_probes(pool, ["u003", "u001"], describe_fields=["topic", "label"], slice_fields=[])
    assert fields.texts == ("topic=sports label=1", "topic=cooking label=1") and fields.labels == {}
    ps = ProbeSet(("u003", "u001"), pool.index_of(["u003", "u001"]), ("b", "a"), provenance=Provenance("manual"))
    with_set = describe_probes(pool, ps, slice_fields=["topic"])
    assert with_set.labels == {PROBE_SET: ("b", "a"), "topic": ("sports", "cooking")}
    with pytest.raises(ProbekitUsageError, match=r"--slice-field 'nope' is not a column of the pool; columns: uid"):
        describe_probes(pool, slice_fields=["nope"])
