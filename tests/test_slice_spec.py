"""The declarative slice spec: every accepted form, every malformed one, and matching rows."""
from __future__ import annotations

import json

import numpy as np
import pytest

from probekit.errors import ProbekitUsageError
from probekit.pool import Pool
from probekit.selection.slices.parse import parse_slices
from probekit.selection.slices.rows import member_rows, query_set, where_mask
from probekit.selection.slices.spec import Clause


def one(spec):
    specs = parse_slices(spec)
    assert len(specs) == 1
    return specs[0]


@pytest.mark.parametrize("text, name, where", [
    ("topic=astronomy", "topic=astronomy", [("topic", "=", "astronomy")]),
    ("topic == astronomy", "topic=astronomy", [("topic", "=", "astronomy")]),
    ("label in 0,1", "label in 0,1", [("label", "in", ("0", "1"))]),
    ("label not in 0", "label not in 0", [("label", "not in", ("0",))]),
    ("age>=65", "age>=65", [("age", ">=", "65")]),
    ("age < 18", "age<18", [("age", "<", "18")]),
    ("topic!=music", "topic!=music", [("topic", "!=", "music")]),
    ("elderly: age>=65", "elderly", [("age", ">=", "65")]),
    ("old & kind: age>65 & label=1", None, None),  # '&' is not allowed in a name: a predicate, bad clause
    ("elderly: age>=65 & label=1", "elderly", [("age", ">=", "65"), ("label", "=", "1")]),
    ('title="a, b: c" & x in "p,q",r', 'title="a, b: c" & x in "p,q",r',
     [("title", "=", "a, b: c"), ("x", "in", ("p,q", "r"))]),
    ("title=log in page", "title=log in page", [("title", "=", "log in page")]),
])
def test_predicates(text, name, where):
    if name is None:
        with pytest.raises(ProbekitUsageError, match=r"is not a clause COLUMN OP VALUE"):
            parse_slices(text)
        return
    spec = one(text)
    assert (spec.kind, spec.name) == ("where", name)
    assert spec.where == tuple(Clause(*c) for c in where)


@pytest.mark.parametrize("text, expected", [
    ("ids:a,b,c", dict(kind="ids", name="ids:a,b,c", ids=("a", "b", "c"))),
    ("ids: a , b", dict(kind="ids", name="ids:a,b", ids=("a", "b"))),
    ("ids:a,b,c,d,e", dict(kind="ids", name="ids:a,b,c,...(+2)", ids=tuple("abcde"))),
    ("watch: ids:x", dict(kind="ids", name="watch", ids=("x",))),
    ("bias:group,label", dict(kind="bias", name="bias", protected="group", label="label", pairs=None)),
    ("bias:group,label,pairs=pair_id", dict(kind="bias", protected="group", label="label", pairs="pair_id")),
    ("bias:group", dict(kind="bias", protected="group", label=None)),
    ("bias:protected=g,pairs=p", dict(kind="bias", protected="g", label=None, pairs="p")),
    ("fair: bias:group,label", dict(kind="bias", name="fair", protected="group")),
    ("rare:topic", dict(kind="rare", name="rare:topic", column="topic", clusters=None, below=None)),
    ("rare:topic,below=0.05", dict(kind="rare", column="topic", below=0.05)),
    ("rare:clusters", dict(kind="rare", name="rare:clusters", column=None, clusters=0)),
    ("rare:clusters,k=8,below=0.1", dict(kind="rare", clusters=8, below=0.1)),
    ("rare:column=clusters", dict(kind="rare", name="rare:clusters", column="clusters", clusters=None)),
    ("query:topic=astronomy", dict(kind="query", name="query:topic=astronomy",
                                   where=(Clause("topic", "=", "astronomy"),))),
])
def test_kind_forms(text, expected):
    spec = one(text)
    for key, value in expected.items():
        assert getattr(spec, key) == value, key


