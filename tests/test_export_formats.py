"""Export formats declared once: the registry, the declarations, and a new format added from outside.

``ids-txt`` (one probe id per line) and ``id-shards`` (a directory of id files, a required
option) are defined here, in a test module, and reach ``probekit export`` only through the
registry: ``register_format`` or an entry point of another distribution.
"""
from __future__ import annotations

import os

os.environ.setdefault("HF_DATASETS_OFFLINE", "1")  # never download anything

import re
import tomllib
from importlib import metadata
from pathlib import Path

import numpy as np
import pytest

from probekit import export as ex
from probekit.atomic import atomic_file
from probekit.cli import main
from probekit.errors import ProbekitError, ProbekitUsageError
from probekit.export.formats import (
    ExportFormat,
    ExportOption,
    export_format,
    format_names,
    register_format,
    unregister_format,
)
from probekit.pool import Pool
from probekit.probeset import ProbeSet, Provenance
from probekit.registry import BUILTIN_EXPORT_FORMATS, EXPORT_FORMATS
from workspace import one_error_line, snapshot

ROOT = Path(__file__).resolve().parents[1]
BUILTINS = ["jsonl", "csv", "datasets", "npy", "lm-eval"]


# -- a third-party file format: one id per line, no pool ------------------------------------
def write_ids(ps, path, *, pool=None, overwrite=False):
    with atomic_file(path) as tmp:
        tmp.write_text("".join(f"{pid}\n" for pid in ps.ids), encoding="utf-8")


def read_ids(path, pool=None):
    ids = Path(path).read_text(encoding="utf-8").split()
    return ProbeSet(ids, pool.index_of(ids) if pool is not None else np.arange(len(ids)),
                    provenance=Provenance(strategy="imported", params={"format": "ids-txt"}))


IDS_TXT = ExportFormat(name="ids-txt", suffix=".txt", write=write_ids, read=read_ids,
                       doc="one probe id per line, in rank order")


# -- a third-party directory format with a required option ---------------------------------------
def is_id_shards(path: Path) -> bool:
    return (path / "SHARDS").is_file()


def write_id_shards(ps, path, *, per_file, pool=None, overwrite=False):
    per = int(per_file)
    with ID_SHARDS.directory(path, overwrite=overwrite) as tmp:
        (tmp / "SHARDS").write_text(str(per))
        for k in range(0, len(ps), per):
            (tmp / f"ids-{k // per:03d}.txt").write_text("\n".join(ps.ids[k:k + per]) + "\n")


ID_SHARDS = ExportFormat(name="id-shards", suffix=None, write=write_id_shards, owns_directory=is_id_shards,
                         options=(ExportOption("per_file", "how many ids each file holds", metavar="N",
                                               required=True),),
                         doc="the ids in rank order, N to a file")


@pytest.fixture()
def ids_txt():
    register_format(IDS_TXT)
    yield IDS_TXT
    unregister_format("ids-txt")


@pytest.fixture()
def id_shards():
    register_format(ID_SHARDS)
    yield ID_SHARDS
    unregister_format("id-shards")


def help_text(argv, capsys) -> str:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 0
    return capsys.readouterr().out


# -- the registry and the built-in declarations ---------------------------------------------
def test_builtin_table_equals_pyproject_entry_points():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["entry-points"]["probekit.export_formats"] == BUILTIN_EXPORT_FORMATS


def test_names_keep_the_builtin_order_and_formats_follows_the_registry():
    assert ex.FORMATS == tuple(BUILTINS)
    register_format(IDS_TXT)
    try:
        assert format_names() == BUILTINS + ["ids-txt"]
        assert ex.FORMATS == tuple(BUILTINS + ["ids-txt"])
    finally:
        unregister_format("ids-txt")
    assert ex.FORMATS == tuple(BUILTINS)


def test_builtin_declarations_say_what_the_cli_did_before():
    # suffixes and pool needs as probekit export hard-coded them before the formats were declared
    expected_suffix = {"jsonl": ".jsonl", "csv": ".csv", "datasets": None, "npy": ".npy", "lm-eval": ".json"}
    expected_pool = {"jsonl": "optional", "csv": "unused", "datasets": "required", "npy": "unused",
                     "lm-eval": "unused"}
    specs = {name: export_format(name) for name in BUILTINS}
    assert {n: s.suffix for n, s in specs.items()} == expected_suffix
    assert {n: s.pool for n, s in specs.items()} == expected_pool
    assert {n: [(o.name, o.required) for o in s.options] for n, s in specs.items()} == {
        "jsonl": [], "csv": [], "datasets": [], "npy": [], "lm-eval": [("task", True)]}
    assert [n for n, s in specs.items() if s.read is None] == ["datasets"]
    assert specs["datasets"].what == ex.DATASETS_EXPORT
    assert specs["datasets"].default_output("runs/p.parquet") == Path("runs/p-datasets")
    assert specs["lm-eval"].default_output("p.parquet") == Path("p.json")


