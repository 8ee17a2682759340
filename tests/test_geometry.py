"""RELION 4 projection matrices (SPEC §3), checked against cases worked out by hand.

Each expectation below was derived on paper from what the IMOD files mean (an .xf maps raw to
aligned images about their centres; tilt rotates about the aligned y axis; RELION's world is
voxel index + 1), not by re-running the formula of geometry.py.
"""

from __future__ import annotations

import numpy as np
import pytest

from tiltflow.geometry import (
    ImodGeometry,
    beam_directions,
    project,
    projection_matrices,
    tilt_matrices,
    translation,
)

IDENT_XF = np.array([[1.0, 0.0, 0.0, 1.0, 0.0, 0.0]])


def P(geom: ImodGeometry, xf=IDENT_XF, tilt=(0.0,)) -> np.ndarray:
    return projection_matrices(geom, np.asarray(xf, float), np.asarray(tilt, float))


def test_zero_tilt_identity_xf_is_voxel_index_plus_one():
    g = ImodGeometry(raw_size=(100, 80), ali_size=(100, 80), thickness=50)
    m = P(g)[0]
    # image (x, y) = (X - 1, Z - 1); depth = -(Y - 25)
    expected = np.array([[1, 0, 0, -1], [0, 0, 1, -1], [0, -1, 0, 25], [0, 0, 0, 1]], float)
    np.testing.assert_allclose(m, expected, atol=1e-12)
    assert g.tomogram_size == (100, 50, 80)


def test_ninety_degree_tilt_maps_depth_to_image_x():
    g = ImodGeometry(raw_size=(100, 80), ali_size=(100, 80), thickness=50)
    m = P(g, tilt=(90.0,))[0]
    # x_img = c_x - (Y - 25) with c_x = 49.5; y_img = Z - 1
    pts = np.array([[10.0, 25.0, 7.0], [60.0, 35.0, 3.0]])
    got = project(m[None], pts)[0]
    np.testing.assert_allclose(got, [[49.5, 6.0], [39.5, 2.0]], atol=1e-9)


def test_tilt_rotates_about_aligned_centre_line():
    # a point on the tilt axis (x at the aligned centre, mid-thickness) never moves in x
    g = ImodGeometry(raw_size=(200, 120), ali_size=(200, 120), thickness=81)
    tilts = np.linspace(-60, 60, 7)
    xf = np.tile(IDENT_XF, (7, 1))
    m = projection_matrices(g, xf, tilts)
    pt = np.array([[99.5 + 1, 40.5, 17.0]])  # x-1 = c_ali.x ; y - thickness/2 = 0
    got = project(m, pt)[:, 0, :]
    np.testing.assert_allclose(got[:, 0], 99.5, atol=1e-9)
    np.testing.assert_allclose(got[:, 1], 16.0, atol=1e-9)


def test_positive_tilt_moves_points_above_midplane_to_negative_x():
    # x_img = c + cos(a)·dx - sin(a)·dy  (SPEC §3 Tilt row 0)
    g = ImodGeometry(raw_size=(100, 100), ali_size=(100, 100), thickness=40)
    a = 30.0
    m = P(g, tilt=(a,))[0]
    pt = np.array([[50.5 + 10, 20.0 + 5, 10.0]])  # dx = 10, dy = 5 from the rotation centre
    x = project(m[None], pt)[0, 0, 0]
    r = np.deg2rad(a)
    assert x == pytest.approx(49.5 + 10 * np.cos(r) - 5 * np.sin(r), abs=1e-9)


def test_xf_shift_is_subtracted_to_reach_raw_image():
    # .xf maps raw -> aligned: aligned = raw + (DX, DY); so raw = aligned - (DX, DY)
    g = ImodGeometry(raw_size=(100, 80), ali_size=(100, 80), thickness=50)
    m = P(g, xf=[[1, 0, 0, 1, 3.0, -2.0]])[0]
    got = project(m[None], [[11.0, 25.0, 21.0]])[0, 0]
    np.testing.assert_allclose(got, [10.0 - 3.0, 20.0 + 2.0], atol=1e-12)


def test_xf_rotation_between_different_raw_and_aligned_sizes():
    # raw 100x80, aligned 80x100, xf rotates by +90°: aligned - c_ali = R (raw - c_raw)
    # R = [[0,-1],[1,0]] -> raw = R^T (aligned - c_ali) + c_raw
    g = ImodGeometry(raw_size=(100, 80), ali_size=(80, 100), thickness=50)
    m = P(g, xf=[[0, -1, 1, 0, 0.0, 0.0]])[0]
    X, Z = 31.0, 72.0
    ali = np.array([X - 1, Z - 1])  # aligned-image position at zero tilt
    c_ali = np.array([39.5, 49.5])
    c_raw = np.array([49.5, 39.5])
    d = ali - c_ali
    raw_expected = np.array([d[1], -d[0]]) + c_raw
    got = project(m[None], [[X, 25.0, Z]])[0, 0]
    np.testing.assert_allclose(got, raw_expected, atol=1e-12)