@pytest.mark.parametrize("spec, expected", [
    ({"name": "old", "where": {"age": {">=": 65, "<": 90}}},
     dict(kind="where", name="old", where=(Clause("age", ">=", 65), Clause("age", "<", 90)))),
    ({"where": {"topic": "astronomy"}}, dict(name="topic=astronomy", where=(Clause("topic", "=", "astronomy"),))),
    ({"where": {"label": {"in": [0, 1]}}}, dict(name="label in 0,1", where=(Clause("label", "in", (0, 1)),))),
    ({"where": "age>=65"}, dict(name="age>=65")),
    ({"ids": ["a", 7]}, dict(kind="ids", ids=("a", "7"))),
    ({"name": "b", "bias": {"protected": "group", "pairs": "pair_id"}},
     dict(kind="bias", name="b", protected="group", label=None, pairs="pair_id")),
    ({"bias": "group,label"}, dict(kind="bias", protected="group", label="label")),
    ({"rare": {"column": "topic", "below": 0.1}}, dict(kind="rare", column="topic", below=0.1)),
    ({"rare": {"clusters": 5}}, dict(kind="rare", clusters=5, name="rare:clusters")),
    ({"rare": {"clusters": "auto"}}, dict(clusters=0)),
    ({"rare": "topic"}, dict(column="topic")),
    ({"query": {"where": {"topic": "astronomy"}}}, dict(kind="query", name="query:topic=astronomy")),
    ({"query": {"ids": ["a", "b"]}}, dict(kind="query", name="query:ids:a,b", ids=("a", "b"))),
])
def test_dict_forms(spec, expected):
    got = one(spec)
    for key, value in expected.items():
        assert getattr(got, key) == value, key
    assert one(json.dumps(spec)).name == got.name  # the same as inline JSON


def test_query_vectors_in_a_dict():
    spec = one({"name": "q", "query": [[1, 2], [3, 4.5]]})
    assert spec.kind == "query" and spec.vectors.tolist() == [[1.0, 2.0], [3.0, 4.5]]
    assert one({"query": [[0.0, 1.0]]}).name == "query[1]"


def test_files(tmp_path, monkeypatch):
    (tmp_path / "ids.txt").write_text("# watched\nx1\n\n x2 \n")
    (tmp_path / "ids.json").write_text('["y1", 2]')
    (tmp_path / "q.jsonl").write_text('{"embedding": [1, 0]}\n{"embedding": [0, 1]}\n')
    (tmp_path / "q_ids.jsonl").write_text('{"id": "x1"}\n{"id": "x2", "note": "n"}\n')
    (tmp_path / "q.json").write_text("[[1, 2, 3]]")
    np.save(tmp_path / "q.npy", np.eye(3))
    sub = tmp_path / "sub"
    sub.mkdir()
    (sub / "spec.json").write_text(json.dumps(
        [{"name": "watch", "ids": "../ids.txt"}, "near: query@../q.jsonl", "rare:topic"]))
    monkeypatch.chdir(tmp_path)
    assert one("ids@ids.txt").ids == ("x1", "x2") and one("ids@ids.txt").name == "ids@ids.txt"
    assert one("ids@ids.json").ids == ("y1", "2")
    assert one("query@q.jsonl").vectors.tolist() == [[1.0, 0.0], [0.0, 1.0]]
    assert one("query@q.jsonl").name == "query@q.jsonl"
    assert [r["id"] for r in one("query@q_ids.jsonl").records] == ["x1", "x2"]
    assert one("query@q.json").vectors.shape == (1, 3)
    assert one("query@q.npy").vectors.tolist() == np.eye(3).tolist()
    specs = parse_slices("sub/spec.json")  # paths inside a spec file are relative to it
    assert [(s.name, s.kind) for s in specs] == [("watch", "ids"), ("near", "query"), ("rare:topic", "rare")]
    assert specs[0].ids == ("x1", "x2")
    assert len(parse_slices(["sub/spec.json", "topic=x"])) == 4