def test_unknown_format_names_are_answered_like_selectors(tmp_path):
    with pytest.raises(ProbekitUsageError, match=r"^Unknown export format 'jsnl'\. Did you mean: jsonl\? "
                                                 r"Available: csv, datasets, jsonl, lm-eval, npy\.$"):
        export_format("jsnl")


def test_register_refuses_duplicates_and_non_declarations():
    with pytest.raises(ProbekitUsageError, match=r"The export format 'csv' is already registered"):
        register_format(ExportFormat(name="csv", suffix=".csv", write=write_ids, doc="another csv"))
    with pytest.raises(ProbekitUsageError, match=r"Registering an export format needs an ExportFormat\. Got dict instead"):
        register_format({"name": "x"})
    assert format_names() == BUILTINS


def test_an_entry_point_must_name_a_declaration_of_the_same_name():
    EXPORT_FORMATS.register("not-a-format", "json:dumps")
    EXPORT_FORMATS.register("renamed", IDS_TXT)
    try:
        with pytest.raises(ProbekitError, match=r"the export format 'not-a-format' must be registered as an "
                                                r"ExportFormat named 'not-a-format'\. Got function instead"):
            export_format("not-a-format")
        with pytest.raises(ProbekitError, match=r"named 'renamed'\. Got one named 'ids-txt' instead"):
            export_format("renamed")
    finally:
        EXPORT_FORMATS.unregister("not-a-format")
        EXPORT_FORMATS.unregister("renamed")


@pytest.mark.parametrize("kwargs, message", [
    ({"name": "two words"}, r"An export format name must be letters, digits, '-', '_' or '\.'\. Got 'two words'"),
    ({"name": "--x"}, r"An export format name must be .* Got '--x' instead"),
    ({"suffix": "txt"}, r"The suffix of export format 'x' must be None \(a directory\) or start with '\.'\. "
                        r"Got 'txt' instead"),
    ({"pool": "maybe"}, r"The pool of export format 'x' must be one of 'required', 'optional', 'unused'\. "
                        r"Got 'maybe' instead"),
    ({"options": (ExportOption("k", "a"), ExportOption("k", "b"))}, r"declares an option twice: \['k', 'k'\]"),
    ({"owns_directory": is_id_shards}, r"writes a file; owns_directory is for directories"),
])
def test_bad_declarations_are_refused(kwargs, message):
    with pytest.raises(ProbekitUsageError, match=message):
        ExportFormat(**{"name": "x", "suffix": ".x", "write": write_ids, "doc": "x", **kwargs})


@pytest.mark.parametrize("name, message", [
    ("out", r"The export option name 'out' is taken by probekit export itself"),
    ("pool", r"The export option name 'pool' is taken"),
    ("per-file", r"An export option name must be a Python identifier\. Got 'per-file' instead"),
    ("_x", r"must be a Python identifier"),
])
def test_bad_option_names_are_refused(name, message):
    with pytest.raises(ProbekitUsageError, match=message):
        ExportOption(name, "help")


# -- the library: export() and read() dispatch through the declarations ---------------------------
@pytest.fixture(scope="module")
def pool() -> Pool:
    return Pool.from_dict({"uid": [f"u{i}" for i in range(12)], "text": [f"t{i}" for i in range(12)]},
                          id_field="uid")


@pytest.fixture()
def ps(pool) -> ProbeSet:
    return ProbeSet.from_indices(pool, [9, 2, 11, 0, 5], strategy="random", seed=0, scores=[5, 4, 3, 2, 1.5])


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "npy", "lm-eval"])
def test_read_dispatches_to_each_formats_reader(tmp_path, ps, pool, fmt):
    path = tmp_path / f"p.{fmt}"
    ex.export(ps, path, fmt, pool=pool, task="t")
    back = ex.read(path, fmt, pool=pool)
    expected = ps.indices.tolist() if fmt != "lm-eval" else sorted(ps.indices.tolist())
    assert back.indices.tolist() == expected
    assert back.provenance.params["format"] == fmt


def test_read_refuses_a_format_without_a_reader(tmp_path, pool):
    with pytest.raises(ProbekitUsageError, match=r"export format 'datasets' has no reader; formats that can be "
                                                 r"read back: jsonl, csv, npy, lm-eval\."):
        ex.read(tmp_path / "d", "datasets", pool=pool)
    with pytest.raises(ProbekitUsageError, match=r"The 'fmt' parameter of read must be one of 'jsonl'"):
        ex.read(tmp_path / "d", "xml")


