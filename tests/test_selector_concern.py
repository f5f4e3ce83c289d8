"""Concern-targeted selection: bias balance and pairs, rare oversampling, FLMI, budget shares."""
from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest

from probekit.errors import ProbekitUsageError, ProbekitWarning
from probekit.pool import Pool
from probekit.pool.builtin import toy_text_pool
from probekit.selectors.concern import ConcernSelector
from probekit.testing import CHECKS


@pytest.fixture(scope="module")
def toy():
    return toy_text_pool()  # 2000 examples, 1000 counterfactual pairs, astronomy ~2%


@pytest.mark.parametrize("check", CHECKS, ids=lambda c: c.__name__.removeprefix("check_"))
def test_conformance_with_query_clusters_and_background(check, pool):
    check(ConcernSelector(slices=["query:topic=astronomy", "rare:clusters,k=4", "ids:toy-00003a,toy-00007b",
                                  {"name": "pos", "where": {"label": 1}}], budget=[2, 1, 1, 1],
                          background=0.2, similarity="rbf"), pool)


def share_errors(labels, shares):
    """The largest |count - share * k| over prefixes k, per slice (labels cut to their slice name)."""
    counts, worst = Counter(), dict.fromkeys(shares, 0.0)
    for k, label in enumerate(labels, 1):
        counts[label] += 1
        for name, share in shares.items():
            worst[name] = max(worst[name], abs(counts[name] - share * k))
    return worst


# -- bias -------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_bias_strata_balanced_and_pairs_kept_together(toy, seed):
    n = 401  # odd: the last probe may be the first half of a pair
    ps = ConcernSelector.example().select(toy, n, seed=seed)
    group, label, pair = (toy.column(c) for c in ("group", "label", "pair_id"))
    idx, slices = np.asarray(ps.indices), list(ps.slices)
    bias_pos = [i for i, s in enumerate(slices) if s == "bias"]
    assert len(bias_pos) >= 190
    counts = Counter()
    for i in bias_pos:  # every prefix of the bias slice: strata within 1 of each other
        counts[(group[idx[i]], label[idx[i]])] += 1
        values = [counts[(g, lab)] for g in "AB" for lab in (0, 1)]
        assert max(values) - min(values) <= 1, (i, counts)
    rows_of_pair = {}
    for r, p in enumerate(pair):
        rows_of_pair.setdefault(p, []).append(r)
    for i in bias_pos:
        partner = [r for r in rows_of_pair[pair[idx[i]]] if r != idx[i]]
        assert len(partner) == 1 and group[partner[0]] != group[idx[i]]
        neighbours = {int(idx[j]) for j in (i - 1, i + 1) if 0 <= j < n and slices[j] == "bias"}
        if i == n - 1 and partner[0] not in neighbours:
            continue  # a prefix may cut a pair only at its very end
        assert partner[0] in neighbours, i
    # within a pair the two probes are the two groups with the same label (counterfactuals)
    assert all(label[idx[i]] == label[idx[i + 1]] for i in bias_pos[:-1:2])


def test_bias_without_pairs_round_robins_single_examples(pool):
    ps = ConcernSelector(slices=["bias:group,label"]).select(pool, 172)  # 4 strata of >= 43
    got = Counter(zip(pool.column("group")[ps.indices], pool.column("label")[ps.indices]))
    assert sorted(got.values()) == [43, 43, 43, 43]
    ps = ConcernSelector(slices=["bias:group"]).select(pool, 7)
    assert sorted(Counter(pool.column("group")[ps.indices]).values()) == [3, 4]


def test_bias_refuses_a_pair_column_that_is_not_counterfactual(pool):
    with pytest.raises(ProbekitUsageError, match=r"slice 'bias': pair '.*' of column 'topic' holds \d+ examples "
                                                 r"of group='A'; a counterfactual pair holds one example"):
        ConcernSelector(slices=["bias:group,label,pairs=topic"]).select(pool, 5)


