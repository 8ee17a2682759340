"""The CLI starts without the numerical stack: only the verb that runs is imported (issue #10)."""

from __future__ import annotations

import subprocess
import sys

import pytest

PROBE = """
import sys, contextlib, io
from tiltflow.cli import main
with contextlib.redirect_stdout(io.StringIO()) as out:
    try:
        main({argv!r})
    except SystemExit:
        pass
heavy = sorted(m for m in ("numpy", "scipy", "pandas", "matplotlib", "starfile") if m in sys.modules)
print("HEAVY=" + ",".join(heavy))
print("OUT=" + out.getvalue().replace("\\n", " "))
"""


def _probe(argv: list[str]) -> tuple[str, str]:
    res = subprocess.run(
        [sys.executable, "-c", PROBE.format(argv=argv)],
        capture_output=True,
        text=True,
        check=True,
    )
    heavy = next(line for line in res.stdout.splitlines() if line.startswith("HEAVY="))
    out = next(line for line in res.stdout.splitlines() if line.startswith("OUT="))
    return heavy[len("HEAVY=") :], out[len("OUT=") :]


@pytest.mark.parametrize("argv", [["--help"], ["--version"]])
def test_help_and_version_import_no_numerical_stack(argv: list[str]) -> None:
    heavy, out = _probe(argv)
    assert heavy == ""
    assert "tiltflow" in out


def test_help_lists_every_verb_with_its_help() -> None:
    from tiltflow.cli import VERB_HELP, VERBS

    _heavy, out = _probe(["--help"])
    for _module, verb in VERBS:
        assert verb in out
        assert VERB_HELP[verb].split()[0] in out


def test_named_verb_still_gets_its_full_parser() -> None:
    heavy, out = _probe(["align", "--help"])
    assert "--refine_tilt" in out  # the real align parser, not the stub
    assert "numpy" in heavy