def test_export_options(tmp_path, ps, pool, id_shards):
    with pytest.raises(ProbekitUsageError, match=r"Invalid option 'tsk' for export to 'lm-eval'\. Valid options: task\."):
        ex.export(ps, tmp_path / "s.json", "lm-eval", tsk="t")
    with pytest.raises(ProbekitUsageError, match=r"Invalid option 'tsk' for export to 'csv'\. Valid options: \(none\)\."):
        ex.export(ps, tmp_path / "s.csv", "csv", tsk="t")
    with pytest.raises(ProbekitUsageError, match=r"export to 'id-shards' needs per_file, how many ids each file holds\."):
        ex.export(ps, tmp_path / "shards", "id-shards")
    with pytest.raises(ProbekitUsageError, match=r"export needs a ProbeSet\. Got list instead"):
        ex.export([1], tmp_path / "s.csv", "csv")
    assert list(tmp_path.iterdir()) == []
    # an option of another format is left out: one call serves every format
    ex.export(ps, tmp_path / "shards", "id-shards", per_file=2, task="ignored")
    assert sorted(p.name for p in (tmp_path / "shards").iterdir()) == ["SHARDS", "ids-000.txt", "ids-001.txt",
                                                                      "ids-002.txt"]
    ex.export(ps, tmp_path / "s.csv", "csv", per_file=2)
    assert (tmp_path / "s.csv").read_text().splitlines()[1] == "0,u9,9,5.0"


def test_a_registered_format_round_trips_through_the_library(tmp_path, ps, pool, ids_txt):
    ex.export(ps, tmp_path / "p.txt", "ids-txt", pool=pool)
    assert (tmp_path / "p.txt").read_text() == "u9\nu2\nu11\nu0\nu5\n"
    assert list(ex.read(tmp_path / "p.txt", "ids-txt", pool=pool).ids) == list(ps.ids)


# -- the CLI: everything from the declarations -----------------------------------------------
def test_a_new_format_works_through_the_cli_with_its_suffix(selected, tmp_path, text_pool, capsys, ids_txt):
    assert main(["export", str(selected), "--format", "ids-txt"]) == 0
    assert capsys.readouterr().out == f"wrote {tmp_path / 'probes.txt'} (ids-txt, 12 probes)\n"
    expected = list(ProbeSet.load(selected).ids)
    assert (tmp_path / "probes.txt").read_text().splitlines() == expected
    # no pool needed: it is not even loaded (a pool that is gone does not matter)
    text_pool.rename(tmp_path / "moved.jsonl")
    assert main(["export", str(selected), "--format", "ids-txt", "--out", "again.txt"]) == 0
    assert (tmp_path / "again.txt").read_text().splitlines() == expected
    # but jsonl, which reads the pool, needs it
    assert main(["export", str(selected), "--format", "jsonl"]) == 2
    assert "is not there any more; give --data PATH" in one_error_line(capsys)


def test_a_new_format_is_in_the_help(capsys, ids_txt, id_shards):
    text = help_text(["export", "--help"], capsys)
    flat = " ".join(text.split())  # argparse wraps the option help
    assert "--format FORMAT one of jsonl, csv, datasets, npy, lm-eval, id-shards, ids-txt (below)" in flat
    assert "--per-file N how many ids each file holds (--format id-shards)" in flat
    assert re.search(r"^  ids-txt   +PROBES\.txt +one probe id per line, in rank order$", text, re.M)
    assert re.search(r"^  id-shards +PROBES-id-shards/ +the ids in rank order, N to a file \(needs --per-file N\)$",
                     text, re.M)
    top = re.sub(r"-\s+", "-", " ".join(help_text(["--help"], capsys).split()))  # argparse wraps at hyphens
    assert "export a probe set (jsonl, csv, datasets, npy, lm-eval, id-shards, ids-txt)" in top


