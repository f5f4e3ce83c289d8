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
    "print(os.path.realpath(importlib.util.find_spec('probekit.eval.deep_linear').origin));"
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
    assert Path(out[1]) == ROOT / "eval" / "deep_linear.py"


def test_imports_from_bare_source_checkout(tmp_path):
    # PYTHONPATH puts the copy ahead of anything installed; the paths printed
    # prove that the copy, not an installed probekit, answered every import.
    src = copy_source(tmp_path)
    out = run([sys.executable, "-c", CHECK], cwd=tmp_path, env={"PYTHONPATH": str(src)})
    assert Path(out[0]) == (src / "selectors" / "base.py").resolve()
    assert Path(out[1]) == (src / "eval" / "deep_linear.py").resolve()


def test_imports_from_built_wheel(tmp_path):
    src = copy_source(tmp_path)
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
         "-q", "-w", str(tmp_path / "dist"), str(src)], cwd=tmp_path)
    wheel = next((tmp_path / "dist").glob("probekit-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    assert "probekit/selectors/base.py" in names and "probekit/eval/deep_linear.py" in names
    assert not any(n.startswith(("selectors/", "eval/")) for n in names)
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    out = run([sys.executable, "-c", CHECK], cwd=tmp_path, env={"PYTHONPATH": str(site)})
    assert Path(out[0]) == (site / "probekit" / "selectors" / "base.py").resolve()
    assert Path(out[1]) == (site / "probekit" / "eval" / "deep_linear.py").resolve()
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
    assert Path(out[1]) == (src / "eval" / "deep_linear.py").resolve()


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


def test_lazy_public_names_resolve_to_objects_not_modules():
    # A submodule named like a lazy attribute would shadow it once imported.
    code = (
        "import importlib, types, probekit\n"
        "for name, module in probekit._LAZY.items():\n"
        "    importlib.import_module(module)\n"
        "    obj = getattr(probekit, name)\n"
        "    assert not isinstance(obj, types.ModuleType), name\n"
        "    assert obj is getattr(importlib.import_module(module), name), name\n"
        "print('ok')"
    )
    assert run([sys.executable, "-c", code], cwd=ROOT) == ["ok"]
