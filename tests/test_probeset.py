"""ProbeSet and Provenance: validation, content identity, pools, the canonical file."""
from __future__ import annotations

import os

os.environ.setdefault("HF_DATASETS_OFFLINE", "1")  # never download anything

import dataclasses
import hashlib
import json
import pickle

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from probekit._version import __version__
from probekit.errors import PoolMismatchError, ProbekitUsageError, ProbeSetFileError
from probekit.pool import Pool
from probekit.probeset import SCHEMA_VERSION, ProbeSet, Provenance
from probekit.probeset.file import load, save

TEXTS = [f"example {i}" for i in range(20)]
GROUPS = ["even" if i % 2 == 0 else "odd" for i in range(20)]


@pytest.fixture(scope="module")
def pool() -> Pool:
    return Pool.from_dict({"key": [f"k{i}" for i in range(20)], "text": TEXTS, "group": GROUPS}, id_field="key")


def prov(**changes) -> Provenance:
    base = dict(strategy="random", params={"n": 3}, seed=0, pool_fingerprint=None)
    return Provenance(**{**base, **changes})


def small(**changes) -> ProbeSet:
    args = dict(ids=("a", "b", "c"), indices=[4, 0, 2], slices=("x", None, "y"),
                scores=[0.5, 0.25, -1.0], provenance=prov())
    args.update(changes)
    return ProbeSet(args.pop("ids"), args.pop("indices"), args.pop("slices"), args.pop("scores"), **args)


# -- construction ------------------------------------------------------------------
def test_parts_are_normalised_and_read_only():
    ps = small(ids=["a", "b", "c"], indices=np.array([4, 0, 2], dtype=np.int32))
    assert ps.ids == ("a", "b", "c")
    assert ps.indices.dtype == np.int64 and ps.indices.tolist() == [4, 0, 2]
    assert ps.scores.dtype == np.float64
    assert ps.slices == ("x", None, "y")
    with pytest.raises(ValueError, match="read-only"):
        ps.indices[0] = 7
    with pytest.raises(ValueError, match="read-only"):
        ps.scores[0] = 7.0
    with pytest.raises(dataclasses.FrozenInstanceError):
        ps.ids = ("z",)


def test_input_arrays_are_copied():
    indices = np.array([4, 0, 2])
    ps = small(indices=indices)
    indices[0] = 9
    assert ps.indices.tolist() == [4, 0, 2]


@pytest.mark.parametrize(
    "changes, message",
    [
        (dict(ids=()), r"needs at least one probe. Got 0 instead"),
        (dict(ids=("a", "b", "a")), r"ids must be unique. Got 'a' more than once"),
        (dict(ids=("a", 2, "c")), r"ids must all be str. Got 2 \(int\) instead"),
        (dict(ids=np.array([["a", "b", "c"]])), r"ids must be 1-D. Got shape \(1, 3\)"),
        (dict(indices=[4, 0]), r"indices must have one entry per id \(3\). Got 2 instead"),
        (dict(indices=[[4, 0, 2]]), r"indices must be 1-D. Got shape \(1, 3\)"),
        (dict(indices=[4, 0, 4]), r"indices must be unique"),
        (dict(indices=[4, -1, 2]), r"indices must be non-negative. Got -1 instead"),
        (dict(indices=[4.0, 0.0, 2.0]), r"indices must be integers. Got dtype float64"),
        (dict(slices=("x", "y")), r"slices must have one label per probe \(3\). Got 2 instead"),
        (dict(slices=("x", 1, "y")), r"slice labels must be str or None. Got 1 instead"),
        (dict(scores=[1.0, 2.0]), r"scores must have shape \(3,\). Got \(2,\) instead"),
        (dict(scores=["a", "b", "c"]), r"scores must be real numbers"),
        (dict(provenance={"strategy": "x"}), r"provenance must be a Provenance. Got dict instead"),
    ],
)
def test_construction_errors(changes, message):
    with pytest.raises(ProbekitUsageError, match=message):
        small(**changes)


