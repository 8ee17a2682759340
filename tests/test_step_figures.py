"""The steps' own figures drawn from their side files alone (tiltflow.qc.step_figures): the
library step with figure on draws the same PNG through the same function; with figure off (the
workflow's step jobs) it writes none."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from tiltflow.errors import InputError
from tiltflow.provenance import write_failed_fragment
from tiltflow.qc.step_figures import failed_marker, render_step_figure

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

#: (width, height) px of each step's figure (figure size x dpi)
FIGURE_SIZE = {"align": (990, 675), "ice": (640, 420), "hand": (1100, 440)}


def png_size(path: str | Path) -> tuple[int, int]:
    """(width, height) of a PNG file, from its IHDR chunk (asserts the file is a PNG)."""
    data = Path(path).read_bytes()
    assert data[:8] == PNG_MAGIC and data[12:16] == b"IHDR", path
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def test_align_figure_from_the_side_file_is_the_steps(tmp_path: Path, monkeypatch) -> None:
    from test_align_run import write_inputs

    from tiltflow.align import run_align

    monkeypatch.chdir(tmp_path)
    write_inputs(tmp_path)
    run_align("tomograms.star", "with", names=["TS_01"])
    run_align("tomograms.star", "without", names=["TS_01"], figure=False)
    assert not Path("without/align_TS_01.png").exists()
    assert sorted(p.name for p in Path("without").iterdir()) == [
        "align_TS_01.star",
        "fiducials_TS_01.star",
        "tomograms.star",
        "tracks_TS_01.star",
    ]
    # figure off changes nothing else
    for f in ("align_TS_01.star", "tracks_TS_01.star", "fiducials_TS_01.star"):
        assert Path("with", f).read_bytes() == Path("without", f).read_bytes(), f
    assert render_step_figure("align", "without/align_TS_01.star", "fig/align.png") == "ok"
    assert png_size("fig/align.png") == FIGURE_SIZE["align"]
    # one plotting path: the step's own PNG is the figure job's, byte for byte
    assert Path("fig/align.png").read_bytes() == Path("with/align_TS_01.png").read_bytes()
    assert not list(Path("fig").glob(".*"))  # written atomically: no temporary left


def test_failed_tomogram_side_file_gives_the_failure_figure(tmp_path: Path) -> None:
    side = tmp_path / "ice_TS_09.star"
    write_failed_fragment(side, "TS_09", "ice", "align failed: InputError: x.star: no beads")
    assert failed_marker(side) == ("TS_09", "ice", "align failed: InputError: x.star: no beads")
    png = tmp_path / "ice_TS_09.png"
    assert render_step_figure("ice", side, png) == "failed"
    assert png_size(png) == (600, 160)  # provenance.write_failed_side_output's placeholder


def test_a_side_file_that_is_not_one_is_an_input_error(tmp_path: Path) -> None:
    from tiltflow.io.star import write_star

    with pytest.raises(InputError, match="file not found"):
        render_step_figure("align", tmp_path / "absent.star", tmp_path / "a.png")
    other = tmp_path / "align_TS_01.star"
    write_star(other, {"tracks": {"tfBeadIndex": [0, 1]}})
    assert failed_marker(other) is None
    with pytest.raises(InputError, match="not a align side file"):
        render_step_figure("align", other, tmp_path / "a.png")
    assert not (tmp_path / "a.png").exists()
    with pytest.raises(ValueError, match="no step figure"):
        render_step_figure("fiducials", other, tmp_path / "a.png")


def test_ice_fallback_figure_from_the_side_file(tmp_path: Path) -> None:
    import numpy as np
    from test_ice_images import simulate

    from tiltflow.ice import IceParams, estimate_ice, write_ice_star

    sim = simulate(0.5, seed=7)
    stack = sim.kept_stack().astype(np.float64)
    norm = (stack - stack.mean(axis=(1, 2), keepdims=True)) / stack.std(axis=(1, 2), keepdims=True)
    res = estimate_ice(sim.tomogram(), norm, IceParams(fallback="cos"))
    assert res.status == "fallback_cos"
    write_ice_star(tmp_path / "ice_TS_01.star", res)
    assert render_step_figure("ice", tmp_path / "ice_TS_01.star", tmp_path / "f.png") == "ok"
    assert png_size(tmp_path / "f.png") == FIGURE_SIZE["ice"]
