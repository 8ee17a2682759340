"""RELION 5 export (issue #14 item 1): angles that reproduce our RELION 4 matrices exactly.

RELION 4.0 reconstructs voxel i at world i + 1, RELION 4.1/5 at world i, so the same voxel must
project to the same image position with ``P5 = P4 · T(1, 1, 1)``; the hand-derived cases below
check the angles and shifts RELION 5 rebuilds its matrices from.
"""

from __future__ import annotations

import logging

import numpy as np
import pytest
import starfile

from tiltflow.cli import main
from tiltflow.errors import InputError
from tiltflow.export.relion5 import (
    GLOBAL_LABELS_R5,
    R4_TO_R5,
    TILT_LABELS_R5,
    export_relion5,
    relion5_matrices,
    relion5_tilts,
    world_r4_to_r5,
)
from tiltflow.fiducials.io import read_fiducials
from tiltflow.geometry import ImodGeometry, projection_matrices
from tiltflow.io.tomograms import read_tomogram_set
from tiltflow.model import Tomogram, TomogramSet


def _tomo(proj, size, name="TS", px=2.0):
    n = proj.shape[0]
    return Tomogram(
        name=name, tilt_series=f"{name}.mrc", frame_count=n, size=size, hand=-1.0,
        optics_group="optics1", pixel_size=px, voltage=300.0, cs=2.7, amplitude_contrast=0.1,
        fractional_dose=3.0, proj=proj, defocus_u=np.full(n, 3e4), defocus_v=np.full(n, 2.9e4),
        defocus_angle=np.zeros(n), ctf_scale=np.ones(n), pre_exposure=3.0 * np.arange(n),
    )


def _rebuild(r, tomo, image_size):
    return relion5_matrices(
        r.xtilt, r.ytilt, r.zrot, r.xshift_angst, r.yshift_angst, tomo.pixel_size, image_size,
        tomo.size,
    )


@pytest.mark.parametrize(
    "flip_yz,flip_z", [(False, False), (True, True)], ids=["no-flip", "flipYZ+flipZ"]
)
@pytest.mark.parametrize("raw", [(1023, 1024), (1000, 777)])
def test_rigid_imod_geometry_reproduced(flip_yz, flip_z, raw):
    rng = np.random.default_rng(3)
    n = 9
    tlt = np.linspace(-60, 60, n) + rng.normal(0, 0.2, n)
    ang = np.deg2rad(-84 + rng.normal(0, 0.4, n))
    xf = np.stack(
        [np.cos(ang), -np.sin(ang), np.sin(ang), np.cos(ang), rng.normal(0, 9, n),
         rng.normal(0, 9, n)], axis=1,
    )
    geom = ImodGeometry(
        raw_size=raw, ali_size=(raw[1], raw[0] - 3), thickness=301, shift=(3.5, -2.0),
        offset=(1.0, 2.0, -3.0), flip_yz=flip_yz, flip_z=flip_z,
    )
    p4 = projection_matrices(geom, xf, tlt)
    tomo = _tomo(p4, geom.tomogram_size)
    r = relion5_tilts(tomo, raw)
    p5 = _rebuild(r, tomo, raw)
    want = p4 @ R4_TO_R5
    np.testing.assert_allclose(p5[:, :3, :3], want[:, :3, :3], rtol=0, atol=1e-9)
    np.testing.assert_allclose(p5[:, :2, 3], want[:, :2, 3], rtol=0, atol=1e-6)
    assert r.max_change_px < 1e-8
    np.testing.assert_allclose(r.ytilt, tlt, atol=1e-9)  # the stage tilt in both conventions
    np.testing.assert_allclose(r.xtilt, 0.0 if flip_yz else -90.0, atol=1e-9)
    # the same physical point (voxel) projects to the same image position
    vox = rng.uniform(0, 1, (20, 3)) * (np.asarray(tomo.size) - 1)
    img4 = np.einsum("nij,mj->nmi", p4[:, :2], np.c_[vox + 1.0, np.ones(20)])
    img5 = np.einsum("nij,mj->nmi", p5[:, :2], np.c_[vox, np.ones(20)])
    np.testing.assert_allclose(img5, img4, atol=1e-6)