# -- rare ---------------------------------------------------------------------------------
def test_rare_values_oversampled_rarest_first(toy):
    topics = toy.column("topic")
    pool_share = float(np.mean(topics == "astronomy"))
    ps = ConcernSelector(slices=["rare:topic"]).select(toy, 90, seed=3)
    assert ps.slices[0] == "rare:topic=astronomy" and topics[ps.indices[0]] == "astronomy"
    assert Counter(topics[ps.indices]) == {t: 10 for t in set(topics.tolist())}  # 9 topics, equal
    assert list(ps.slices) == [f"rare:topic={t}" for t in topics[ps.indices]]
    mixed = ConcernSelector.example().select(toy, 200, seed=3)
    assert np.mean(topics[mixed.indices] == "astronomy") > 2.5 * pool_share


def test_rare_below_keeps_only_rare_values(toy):
    topics = toy.column("topic")
    rare = int(np.sum(topics == "astronomy"))
    ps = ConcernSelector(slices=["tail: rare:topic,below=0.05"]).select(toy, rare + 5)
    assert set(ps.slices[:rare]) == {"tail=astronomy"} and set(ps.slices[rare:]) == {"background"}
    with pytest.raises(ProbekitUsageError, match=r"slice 'rare:topic' matches no example of the pool "
                                                 r"\(no value holds less than 0.01 of the pool\)"):
        ConcernSelector(slices=["rare:topic,below=0.01"]).select(toy, 5)


def test_rare_clusters_find_the_small_cluster():
    rng = np.random.default_rng(0)
    sizes, centers = [100, 60, 6], np.array([[0, 0, 0], [8, 0, 0], [0, 8, 0]])
    x = np.concatenate([c + 0.3 * rng.normal(size=(s, 3)) for c, s in zip(centers, sizes)])
    blob = np.repeat([0, 1, 2], sizes)
    pool = Pool.from_dict({"id": [f"e{i:03d}" for i in range(len(x))], "embedding": x.tolist(),
                           "blob": blob.tolist()}, id_field="id")
    ps = ConcernSelector(slices=["rare:clusters,k=3"]).select(pool, 18, seed=1)
    got = pool.column("blob")[ps.indices]
    assert got[0] == 2 and ps.slices[0] == "rare:clusters=0"  # the smallest cluster first
    assert Counter(got.tolist()) == {0: 6, 1: 6, 2: 6}
    assert {s for s, b in zip(ps.slices, got) if b == 2} == {"rare:clusters=0"}
    info = ps.provenance.info["slices"][0]
    assert info["k"] == 3 and info["examples"] == len(x)


# -- query: facility-location mutual information ---------------------------------------------
def brute_force_flmi(x, q, n, similarity, eta):
    """Greedy on f(A) = sum_q max_a s(q,a) + eta * sum_a max_q s(a,q), evaluated from scratch."""
    bandwidth = np.median([np.sum((u - v) ** 2) for u in x for v in q])  # median squared distance

    def s(a, b):
        if similarity == "cosine":
            return (1 + a @ b / (np.linalg.norm(a) * np.linalg.norm(b))) / 2
        return np.exp(-np.sum((a - b) ** 2) / bandwidth)

    sim = np.array([[s(a, b) for b in q] for a in x])  # [N, Q], small here

    def f(chosen):
        if not chosen:
            return 0.0
        return sim[chosen].max(axis=0).sum() + eta * sim[chosen].max(axis=1).sum()

    chosen = []
    for _ in range(n):
        gains = [(f(chosen + [a]) - f(chosen), -a) for a in range(len(x)) if a not in chosen]
        chosen.append(-max(gains)[1])
    return chosen


@pytest.mark.parametrize("cached", [True, False], ids=["cached", "recomputed"])
@pytest.mark.parametrize("similarity, eta", [("cosine", 1.0), ("cosine", 0.0), ("rbf", 1.0), ("rbf", 2.5)])
def test_flmi_greedy_matches_brute_force(similarity, eta, cached, monkeypatch):
    if not cached:  # the path for N x |Q| beyond the cache budget
        monkeypatch.setattr("probekit.selection.slices.streams.FLMI_CACHE", 0)
    rng = np.random.default_rng(5)
    x = rng.normal(size=(40, 4))
    q = rng.normal(size=(5, 4)) + 0.5
    pool = Pool.from_dict({"id": [f"e{i:02d}" for i in range(40)], "embedding": x.tolist()}, id_field="id")
    sel = ConcernSelector(slices=[{"name": "near", "query": q.tolist()}], similarity=similarity, eta=eta)
    ps = sel.select(pool, 15)
    expected = brute_force_flmi(x, q, 15, similarity, eta)
    assert list(ps.indices) == expected
    assert set(ps.slices) == {"near"}
    assert sel.select(pool, 15, seed=9) == sel.select(pool, 15, seed=9)


