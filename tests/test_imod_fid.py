"""IMOD bead tracks: .fid models (imodmodel) and tiltalign's fid.xyz (tiltflow.imod.fid)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

imodmodel = pytest.importorskip("imodmodel")

from tiltflow.errors import InputError  # noqa: E402
from tiltflow.geometry import ImodGeometry, project, projection_matrices  # noqa: E402
from tiltflow.imod.fid import FidTracks, fid_xyz_to_world, read_fid_model, read_fid_xyz  # noqa: E402


def write_fid(path, rows, size=(0, 0), flags=0):
    """rows: (object_id, contour_id, x, y, z) in IMOD model coordinates (0-based ids)."""
    df = pd.DataFrame(rows, columns=["object_id", "contour_id", "x", "y", "z"])
    model = imodmodel.ImodModel.from_dataframe(df, type=imodmodel.models.ContourType.OPEN)
    model.header.xmax, model.header.ymax = size
    model.header.zmax = int(df["z"].max()) + 1
    if flags:
        model.header.flags = flags
    model.to_file(path)
    return path


ROWS = [
    # object 1: two beads; contour 2 is given out of view order
    (0, 0, 10.5, 20.5, 0.0),
    (0, 0, 11.5, 20.5, 1.0),
    (0, 0, 12.5, 20.5, 2.0),
    (0, 1, 100.25, 50.75, 2.0),
    (0, 1, 101.25, 50.75, 1.0),
    # object 2: one bead, a lone point (skipped) in its first contour
    (1, 0, 5.0, 5.0, 1.0),
    (1, 1, 60.5, 70.5, 0.0),
    (1, 1, 61.5, 71.5, 2.0),
]


def test_read_points_pixel_centre_and_ids(tmp_path):
    path = write_fid(tmp_path / "ts.fid", ROWS, size=(128, 96))
    t = read_fid_model(path, n_views=3)
    assert isinstance(t, FidTracks)
    assert t.n_beads == 3 and len(t) == 7
    np.testing.assert_array_equal(t.labels, [[1, 1], [1, 2], [2, 2]])  # 1-based (object, contour)
    np.testing.assert_array_equal(t.bead, [0, 0, 0, 1, 1, 2, 2])
    np.testing.assert_array_equal(t.view, [0, 1, 2, 1, 2, 0, 2])  # sorted by view within a bead
    # IMOD pixel i spans [i, i+1): its centre 10.5 is tiltflow's pixel 10
    np.testing.assert_allclose(t.x, [10, 11, 12, 100.75, 99.75, 60, 61])
    np.testing.assert_allclose(t.y, [20, 20, 20, 50.25, 50.25, 70, 71])
    assert t.image_size == (128, 96)
    assert t.x.dtype == np.float64 and t.view.dtype == np.int64


def test_dense_tracks_drop_excluded_views(tmp_path):
    t = read_fid_model(write_fid(tmp_path / "ts.fid", ROWS), n_views=3)
    d = t.dense(np.array([0, 2]))  # raw view 1 excluded
    assert d.shape == (3, 2, 2)
    np.testing.assert_allclose(d[0], [[10, 20], [12, 20]])
    assert np.isnan(d[1, 0]).all()
    np.testing.assert_allclose(d[1, 1], [99.75, 50.25])


def test_prexg_inverse_hand_computed(tmp_path):
    # raw 100 x 80 -> centre (49.5, 39.5) in tiltflow pixels (50, 40 in IMOD pixels)
    # view 0: identity; view 1: 90 degree rotation + shift (A = [[0,-1],[1,0]], D = (3, -2))
    prexg = np.array([[1, 0, 0, 1, 0, 0], [0, -1, 1, 0, 3, -2]], dtype=float)
    rows = [(0, 0, 60.5, 45.5, 0.0), (0, 0, 60.5, 45.5, 1.0)]
    t = read_fid_model(
        write_fid(tmp_path / "p.fid", rows, size=(100, 80)), prexg=prexg, raw_size=(100, 80)
    )
    # preali (tiltflow) = (60, 45); rel = (60-49.5-3, 45-39.5+2) = (7.5, 7.5);
    # A^-1 = [[0, 1], [-1, 0]] -> (7.5, -7.5) -> raw = (57.0, 32.0)
    np.testing.assert_allclose(np.c_[t.x, t.y], [[60, 45], [57, 32]], atol=1e-12)
    # forward check: A (raw - c) + D + c gives the preali point back
    a = np.array([[0, -1], [1, 0]])
    np.testing.assert_allclose(
        a @ (np.array([57.0, 32.0]) - [49.5, 39.5]) + [3, -2] + [49.5, 39.5], [60, 45]
    )


def test_binned_model(tmp_path):
    # tracked on a preali binned by 4: 25 x 20 image of a 100 x 80 raw stack
    rows = [(0, 0, 12.5, 10.0, 0.0), (0, 0, 0.5, 0.5, 1.0)]
    path = write_fid(tmp_path / "b.fid", rows, size=(25, 20))
    t = read_fid_model(path, raw_size=(100, 80), binning=4)
    # binned centre (12.5, 10) <-> raw centre (49.5, 39.5); binned pixel 0 centre -> raw 1.5
    np.testing.assert_allclose(np.c_[t.x, t.y], [[49.5, 39.5], [1.5, 1.5]])
    # wrong binning: named mismatch
    with pytest.raises(InputError, match=r"25 x 20 image.*binned by 4"):
        read_fid_model(path, raw_size=(100, 80))
    # header size alone is enough
    t2 = read_fid_model(path, binning=4)
    np.testing.assert_allclose(t2.x, t.x)


def test_flipped_yz_model(tmp_path):
    rows = [(0, 0, 10.5, 0.0, 20.5), (0, 0, 11.5, 1.0, 21.5)]  # stored as x, z, y
    t = read_fid_model(write_fid(tmp_path / "f.fid", rows, flags=1 << 16))
    np.testing.assert_array_equal(t.view, [0, 1])
    np.testing.assert_allclose(t.y, [20, 21])


def test_errors(tmp_path):
    with pytest.raises(InputError, match=r"missing\.fid: file not found"):
        read_fid_model(tmp_path / "missing.fid")
    empty = tmp_path / "empty.fid"
    imodmodel.ImodModel().to_file(empty)
    with pytest.raises(InputError, match=r"empty\.fid: the fiducial model is empty"):
        read_fid_model(empty)
    lone = write_fid(tmp_path / "lone.fid", [(0, 0, 1.0, 1.0, 0.0), (0, 1, 2.0, 2.0, 1.0)])
    with pytest.raises(InputError, match="no contour with 2 or more points"):
        read_fid_model(lone)
    bad = tmp_path / "bad.fid"
    bad.write_bytes(b"IMODV1.2 but not really a model")
    with pytest.raises(InputError, match=r"bad\.fid: is not a readable IMOD model"):
        read_fid_model(bad)
    out = write_fid(tmp_path / "out.fid", ROWS)
    with pytest.raises(
        InputError, match=r"out\.fid: object 1, contour 1, point 3: .*view 2 .*views 0\.\.1"
    ):
        read_fid_model(out, n_views=2)
    neg = write_fid(tmp_path / "neg.fid", [(0, 0, 1.0, 1.0, -1.0), (0, 0, 2.0, 2.0, 0.0)])
    with pytest.raises(InputError, match="neg.fid: object 1, contour 1, point 1"):
        read_fid_model(neg)
    dup = write_fid(tmp_path / "dup.fid", [(0, 0, 1.0, 1.0, 3.0), (0, 0, 2.0, 2.0, 3.2)])
    with pytest.raises(InputError, match=r"dup\.fid: object 1, contour 1 has two points on view 3"):
        read_fid_model(dup)
    with pytest.raises(InputError, match=r"only 2 lines"):
        read_fid_model(
            out, prexg=np.tile([1, 0, 0, 1, 0, 0], (2, 1)), n_views=3, raw_size=(128, 96)
        )


# Same layout as tiltalign writes it: '(i4,3f10.2,i7,i5,a,f12.5,a,2i6)' then '(i4,3f10.2,i7,i5)'
FID_XYZ = (
    "   1    244.77    242.63     28.63      1    1 Pix:    20.20000 Dim:   512   512\n"
    "   2    297.41    218.45    -52.78      1    2\n"
    "   3    318.37    205.03     29.56      2    7\n"
)


def test_read_fid_xyz(tmp_path):
    p = tmp_path / "tsfid.xyz"
    p.write_text(FID_XYZ)
    f = read_fid_xyz(p)
    assert len(f) == 3
    np.testing.assert_array_equal(f.point, [1, 2, 3])
    np.testing.assert_allclose(f.xyz[1], [297.41, 218.45, -52.78])
    np.testing.assert_array_equal(f.labels, [[1, 1], [1, 2], [2, 7]])
    assert f.pixel_size == pytest.approx(20.2) and f.dims == (512, 512)


def test_read_fid_xyz_run_together_and_errors(tmp_path):
    p = tmp_path / "a.xyz"
    # fixed-width fields that touch (a 10-wide negative value) still parse
    p.write_text("   1-123456.78    218.45    -52.78      1    2\n")
    f = read_fid_xyz(p)
    np.testing.assert_allclose(f.xyz[0], [-123456.78, 218.45, -52.78])
    assert f.pixel_size is None and f.dims is None
    p.write_text("   1    1.0    2.0\n")
    with pytest.raises(InputError, match=r"a\.xyz, line 1: expected 'point X Y Z object contour'"):
        read_fid_xyz(p)
    p.write_text("   1    1.0    2.0    x      1    1\n")
    with pytest.raises(InputError, match=r"line 1: expected a number for Z"):
        read_fid_xyz(p)
    p.write_text("\n\n")
    with pytest.raises(InputError, match="no data lines"):
        read_fid_xyz(p)
    with pytest.raises(InputError, match="file not found"):
        read_fid_xyz(tmp_path / "nope.xyz")


@pytest.mark.parametrize(
    "flags",
    [dict(), dict(flip_yz=True), dict(flip_yz=True, flip_z=True), dict(flip_ang=True)],
)
def test_fid_xyz_to_world_reprojects_like_tiltalign(tmp_path, flags):
    # tiltalign: aligned x = (X - nx/2) cos t + Z sin t + nx/2, aligned y = Y (IMOD px, binned)
    rng = np.random.default_rng(1)
    b = 2.0
    dims = (200, 160)  # binned preali; raw 400 x 320
    geom = ImodGeometry(
        raw_size=(400, 320),
        ali_size=(380, 300),
        thickness=150.0,
        shift=(3.0, -7.0),
        offset=(1.5, 2.0, -4.0),
        **flags,
    )
    tilt = np.array([-60.0, -21.0, 0.0, 33.0, 57.0])
    theta = np.deg2rad(rng.uniform(-10, 10, tilt.size))
    xf = np.c_[
        np.cos(theta),
        -np.sin(theta),
        np.sin(theta),
        np.cos(theta),
        rng.uniform(-20, 20, (tilt.size, 2)),
    ]
    xyz = np.c_[rng.uniform(40, 160, 6), rng.uniform(30, 130, 6), rng.uniform(-30, 30, 6)]
    text = "".join(
        f"{i + 1:4d}{x:10.2f}{y:10.2f}{z:10.2f}{1:7d}{i + 1:5d}\n"
        for i, (x, y, z) in enumerate(xyz)
    )
    p = tmp_path / "fid.xyz"
    p.write_text(text)
    fid = read_fid_xyz(p)
    world = fid_xyz_to_world(fid, geom, binning=b, dims=dims)
    got = project(projection_matrices(geom, xf, tilt), world)  # raw px, tiltflow convention
    t = np.deg2rad(tilt)[:, None]
    X, Y, Z = (fid.xyz[:, k][None, :] for k in range(3))
    ali_imod_x = (X - dims[0] / 2) * np.cos(t) + Z * np.sin(t)  # relative to the centre, binned
    ali_imod_y = np.broadcast_to(Y - dims[1] / 2, ali_imod_x.shape)
    c_ali = np.array([(380 - 1) / 2, (300 - 1) / 2])
    c_raw = np.array([(400 - 1) / 2, (320 - 1) / 2])
    ali = np.stack([ali_imod_x, ali_imod_y], axis=-1) * b + c_ali  # unbinned, tiltflow pixels
    a = xf[:, :4].reshape(-1, 2, 2)
    want = np.einsum("nij,nmj->nmi", np.linalg.inv(a), ali - c_ali - xf[:, None, 4:6]) + c_raw
    np.testing.assert_allclose(got, want, atol=1e-9)
