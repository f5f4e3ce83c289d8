"""A new user's dead ends: the mixture's flags on a text pool, one strategy's help, the slice docs.

- ``--text-field`` / ``--embedding-field`` / ``--slice`` reach a mixture's components;
- ``probekit selectors NAME`` shows one strategy in detail (and the slice grammar for concern);
- ``docs/slices.md`` documents every form, and its examples parse;
- ``rare:COLUMN`` spreads over every value: the docs, the help and the errors say how to target one.
"""
from __future__ import annotations

import json
import re
import shlex
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from probekit.cli import main
from probekit.errors import ProbekitUsageError
from probekit.probeset import ProbeSet
from probekit.registry import SELECTORS
from probekit.selection.slices.docs import EXAMPLES, GRAMMAR
from probekit.selection.slices.parse import parse_slices

ROOT = Path(__file__).resolve().parents[1]
TOPICS = ["sports", "finance", "weather", "health", "travel", "food"]


@pytest.fixture()
def prompts(tmp_path, monkeypatch):
    """A user's text pool, ``prompts.jsonl`` in the working directory: 300 rows, ids under 'uid',
    text under 'prompt' (no column is named 'text'), a 'topic' with one rare value (astronomy, 6 rows)."""
    monkeypatch.chdir(tmp_path)
    rows = []
    for i in range(300):
        topic = "astronomy" if i % 50 == 7 else TOPICS[i % 6]
        rows.append({"uid": f"p{i:04d}", "prompt": f"question {i} about {topic}: the {'abcd'[i % 4]} item {i % 17}",
                     "topic": topic})
    path = tmp_path / "prompts.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _components(out: Path) -> dict:
    return {c["label"]: c for c in ProbeSet.load(out).provenance.info["components"]}


# -- 1. the mixture's flags reach its components -------------------------------------------------
def test_text_field_reaches_the_mixture_components_that_embed(prompts):
    from probekit.cli.common import load_pool
    from probekit.selectors.cluster import ClusterSelector
    from probekit.selectors.mixture import component_seed

    assert main(["select", "--strategy", "mixture", "--n", "40", "--data", str(prompts), "--id-field", "uid",
                 "--text-field", "prompt", "--param", "components=cluster:0.75,random:0.25",
                 "--out", "mix.parquet"]) == 0
    ps = ProbeSet.load("mix.parquet")
    assert ps.provenance.params["text_field"] == "prompt"
    parts = _components(Path("mix.parquet"))
    assert parts["cluster"]["inherited"] == ["text_field"] and parts["cluster"]["params"]["text_field"] == "prompt"
    assert parts["random"]["inherited"] == [] and "text_field" not in parts["random"]["params"]
    # The cluster part is the cluster strategy on the prompt text, with the component's seed.
    pool = load_pool(str(prompts), "uid")
    expected = ClusterSelector(text_field="prompt").select(pool, 40, seed=component_seed(0, 0)).ids
    ours = [i for i, s in zip(ps.ids, ps.slices) if s.startswith("cluster/")]
    assert len(ours) == 30 and set(ours) <= set(expected)


def test_slice_and_text_field_reach_a_concern_component(prompts):
    assert main(["select", "--strategy", "mixture", "--n", "40", "--data", str(prompts), "--id-field", "uid",
                 "--text-field", "prompt", "--slice", "topic=astronomy",
                 "--param", "components=cluster:0.75,concern:0.25", "--out", "mix.parquet"]) == 0
    ps = ProbeSet.load("mix.parquet")
    assert ps.provenance.params["slices"] == ["topic=astronomy"]
    parts = _components(Path("mix.parquet"))
    assert parts["concern"]["inherited"] == ["slices", "text_field"]
    assert parts["cluster"]["inherited"] == ["text_field"]
    rows = [json.loads(line) for line in prompts.read_text().splitlines()]
    expected = {r["uid"] for r in rows if r["topic"] == "astronomy"}
    # The concern part ranks the 6 astronomy rows first; one the cluster part took already is skipped.
    by_cluster = {i for i, s in zip(ps.ids, ps.slices) if s.startswith("cluster/")} & expected
    assert expected <= set(ps.ids) and len(expected) == 6
    assert Counter(ps.slices)["concern/topic=astronomy"] == len(expected) - len(by_cluster)