def test_query_from_pool_rows_and_files(tmp_path, monkeypatch):
    rng = np.random.default_rng(2)
    x = rng.normal(size=(30, 3))
    kind = ["q" if i < 4 else "c" for i in range(30)]
    pool = Pool.from_dict({"id": [f"e{i:02d}" for i in range(30)], "embedding": x.tolist(), "kind": kind},
                          id_field="id")
    by_rows = ConcernSelector(slices=["query:kind=q"]).select(pool, 10)
    assert list(by_rows.indices) == brute_force_flmi(x, x[:4], 10, "cosine", 1.0)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "ids.jsonl").write_text("".join(json.dumps({"id": f"e{i:02d}"}) + "\n" for i in range(4)))
    (tmp_path / "vec.jsonl").write_text("".join(json.dumps({"embedding": x[i].tolist()}) + "\n" for i in range(4)))
    for spec in ("query@ids.jsonl", "query@vec.jsonl"):
        ps = ConcernSelector(slices=[spec]).select(pool, 10)
        assert list(ps.indices) == list(by_rows.indices) and set(ps.slices) == {spec}
    with pytest.raises(ProbekitUsageError, match=r"slice 'q': query vectors have 2 dimensions, the pool's features 3"):
        ConcernSelector(slices=[{"name": "q", "query": [[1.0, 2.0]]}]).select(pool, 3)


def test_query_set_beyond_max_query_is_subsampled_with_a_warning(pool):
    sel = ConcernSelector(slices=["query:label=1"], max_query=10)
    with pytest.warns(ProbekitWarning, match=r"slice 'query:label=1': 114 query examples; a seeded sample of "
                                             r"max_query=10 defines the concern"):
        ps = sel.select(pool, 5)
    assert ps.provenance.info["slices"][0]["query_used"] == 10


# -- budget, background, labels ------------------------------------------------------------
def test_budget_shares_hold_at_every_prefix(toy):
    sel = ConcernSelector(slices=["topic=sports", "topic=music", "pos: label=1"], budget=[3, 1, 2], background=0.2)
    ps = sel.select(toy, 300, seed=4)
    shares = {"topic=sports": 0.4, "topic=music": 0.8 / 6, "pos": 0.8 / 3, "background": 0.2}
    assert all(err <= 1.0 + 1e-9 for err in share_errors(ps.slices, shares).values())
    by_name = ConcernSelector(slices=sel.slices, budget={"pos": 2, "topic=music": 1, "topic=sports": 3},
                              background=0.2)
    again = by_name.select(toy, 300, seed=4)
    assert (again.ids, again.slices) == (ps.ids, ps.slices)


@pytest.mark.parametrize("budget, background", [([1, 1], 0.0), ([1, 3], 0.1), ([4, 1], 0.3)])
def test_budget_shares_with_pairs_hold_within_two(toy, budget, background):
    # A counterfactual pair takes two consecutive slots, so prefixes can lag by up to two.
    ps = ConcernSelector(slices=["bias:group,label,pairs=pair_id", "rare:topic"], budget=budget,
                         background=background).select(toy, 300, seed=1)
    labels = [s.split("=")[0] if s.startswith("rare:") else s for s in ps.slices]
    w = np.array(budget) / sum(budget) * (1 - background)
    errors = share_errors(labels, {"bias": w[0], "rare:topic": w[1], "background": background})
    assert max(errors.values()) < 2.0, errors


def test_exhausted_slices_hand_over_to_the_background(pool):
    ps = ConcernSelector(slices=["topic=astronomy"]).select(pool, len(pool), seed=2)
    rare = int(np.sum(pool.column("topic") == "astronomy"))
    assert set(pool.column("topic")[ps.indices[:rare]]) == {"astronomy"}
    assert list(ps.slices) == ["topic=astronomy"] * rare + ["background"] * (len(pool) - rare)
    info = ps.provenance.info
    assert info["slices"][0]["probes"] == rare and info["background"]["probes"] == len(pool) - rare