@pytest.mark.parametrize(
    "changes, message",
    [
        (dict(strategy=""), r"'strategy' parameter of Provenance must be a non-empty str"),
        (dict(strategy=3), r"'strategy' parameter of Provenance must be an instance of str. Got 3"),
        (dict(seed=-1), r"'seed' parameter of Provenance must be None or an int in the range \[0, inf\). Got -1"),
        (dict(seed=1.5), r"'seed' parameter of Provenance must be None or an int"),
        (dict(params=[1]), r"'params' parameter of Provenance must be an instance of dict"),
        (dict(params={1: "a"}), r"'params' parameter of Provenance must have str keys"),
        (dict(params={"f": object()}), r"'params' parameter of Provenance must be JSON-serialisable"),
        (dict(params={"x": float("nan")}), r"'params' parameter of Provenance must be JSON-serialisable"),
        (dict(schema_version=0), r"'schema_version' parameter of Provenance must be an int in the range \[1, inf\)"),
    ],
)
def test_provenance_errors(changes, message):
    with pytest.raises(ProbekitUsageError, match=message):
        prov(**changes)


def test_provenance_normalises_params_and_round_trips():
    p = prov(params={"sizes": (1, 2), "w": np.float64(0.5), "k": np.int64(3)}, seed=np.int64(7))
    assert p.params == {"sizes": [1, 2], "w": 0.5, "k": 3}
    assert type(p.seed) is int and p.seed == 7
    assert p.probekit_version == __version__ and p.schema_version == SCHEMA_VERSION == 1
    assert Provenance.from_dict(p.to_dict()) == p
    assert hash(Provenance.from_dict(p.to_dict())) == hash(p)
    edited = p.to_dict()
    edited["params"]["sizes"].append(3)
    assert p.params["sizes"] == [1, 2]  # to_dict hands out a copy


def test_provenance_from_dict_needs_every_key():
    with pytest.raises(ProbekitUsageError, match=r"provenance must have exactly the keys \['params', 'pool_fingerprint'"):
        Provenance.from_dict({"strategy": "x"})


# -- identity --------------------------------------------------------------------------
def test_content_hash_matches_an_independent_serialisation():
    ps = small()
    payload = {
        "schema_version": 1,
        "ids": ["a", "b", "c"],
        "indices": [4, 0, 2],
        "slices": ["x", None, "y"],
        "scores": ["0x1.0000000000000p-1", "0x1.0000000000000p-2", "-0x1.0000000000000p+0"],
        "provenance": {"strategy": "random", "params": {"n": 3}, "seed": 0, "pool_fingerprint": None,
                       "probekit_version": __version__, "schema_version": 1, "info": {}},
    }
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    expected = hashlib.sha256(text.encode()).hexdigest()
    assert ps.content_hash == expected


def test_equality_and_hash_follow_content():
    assert small() == small()
    assert hash(small()) == hash(small())
    assert len({small(), small(), small(provenance=prov())}) == 1
    one_ulp = np.nextafter(0.5, 1.0)
    assert small(scores=[one_ulp, 0.25, -1.0]) != small()
    assert small(slices=None) != small()
    assert small(scores=None) != small()
    assert small(slices=(None, None, None)) != small(slices=None)
    assert small(provenance=prov(seed=1)) != small()
    assert small(ids=("a", "c", "b")) != small()
    assert small() != "not a probe set"


def test_sequence_behaviour():
    ps = small()
    assert len(ps) == 3
    assert list(ps) == ["a", "b", "c"]
    assert ps[0] == "a" and ps[-1] == "c" and ps[np.int64(1)] == "b"
    with pytest.raises(TypeError, match="use head\\(m\\) for prefixes"):
        ps[0:2]
    with pytest.raises(IndexError):
        ps[3]
    assert "n=3" in repr(ps) and "strategy='random'" in repr(ps)


def test_head_is_a_nested_prefix():
    ps = small()
    two = ps.head(2)
    assert two.ids == ("a", "b") and two.indices.tolist() == [4, 0]
    assert two.slices == ("x", None) and two.scores.tolist() == [0.5, 0.25]
    assert two.provenance == ps.provenance
    assert two.head(1) == ps.head(1)
    assert ps.head(3) == ps


@pytest.mark.parametrize("m", [0, 4, 1.0, True])
def test_head_out_of_range(m):
    with pytest.raises(ProbekitUsageError, match=r"The 'm' parameter of ProbeSet.head \(a probe set of 3\) must be an int in the range \[1, 3\]"):
        small().head(m)