def test_a_component_keeps_its_own_setting(prompts):
    from probekit.pool.builtin import load_builtin
    from probekit.selectors.mixture import MixtureSelector

    mix = MixtureSelector(components=[("concern", 1, {"slices": ["topic=astronomy"]}), ("concern", 1)],
                          slices="rare:topic,below=0.05")
    ps = mix.select(load_builtin("toy-text"), 20, seed=0)
    assert set(ps.slices) == {"concern#0/topic=astronomy", "concern#1/rare:topic=astronomy"}
    assert [c["inherited"] for c in ps.provenance.info["components"]] == [[], ["slices"]]


@pytest.mark.parametrize("components,reason", [
    ("cluster:0.75,random:0.25", r"none of its components \(cluster, random\) takes it; strategies that do: concern"),
    ('[{"strategy":"concern","params":{"slices":"rare:topic"}},{"strategy":"random"}]',
     r"every component taking it \(concern\) sets its own"),
])
def test_a_shared_flag_that_reaches_no_component_is_refused(prompts, capsys, components, reason):
    code = main(["select", "--strategy", "mixture", "--n", "10", "--data", str(prompts), "--id-field", "uid",
                 "--text-field", "prompt", "--slice", "topic=astronomy", "--param", f"components={components}",
                 "--out", "mix.parquet"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert re.search(r"The 'slices' parameter of MixtureSelector \(--slice on the command line\) must reach a "
                     rf"component, but {reason}\. Got \['topic=astronomy'\] instead\.$", err), err
    assert not Path("mix.parquet").exists()


def _readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    section = text[text.index("## Selecting probe sets"):]
    section = section[:section.index("\n## ", 5)]
    block = re.search(r"```bash\n(.*?)```", section, re.S).group(1).replace("\\\n", " ")
    return [line.split("  #")[0].strip() for line in block.splitlines() if line.strip()]


def _epilog_commands() -> list[str]:
    from probekit.cli.select_cmd import EPILOG

    return [line.split("  #")[0].strip() for line in EPILOG.splitlines() if line.strip().startswith("probekit ")]


def test_the_documented_mixture_examples_run_on_a_users_text_pool(prompts, capsys):
    commands = {c for c in _readme_commands() + _epilog_commands()
                if "--strategy mixture" in c and "prompts.jsonl" in c}
    assert len(commands) >= 2  # --text-field alone, and with --slice
    for k, command in enumerate(sorted(commands)):
        argv = shlex.split(command)[1:] + ["--out", f"ex{k}.parquet"]
        assert main(argv) == 0, (command, capsys.readouterr().err)
        assert ProbeSet.load(f"ex{k}.parquet").provenance.params["text_field"] == "prompt"


# -- 2. probekit selectors NAME -----------------------------------------------------------------
def test_selectors_concern_shows_parameters_and_the_slice_grammar(capsys):
    assert main(["selectors", "concern"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("concern: Concern-targeted probes")
    assert "  background: a float in the range [0, 1); default 0.0\n" in out
    assert "share of uniformly random background probes" in out  # the parameter's doc
    assert "  slices: " in out and "default None; or --slice" in out
    for line in GRAMMAR.strip().splitlines():
        assert line.rstrip() in out
    for example in EXAMPLES:
        assert f"--slice {shlex.quote(example)}" in out
    assert "docs/slices.md" in out
    assert "probekit select --strategy concern" in out  # the select examples for it


@pytest.mark.parametrize("name", SELECTORS.names())
def test_selectors_name_lists_every_parameter_with_its_constraint(name, capsys):
    from probekit.params import _describe

    assert main(["selectors", name]) == 0
    out = capsys.readouterr().out
    cls = SELECTORS.load(name)
    for param in cls._param_names():
        line = next((ln for ln in out.splitlines() if ln.startswith(f"  {param}: ")), None)
        assert line is not None, param
        if param in cls._constraints:
            assert _describe(cls._constraints[param]) in line


def test_selectors_unknown_name_says_did_you_mean(capsys):
    assert main(["selectors", "concren"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == ("probekit selectors: error: Unknown selector 'concren'. Did you mean: concern? "
                   f"Available: {', '.join(SELECTORS.names())}.")


def test_select_help_points_to_the_strategy_help_and_the_slice_docs(capsys):
    with pytest.raises(SystemExit) as stop:
        main(["select", "--help"])
    assert stop.value.code == 0
    out = capsys.readouterr().out
    assert "probekit selectors NAME" in out and "probekit selectors concern" in out
    assert "docs/slices.md" in re.sub(r"\s+", " ", out)


# -- the slice docs --------------------------------------------------------------------------------
@pytest.fixture()
def slice_files(tmp_path, monkeypatch):
    """The files docs/slices.md's examples name (vectors of the right width; contents as in the docs)."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "watch.txt").write_text("toy-00001a\ntoy-00001b\n# a comment line\ntoy-00002a\n")
    (tmp_path / "watch.json").write_text('["toy-00003a", "toy-00003b"]')
    (tmp_path / "queries.jsonl").write_text('{"id": "toy-00003a"}\n{"id": "toy-00010b"}\n')
    comets = np.random.default_rng(0).random((5, 128))
    np.save(tmp_path / "comets.npy", comets)
    (tmp_path / "comets.jsonl").write_text("".join(json.dumps({"embedding": v.tolist()}) + "\n" for v in comets))
    (tmp_path / "comets.json").write_text(json.dumps(comets.tolist()))
    docs = (ROOT / "docs" / "slices.md").read_text()
    for name in ("specs.json", "every-dict.json"):  # the heredocs of the docs' last section
        body = re.search(rf"cat > {re.escape(name)} <<'EOF'\n(.*?)\nEOF", docs, re.S).group(1)
        (tmp_path / name).write_text(body)
    return tmp_path


def test_every_grammar_example_parses(slice_files):
    kinds = set()
    for example in EXAMPLES:
        kinds |= {spec.kind for spec in parse_slices(example)}
    assert kinds == {"where", "ids", "query", "bias", "rare"}


def test_docs_slices_runs_are_of_valid_specs_and_cover_every_form(slice_files):
    docs = (ROOT / "docs" / "slices.md").read_text()
    runs = [shlex.split(line[2:]) for line in docs.splitlines() if line.startswith("$ probekit select")]
    assert len(runs) >= 30
    specs = [argv[i + 1] for argv in runs for i, a in enumerate(argv) if a == "--slice"]
    for example in EXAMPLES:
        assert example in specs, example  # every grammar example is run in the docs
    parsed = []
    for spec in specs:
        try:
            parsed += parse_slices(spec)
        except ProbekitUsageError as exc:
            assert "rare:topic=astronomy" in spec, exc  # the one error shown on purpose
    assert {s.kind for s in parsed} == {"where", "ids", "query", "bias", "rare"}
    assert len(parse_slices("every-dict.json")) == 12  # one spec of each dict form
    for section in ("## The grammar", "## The budget", "## One value, not every value", "## Mixtures"):
        assert section in docs


# -- 3. rare:COLUMN is every value; how to target one ----------------------------------------------
def test_a_rare_slice_with_a_value_points_to_the_predicate():
    with pytest.raises(ProbekitUsageError, match=r"^slice spec 'rare:topic=astronomy' is not understood: rare:COLUMN "
                       r"spreads its share over every value of the column, it takes no value; to target "
                       r"topic=astronomy alone, write the predicate 'topic=astronomy' \(or rare:topic,below=F"):
        parse_slices("rare:topic=astronomy")


def test_the_readme_concern_example_targets_the_rare_topic(tmp_path, monkeypatch):
    from probekit.pool.builtin import toy_text_rows

    monkeypatch.chdir(tmp_path)
    command = next(c for c in _readme_commands() if "--strategy concern" in c)
    assert main(shlex.split(command)[1:] + ["--out", "c.parquet"]) == 0
    ps = ProbeSet.load("c.parquet")
    rows = toy_text_rows()
    topic = dict(zip(rows["id"], rows["topic"]))
    rare = [i for i, s in zip(ps.ids, ps.slices) if s.startswith("rare:")]
    expected = sum(t == "astronomy" for t in rows["topic"])  # 46: the slice's share (64) exceeds it
    assert {topic[i] for i in rare} == {"astronomy"}
    assert len(rare) + sum(topic[i] == "astronomy" for i, s in zip(ps.ids, ps.slices) if s == "bias") == expected


def test_the_concern_help_says_how_to_target_one_value():
    from probekit.selectors import concern

    for text in (GRAMMAR, concern.__doc__):
        flat = re.sub(r"\s+", " ", text)
        assert "topic=astronomy" in flat and "rare:topic,below=0.05" in flat
