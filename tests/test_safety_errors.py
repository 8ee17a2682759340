"""One clear error, never a traceback (issue #11 item 9): each fault from the issue, through the CLI."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tiltflow.cli import main


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    root = tmp_path_factory.mktemp("faults")
    import os

    old = os.getcwd()
    os.chdir(root)
    try:
        assert main(["simulate", "--o", "sim", "--size", "96", "--beads", "4", "--seed", "1"]) == 0
        assert main(["import-imod", "--i", "sim/import.star", "--o", "ok", "--angpix", "10"]) == 0
    finally:
        os.chdir(old)
    return root


def _copy(sim: Path, dst: Path) -> Path:
    shutil.copytree(sim / "sim", dst / "sim")
    shutil.copytree(sim / "ok", dst / "ok")
    return dst


def _run(argv, capsys) -> tuple[int, str]:
    rc = main(argv)
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return rc, err


def test_singular_xf_line(sim, tmp_path, monkeypatch, capsys):
    d = _copy(sim, tmp_path)
    monkeypatch.chdir(d)
    xf = d / "sim/TS_01/TS_01.xf"
    lines = xf.read_text().splitlines()
    lines[2] = "0 0 0 0 0 0"
    xf.write_text("\n".join(lines) + "\n")
    rc, err = _run(["import-imod", "--i", "sim/import.star", "--o", "o", "--angpix", "10"], capsys)
    assert rc == 2 and "TS_01.xf, line 3" in err and "zero determinant" in err
    assert not (d / "o").exists()


def test_every_view_excluded(sim, tmp_path, monkeypatch, capsys):
    d = _copy(sim, tmp_path)
    monkeypatch.chdir(d)
    with open(d / "sim/TS_01/tilt.com", "a") as fh:
        fh.write("EXCLUDELIST 1-41\n")
    rc, err = _run(["import-imod", "--i", "sim/import.star", "--o", "o", "--angpix", "10"], capsys)
    assert rc == 2 and "tilt.com" in err and "every view" in err


@pytest.mark.parametrize("flag,value,word", [("--Cs", "nan", "Cs"), ("--voltage", "-300", "voltage"),
                                              ("--thick", "0", "thick")])
def test_bad_import_options(sim, tmp_path, monkeypatch, capsys, flag, value, word):
    d = _copy(sim, tmp_path)
    monkeypatch.chdir(d)
    rc, err = _run(
        ["import-imod", "--i", "sim/import.star", "--o", "o", "--angpix", "10", flag, value], capsys
    )
    assert rc == 2 and word in err


@pytest.mark.parametrize("value,expect", [("abc", "is not a number"), ("0", "expected > 0")])
def test_hand_edited_pixel_size(sim, tmp_path, monkeypatch, capsys, value, expect):
    d = _copy(sim, tmp_path)
    monkeypatch.chdir(d)
    text = (d / "ok/tomograms.star").read_text()
    lines = text.splitlines()
    i = next(j for j, ln in enumerate(lines) if ln.startswith("TS_01 "))
    cols = lines[i].split()
    header = [ln for ln in lines if ln.startswith("_rln")][: len(cols)]
    k = next(j for j, h in enumerate(header) if h.startswith("_rlnTomoTiltSeriesPixelSize"))
    cols[k] = value
    lines[i] = " ".join(cols)
    (d / "ok/tomograms.star").write_text("\n".join(lines) + "\n")
    rc, err = _run(["find-fiducials", "--t", "ok/tomograms.star", "--o", "f"], capsys)
    assert rc == 2 and "_rlnTomoTiltSeriesPixelSize" in err and expect in err


def test_unexpected_exception_is_one_line(monkeypatch, capsys):
    import tiltflow.cli.simulate as sim_cli

    def boom(args):
        raise ZeroDivisionError("division by zero")

    monkeypatch.setattr(sim_cli, "run", boom)
    rc, err = _run(["simulate", "--o", "x"], capsys)
    assert rc == 3 and "internal error: ZeroDivisionError" in err and len(err.splitlines()) == 1


def test_output_on_a_file(sim, tmp_path, monkeypatch, capsys):
    d = _copy(sim, tmp_path)
    monkeypatch.chdir(d)
    (d / "blocker").write_text("a file where the output folder should be")
    rc, err = _run(["find-fiducials", "--t", "ok/tomograms.star", "--o", "blocker"], capsys)
    assert rc == 2 and "blocker" in err