def test_pickle_round_trip_keeps_arrays_read_only():
    ps = small()
    clone = pickle.loads(pickle.dumps(ps))
    assert clone == ps
    assert not clone.indices.flags.writeable and not clone.scores.flags.writeable


# -- pools --------------------------------------------------------------------------------
def test_from_indices(pool):
    ps = ProbeSet.from_indices(pool, [7, 2, 11], strategy="random", params={"n": 3}, seed=5, slices="group",
                               scores=[3.0, 2.0, 1.0])
    assert ps.ids == ("k7", "k2", "k11")
    assert ps.indices.tolist() == [7, 2, 11]
    assert ps.slices == ("odd", "even", "odd")
    assert ps.provenance.pool_fingerprint == pool.fingerprint
    assert ps.provenance.probekit_version == __version__
    assert ps.provenance.seed == 5 and ps.provenance.params == {"n": 3}


def test_from_indices_errors(pool):
    with pytest.raises(ProbekitUsageError, match=r"indices must be in the range \[0, 19\]. Got 20 instead"):
        ProbeSet.from_indices(pool, [1, 20], strategy="random")
    with pytest.raises(ProbekitUsageError, match="needs a 1-D array of ints"):
        ProbeSet.from_indices(pool, [0.5], strategy="random")
    with pytest.raises(ProbekitUsageError, match="column 'nope' is not in pool"):
        ProbeSet.from_indices(pool, [1], strategy="random", slices="nope")


def test_validate_against_same_pool_returns_self(pool):
    ps = ProbeSet.from_indices(pool, [3, 1], strategy="random")
    assert ps.validate_against(pool) is ps


def test_validate_against_other_pool(pool):
    ps = ProbeSet.from_indices(pool, [3, 1], strategy="random")
    other = Pool.from_dict({"key": [f"k{i}" for i in range(20)], "text": TEXTS[:-1] + ["changed"], "group": GROUPS},
                           id_field="key")
    message = (rf"made from pool {pool.fingerprint[:12]} \(ids: not recorded\) but pool '<memory>' is "
               rf"{other.fingerprint[:12]} \(ids: column 'key'\); give the same --id-field, or pass ignore_fingerprint=True")
    with pytest.raises(PoolMismatchError, match=message):
        ps.validate_against(other)
    # Same ids, same positions: matching by id gives the same indices and the new pool's fingerprint.
    matched = ps.validate_against(other, ignore_fingerprint=True)
    assert matched.indices.tolist() == [3, 1]
    assert matched.provenance.pool_fingerprint == other.fingerprint


def test_ignore_fingerprint_reindexes_by_id(pool):
    ps = ProbeSet.from_indices(pool, [3, 1, 19], strategy="random", slices="group")
    order = list(range(20))[::-1]
    shuffled = Pool.from_dict({"key": [f"k{i}" for i in order], "text": [TEXTS[i] for i in order],
                               "group": [GROUPS[i] for i in order]}, id_field="key")
    positions = {f"k{i}": pos for pos, i in enumerate(order)}
    expected = [positions["k3"], positions["k1"], positions["k19"]]
    matched = ps.validate_against(shuffled, ignore_fingerprint=True)
    assert matched.indices.tolist() == expected == [16, 18, 0]
    assert matched.ids == ps.ids and matched.slices == ps.slices
    assert matched.provenance.strategy == ps.provenance.strategy
    assert matched.validate_against(shuffled) is matched


def test_missing_ids_in_pool(pool):
    ps = small(ids=("k1", "zz", "k3"), indices=[1, 2, 3])
    with pytest.raises(PoolMismatchError, match=r"1 of 3 probe ids are not in pool '<memory>': 'zz'"):
        ps.validate_against(pool)
    with pytest.raises(PoolMismatchError, match=r"1 of 3 probe ids are not in pool"):
        ps.validate_against(pool, ignore_fingerprint=True)


def test_indices_that_do_not_point_at_ids(pool):
    ps = small(ids=("k1", "k2", "k3"), indices=[1, 2, 30])  # no recorded fingerprint
    with pytest.raises(PoolMismatchError, match="probe indices do not point at the probe ids in pool '<memory>'"):
        ps.validate_against(pool)
    assert ps.validate_against(pool, ignore_fingerprint=True).indices.tolist() == [1, 2, 3]


