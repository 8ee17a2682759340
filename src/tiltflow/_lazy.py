"""Lazy public names of a subpackage (PEP 562), so importing one module of it is cheap.

``tiltflow.ice`` needs ``tiltflow.fiducials.io`` to read a set's beads; without this, that import
ran ``tiltflow/fiducials/__init__.py`` and with it the whole detection code and its SciPy
modules, a few tenths of a second of every step's start.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def lazy_exports(
    package: str, exports: Mapping[str, str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``(__getattr__, __dir__)`` for ``package``: name ``n`` is imported from module
    ``exports[n]`` the first time it is asked for, then cached in the package."""

    def __getattr__(name: str) -> Any:
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        setattr(importlib.import_module(package), name, value)
        return value

    def __dir__() -> list[str]:
        return sorted(exports)

    return __getattr__, __dir__
