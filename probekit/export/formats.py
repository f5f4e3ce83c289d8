"""Export formats, each declared once; ``probekit export`` and :func:`probekit.export.export` read them.

A format is an :class:`ExportFormat`: its name, the suffix of the file it writes (``None``: it
writes a directory), whether it needs the pool the probe set came from, its options (lm-eval's
``task``), a one-line doc, its writer and, where one exists, its reader. Formats are found through
the registry :data:`probekit.registry.EXPORT_FORMATS` (entry-point group
``probekit.export_formats``), built-ins included, so a new format is one declaration plus one entry
point (or, at run time, :func:`register_format`)::

    [project.entry-points."probekit.export_formats"]
    ids-txt = "my_package.ids_txt:IDS_TXT"

Everything else follows from the declaration: the ``--format`` choices and help, the default
``--out`` (PROBES with the suffix, or ``PROBES-NAME`` for a directory), whether the command loads
the pool, the ``--OPTION`` flags and their checks, and the output protection (a file is never one
of the command's inputs and replaces an existing one only with ``--overwrite``; a directory is new,
empty, or one that ``owns_directory`` recognises as an earlier export of the same format).

This module stays light (``probekit --help`` reads it): the built-in adapters import
:mod:`probekit.export.writers` and :mod:`probekit.export.readers`, where the work is done, when they run.
"""
from __future__ import annotations

import difflib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

from probekit.errors import ProbekitError, ProbekitUsageError
from probekit.registry import EXPORT_FORMATS

#: What a format does with the pool: ``required`` (it cannot be written without the pool),
#: ``optional`` (it adds the pool's rows when it has them; ``probekit export`` loads the pool for it),
#: ``unused`` (never read; ``probekit export --data`` still checks the pool against the probe set).
POOL_USES = ("required", "optional", "unused")

#: Names an option may not take: the writer's own keywords and the other flags of ``probekit export``.
RESERVED_OPTIONS = frozenset({"pool", "overwrite", "fmt", "format", "out", "data", "id_field", "ignore_fingerprint",
                              "probes", "help", "debug", "verbose", "command", "command_line", "run"})


@dataclass(frozen=True)
class ExportOption:
    """One option of a format: a keyword argument of its writer, ``--NAME`` of ``probekit export``."""

    name: str               # a Python identifier: write(..., task=...) and --task
    help: str               # what it is, said once: used by --help and by both error messages
    metavar: str = "VALUE"  # shown in --help and in "--format lm-eval needs --task NAME (...)"
    required: bool = False  # the format cannot be written without it

    def __post_init__(self) -> None:
        if not (isinstance(self.name, str) and self.name.isidentifier() and not self.name.startswith("_")):
            raise ProbekitUsageError(f"An export option name must be a Python identifier. Got {self.name!r} instead.")
        if self.name in RESERVED_OPTIONS:
            raise ProbekitUsageError(
                f"The export option name {self.name!r} is taken by probekit export itself; choose another."
            )

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")


@dataclass(frozen=True)
class ExportFormat:
    """One export format: everything ``probekit export`` and :func:`probekit.export.export` need to know.

    ``write(ps, path, *, pool, overwrite, **options)`` writes the probe set atomically at exactly
    ``path`` (:func:`probekit.atomic.atomic_file`, or :meth:`directory` for a directory format);
    ``read(path, pool=None, **options)`` returns a :class:`~probekit.probeset.ProbeSet`.
    """

    name: str                                        # --format NAME
    doc: str                                         # one line: --help's format table
    write: Callable[..., None]
    suffix: str | None = None                        # ".jsonl"; None: the format writes a directory
    pool: str = "unused"                             # one of POOL_USES
    options: tuple[ExportOption, ...] = ()
    read: Callable[..., Any] | None = None
    owns_directory: Callable[[Path], bool] | None = None  # directory formats: an earlier export of this format?
    details: str = ""                                # a paragraph for --help, when one line is not enough

    def __post_init__(self) -> None:
        if not (isinstance(self.name, str) and self.name and not self.name.startswith("-")
                and all(c.isalnum() or c in "-_." for c in self.name)):
            raise ProbekitUsageError(
                f"An export format name must be letters, digits, '-', '_' or '.'. Got {self.name!r} instead."
            )
        if self.suffix is not None and not (isinstance(self.suffix, str) and self.suffix.startswith(".")
                                            and len(self.suffix) > 1):
            raise ProbekitUsageError(
                f"The suffix of export format {self.name!r} must be None (a directory) or start with '.'. "
                f"Got {self.suffix!r} instead."
            )
        if self.pool not in POOL_USES:
            raise ProbekitUsageError(
                f"The pool of export format {self.name!r} must be one of {', '.join(map(repr, POOL_USES))}. "
                f"Got {self.pool!r} instead."
            )
        names = [o.name for o in self.options]
        if len(set(names)) != len(names):
            raise ProbekitUsageError(f"Export format {self.name!r} declares an option twice: {names}.")
        if self.owns_directory is not None and self.suffix is not None:
            raise ProbekitUsageError(f"Export format {self.name!r} writes a file; owns_directory is for directories.")

    @property
    def is_directory(self) -> bool:
        return self.suffix is None

    @property
    def what(self) -> str:
        """What an output of this format is called in messages ("probe-set datasets export")."""
        return f"probe-set {self.name} export"

    def default_output(self, probes: str | os.PathLike) -> Path:
        """PROBES with this format's suffix, or ``PROBES-NAME`` for a directory."""
        source = Path(probes)
        return source.with_name(source.stem + (self.suffix or f"-{self.name}"))

    def directory(self, path: str | os.PathLike, overwrite: bool = False):
        """For a directory format's writer: a temporary directory swapped in for ``path`` on success,
        replacing an existing one only if :attr:`owns_directory` recognises it (and ``overwrite``)."""
        from probekit.atomic import atomic_directory

        return atomic_directory(path, replace_if=self.owns_directory, what=self.what, overwrite=overwrite)

    def writer_options(self, given: Mapping[str, Any], owner: str = "export") -> dict[str, Any]:
        """The options of ``given`` this format takes, checked: a required one missing is refused;
        one that some other registered format takes is left out (one call can serve every
        format); a name no registered format declares is refused."""
        own = {o.name: o for o in self.options}
        for name in given:
            if name not in own and name not in option_table():
                raise ProbekitUsageError(
                    f"Invalid option {name!r} for {owner} to {self.name!r}. "
                    f"Valid options: {', '.join(own) or '(none)'}."
                )
        for option in self.options:
            if option.required and given.get(option.name) is None:
                raise ProbekitUsageError(f"{owner} to {self.name!r} needs {option.name}, {option.help}.")
        return {k: v for k, v in given.items() if k in own}