BAD = [
    ("", r"slice spec '' is not understood: it is empty"),
    ("foo", r"'foo' is not a clause COLUMN OP VALUE"),
    ("x=", r"clause 'x=' has no value"),
    ("a=1 & ", r"an empty clause"),
    ('x="open', r"unbalanced quote"),
    ("x in a,,b", r"an empty value in its list"),
    ("ids:", r"ids: needs something after the colon. Allowed: ids:ID,ID,... or ids@FILE"),
    ("ids:a,,b", r"an empty id"),
    ("ids@", r"a file path is missing"),
    ("ids@missing.txt", r"file 'missing.txt' does not exist"),
    ("bias:", r"Allowed: bias:PROTECTED\[,LABEL\]\[,pairs=COLUMN\]"),
    ("bias:a,b,c", r"too many values \('c'\)"),
    ("bias:g,pairs=p,l", r"a value after key=value options"),
    ("bias:g,colour=red", r"unknown or repeated option 'colour'"),
    ("bias:label=l", r"bias needs a protected-attribute column"),
    ("bias@x", r"bias@ needs a file"),
    ("rare:", r"rare: needs something after the colon"),
    ("rare:topic,k=3", r"k applies to rare:clusters only"),
    ("rare:clusters,k=1", r"k must be an int >= 2 or 'auto'; got '1'"),
    ("rare:topic,below=2", r"below must be a fraction in \(0, 1\]; got '2'"),
    ("rare:topic,below=", r"rare option 2 is empty"),
    ("query:", r"query: needs something after the colon"),
    ("query@q.csv", r"query file 'q.csv' must end in .jsonl, .json, .npy"),
    ("background: x=1", r"the name 'background' is reserved"),
    ("elderly:", r"slice spec 'elderly:' is not understood: it is empty"),
    ("{bad", r"invalid JSON"),
    ("[]", r"an empty list of specs"),
    ("[1]", r"an item 1 that is neither a spec string nor a dict"),
    ("nope.json", r"file 'nope.json' does not exist"),
    ({"where": {"x": 1}, "ids": ["a"]}, r"exactly one of where, ids, query, bias, rare"),
    ({"colour": "red"}, r"exactly one of where"),
    ({"name": "", "where": {"x": 1}}, r"a slice name must be a non-empty string"),
    ({"where": {}}, r"non-empty dict"),
    ({"where": {"x": {"~": 1}}}, r"unknown operator '~'"),
    ({"where": {"x": {"in": 1}}}, r"'in' needs a non-empty list of values"),
    ({"where": {"x": None}}, r"values of 'x' must be numbers or strings"),
    ({"ids": []}, r"ids must be a non-empty list of ids"),
    ({"query": 5}, r"query must be a file path"),
    ({"query": [[1, 2], [3]]}, r"the query list must hold rows with an 'embedding'"),
    ({"query": [[float("nan")]]}, r"must hold rows"),
    ({"bias": ["group"]}, r"bias must be a dict or a string"),
    ({"bias": {"protected": "g", "colour": "x"}}, r"bias takes string keys protected, label, pairs"),
    ({"rare": {"column": "a", "clusters": 3}}, r"rare needs exactly one of a column or clusters"),
    ({"rare": {"size": 3}}, r"rare takes keys column or clusters, and below"),
    ({"rare": {"clusters": True, "below": 0}}, r"below must be a fraction"),
    (3.5, r"a spec must be a string or a dict, not float"),
    ([], r"no slice was given"),
    (["bias:group", "bias:label"], r"two slices are named 'bias' \('bias:group' and 'bias:label'\); name them apart"),
]


@pytest.mark.parametrize("spec, message", BAD, ids=[str(b[0])[:40] for b in BAD])
def test_malformed_specs_are_one_line_usage_errors(spec, message, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ProbekitUsageError, match=message) as info:
        parse_slices(spec)
    assert "\n" not in str(info.value)