def test_slice_labels_on_every_probe(pool):
    sel = ConcernSelector(slices=["fair: bias:group,label,pairs=pair_id", "rare:topic", "music: topic=music",
                                  "ids:toy-00003a,toy-00007b"], background=0.2)
    ps = sel.select(pool, 60, seed=7)
    names = {"fair", "music", "ids:toy-00003a,toy-00007b", "background"}
    assert all(s in names or s.startswith("rare:topic=") for s in ps.slices)
    assert {s.split("=")[0] for s in ps.slices} >= {"fair", "music", "rare:topic", "background"}
    assert {s for s, i in zip(ps.slices, ps.ids) if i in ("toy-00003a", "toy-00007b")} <= {
        "ids:toy-00003a,toy-00007b", "fair", "rare:topic=" + pool.column("topic")[pool.index_of("toy-00003a")[0]],
        "rare:topic=" + pool.column("topic")[pool.index_of("toy-00007b")[0]], "music", "background"}
    facts = ps.provenance.info["slices"]
    assert [f["name"] for f in facts] == ["fair", "rare:topic", "music", "ids:toy-00003a,toy-00007b"]
    assert sum(f["probes"] for f in facts) + ps.provenance.info["background"]["probes"] == 60


def test_id_slice_is_a_seeded_order_of_its_ids(pool):
    ids = ["toy-00003a", "toy-00007b", "toy-00010a", "toy-00042b"]
    orders = {tuple(ConcernSelector(slices=["ids:" + ",".join(ids)]).select(pool, 4, seed=s).ids) for s in range(6)}
    assert all(sorted(o) == ids for o in orders) and len(orders) > 1


# -- errors ------------------------------------------------------------------------------------
@pytest.mark.parametrize("params, message", [
    (dict(slices=None), r"The 'slices' parameter of ConcernSelector needs at least one slice spec.*Got None"),
    (dict(slices=[]), r"The 'slices' parameter of ConcernSelector needs at least one slice spec.*Got \[\]"),
    (dict(slices=["rare:topic", "topic=music"], budget=[1]),
     r"The 'budget' parameter of ConcernSelector must be 2 finite weights >= 0, not all 0 .*Got \[1\] instead"),
    (dict(slices=["rare:topic"], budget=[0]), r"The 'budget' parameter .* not all 0"),
    (dict(slices=["rare:topic"], budget=[-1]), r"The 'budget' parameter .* weights >= 0"),
    (dict(slices=["rare:topic"], budget=[True]), r"The 'budget' parameter"),
    (dict(slices=["rare:topic"], budget={"rare": 1}),
     r"The 'budget' parameter of ConcernSelector must give a weight to each slice by name \('rare:topic'\); "
     r"unknown: \['rare'\], missing: \['rare:topic'\]"),
    (dict(slices=["rare:topic"], background=1.0), r"The 'background' parameter of ConcernSelector must be a float "
                                                  r"in the range \[0, 1\)"),
    (dict(slices=["topic=jazz"]), r"^slice 'topic=jazz' matches no example of the pool\.$"),
    (dict(slices=["bias:colour"]), r"slice 'bias' uses column 'colour', which the pool does not have"),
    (dict(slices=["rare:colour"]), r"slice 'rare:colour' uses column 'colour'"),
    (dict(slices=["bias:group", "bias:label"]), r"two slices are named 'bias'"),
    (dict(slices=["label>=x"]), r"column 'label' holds numbers, but 'x'"),
    (dict(slices=["nonsense"]), r"slice spec 'nonsense' is not understood"),
])
def test_usage_errors(pool, params, message):
    with pytest.raises(ProbekitUsageError, match=message) as info:
        ConcernSelector(**params).select(pool, 5)
    assert "\n" not in str(info.value)


def test_provenance_records_the_specs_and_facts(pool):
    ps = ConcernSelector.example().select(pool, 10)
    assert ps.provenance.params["slices"] == ["bias:group,label,pairs=pair_id", "rare:topic"]
    bias, rare = ps.provenance.info["slices"]
    assert bias["strata"] == {"A/0": 43, "A/1": 57, "B/0": 43, "B/1": 57} and bias["units"] == 100
    assert rare["values"] == 9 and bias["share"] == rare["share"] == 0.5