def test_the_output_checks_apply_to_a_new_format(selected, tmp_path, text_pool, capsys, ids_txt):
    (tmp_path / "folder").mkdir()
    before = snapshot(tmp_path)
    cases = [
        (["--out", str(selected), "--overwrite"], r"would write over this command's input \(PROBES"),
        (["--out", str(text_pool), "--overwrite"], r"would write over this command's input \(the probe set's pool"),
        (["--out", "folder"], r"--out folder is a directory; it must name a file"),
        (["--task", "t"], r"--task applies to --format lm-eval only; got --format ids-txt\.$"),
    ]
    for args, pattern in cases:
        assert main(["export", str(selected), "--format", "ids-txt"] + args) == 2
        assert re.search(pattern, one_error_line(capsys))
    assert snapshot(tmp_path) == before
    (tmp_path / "mine.txt").write_text("my file\n")
    assert main(["export", str(selected), "--format", "ids-txt", "--out", "mine.txt"]) == 2
    assert one_error_line(capsys) == ("probekit export: error: --out mine.txt already exists; pass --overwrite "
                                      "to replace it, or choose another --out.")
    assert (tmp_path / "mine.txt").read_text() == "my file\n"
    assert main(["export", str(selected), "--format", "ids-txt", "--out", "mine.txt", "--overwrite"]) == 0
    assert (tmp_path / "mine.txt").read_text().splitlines() == list(ProbeSet.load(selected).ids)


def test_a_directory_format_and_its_option(selected, tmp_path, capsys, id_shards):
    base = ["export", str(selected), "--format", "id-shards"]
    assert main(base) == 2
    assert one_error_line(capsys) == ("probekit export: error: --format id-shards needs --per-file N "
                                      "(how many ids each file holds).")
    assert main(["export", str(selected), "--format", "csv", "--per-file", "3"]) == 2
    assert one_error_line(capsys).endswith("--per-file applies to --format id-shards only; got --format csv.")
    assert main(base + ["--per-file", "5"]) == 0
    out = tmp_path / "probes-id-shards"
    assert sorted(p.name for p in out.iterdir()) == ["SHARDS", "ids-000.txt", "ids-001.txt", "ids-002.txt"]
    capsys.readouterr()
    first = snapshot(out)
    assert main(base + ["--per-file", "4"]) == 2
    assert "already exists (a probe-set id-shards export); pass --overwrite to replace it" in one_error_line(capsys)
    assert snapshot(out) == first
    assert main(base + ["--per-file", "4", "--overwrite"]) == 0
    assert (out / "SHARDS").read_text() == "4"
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("my notes")
    assert main(base + ["--per-file", "4", "--out", str(mine), "--overwrite"]) == 2
    assert ("is a directory with files in it that are not a probe-set id-shards export"
            in one_error_line(capsys))
    assert (mine / "notes.txt").read_text() == "my notes"


def test_a_format_from_another_packages_entry_point(selected, tmp_path, capsys, monkeypatch):
    class EP:
        def __init__(self, name, value):
            self.name, self.value = name, value
            self.dist = type("D", (), {"name": "probekit-ids-plugin"})()

    real = metadata.entry_points
    plugin = [EP("ids-txt", "test_export_formats:IDS_TXT"), EP("broken", "probekit_no_such_plugin:FORMAT")]
    monkeypatch.setattr(metadata, "entry_points",
                        lambda **kw: plugin if kw.get("group") == "probekit.export_formats" else real(**kw))
    monkeypatch.setattr(EXPORT_FORMATS, "_targets", None)  # discover again, with the plugin
    monkeypatch.setattr(EXPORT_FORMATS, "_loaded", {})
    assert format_names() == BUILTINS + ["broken", "ids-txt"]  # probekit's own table still stands in
    assert main(["export", str(selected), "--format", "ids-txt"]) == 0
    assert (tmp_path / "probes.txt").read_text().splitlines() == list(ProbeSet.load(selected).ids)
    # a plugin that cannot be loaded leaves --help and the other formats working, and says why when used
    assert re.search(r"^  broken +\(cannot be loaded", help_text(["export", "--help"], capsys), re.M)
    assert main(["export", str(selected), "--format", "broken"]) == 1
    assert re.search(r"the export format 'broken' could not be loaded from 'probekit_no_such_plugin:FORMAT'",
                     one_error_line(capsys))
    assert main(["export", str(selected), "--format", "csv"]) == 0


def test_an_unknown_format_is_named_with_the_close_ones(selected, capsys):
    assert main(["export", str(selected), "--format", "jsnl"]) == 2
    assert one_error_line(capsys) == ("probekit export: error: --format must be one of jsonl, csv, datasets, npy, "
                                      "lm-eval; got 'jsnl'. Did you mean: jsonl?")


def test_readme_lists_the_declared_formats():
    row = next(line for line in (ROOT / "README.md").read_text().splitlines() if line.startswith("| `probekit inspect` / `export`"))
    listed = re.search(r"`--format` (.*?); `probekit export --help`", row).group(1)
    assert re.findall(r"`([\w-]+)`(?: \(| and|,)", listed + ",") == BUILTINS
    for name in BUILTINS:
        assert export_format(name).doc  # the README names each format; --help shows its doc line