# -- the canonical file ------------------------------------------------------------------
@pytest.mark.parametrize("changes", [{}, dict(slices=None), dict(scores=None), dict(slices=(None, None, None)),
                                     dict(scores=[float("nan"), float("inf"), -0.0])])
def test_file_round_trip(tmp_path, changes):
    ps = small(**changes)
    ps.save(tmp_path / "probes.parquet")
    loaded = ProbeSet.load(tmp_path / "probes.parquet")
    assert loaded == ps
    assert loaded.ids == ps.ids and loaded.indices.tolist() == ps.indices.tolist()
    assert loaded.slices == ps.slices
    if ps.scores is not None:
        assert [float.hex(float(s)) for s in loaded.scores] == [float.hex(float(s)) for s in ps.scores]
    else:
        assert loaded.scores is None


def test_file_columns(tmp_path):
    save(small(), tmp_path / "probes.parquet")
    table = pq.read_table(tmp_path / "probes.parquet")
    assert table.column_names == ["rank", "id", "index", "slice", "score"]
    assert [str(t) for t in table.schema.types] == ["int32", "string", "int64", "string", "double"]
    assert table.column("rank").to_pylist() == [0, 1, 2]
    meta = json.loads(pq.read_metadata(tmp_path / "probes.parquet").metadata[b"probekit"])
    assert meta["schema_version"] == 1 and meta["content_hash"] == small().content_hash
    assert meta["provenance"]["strategy"] == "random"


def test_same_selection_gives_byte_identical_files(tmp_path, pool):
    make = lambda: ProbeSet.from_indices(pool, [5, 6, 1], strategy="random", seed=3, slices="group")  # noqa: E731
    save(make(), tmp_path / "a.parquet")
    save(make(), tmp_path / "b.parquet")
    assert (tmp_path / "a.parquet").read_bytes() == (tmp_path / "b.parquet").read_bytes()