def test_magnification_in_xf_is_undone():
    g = ImodGeometry(raw_size=(101, 101), ali_size=(101, 101), thickness=30)
    m = P(g, xf=[[1.02, 0, 0, 1.02, 0, 0]])[0]
    got = project(m[None], [[50.0 + 1 + 10.2, 15.0, 50.0 + 1]])[0, 0]
    np.testing.assert_allclose(got, [50.0 + 10.0, 50.0], atol=1e-12)


def test_ali_flag_gives_aligned_image_coordinates():
    g = ImodGeometry(raw_size=(100, 80), ali_size=(80, 100), thickness=50, ali=True)
    m = P(g, xf=[[0, -1, 1, 0, 7.0, 5.0]])[0]  # xf ignored with --ali
    got = project(m[None], [[31.0, 25.0, 72.0]])[0, 0]
    np.testing.assert_allclose(got, [30.0, 71.0], atol=1e-12)


def test_flip_yz_swaps_world_axes_and_size():
    g = ImodGeometry(raw_size=(100, 80), ali_size=(100, 80), thickness=50, flip_yz=True)
    m = P(g)[0]
    expected = np.array([[1, 0, 0, -1], [0, 1, 0, -1], [0, 0, -1, 25], [0, 0, 0, 1]], float)
    np.testing.assert_allclose(m, expected, atol=1e-12)
    assert g.tomogram_size == (100, 80, 50)


def test_flip_yz_flip_z_reverses_depth():
    # F row 1 = (0, 0, -1, thickness - 1): world Z = z' maps to y = thickness - 1 - z'
    g = ImodGeometry(
        raw_size=(100, 80), ali_size=(100, 80), thickness=50, flip_yz=True, flip_z=True
    )
    m = P(g)[0]
    expected = np.array([[1, 0, 0, -1], [0, 1, 0, -1], [0, 0, 1, 25 - 49], [0, 0, 0, 1]], float)
    np.testing.assert_allclose(m, expected, atol=1e-12)


def test_flip_z_alone_is_a_no_op_like_relion4():
    a = P(
        ImodGeometry(raw_size=(64, 64), ali_size=(64, 64), thickness=20, flip_z=True), tilt=(17.0,)
    )
    b = P(ImodGeometry(raw_size=(64, 64), ali_size=(64, 64), thickness=20), tilt=(17.0,))
    np.testing.assert_array_equal(a, b)


def test_flip_ang_negates_tilt():
    g1 = ImodGeometry(raw_size=(64, 64), ali_size=(64, 64), thickness=20, flip_ang=True)
    g2 = ImodGeometry(raw_size=(64, 64), ali_size=(64, 64), thickness=20)
    np.testing.assert_allclose(P(g1, tilt=(25.0,)), P(g2, tilt=(-25.0,)), atol=1e-15)


def test_offsets_and_tilt_com_shift():
    # Off = T(offx - SHIFTx, offy - SHIFTz, offz): at zero tilt image x moves by offx - SHIFTx
    base = ImodGeometry(raw_size=(100, 80), ali_size=(100, 80), thickness=50)
    g = ImodGeometry(
        raw_size=(100, 80),
        ali_size=(100, 80),
        thickness=50,
        shift=(2.0, 3.0),
        offset=(5.0, 7.0, -4.0),
    )
    pt = [[40.0, 25.0, 30.0]]
    d = project(P(g), pt)[0, 0] - project(P(base), pt)[0, 0]
    np.testing.assert_allclose(d, [5.0 - 2.0, -4.0], atol=1e-12)
    # at 90° the y offset (offy - SHIFTz = 4) moves image x by -4
    d90 = project(P(g, tilt=(90.0,)), pt)[0, 0] - project(P(base, tilt=(90.0,)), pt)[0, 0]
    np.testing.assert_allclose(d90, [-4.0, -4.0], atol=1e-9)


def test_thickness_truncated_in_size_like_relion():
    assert ImodGeometry(raw_size=(10, 10), ali_size=(10, 12), thickness=99.9).tomogram_size == (
        10,
        99,
        12,
    )


def test_beam_direction_is_row_two():
    g = ImodGeometry(raw_size=(64, 64), ali_size=(64, 64), thickness=20)
    v = beam_directions(P(g, tilt=(30.0,)))[0]
    r = np.deg2rad(30.0)
    np.testing.assert_allclose(v, [-np.sin(r), -np.cos(r), 0.0], atol=1e-12)


def test_translation_and_tilt_helpers():
    np.testing.assert_array_equal(translation((1, 2, 3))[:3, 3], [1, 2, 3])
    t = tilt_matrices([0.0], (5.0, 6.0))[0]
    np.testing.assert_allclose(t @ np.array([5.0, 9.0, 6.0, 1.0]), [5.0, 6.0, -9.0, 1.0])


def test_mismatched_counts_raise():
    g = ImodGeometry(raw_size=(64, 64), ali_size=(64, 64), thickness=20)
    with pytest.raises(ValueError, match="2 .xf lines but 1 tilt"):
        projection_matrices(g, np.tile(IDENT_XF, (2, 1)), [0.0])
