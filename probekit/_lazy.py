"""Lazy public names for a package (PEP 562), so that importing it imports none of its modules.

A package lists its public names and the module that defines each; the first use of a name
imports that module (docs/design.md §2, "Cheap imports")::

    __getattr__, __dir__ = lazy_names(__name__, _LAZY)

No name may equal one of the package's submodules: importing the submodule would set the
package attribute to the module and shadow the name (``tests/test_layout.py`` checks).
"""
from __future__ import annotations

import importlib
import sys
from typing import Any, Callable


def lazy_names(package: str, table: dict[str, str]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """The module-level ``__getattr__`` and ``__dir__`` of ``package`` for ``table`` (name -> module)."""

    def __getattr__(name: str) -> Any:
        module = table.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(module), name)

    def __dir__() -> list[str]:
        # without this, dir() and tab completion show none of the lazy names
        return sorted({*vars(sys.modules[package]), *table})

    return __getattr__, __dir__
