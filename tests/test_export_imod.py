"""IMOD write-back (issue #14 item 2) and IMOD's X-axis tilt on import (item 4)."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from tiltflow.cli import main
from tiltflow.export.imod import edit_comfile, imod_from_matrices
from tiltflow.geometry import ImodGeometry, projection_matrices
from tiltflow.imod.comfile import read_newst_com, read_tilt_com
from tiltflow.imod.tlt import read_tlt
from tiltflow.imod.xf import read_xf
from tiltflow.io.tomograms import read_tomogram_set


@pytest.mark.parametrize(
    "flip_yz,flip_z,flip_ang",
    [(False, False, False), (True, True, False), (True, False, True), (False, False, True)],
)
@pytest.mark.parametrize("with_xtilt", [False, True])
def test_matrices_to_imod_files_exact(flip_yz, flip_z, flip_ang, with_xtilt):
    rng = np.random.default_rng(7)
    n = 7
    tlt = np.linspace(-60, 60, n) + rng.normal(0, 0.3, n)
    ang = np.deg2rad(-84 + rng.normal(0, 0.4, n))
    m = 1 + rng.normal(0, 0.01, n)
    # rotation, magnification and a little skew: an .xf holds any 2x2 matrix
    xf = np.stack(
        [m * np.cos(ang), -m * np.sin(ang), 1.002 * m * np.sin(ang), m * np.cos(ang),
         rng.normal(0, 9, n), rng.normal(0, 9, n)], axis=1,
    )
    xt = rng.normal(0, 2, n) if with_xtilt else None
    geom = ImodGeometry(raw_size=(1000, 900), ali_size=(900, 1000), thickness=301,
                        shift=(3.0, -2.0), offset=(1.0, 2.0, 3.0), flip_yz=flip_yz,
                        flip_z=flip_z, flip_ang=flip_ang)
    p = projection_matrices(geom, xf, tlt, xt)
    xf2, tlt2, xt2, change = imod_from_matrices(p, geom)
    np.testing.assert_allclose(xf2, xf, atol=1e-10)
    np.testing.assert_allclose(tlt2, tlt, atol=1e-10)
    np.testing.assert_allclose(xt2, 0.0 if xt is None else xt, atol=1e-10)
    assert change.max() < 1e-9


def test_x_axis_tilt_hand_derived():
    """Zero tilt, identity .xf, XAXISTILT α = 10°, no flip: IMOD rotates the volume about X by α
    before the tilt (y' = y cos α - z sin α, z' = y sin α + z cos α, y along the tilt axis, z the
    depth). RELION's world (no flip) is (x, depth = -z_imod, y_imod): image y = z_w cos α +
    y_w sin α, depth row = (0, -cos α, sin α)."""
    geom = ImodGeometry(raw_size=(64, 64), ali_size=(64, 64), thickness=32)
    p = projection_matrices(geom, np.array([[1.0, 0, 0, 1, 0, 0]]), np.array([0.0]), [10.0])
    a = np.deg2rad(10.0)
    np.testing.assert_allclose(p[0, 0, :3], [1, 0, 0], atol=1e-12)
    np.testing.assert_allclose(p[0, 1, :3], [0, np.sin(a), np.cos(a)], atol=1e-12)
    np.testing.assert_allclose(p[0, 2, :3], [0, -np.cos(a), np.sin(a)], atol=1e-12)
    # the centre of the tilt frame stays where it was: world (c+1, thickness/2, c+1)
    c = np.array([31.5 + 1, 16.0, 31.5 + 1, 1.0])
    np.testing.assert_allclose((p[0] @ c)[:2], [31.5, 31.5], atol=1e-12)


def test_edit_comfile_keeps_everything_else():
    text = "# c\n$tilt -StandardInput\nTILTFILE a.tlt\nxaxistilt 3\nTHICKNESS 10\n$if (-e x) y\n"
    out = edit_comfile(text, {"TILTFILE": "b.tlt", "XAXISTILT": "0.0", "XTILTFILE": "b.xtilt"})
    assert out.splitlines() == [
        "# c", "$tilt -StandardInput", "TILTFILE\tb.tlt", "xaxistilt\t0.0", "THICKNESS 10",
        "XTILTFILE\tb.xtilt", "$if (-e x) y",
    ]


def _chain(tmp_path: Path, *sim_args: str) -> None:
    assert main(["simulate", "--o", "sim", "--size", "128", "--beads", "6", "--seed", "4",
                 "--flipYZ", "--flipZ", *sim_args]) == 0
    assert main(["import-imod", "--i", "sim/import.star", "--o", "imp", "--angpix", "10",
                 "--flipYZ", "--flipZ"]) == 0
    assert main(["find-fiducials", "--t", "imp/tomograms.star", "--o", "fid"]) == 0
    assert main(["align", "--t", "fid/tomograms.star", "--o", "ali"]) == 0


def _assert_same_projection(a: np.ndarray, b: np.ndarray) -> None:
    np.testing.assert_allclose(b[:, :2, :3], a[:, :2, :3], atol=1e-6, rtol=0)
    np.testing.assert_allclose(b[:, :2, 3], a[:, :2, 3], atol=1e-4, rtol=0)
    # depth direction exact; align scales the depth row with its magnification (frames.py),
    # which an .xf cannot hold, so IMOD gives it unit length
    da = a[:, 2, :3] / np.linalg.norm(a[:, 2, :3], axis=1, keepdims=True)
    np.testing.assert_allclose(b[:, 2, :3], da, atol=1e-6, rtol=0)


def test_round_trip_refined_alignment_with_excluded_views(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _chain(tmp_path, "--exclude", "1,2,41")
    assert main(["export-imod", "--t", "ali/tomograms.star", "--i", "sim/import.star",
                 "--o", "back", "--angpix", "10", "--flipYZ", "--flipZ"]) == 0
    d = tmp_path / "back/TS_01"
    xf = read_xf(d / "TS_01.xf")
    orig = read_xf("sim/TS_01/TS_01.xf")
    assert xf.shape == (41, 6)
    np.testing.assert_array_equal(xf[[0, 1, 40]], orig[[0, 1, 40]])  # excluded: as they were
    assert not np.allclose(xf[5], orig[5], atol=1e-4)  # refined
    assert read_tlt(d / "TS_01.tlt").shape == read_tlt("sim/TS_01/TS_01.tlt").shape
    assert not (d / "TS_01.xtilt").exists()
    tilt = read_tilt_com(d / "tilt.com")
    assert tilt.exclude == (1, 2, 41)
    assert tilt.keywords.last_ci("TILTFILE")[0] == "TS_01.tlt"
    newst = read_newst_com(d / "newst.com")
    assert (d / newst.keywords.last_ci("InputFile")[0]).resolve() == (
        tmp_path / "sim/TS_01/TS_01.mrc"
    ).resolve()
    assert main(["import-imod", "--i", "back/import.star", "--o", "rt", "--angpix", "10",
                 "--flipYZ", "--flipZ"]) == 0
    a = read_tomogram_set("ali/tomograms.star")["TS_01"]
    b = read_tomogram_set("rt/tomograms.star")["TS_01"]
    assert b.n_tilts == a.n_tilts == 38
    _assert_same_projection(a.proj, b.proj)
    np.testing.assert_allclose(b.pre_exposure, a.pre_exposure)
    np.testing.assert_allclose(b.defocus_u, a.defocus_u)


def test_x_axis_tilt_import_opt_in_and_export(tmp_path, monkeypatch, caplog):
    monkeypatch.chdir(tmp_path)
    assert main(["simulate", "--o", "sim", "--size", "96", "--beads", "4", "--flipYZ",
                 "--flipZ"]) == 0
    com = tmp_path / "sim/TS_01/tilt.com"
    com.write_text(com.read_text().replace("XAXISTILT 0.0", "XAXISTILT 1.5"))
    with caplog.at_level(logging.WARNING, logger="tiltflow.importer"):
        assert main(["import-imod", "--i", "sim/import.star", "--o", "plain", "--angpix", "10",
                     "--flipYZ", "--flipZ"]) == 0
    assert any("XAXISTILT 1.5 ignored" in m for m in caplog.messages)
    assert main(["import-imod", "--i", "sim/import.star", "--o", "xt", "--angpix", "10",
                 "--flipYZ", "--flipZ", "--xtilt"]) == 0
    plain = read_tomogram_set("plain/tomograms.star")["TS_01"].proj
    xt = read_tomogram_set("xt/tomograms.star")["TS_01"].proj
    assert np.abs(plain - xt).max() > 0.01  # the X-axis tilt changes the matrices
    # the opt-in matrices are the default ones with IMOD's X-axis tilt inserted (hand formula)
    geom = ImodGeometry(raw_size=(96, 96), ali_size=(96, 96), thickness=1.0)  # only centring
    assert geom is not None
    _xf, _t, x_tilt, _ch = imod_from_matrices(
        xt, ImodGeometry(raw_size=(96, 96), ali_size=(96, 96),
                         thickness=read_tilt_com(com).thickness, flip_yz=True, flip_z=True)
    )
    np.testing.assert_allclose(x_tilt, 1.5, atol=1e-9)
    assert main(["export-imod", "--t", "xt/tomograms.star", "--i", "sim/import.star",
                 "--o", "back", "--angpix", "10", "--flipYZ", "--flipZ", "--xtilt"]) == 0
    d = tmp_path / "back/TS_01"
    np.testing.assert_allclose(read_tlt(d / "TS_01.xtilt"), 1.5, atol=1e-7)
    tilt = read_tilt_com(d / "tilt.com")
    assert tilt.x_axis_tilt == 0.0 and tilt.keywords.last_ci("XTILTFILE")[0] == "TS_01.xtilt"
    assert main(["import-imod", "--i", "back/import.star", "--o", "rt", "--angpix", "10",
                 "--flipYZ", "--flipZ", "--xtilt"]) == 0
    _assert_same_projection(xt, read_tomogram_set("rt/tomograms.star")["TS_01"].proj)


def test_export_refuses_a_foreign_set(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["simulate", "--o", "sim", "--size", "96", "--beads", "4"]) == 0
    assert main(["simulate", "--o", "other", "--size", "96", "--beads", "4",
                 "--exclude", "3"]) == 0
    assert main(["import-imod", "--i", "other/import.star", "--o", "imp", "--angpix", "10"]) == 0
    assert main(["export-imod", "--t", "imp/tomograms.star", "--i", "sim/import.star",
                 "--o", "back", "--angpix", "10"]) == 2
    assert "not the alignment this set was imported from" in capsys.readouterr().err
    assert not (tmp_path / "back").exists()