def test_hand_derived_flipyz_flipz():
    """One 30° tilt, identity .xf, 100 x 80 image, thickness 50, RELION's GUI flags.

    R4 tomogram centre c4 = (size-1)/2 + 1 = (50.5, 40.5, 25.5) projects (SPEC §3 by hand) to
    x = (W-1)/2 + 1.5 sin 30° = 50.25, y = (H-1)/2 = 39.5. RELION 5: YTilt 30, XTilt = ZRot = 0,
    c5 = c4 - 1 and c5 - int(size/2) = (-0.5, -0.5, -0.5), so
    shift_x = 50.25 - 50 + 0.5 (cos 30° + sin 30°) = 0.9330127 px and shift_y = 39.5 - 40 + 0.5 = 0.
    """
    geom = ImodGeometry(raw_size=(100, 80), ali_size=(100, 80), thickness=50, flip_yz=True,
                        flip_z=True)
    p4 = projection_matrices(geom, np.array([[1, 0, 0, 1, 0, 0]]), np.array([30.0]))
    tomo = _tomo(p4, geom.tomogram_size, px=1.5)
    assert tomo.size == (100, 80, 50)
    c4 = np.array([50.5, 40.5, 25.5, 1.0])
    np.testing.assert_allclose((p4[0] @ c4)[:2], [50.25, 39.5], atol=1e-12)
    r = relion5_tilts(tomo, (100, 80))
    np.testing.assert_allclose([r.xtilt[0], r.ytilt[0], r.zrot[0]], [0, 30, 0], atol=1e-12)
    shift_x = 0.25 + 0.5 * (np.cos(np.pi / 6) + 0.5)
    np.testing.assert_allclose(r.xshift_angst[0], 1.5 * shift_x, atol=1e-9)
    np.testing.assert_allclose(r.yshift_angst[0], 0.0, atol=1e-9)
    assert abs(shift_x - 0.9330127) < 1e-7


def test_hand_derived_no_flip():
    """No flip: world Y is depth. c4 = (50.5, 25.5, 40.5) projects to x = 49.5 - 0.5 sin 30° =
    49.25, y = 39.5; RELION 5 angles XTilt -90, YTilt 30, ZRot 0; size (100, 50, 80),
    c5 - int(size/2) = (-0.5, -0.5, -0.5); R = Ry(30) Rx(-90) maps it to x = -0.5 cos 30 - 0.5 sin 30
    ... computed through the rebuilt matrix, which must put c5 at (49.25, 39.5)."""
    geom = ImodGeometry(raw_size=(100, 80), ali_size=(100, 80), thickness=50)
    p4 = projection_matrices(geom, np.array([[1, 0, 0, 1, 0, 0]]), np.array([30.0]))
    tomo = _tomo(p4, geom.tomogram_size)
    assert tomo.size == (100, 50, 80)
    np.testing.assert_allclose((p4[0] @ [50.5, 25.5, 40.5, 1])[:2], [49.25, 39.5], atol=1e-12)
    r = relion5_tilts(tomo, (100, 80))
    np.testing.assert_allclose([r.xtilt[0], r.ytilt[0], r.zrot[0]], [-90, 30, 0], atol=1e-12)
    p5 = _rebuild(r, tomo, (100, 80))
    np.testing.assert_allclose((p5[0] @ [49.5, 24.5, 39.5, 1])[:2], [49.25, 39.5], atol=1e-9)


def test_left_handed_set_refused_or_mirrored():
    geom = ImodGeometry(raw_size=(64, 64), ali_size=(64, 64), thickness=40, flip_yz=True)
    tlt = np.array([-30.0, 0.0, 30.0])
    xf = np.tile([1.0, 0, 0, 1, 0, 0], (3, 1))
    p4 = projection_matrices(geom, xf, tlt)
    assert np.all(np.linalg.det(p4[:, :3, :3]) < 0)
    tomo = _tomo(p4, geom.tomogram_size)
    with pytest.raises(InputError, match="left-handed.*--flipZ"):
        relion5_tilts(tomo, (64, 64))
    r = relion5_tilts(tomo, (64, 64), mirror_z=True)
    assert r.mirrored and r.max_change_px < 1e-9
    p5 = _rebuild(r, tomo, (64, 64))
    w4 = np.array([[10.0, 20.0, 5.0], [33.0, 1.0, 39.0]])
    w5 = world_r4_to_r5(w4, tomo.size[2], mirror_z=True)
    img4 = np.einsum("nij,mj->nmi", p4[:, :2], np.c_[w4, np.ones(2)])
    img5 = np.einsum("nij,mj->nmi", p5[:, :2], np.c_[w5, np.ones(2)])
    np.testing.assert_allclose(img5, img4, atol=1e-9)


def test_magnification_reported_and_warned(caplog, tmp_path):
    geom = ImodGeometry(raw_size=(200, 100), ali_size=(200, 100), thickness=60, flip_yz=True,
                        flip_z=True)
    xf = np.tile([1.0, 0, 0, 1, 0, 0], (2, 1))
    p4 = projection_matrices(geom, xf, np.array([0.0, 0.0]))
    # tilt 1: 1 % magnification about the projected tomogram centre
    c = np.r_[(np.asarray(geom.tomogram_size) - 1) / 2 + 1, 1.0]
    img_c = p4[1] @ c
    mag = np.eye(4)
    mag[:2, :2] *= 1.01
    mag[:2, 3] = img_c[:2] * (1 - 1.01)
    p4[1] = mag @ p4[1]
    tomo = _tomo(p4, geom.tomogram_size)
    r = relion5_tilts(tomo, (200, 100))
    assert r.change_px[0] < 1e-9
    # the farthest corner lies (99.5, 49.5) px from the centre in the image: 1 % of that
    np.testing.assert_allclose(r.change_px[1], 0.01 * np.hypot(99.5, 49.5), rtol=1e-6)
    with caplog.at_level(logging.WARNING, logger="tiltflow.export.relion5"):
        export_relion5(TomogramSet((tomo,)), tmp_path / "r5", image_sizes={"TS": (200, 100)})
    assert any("up to 1.111 px" in m for m in caplog.messages)