# -- the registry -----------------------------------------------------------------------
def format_names() -> list[str]:
    """Registered formats: the built-ins in their own order, then the others by name."""
    return EXPORT_FORMATS.ordered_names()


def export_format(name: str) -> ExportFormat:
    """The declaration registered as ``name`` (unknown names: did-you-mean and the list)."""
    return EXPORT_FORMATS.declaration(name, ExportFormat)


def unknown_format(name: Any, flag: str = "--format") -> ProbekitUsageError:
    """The CLI's error for a name that is not registered: the list in order, and the close ones."""
    names = format_names()
    close = difflib.get_close_matches(name, names, n=2) if isinstance(name, str) else []
    hint = f" Did you mean: {', '.join(close)}?" if close else ""
    return ProbekitUsageError(f"{flag} must be one of {', '.join(names)}; got {name!r}.{hint}")


def option_table() -> dict[str, tuple[ExportOption, list[str]]]:
    """Every option some registered format declares: its first declaration and the formats taking it.

    A format that cannot be loaded is left out here (it says why when it is used), so that one
    broken plugin does not take the other formats, or ``probekit --help``, down with it."""
    table: dict[str, tuple[ExportOption, list[str]]] = {}
    for name in format_names():
        try:
            options = export_format(name).options
        except ProbekitError:
            continue
        for option in options:
            table.setdefault(option.name, (option, []))[1].append(name)
    return table


def register_format(spec: ExportFormat) -> None:
    """Add a format at run time (tests, notebooks); a name already registered is refused."""
    EXPORT_FORMATS.register_declaration(spec, ExportFormat)


def unregister_format(name: str) -> None:
    EXPORT_FORMATS.unregister(name)


# -- the built-ins: thin adapters, so that this module imports nothing heavy ---------------------
def _write_jsonl(ps, path, *, pool=None, overwrite=False) -> None:
    from probekit.export.writers import to_jsonl

    to_jsonl(ps, path, pool=pool)


def _read_jsonl(path, pool=None):
    from probekit.export.readers import read_jsonl

    return read_jsonl(path, pool=pool)


def _write_csv(ps, path, *, pool=None, overwrite=False) -> None:
    from probekit.export.writers import to_csv

    to_csv(ps, path)


def _read_csv(path, pool=None):
    from probekit.export.readers import read_csv

    return read_csv(path, pool=pool)


def _write_datasets(ps, path, *, pool=None, overwrite=False) -> None:
    from probekit.export.writers import to_datasets

    to_datasets(ps, pool, path, overwrite=overwrite)


def _is_datasets_export(path: Path) -> bool:
    from probekit.export.writers import is_datasets_directory

    return is_datasets_directory(path)


def _write_npy(ps, path, *, pool=None, overwrite=False) -> None:
    from probekit.export.writers import to_npy

    to_npy(ps, path)


def _read_npy(path, pool=None):
    from probekit.export.readers import read_npy

    return read_npy(path, pool)


def _write_lm_eval(ps, path, *, task, pool=None, overwrite=False) -> None:
    from probekit.export.writers import to_lm_eval

    to_lm_eval(ps, path, task)


def _read_lm_eval(path, pool=None, task=None):
    from probekit.export.readers import read_lm_eval

    return read_lm_eval(path, pool, task=task)


JSONL = ExportFormat(
    name="jsonl", suffix=".jsonl", pool="optional", write=_write_jsonl, read=_read_jsonl,
    doc="a JSON object per probe: rank, id, index, slice, score, the example's pool row",
)
CSV = ExportFormat(
    name="csv", suffix=".csv", write=_write_csv, read=_read_csv,
    doc="rank, id, index, slice, score (scores exact, nan/inf kept)",
)
DATASETS = ExportFormat(
    name="datasets", suffix=None, pool="required", write=_write_datasets, owns_directory=_is_datasets_export,
    doc="the selected examples in rank order (+ probe_rank, probe_id), datasets save_to_disk",
)
NPY = ExportFormat(
    name="npy", suffix=".npy", write=_write_npy, read=_read_npy,
    doc="the int64 pool indices in rank order",
)
LM_EVAL = ExportFormat(
    name="lm-eval", suffix=".json", write=_write_lm_eval, read=_read_lm_eval,
    options=(ExportOption("task", "the lm-evaluation-harness task the indices refer to", metavar="NAME",
                          required=True),),
    doc="{task: [sorted indices]}, the JSON lm_eval takes with --samples",
    details="the indices are sorted (pool order), not in rank order: lm_eval logs the k-th document it "
            "evaluates with doc_id = the k-th index of the list, right only when the list is sorted. The "
            "ranking stays in PROBES. The pool's row order must be the task's document order.",
)