def test_failed_save_keeps_previous_file(tmp_path, monkeypatch):
    path = tmp_path / "probes.parquet"
    save(small(), path)
    before = path.read_bytes()

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(pq, "write_table", boom)
    with pytest.raises(OSError, match="disk full"):
        save(small(slices=None), path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["probes.parquet"]


def _rewrite(path, table, meta):
    table = table.replace_schema_metadata({b"probekit": json.dumps(meta).encode()})
    pq.write_table(table, path)


def test_load_missing_file(tmp_path):
    with pytest.raises(ProbekitUsageError, match=r"probe-set file '.*nope\.parquet' does not exist"):
        load(tmp_path / "nope.parquet")


def test_save_needs_a_probe_set(tmp_path):
    with pytest.raises(ProbekitUsageError, match="save needs a ProbeSet. Got list instead"):
        save([1, 2], tmp_path / "x.parquet")


def test_not_parquet(tmp_path):
    path = tmp_path / "probes.parquet"
    path.write_text("rank,id\n0,a\n")
    with pytest.raises(ProbeSetFileError, match=r"probes\.parquet is not a probe-set file: Parquet magic bytes not found"):
        load(path)


@pytest.mark.parametrize("keep", [0, 4, 100, -1])
def test_truncated_file(tmp_path, keep):
    path = tmp_path / "probes.parquet"
    save(small(), path)
    data = path.read_bytes()
    path.write_bytes(data[: keep if keep >= 0 else len(data) + keep])
    with pytest.raises(ProbeSetFileError, match=r"probes\.parquet is not a probe-set file: [^\n]+$") as info:
        load(path)
    assert "\n" not in str(info.value)


def test_flipped_bytes_in_a_data_page(tmp_path):
    path = tmp_path / "probes.parquet"
    save(small(), path)
    data = bytearray(path.read_bytes())
    data[10] ^= 0xFF  # inside the first column chunk: caught by the page checksum or the decoder
    path.write_bytes(bytes(data))
    with pytest.raises(ProbeSetFileError, match=r"probes\.parquet is not a probe-set file: "):
        load(path)


def test_flipped_byte_in_metadata(tmp_path):
    path = tmp_path / "probes.parquet"
    save(small(), path)
    data = bytearray(path.read_bytes())
    start = data.index(b'{"content_hash"')
    data[start + 1] ^= 0xFF  # breaks the JSON text
    path.write_bytes(bytes(data))
    with pytest.raises(ProbeSetFileError, match=r"probes\.parquet has unreadable 'probekit' metadata"):
        load(path)


def test_edited_metadata_is_a_hash_mismatch(tmp_path):
    path = tmp_path / "probes.parquet"
    save(small(), path)
    data = path.read_bytes()
    assert data.count(b'"strategy":"random"') == 1  # the Parquet key-value copy we read
    path.write_bytes(data.replace(b'"strategy":"random"', b'"strategy":"randon"'))
    with pytest.raises(ProbeSetFileError, match=r"probes\.parquet content hash mismatch: file corrupt or edited"):
        load(path)


def test_edited_value_is_a_hash_mismatch(tmp_path):
    path = tmp_path / "probes.parquet"
    save(small(), path)
    table = pq.read_table(path)
    meta = json.loads(pq.read_metadata(path).metadata[b"probekit"])
    edited = table.set_column(2, table.schema.field("index"), pa.array([4, 0, 3], type=pa.int64()))
    _rewrite(path, edited, meta)
    with pytest.raises(ProbeSetFileError, match="content hash mismatch: file corrupt or edited"):
        load(path)


def test_foreign_parquet(tmp_path):
    path = tmp_path / "probes.parquet"
    pq.write_table(pa.table({"id": ["a"], "index": [0]}), path)
    with pytest.raises(ProbeSetFileError, match=r"probes\.parquet is a Parquet file but not a probekit probe set \(no 'probekit' schema metadata\)"):
        load(path)


def test_newer_schema_is_refused(tmp_path):
    path = tmp_path / "probes.parquet"
    save(small(), path)
    meta = json.loads(pq.read_metadata(path).metadata[b"probekit"])
    _rewrite(path, pq.read_table(path), {**meta, "schema_version": 2})
    with pytest.raises(ProbeSetFileError, match=r"uses probe-set schema version 2, but this probekit reads versions up to 1; upgrade"):
        load(path)


@pytest.mark.parametrize("meta, message", [
    ({"content_hash": "x"}, "unreadable 'probekit' metadata: 'schema_version'"),
    ({"schema_version": "1"}, "unreadable 'probekit' metadata: schema_version is not an int"),
    ([1], "unreadable 'probekit' metadata: not a JSON object"),
    ({"schema_version": 0}, "invalid probe-set schema version 0"),
])
def test_bad_metadata(tmp_path, meta, message):
    path = tmp_path / "probes.parquet"
    save(small(), path)
    _rewrite(path, pq.read_table(path), meta)
    with pytest.raises(ProbeSetFileError, match=message):
        load(path)


def test_wrong_columns_with_probekit_metadata(tmp_path):
    path = tmp_path / "probes.parquet"
    save(small(), path)
    meta = json.loads(pq.read_metadata(path).metadata[b"probekit"])
    _rewrite(path, pq.read_table(path).drop_columns(["score"]), meta)
    with pytest.raises(ProbeSetFileError, match=r"is not a probe-set file: columns \['rank', 'id', 'index', 'slice'\] do not match"):
        load(path)


def test_invalid_rows_with_probekit_metadata(tmp_path):
    path = tmp_path / "probes.parquet"
    save(small(), path)
    table = pq.read_table(path)
    meta = json.loads(pq.read_metadata(path).metadata[b"probekit"])
    reordered = table.set_column(0, table.schema.field("rank"), pa.array([0, 2, 1], type=pa.int32()))
    _rewrite(path, reordered, meta)
    with pytest.raises(ProbeSetFileError, match=r"is not a valid probe-set file: rank column is not 0, 1, \.\.\., n-1"):
        load(path)
    duplicated = table.set_column(1, table.schema.field("id"), pa.array(["a", "a", "c"]))
    _rewrite(path, duplicated, meta)
    with pytest.raises(ProbeSetFileError, match=r"is not a valid probe-set file: ProbeSet ids must be unique"):
        load(path)
