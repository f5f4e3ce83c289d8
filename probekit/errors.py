"""Exception and warning types shared by every probekit module.

The CLI maps them to exit codes: ``ProbekitUsageError`` (bad input from the
user: a parameter out of range, a missing column) exits 2; any other
``ProbekitError`` (a corrupt file, a pool that does not match) exits 1.
Messages are one line and name what was wrong and what is allowed.
"""
from __future__ import annotations


class ProbekitError(Exception):
    """Base class of every error probekit raises on purpose."""


class ProbekitUsageError(ProbekitError, ValueError):
    """The caller passed something not allowed (a parameter, a file shape, a name)."""


class ProbeSetFileError(ProbekitError):
    """A probe-set file is truncated, corrupt, foreign or of a newer schema."""


class PoolMismatchError(ProbekitError):
    """A probe set was made from another pool than the one it is used with."""


class ProbekitWarning(UserWarning):
    """Recoverable conditions (rejected records, degenerate windows) worth a look."""
