"""The user's own code that a recording names: a model factory, a model class, a loss (``module:name``
or ``path/file.py:name``), imported, and identified by the hash of the file that defines it."""
from __future__ import annotations

import hashlib
import importlib
import importlib.util
import os
import sys
from pathlib import Path
from typing import Any

from probekit.errors import ProbekitUsageError

__all__ = ["code_identity", "import_object"]


def code_identity(spec: str) -> tuple[str, str | None]:
    """``module:name`` or ``file.py:name`` -> (the spec with the file made absolute, the sha256 of the file
    that defines it, None when it cannot be found). The file's hash goes into the recording's key, so
    editing a model factory or loss records again; what that file imports is not hashed."""
    module_name, sep, attr = str(spec).rpartition(":")
    if not sep or not module_name:
        return str(spec), None
    if module_name.endswith(".py"):
        file = Path(module_name).expanduser().resolve()
        spec = f"{file}:{attr}"
    else:
        added = os.getcwd() not in sys.path
        if added:
            sys.path.append(os.getcwd())
        try:
            found = importlib.util.find_spec(module_name)
        except (ImportError, ValueError):
            found = None
        finally:
            if added:
                sys.path.remove(os.getcwd())
        file = Path(found.origin) if found is not None and found.origin and found.has_location else None
    digest = hashlib.sha256(file.read_bytes()).hexdigest() if file is not None and file.is_file() else None
    return spec, digest


def import_object(spec: str, option: str) -> Any:
    """``module:name`` (a module on the path, the working directory included) or ``path/file.py:name``."""
    module_name, sep, attr = str(spec).rpartition(":")
    if not sep or not module_name or not attr:
        raise ProbekitUsageError(f"{option} must be MODULE:NAME or FILE.py:NAME; got {spec!r}.")
    dont_write = sys.dont_write_bytecode
    sys.dont_write_bytecode = True  # no __pycache__ beside the user's files
    try:
        if module_name.endswith(".py"):
            file = Path(module_name).expanduser()
            if not file.is_file():
                raise ProbekitUsageError(f"{option} {spec!r}: file {file} does not exist.")
            name = f"probekit_user_{hashlib.sha256(str(file.resolve()).encode()).hexdigest()[:12]}"
            module = sys.modules.get(name)
            if module is None:
                loader_spec = importlib.util.spec_from_file_location(name, file)
                module = importlib.util.module_from_spec(loader_spec)
                loader_spec.loader.exec_module(module)
                sys.modules[name] = module
        else:
            added = os.getcwd() not in sys.path
            if added:
                sys.path.append(os.getcwd())
            try:
                module = importlib.import_module(module_name)
            finally:
                if added:
                    sys.path.remove(os.getcwd())
    except ProbekitUsageError:
        raise
    except Exception as exc:  # noqa: BLE001 - an import that fails for any reason
        first = (str(exc).strip().splitlines() or [""])[0]
        raise ProbekitUsageError(f"{option} {spec!r}: cannot import {module_name!r} ({type(exc).__name__}: "
                                 f"{first}).") from None
    finally:
        sys.dont_write_bytecode = dont_write
    if not hasattr(module, attr):
        raise ProbekitUsageError(f"{option} {spec!r}: {module_name!r} has no attribute {attr!r}.")
    return getattr(module, attr)
