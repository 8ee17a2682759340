"""Property-based tests of every text reader (issue #11): arbitrary bytes and mutated valid files
raise only tiltflow's own error (one clear message), never another exception.

The valid files come from a small simulated project (IMOD alignment, ctfplotter .defocus,
order list, SerialEM .mdoc, import STAR, tomogram set, tracks, fiducials).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tiltflow.cli import main
from tiltflow.errors import TiltflowError
from tiltflow.fiducials.io import read_fiducials, read_tracks
from tiltflow.imod.comfile import read_newst_com, read_tilt_com
from tiltflow.imod.defocus import read_ctfplotter
from tiltflow.imod.tlt import read_tlt
from tiltflow.imod.xf import read_xf
from tiltflow.io.mdoc import read_mdoc_acquisition
from tiltflow.io.order_list import read_order_list
from tiltflow.io.star import read_star
from tiltflow.io.tomograms import read_tomogram_set
from tiltflow.sheet import read_sheet

SETTINGS = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    derandomize=True,  # reproducible in CI
)


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("valid")
    old = os.getcwd()
    os.chdir(root)
    try:
        assert main(["simulate", "--o", "sim", "--size", "96", "--beads", "4", "--seed", "3"]) == 0
        assert main(["import-imod", "--i", "sim/import.star", "--o", "imp", "--angpix", "10"]) == 0
        assert main(["find-fiducials", "--t", "imp/tomograms.star", "--o", "fid"]) == 0
    finally:
        os.chdir(old)
    return root


def _readers(project: Path) -> dict[str, tuple[Path, Callable[[Path], object]]]:
    ts = project / "sim" / "TS_01"
    return {
        "xf": (ts / "TS_01.xf", read_xf),
        "tlt": (ts / "TS_01.tlt", read_tlt),
        "tilt.com": (ts / "tilt.com", read_tilt_com),
        "newst.com": (ts / "newst.com", read_newst_com),
        "defocus": (ts / "TS_01.defocus", read_ctfplotter),
        "order list": (ts / "TS_01_order_list.csv", read_order_list),
        "mdoc": (ts / "TS_01.mrc.mdoc", read_mdoc_acquisition),
        "import star": (project / "sim" / "import.star", read_sheet),
        "star": (project / "imp" / "tomograms.star", read_star),
        "tomogram set": (project / "fid" / "tomograms.star", read_tomogram_set),
        "tracks": (project / "fid" / "tracks_TS_01.star", read_tracks),
        "fiducials": (project / "fid" / "fiducials_TS_01.star", lambda p: read_fiducials(p, 10.0)),
    }


KINDS = [
    "xf", "tlt", "tilt.com", "newst.com", "defocus", "order list", "mdoc", "import star",
    "star", "tomogram set", "tracks", "fiducials",
]


def _only_our_error(reader: Callable[[Path], object], path: Path) -> None:
    try:
        reader(path)
    except TiltflowError as exc:
        assert str(exc)  # a message, naming something
    # anything else propagates and fails the test


@pytest.mark.parametrize("kind", KINDS)
@SETTINGS
@given(data=st.binary(max_size=2000))
def test_arbitrary_bytes(project, tmp_path, monkeypatch, kind, data):
    valid, reader = _readers(project)[kind]
    p = tmp_path / valid.name
    p.write_bytes(data)
    monkeypatch.chdir(project)  # relative paths inside STAR files resolve as in a project
    _only_our_error(reader, p)


@st.composite
def mutation(draw, text: str) -> str:
    lines = text.splitlines()
    if not lines:
        return text
    op = draw(st.sampled_from(["drop", "dup", "token", "truncate", "swap", "blank"]))
    i = draw(st.integers(0, len(lines) - 1))
    if op == "drop":
        del lines[i]
    elif op == "dup":
        lines.insert(i, lines[i])
    elif op == "token":
        toks = lines[i].split()
        if toks:
            j = draw(st.integers(0, len(toks) - 1))
            toks[j] = draw(
                st.one_of(
                    st.sampled_from(["nan", "inf", "-1", "0", "1e400", "abc", "", "[1,2]", "-51,5"]),
                    st.text(min_size=0, max_size=6),
                )
            )
            lines[i] = " ".join(toks)
    elif op == "truncate":
        cut = draw(st.integers(0, max(0, len(text) - 1)))
        return text[:cut]
    elif op == "swap" and len(lines) > 1:
        j = draw(st.integers(0, len(lines) - 1))
        lines[i], lines[j] = lines[j], lines[i]
    elif op == "blank":
        lines[i] = ""
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("kind", KINDS)
@SETTINGS
@given(data=st.data())
def test_mutated_valid_files(project, tmp_path, monkeypatch, kind, data):
    valid, reader = _readers(project)[kind]
    text = valid.read_text(encoding="utf-8", errors="replace")
    p = tmp_path / valid.name
    p.write_text(data.draw(mutation(text)), encoding="utf-8")
    monkeypatch.chdir(project)
    _only_our_error(reader, p)
