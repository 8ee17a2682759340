"""``__all__`` of every tiltflow module names only what the module has, so ``import *`` works."""

from __future__ import annotations

import importlib
import pkgutil
from types import ModuleType

import pytest

import tiltflow


def _module_names() -> list[str]:
    names = ["tiltflow"]
    for info in pkgutil.walk_packages(tiltflow.__path__, "tiltflow."):
        if info.name.rsplit(".", 1)[-1] == "__main__":  # runs the CLI when imported
            continue
        names.append(info.name)
    return names


MODULES = _module_names()


def test_star_import_imod() -> None:
    namespace: dict[str, object] = {}
    exec("from tiltflow.imod import *", namespace)
    import tiltflow.imod as imod

    assert set(imod.__all__) <= set(namespace)
    assert "read_xf" in namespace and "read_ctfplotter" in namespace


def test_imod_all_has_no_text_helpers() -> None:
    # the shared text helpers live in tiltflow.io.text, not in the IMOD reader package
    import tiltflow.imod as imod

    assert not {"read_text_lines", "parse_float", "parse_int", "parse_floats"} & set(imod.__all__)


def test_walk_found_the_subpackages() -> None:
    for name in ("tiltflow.imod", "tiltflow.ice", "tiltflow.io", "tiltflow.fiducials"):
        assert name in MODULES


@pytest.mark.parametrize("name", MODULES)
def test_all_names_exist(name: str) -> None:
    module: ModuleType = importlib.import_module(name)
    exported = getattr(module, "__all__", None)
    if exported is None:
        return
    assert all(isinstance(n, str) for n in exported), name
    assert len(exported) == len(set(exported)), f"{name}.__all__ has duplicates"
    missing = [n for n in exported if not hasattr(module, n)]
    assert not missing, f"{name}.__all__ names {missing}, which it does not define or import"
    namespace: dict[str, object] = {}
    exec(f"from {name} import *", namespace)
    assert set(exported) <= set(namespace)
