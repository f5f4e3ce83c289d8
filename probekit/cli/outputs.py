"""What a command may write where: never over its own inputs, never over an output without --overwrite.

Every subcommand that writes files checks its outputs here, before any work,
so a refused command has done nothing (exit 2, one line):

- an output that is one of the command's inputs (the same file, reached by
  any path or hard link), or a directory holding one, is always refused;
- an existing output is replaced only with ``--overwrite``;
- an existing directory is replaced only when it is the same kind of output
  (see :func:`probekit.atomic.atomic_directory`); files of the user's in a
  directory the command writes into are never touched.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable, Mapping

from probekit.errors import ProbekitUsageError

OVERWRITE_HELP = "replace outputs that already exist (without it, an existing output stops the command)"


def add_overwrite_flag(parser) -> None:
    parser.add_argument("--overwrite", action="store_true", help=OVERWRITE_HELP)


def _real(path: str | os.PathLike) -> Path:
    return Path(os.path.realpath(os.fspath(path)))


def _same(a: Path, b: Path) -> bool:
    if a == b:
        return True
    try:
        return os.path.samefile(a, b)  # hard links and bind mounts
    except OSError:
        return False


def _clashes(output: Path, inputs: Mapping[str, str | os.PathLike | None]) -> str | None:
    """The option naming an input that ``output`` would write over, if any: the input itself,
    a directory holding it, or a path inside an input directory (a ``datasets`` pool)."""
    out = _real(output)
    for option, given in inputs.items():
        if not given:
            continue
        source = _real(given)
        if _same(out, source) or out in source.parents or (source.is_dir() and source in out.parents):
            return option
    return None


def check_not_input(output: str | os.PathLike, option: str,
                    inputs: Mapping[str, str | os.PathLike | None]) -> None:
    """Refuse an output that is (or contains) one of the command's inputs, whatever --overwrite says."""
    clash = _clashes(Path(output), inputs)
    if clash is not None:
        given = inputs[clash]
        raise ProbekitUsageError(
            f"{option} {os.fspath(output)} would write over this command's input ({clash} {os.fspath(given)}); "
            "write the output somewhere else."
        )


def check_new_file(output: str | os.PathLike, option: str, overwrite: bool,
                   inputs: Mapping[str, str | os.PathLike | None]) -> None:
    """An output file: not an input, not a directory, and new unless ``overwrite``."""
    check_not_input(output, option, inputs)
    path = Path(output)
    if path.is_dir():
        raise ProbekitUsageError(f"{option} {path} is a directory; it must name a file.")
    check_parent(path, option)
    if path.exists() and not overwrite:
        raise ProbekitUsageError(
            f"{option} {path} already exists; pass --overwrite to replace it, or choose another {option}."
        )


def check_parent(path: str | os.PathLike, option: str) -> None:
    """The folders above an output must be folders (or not exist yet): found before any work."""
    for parent in Path(path).parents:
        if parent.exists():
            if not parent.is_dir():
                raise ProbekitUsageError(f"{option} {os.fspath(path)}: {parent} is a file, not a directory.")
            return


def check_files_in_dir(directory: str | os.PathLike, names: Iterable[str], option: str, overwrite: bool,
                       inputs: Mapping[str, str | os.PathLike | None]) -> None:
    """Files a command writes into a directory of the user's: the same checks for each of them."""
    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise ProbekitUsageError(f"{option} {directory} exists and is not a directory.")
    check_parent(directory, option)
    existing = []
    for name in names:
        target = directory / name
        check_not_input(target, option, inputs)
        if target.exists():
            existing.append(name)
    if existing and not overwrite:
        raise ProbekitUsageError(
            f"{option} {directory} already holds {', '.join(existing)}; pass --overwrite to replace "
            f"{'it' if len(existing) == 1 else 'them'}, or choose another {option}."
        )