def test_cli_export_of_the_chain(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["simulate", "--o", "sim", "--size", "128", "--beads", "6", "--seed", "2",
                 "--flipYZ", "--flipZ"]) == 0
    assert main(["import-imod", "--i", "sim/import.star", "--o", "imp", "--angpix", "10",
                 "--flipYZ", "--flipZ"]) == 0
    assert main(["find-fiducials", "--t", "imp/tomograms.star", "--o", "fid"]) == 0
    assert main(["align", "--t", "fid/tomograms.star", "--o", "ali"]) == 0
    assert main(["export-relion5", "--t", "ali/tomograms.star", "--o", "r5"]) == 0
    text = (tmp_path / "r5/tomograms.star").read_text()
    assert text.startswith("# version 50001\n")
    g = starfile.read("r5/tomograms.star", always_dict=True)["global"]
    assert list(g.columns) == [*GLOBAL_LABELS_R5, "rlnTomoFiducialsStarFile"]
    assert not any(c.startswith("tf") for c in g.columns)
    tomo = read_tomogram_set("ali/tomograms.star")["TS_01"]
    ts = starfile.read(g["rlnTomoTiltSeriesStarFile"][0], always_dict=True)
    assert list(ts) == ["TS_01"]
    t = ts["TS_01"]
    assert list(t.columns) == list(TILT_LABELS_R5)
    assert list(t["rlnMicrographName"]) == [f"{i + 1}@{tomo.tilt_series}" for i in range(41)]
    np.testing.assert_allclose(t["rlnMicrographPreExposure"], tomo.pre_exposure)
    np.testing.assert_allclose(t["rlnCtfScalefactor"], tomo.ctf_scale)
    p5 = relion5_matrices(
        t["rlnTomoXTilt"], t["rlnTomoYTilt"], t["rlnTomoZRot"], t["rlnTomoXShiftAngst"],
        t["rlnTomoYShiftAngst"], float(g["rlnTomoTiltSeriesPixelSize"][0]), (128, 128),
        (int(g["rlnTomoSizeX"][0]), int(g["rlnTomoSizeY"][0]), int(g["rlnTomoSizeZ"][0])),
    )
    conv = starfile.read("r5/relion5_conversion.star")
    bound = float(conv["tfMaxReprojectionChangePx"][0])
    corners = np.array([[x, y, z, 1.0] for x in (0, 127) for y in (0, 127) for z in (0, 199)])
    moved = np.linalg.norm(
        np.einsum("nij,mj->nmi", p5[:, :2], corners)
        - np.einsum("nij,mj->nmi", (tomo.proj @ R4_TO_R5)[:, :2], corners), axis=2,
    )
    assert moved.max() <= bound + 1e-6  # written angles (12 digits) reproduce the report
    assert bound < 0.5  # the refined magnification is small
    # fiducials in RELION 5's world: the same beads, one voxel lower
    f4 = read_fiducials(tomo.extra["rlnTomoFiducialsStarFile"], tomo.pixel_size)
    f5 = read_fiducials(g["rlnTomoFiducialsStarFile"][0], tomo.pixel_size)
    np.testing.assert_allclose(f5, f4 - 1.0, atol=1e-9)
    first = {p.name: p.read_bytes() for p in (tmp_path / "r5").rglob("*.star")}
    assert main(["export-relion5", "--t", "ali/tomograms.star", "--o", "r5"]) == 0
    again = {p.name: p.read_bytes() for p in (tmp_path / "r5").rglob("*.star")}
    assert first == again


def test_cli_refuses_left_handed_set(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["simulate", "--o", "sim", "--size", "96", "--beads", "4", "--flipYZ"]) == 0
    assert main(["import-imod", "--i", "sim/import.star", "--o", "imp", "--angpix", "10",
                 "--flipYZ"]) == 0
    assert main(["export-relion5", "--t", "imp/tomograms.star", "--o", "r5"]) == 2
    assert "left-handed" in capsys.readouterr().err
    assert not (tmp_path / "r5").exists()
    assert main(["export-relion5", "--t", "imp/tomograms.star", "--o", "r5", "--mirror_z"]) == 0
