"""Atomic file and directory writes: a reader never sees a half-written output.

Everything probekit writes goes to a temporary sibling first and is renamed
into place only when complete (``os.replace`` is atomic on one filesystem).
On any exception the temporary is removed and the previous file, if any, is
left untouched.

Permissions follow the umask, as any other tool's outputs do: a new file is
``0666 & ~umask`` (0644 under umask 022), a new directory ``0777 & ~umask``.
``tempfile`` creates its temporaries private (0600 / 0700) on purpose, so the
mode is set before the rename. A file that replaces an existing one keeps the
existing file's mode, as a shell's ``>`` does.

Directories are never replaced blindly: :func:`atomic_directory` replaces an
existing non-empty directory only when its caller says the directory holds the
same kind of output (``replace_if``), and never the working directory or one
of its parents.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import stat
import tempfile
from pathlib import Path
from typing import Callable, Iterator

from probekit.errors import ProbekitUsageError


def current_umask() -> int:
    """The process umask, read without changing it where the OS allows.

    ``os.umask`` can only be read by setting it, which races with other
    threads creating files; Linux reports it in /proc/self/status instead.
    """
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def default_mode(directory: bool = False) -> int:
    """The mode a new file (or directory) gets under the current umask."""
    return (0o777 if directory else 0o666) & ~current_umask()


def _mode_for(target: Path, directory: bool) -> int:
    try:
        return stat.S_IMODE(os.stat(target).st_mode)  # replacing keeps the mode the user gave it
    except FileNotFoundError:
        return default_mode(directory)


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it to ``path`` on success."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as fh:  # flush to disk before the rename
            os.fsync(fh.fileno())
        os.chmod(tmp_path, _mode_for(target, directory=False))
        os.replace(tmp_path, target)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def _is_cwd_or_parent(target: Path) -> bool:
    here = Path.cwd().resolve()
    there = target.resolve()
    return there == here or there in here.parents


def check_replaceable_directory(path: str | os.PathLike, replace_if: Callable[[Path], bool] | None,
                                what: str = "output", overwrite: bool = False,
                                flag: str = "overwrite=True (CLI: --overwrite)") -> None:
    """Raise unless a directory at ``path`` may be replaced (see :func:`atomic_directory`)."""
    target = Path(path)
    if not target.exists() and not target.is_symlink():
        return
    if not target.is_dir() or target.is_symlink():
        raise ProbekitUsageError(f"{target} exists and is not a directory; the {what} must be a new directory.")
    if _is_cwd_or_parent(target):
        raise ProbekitUsageError(
            f"{target} is the working directory or one of its parents; the {what} must be a new directory."
        )
    if not any(target.iterdir()):
        return  # an empty directory: replacing it loses nothing
    if replace_if is None or not replace_if(target):
        raise ProbekitUsageError(
            f"{target} is a directory with files in it that are not a {what}; probekit replaces only a "
            f"{what}. Choose a new directory."
        )
    if not overwrite:
        raise ProbekitUsageError(
            f"{target} already exists (a {what}); pass {flag} to replace it."
        )


@contextlib.contextmanager
def atomic_directory(path: str | os.PathLike, replace_if: Callable[[Path], bool] | None = None,
                     what: str = "output", overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary directory beside ``path``; swap it in for ``path`` on success.

    ``path`` must be new, an empty directory, or (with ``overwrite``) a
    directory for which ``replace_if(path)`` is true: the caller recognises it
    as the same kind of output (a ``datasets`` directory, a trajectory of the
    cache). Anything else raises :class:`ProbekitUsageError` before any work,
    naming ``what`` was expected. The existing directory is moved aside first
    and removed only after the new one is in place, so a crash mid-swap loses
    nothing.
    """
    target = Path(path)
    check_replaceable_directory(target, replace_if, what, overwrite)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    try:
        yield tmp
        os.chmod(tmp, _mode_for(target, directory=True))
        check_replaceable_directory(target, replace_if, what, overwrite)  # it may have changed while we worked
        if target.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".old", dir=target.parent))
            os.replace(target, old / "previous")
            os.replace(tmp, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


@contextlib.contextmanager
def staged_files(directory: str | os.PathLike) -> Iterator[Path]:
    """Yield a staging directory; move each file it holds into ``directory`` on success.

    For commands that write several files into a directory the user chose
    (which may hold other things): nothing appears there unless every file
    was written, and nothing already there except same-named files is touched
    (callers check beforehand that those may be replaced). Staged files get
    the umask's mode (or keep the mode of the file they replace).
    """
    target = Path(directory)
    created = not target.exists()
    target.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=".probekit-", suffix=".tmp", dir=target))
    done = False
    try:
        yield stage
        for item in sorted(stage.iterdir()):
            os.chmod(item, _mode_for(target / item.name, directory=item.is_dir()))
            os.replace(item, target / item.name)
        done = True
    finally:
        shutil.rmtree(stage, ignore_errors=True)
        if created and not done:
            with contextlib.suppress(OSError):
                target.rmdir()  # the folder this call made, left empty by the failure
