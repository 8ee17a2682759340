"""Tomogram names that look like numbers stay names in every step (issue #11 item 10)."""

from __future__ import annotations

from tiltflow.cli import main
from tiltflow.io.star import read_star
from tiltflow.io.tomograms import read_tomogram_set


def test_numeric_looking_names_survive_the_chain(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    names = "001,1e3"
    assert main(["simulate", "--o", "sim", "--size", "128", "--beads", "5", "--names", names]) == 0
    assert (
        main(
            ["import-imod", "--i", "sim/import.star", "--o", "imp/tomograms.star", "--angpix", "10"]
        )
        == 0
    )
    assert main(["find-fiducials", "--t", "imp/tomograms.star", "--o", "fid"]) == 0
    assert main(["align", "--t", "fid/tomograms.star", "--o", "ali"]) == 0
    tset = read_tomogram_set("ali/tomograms.star")
    assert list(tset.names) == ["001", "1e3"]
    blocks = read_star("ali/tomograms.star")
    assert set(blocks) == {"global", "001", "1e3"}
    assert list(blocks["global"]["rlnTomoName"]) == ["001", "1e3"]
