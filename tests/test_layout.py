"""The layout of docs/design.md §2, proven for every way probekit gets imported.

``selectors/`` and ``eval/`` sit beside ``probekit/`` and must import as
``probekit.selectors`` / ``probekit.eval`` from a wheel, an editable install
(default and strict), a bare source checkout and the repository root, while
``import selectors`` from the root still reaches the standard library.
"""
from __future__ import annotations

import builtins
import os
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SKIP_DIRS = {"build", "dist", "node_modules", "venv", ".venv", "__pycache__"}
# What each import mode must find: a module of each mapped package.
# Where each import mode finds the mapped packages. find_spec resolves the
# module files without executing them, so the check needs nothing but probekit
# itself (a bare venv has no numpy).
CHECK = (
    "import importlib.util, os, probekit, probekit.selectors, probekit.eval;"
    "print(os.path.realpath(importlib.util.find_spec('probekit.selectors.base').origin));"
    "print(os.path.realpath(importlib.util.find_spec('probekit.eval.families.deep_linear').origin));"
    "print(len(probekit.__path__))"
)


def run(cmd, cwd, env=None, timeout=300):
    full_env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    full_env.update(env or {})
    proc = subprocess.run(cmd, cwd=cwd, env=full_env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{cmd} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout.strip().splitlines()


def installed_here() -> list[str]:
    """This environment's probekit entries in site-packages (what an uninstall would remove)."""
    import sysconfig

    site = Path(sysconfig.get_paths()["purelib"])
    return sorted(p.name for p in site.iterdir() if "probekit" in p.name.lower())


def copy_source(dest: Path) -> Path:
    """The files a clean checkout has, copied so builds never touch the repository."""
    src = dest / "src"
    for name in ("probekit", "selectors", "eval"):
        shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    return src


def source_modules() -> set[str]:
    """Every module file of the source tree, as the wheel names it (probekit/...)."""
    out = set()
    for name, prefix in (("probekit", "probekit"), ("selectors", "probekit/selectors"), ("eval", "probekit/eval")):
        for path in (ROOT / name).rglob("*.py"):
            if "__pycache__" not in path.parts:
                out.add(f"{prefix}/{path.relative_to(ROOT / name).as_posix()}")
    return out


def test_every_package_is_listed_for_the_wheel():
    # setuptools installs only the packages pyproject lists: a subpackage missing there would be
    # missing from the wheel (and from a strict editable install), though a checkout imports it.
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {"probekit.selectors", "probekit.eval"}  # the two mapped namespace portions
    for name, prefix in (("probekit", "probekit"), ("selectors", "probekit.selectors"), ("eval", "probekit.eval")):
        for init in (ROOT / name).rglob("__init__.py"):
            rel = init.parent.relative_to(ROOT / name)
            found.add(".".join([prefix, *rel.parts]))
    assert listed == found


def test_stdlib_selectors_and_asyncio_from_repository_root():
    out = run([sys.executable, "-c",
               "import asyncio, subprocess, selectors, os; print(os.path.realpath(selectors.__file__))"],
              cwd=ROOT)
    stdlib = Path(os.path.realpath(sys.base_prefix))
    assert Path(out[-1]).is_relative_to(stdlib) or "python3" in out[-1]
    assert not Path(out[-1]).is_relative_to(ROOT)


def test_mapped_directories_have_no_top_level_init():
    for name in ("selectors", "eval"):
        assert (ROOT / name).is_dir()
        assert not (ROOT / name / "__init__.py").exists(), f"{name}/__init__.py must not exist"


def test_no_module_is_named_after_stdlib_or_builtin():
    forbidden = set(sys.stdlib_module_names) | set(dir(builtins))
    bad = []
    for dirpath, dirnames, filenames in os.walk(ROOT):
        dirnames[:] = [d for d in dirnames if not d.startswith(".") and d not in SKIP_DIRS]
        rel = Path(dirpath).relative_to(ROOT)
        for f in filenames:
            if f.endswith(".py") and f[:-3] in forbidden and f != "__init__.py" and f != "__main__.py":
                bad.append(str(rel / f))
        for d in dirnames:
            if d in forbidden and d not in ("selectors", "eval"):
                # Only the two mapped directories may carry such names, and only
                # because they never become top-level packages (no __init__.py).
                if (Path(dirpath) / d / "__init__.py").exists():
                    bad.append(str(rel / d))
    assert bad == []


def test_imports_from_repository_root():
    out = run([sys.executable, "-c", CHECK], cwd=ROOT)
    assert Path(out[0]) == ROOT / "selectors" / "base.py"
    assert Path(out[1]) == ROOT / "eval" / "families" / "deep_linear.py"


def test_imports_from_bare_source_checkout(tmp_path):
    # PYTHONPATH puts the copy ahead of anything installed; the paths printed
    # prove that the copy, not an installed probekit, answered every import.
    src = copy_source(tmp_path)
    out = run([sys.executable, "-c", CHECK], cwd=tmp_path, env={"PYTHONPATH": str(src)})
    assert Path(out[0]) == (src / "selectors" / "base.py").resolve()
    assert Path(out[1]) == (src / "eval" / "families" / "deep_linear.py").resolve()


def test_imports_from_built_wheel(tmp_path):
    src = copy_source(tmp_path)
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
         "-q", "-w", str(tmp_path / "dist"), str(src)], cwd=tmp_path)
    wheel = next((tmp_path / "dist").glob("probekit-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    assert "probekit/selectors/base.py" in names and "probekit/eval/families/deep_linear.py" in names
    assert not any(n.startswith(("selectors/", "eval/")) for n in names)
    # every module of the source tree, subpackages of the mapped directories included
    assert {n for n in names if n.endswith(".py")} == source_modules()
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    out = run([sys.executable, "-c", CHECK], cwd=tmp_path, env={"PYTHONPATH": str(site)})
    assert Path(out[0]) == (site / "probekit" / "selectors" / "base.py").resolve()
    assert Path(out[1]) == (site / "probekit" / "eval" / "families" / "deep_linear.py").resolve()
    assert out[2] == "1"  # the wheel needs no path extension


@pytest.mark.parametrize("mode", ["default", "strict"])
def test_imports_from_editable_install(tmp_path, mode):
    before = installed_here()
    src = copy_source(tmp_path)
    venv = tmp_path / "venv"
    run([sys.executable, "-m", "venv", "--without-pip", str(venv)], cwd=tmp_path)
    # This environment's pip and setuptools build the PEP 660 editable wheel and
    # install it into the bare venv (--prefix): what `pip install -e .` does,
    # without needing a package index.
    # --ignore-installed: without it pip "upgrades" the probekit of the running
    # environment by uninstalling it, pulling the suite's own install away.
    cmd = [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
           "--no-index", "--ignore-installed", "--prefix", str(venv), "-e", str(src)]
    if mode == "strict":
        cmd[-2:-2] = ["--config-settings", "editable_mode=strict"]
    run(cmd, cwd=tmp_path)
    out = run([str(venv / "bin" / "python"), "-c", CHECK], cwd=tmp_path)
    assert installed_here() == before, "the editable install into the venv touched this environment's probekit"
    # Strict mode links files into a build tree; either way they are the source files.
    assert Path(out[0]) == (src / "selectors" / "base.py").resolve()
    assert Path(out[1]) == (src / "eval" / "families" / "deep_linear.py").resolve()


def test_cli_import_stays_light():
    code = (
        "import sys, probekit.cli; probekit.cli.build_parser();"
        "print(','.join(m for m in ('torch', 'datasets', 'faiss', 'transformers', 'matplotlib', 'pyarrow')"
        " if m in sys.modules))"
    )
    out = run([sys.executable, "-c", code], cwd=ROOT)
    assert out == [] or out == [""]


def test_python_dash_m_probekit_from_root():
    from probekit import __version__

    out = run([sys.executable, "-m", "probekit", "--version"], cwd=ROOT)
    assert out == [f"probekit {__version__}"]


# Packages whose public names load lazily (probekit._lazy): the top level, and the packages that
# took over the path of a module users imported from (probekit.rdm, probekit.pool, ...).
LAZY_PACKAGES = ("probekit", "probekit.monitor", "probekit.rdm", "probekit.pool", "probekit.probeset",
                 "probekit.export", "probekit.eval.bench", "probekit.eval.scoring", "probekit.eval.peers",
                 "probekit.record")

# Old module paths kept as aliases, each because a user-facing document named it (the alias's
# docstring says which): old path -> the module it now is.
ALIASES = {
    "probekit.signal_table": "probekit.rdm.signal_table",
    "probekit.spectral": "probekit.rdm.spectral",
    "probekit.indicators": "probekit.rdm.indicators",
    "probekit.apportionment": "probekit.selection.apportionment",
    "probekit.builtin_pools": "probekit.pool.builtin",
    "probekit.export_formats": "probekit.export.formats",
    "probekit.eval.reference": "probekit.eval.families.base",
    "probekit.eval.runner": "probekit.eval.store.runner",
    "probekit.eval.cells": "probekit.eval.bench.cells",
    "probekit.eval.suite": "probekit.eval.store.suite",
}


@pytest.mark.parametrize("package", LAZY_PACKAGES)
def test_lazy_public_names_resolve_to_objects_not_modules(package):
    # A submodule named like a lazy attribute would shadow it once imported: import every
    # module a name comes from first, then every name must still be that module's object.
    code = (
        "import importlib, types\n"
        f"pkg = importlib.import_module({package!r})\n"
        "for name, module in pkg._LAZY.items():\n"
        "    importlib.import_module(module)\n"
        "for name, module in pkg._LAZY.items():\n"
        "    obj = getattr(pkg, name)\n"
        "    assert not isinstance(obj, types.ModuleType), name\n"
        "    assert obj is getattr(importlib.import_module(module), name), name\n"
        "    assert name in dir(pkg), name\n"
        "print('ok')"
    )
    assert run([sys.executable, "-c", code], cwd=ROOT) == ["ok"]


def test_old_module_paths_are_the_new_modules():
    code = (
        "import importlib, json, sys\n"
        f"aliases = {ALIASES!r}\n"
        "for old, new in aliases.items():\n"
        "    assert importlib.import_module(old) is importlib.import_module(new), old\n"
        "    assert sys.modules[old] is sys.modules[new], old\n"
        "from probekit.signal_table import Signal\n"
        "from probekit.rdm.signal_table import Signal as S\n"
        "assert Signal is S\n"
        "print('ok')"
    )
    assert run([sys.executable, "-c", code], cwd=ROOT) == ["ok"]
    for old in ALIASES:  # an alias is a few lines, and says why it exists
        parts = old.split(".")
        path = ROOT / ("eval" if parts[1] == "eval" else "probekit") / f"{parts[-1]}.py"
        text = path.read_text()
        assert len(text.splitlines()) <= 12 and "Kept because" in text, path