def test_bad_files(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "empty.txt").write_text("# nothing\n")
    (tmp_path / "bad.json").write_text("{")
    (tmp_path / "obj.json").write_text('{"a": 1}')
    (tmp_path / "q.jsonl").write_text("[1, 2]\n{")
    (tmp_path / "q.npy").write_text("not numpy")
    (tmp_path / "nested.json").write_text('["other.json"]')
    cases = [("ids@empty.txt", r"'empty.txt' holds no ids"), ("ids@bad.json", r"'bad.json' is not valid JSON"),
             ("ids@obj.json", r"must hold a JSON list of ids"), ("query@q.jsonl", r"'q.jsonl' is not valid JSON"),
             ("query@q.npy", r"'q.npy' is not a numpy array file"), ("bad.json", r"'bad.json' is not valid JSON"),
             ("nested.json", r"a spec file inside a spec file"), ("query@nope.npy", r"does not exist")]
    for spec, message in cases:
        with pytest.raises(ProbekitUsageError, match=message):
            parse_slices(spec)


@pytest.fixture(scope="module")
def pool():
    return Pool.from_dict({
        "id": ["r0", "r1", "r2", "r3", "r4", "r5"],
        "age": [10, 70, 65, None, 30, 90],
        "flag": [True, False, True, False, True, False],
        "topic": ["music", "astronomy", None, "music", "sports", "astronomy"],
        "vec": [[0.0, 1.0]] * 6,
    }, id_field="id")


@pytest.mark.parametrize("text, expected", [
    ("age>=65", [1, 2, 5]),  # a missing age never matches
    ("age>65", [1, 5]),
    ("age<30", [0]),
    ("age<=30", [0, 4]),
    ("age=65", [2]),
    ("age=65.0", [2]),
    ("age!=65", [0, 1, 4, 5]),
    ("age in 10,90", [0, 5]),
    ("age not in 10,90", [1, 2, 4]),
    ("flag=true", [0, 2, 4]),
    ("flag=0", [1, 3, 5]),
    ("topic=astronomy", [1, 5]),
    ("topic!=music", [1, 4, 5]),  # a missing topic never matches
    ("topic in music,sports", [0, 3, 4]),
    ("topic not in music", [1, 4, 5]),
    ("topic>n", [4]),  # text compares as text
    ("topic=astronomy & age>80", [5]),
])
def test_where_mask(pool, text, expected):
    spec = one(text)
    assert np.flatnonzero(where_mask(pool, spec.where, spec)).tolist() == expected


def test_dict_values_compare_by_column_type(pool):
    spec = one({"where": {"age": {"in": [10, 30.0]}, "topic": {"!=": "sports"}}})
    assert member_rows(pool, spec).tolist() == [0]


def test_matching_errors(pool):
    cases = [("age>=old", r"slice 'age>=old': column 'age' holds numbers, but 'old' in 'age>=old' is not a number"),
             ("colour=red", r"slice 'colour=red' uses column 'colour', which the pool does not have; columns: id, "),
             ("vec=1", r"column 'vec' holds lists or records; a clause compares numbers or text"),
             ("x: topic=jazz", r"^slice 'x' matches no example of the pool\.$"),
             ("ids:r1,zz", r"slice 'ids:r1,zz': 1 ids are not in pool"),
             ("query:age>100", r"slice 'query:age>100' matches no example of the pool")]
    for text, message in cases:
        spec = one(text)
        with pytest.raises(ProbekitUsageError, match=message):
            (query_set if spec.kind == "query" else member_rows)(pool, spec)


def test_member_rows_and_query_sets(pool):
    assert member_rows(pool, one("ids:r5,r1,r5")).tolist() == [1, 5]
    assert query_set(pool, one("query:topic=music"))[0].tolist() == [0, 3]
    assert query_set(pool, one({"query": {"ids": ["r2"]}}))[0].tolist() == [2]
    rows, vectors = query_set(pool, one({"query": [[1.0, 2.0]]}))
    assert rows is None and vectors.tolist() == [[1.0, 2.0]]
    records = one({"query": [{"id": "r4"}, {"id": "r0"}]})
    assert query_set(pool, records)[0].tolist() == [0, 4]
    with pytest.raises(ProbekitUsageError,
                       match=r"query rows need an 'embedding' or an id under 'id'; first row's keys: \['text'\]"):
        query_set(pool, one({"query": [{"text": "a comet"}]}))
