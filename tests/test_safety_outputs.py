"""An output that is an input is refused before anything is written (issue #11 item 1)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from tiltflow.cli import main


def _digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    root = tmp_path_factory.mktemp("proj")
    import os

    cwd = os.getcwd()
    os.chdir(root)
    try:
        assert (
            main(["simulate", "--o", "sim", "--size", "256", "--beads", "15", "--seed", "1"]) == 0
        )
        assert (
            main(
                [
                    "import-imod",
                    "--i",
                    "sim/import.star",
                    "--o",
                    "imp/tomograms.star",
                    "--angpix",
                    "10",
                ]
            )
            == 0
        )
        assert main(["find-fiducials", "--t", "imp/tomograms.star", "--o", "fid"]) == 0
        assert main(["align", "--t", "fid/tomograms.star", "--o", "ali"]) == 0
    finally:
        os.chdir(cwd)
    return root


@pytest.mark.parametrize(
    "argv, needle",
    [
        (
            ["import-imod", "--i", "sim/import.star", "--o", "sim/import.star", "--angpix", "10"],
            "is an input",
        ),
        (
            ["find-fiducials", "--t", "imp/tomograms.star", "--o", "imp"],
            "holds this step's input set",
        ),
        (["align", "--t", "fid/tomograms.star", "--o", "fid"], "holds this step's input set"),
        (["align", "--t", "ali/tomograms.star", "--o", "ali"], "holds this step's input set"),
        (
            ["estimate-ice", "--t", "ali/tomograms.star", "--o", "ali"],
            "holds this step's input set",
        ),
        (
            ["estimate-ice", "--t", "ali/tomograms.star", "--o", "ali/"],
            "holds this step's input set",
        ),
        (
            ["estimate-ice", "--t", "ali/../ali/tomograms.star", "--o", "./ali"],
            "holds this step's input set",
        ),
    ],
)
def test_output_over_input_is_refused_and_nothing_changes(
    project, monkeypatch, capsys, argv, needle
):
    monkeypatch.chdir(project)
    before = _digest(project)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert needle in err
    assert _digest(project) == before


def test_side_files_of_the_previous_step_in_the_output_dir_are_refused(
    project, monkeypatch, capsys, tmp_path
):
    # a set stored elsewhere that points at fiducials files in the chosen output directory
    monkeypatch.chdir(project)
    import shutil

    shutil.copy("ali/tomograms.star", "copy_of_set.star")
    before = _digest(project)
    assert main(["estimate-ice", "--t", "copy_of_set.star", "--o", "ali"]) == 2
    assert "holds an input of this step" in capsys.readouterr().err
    assert _digest(project) == before
    Path("copy_of_set.star").unlink()
