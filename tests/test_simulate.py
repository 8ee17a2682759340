"""Tests of the synthetic tilt-series simulator (tiltflow.simulate) and ``tiltflow simulate``."""

from __future__ import annotations

from pathlib import Path

import mdocfile
import mrcfile
import numpy as np
import pytest

from tiltflow.errors import ConfigError
from tiltflow.geometry import ImodGeometry, beam_directions, project, projection_matrices
from tiltflow.simulate import (
    SimulationParams,
    Truth,
    acquisition_order,
    simulate_dataset,
    simulate_tilt_series,
    write_imod_project,
)

#: a small, fast case (13 tilts of 128² px)
SMALL = dict(
    raw_size=(128, 128), tilt_step=10.0, n_beads=6, thickness_px=120, ice_thickness_nm=60.0
)


def small(**kw: object) -> SimulationParams:
    d = dict(SMALL)
    d.update(kw)
    return SimulationParams(**d)  # type: ignore[arg-type]


def _files(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


# ----------------------------------------------------------------------------- determinism
def test_same_seed_identical_files_other_seed_differs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    params = small(excluded_views=(1,), perturb_tilt_deg=0.5, dose_profile="cosine")
    runs = {}
    for tag, seed in (("a", 0), ("b", 0), ("c", 1)):
        d = tmp_path / tag
        d.mkdir()
        monkeypatch.chdir(d)
        simulate_dataset(params.replace(seed=seed), Path("out"), ["TS_01", "TS_02"])
        runs[tag] = _files(d)
    assert runs["a"] == runs["b"]
    assert set(runs["a"]) == set(runs["c"])
    assert runs["a"]["out/TS_01/TS_01.mrc"] != runs["c"]["out/TS_01/TS_01.mrc"]
    assert runs["a"]["out/TS_01/truth.json"] != runs["c"]["out/TS_01/truth.json"]
    # the two tilt series of one dataset differ too
    assert runs["a"]["out/TS_01/TS_01.mrc"] != runs["a"]["out/TS_02/TS_02.mrc"]


def test_import_star_and_project_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tiltflow.io.star import read_star

    monkeypatch.chdir(tmp_path)
    star = simulate_dataset(small(), Path("proj"), ["A", "B"])
    assert star == Path("proj/import.star")
    df = read_star(star)[""]
    assert list(df["rlnTomoName"]) == ["A", "B"]
    assert list(df["rlnTomoImportImodDir"]) == ["proj/A", "proj/B"]
    assert list(df["rlnTomoTiltSeriesName"]) == ["proj/A/A.mrc", "proj/B/B.mrc"]
    for label in ("rlnTomoImportCtfPlotterFile", "rlnTomoImportOrderList"):
        assert all(Path(p).is_file() for p in df[label])
    with mrcfile.open("proj/A/A.mrc", permissive=True) as m:
        assert m.data.shape == (13, 128, 128)
        assert float(m.voxel_size.x) == pytest.approx(10.0)
    tilt = Path("proj/A/tilt.com").read_text()
    assert "FULLIMAGE 128 128" in tilt and "THICKNESS 120" in tilt and "SHIFT 0.0 0.0" in tilt
    assert "EXCLUDELIST" not in tilt
    newst = Path("proj/A/newst.com").read_text()
    assert "SizeToOutputInXandY\t128,128" in newst and "BinByFactor\t1" in newst
    defocus = Path("proj/A/A.defocus").read_text().splitlines()
    assert defocus[0] == "1 0 0.0 0.0 0 3" and len(defocus) == 14
    assert defocus[1].split()[:2] == ["1", "1"]


# ----------------------------------------------------------------------------- truth / geometry
@pytest.mark.parametrize("flags", [(False, False), (True, False), (True, True)])
def test_truth_consistent_and_written_alignment_reproduces_it(
    tmp_path: Path, flags: tuple[bool, bool]
) -> None:
    params = small(flip_yz=flags[0], flip_z=flags[1], excluded_views=(2, 13), noise=False)
    ts = simulate_tilt_series(params)
    t = ts.truth
    np.testing.assert_allclose(project(t.proj, t.beads_3d), t.beads_2d, atol=1e-9)
    paths = write_imod_project(ts, tmp_path, "TS_01")
    xf = np.loadtxt(paths["xf"])
    tlt = np.loadtxt(paths["tlt"])
    np.testing.assert_array_equal(xf, t.xf_written)
    np.testing.assert_array_equal(tlt, t.tilt_written_deg)
    geom = ImodGeometry(t.raw_size, t.ali_size, t.thickness, flip_yz=flags[0], flip_z=flags[1])
    np.testing.assert_allclose(projection_matrices(geom, xf, tlt), t.proj, atol=1e-9, rtol=0)
    # the tomogram the importer would produce
    tomo = ts.tomogram("TS_01")
    assert tomo.n_tilts == 11 and tomo.frame_count == 11
    assert ts.kept_stack().shape == (11, 128, 128)
    np.testing.assert_allclose(tomo.proj, t.proj[ts.kept], atol=1e-9)
    assert tomo.size == geom.tomogram_size
    assert "EXCLUDELIST 2,13" in paths["tilt"].read_text()
    # truth.json round trip
    back = Truth.from_json(paths["truth"])
    np.testing.assert_array_equal(back.proj, t.proj)
    np.testing.assert_array_equal(back.beads_2d, t.beads_2d)
    np.testing.assert_array_equal(back.visible, t.visible)
    assert back.excluded_views == (2, 13) and back.import_flags == t.import_flags


def test_perturbation_within_bounds_and_tilt_axis_convention() -> None:
    params = small(
        perturb_tilt_deg=1.0, perturb_rotation_deg=0.5, perturb_shift_px=10.0, perturb_mag=0.01
    )
    t = simulate_tilt_series(params).truth
    dt = t.tilt_written_deg - t.tilt_true_deg
    assert np.all(np.abs(dt) <= 1.0 + 1e-4) and np.std(dt) > 0.2
    rot_true = np.degrees(np.arctan2(-t.xf_true[:, 2], t.xf_true[:, 0]))
    rot_w = np.degrees(np.arctan2(-t.xf_written[:, 2], t.xf_written[:, 0]))
    np.testing.assert_allclose(rot_true, params.tilt_axis_deg, atol=1e-5)
    assert np.all(np.abs(rot_w - rot_true) <= 0.5 + 1e-5)
    mag = np.hypot(t.xf_written[:, 0], t.xf_written[:, 2])
    assert np.all(np.abs(mag - 1) <= 0.01 + 1e-6)
    assert np.all(np.abs(t.xf_written[:, 4:] - t.xf_true[:, 4:]) <= 10.0 + 1e-3)
    # the perturbed tomogram differs from the truth
    ts = simulate_tilt_series(params)
    assert np.abs(ts.tomogram(perturbed=True).proj - ts.tomogram(perturbed=False).proj).max() > 1e-3
    # the true tilt axis maps to the aligned y axis: a world point on the axis projects along
    # the direction (-sin θ, cos θ) in the raw image
    th = np.radians(params.tilt_axis_deg)
    p0 = project(t.proj[6:7], [[64.0, 60.0, 30.0]])[0, 0]
    p1 = project(t.proj[6:7], [[64.0, 60.0, 90.0]])[0, 0]
    d = (p1 - p0) / np.linalg.norm(p1 - p0)
    assert abs(abs(d @ np.array([-np.sin(th), np.cos(th)])) - 1) < 1e-9


def test_beads_placement() -> None:
    params = small(n_beads=12, raw_size=(256, 256), ice_thickness_nm=100.0, thickness_px=200)
    t = simulate_tilt_series(params).truth
    r = params.bead_radius_A / params.pixel_size
    lat = t.beads_3d[:, [0, 2]]
    dist = np.linalg.norm(lat[:, None] - lat[None], axis=-1) + np.eye(len(lat)) * 1e9
    assert dist.min() >= 4 * r - 1e-9
    depth = (t.beads_3d - t.beads_3d.mean(0)) @ t.ice_normal
    ice_px = 100.0 * 10 / params.pixel_size
    assert depth.max() > 0.3 * ice_px and depth.min() < -0.3 * ice_px
    # inside the tomogram and mostly visible at 0 degrees
    size = np.array([256, 200, 256])
    assert np.all(t.beads_3d >= 1) and np.all(t.beads_3d <= size)
    i0 = int(np.argmin(np.abs(t.tilt_true_deg)))
    assert t.visible[i0].mean() >= 0.9


# ----------------------------------------------------------------------------- image formation
def test_dark_beads_at_projected_positions() -> None:
    params = small(n_beads=4, noise=False, background_variation=0.0)
    ts = simulate_tilt_series(params)
    t = ts.truth
    r = params.bead_radius_A / params.pixel_size
    mu = params.bead_contrast * params.pixel_size
    # expected mean transmission over the projected disc: (2/r²) ∫0^r u exp(-2 mu u) du
    u = np.linspace(0, r, 20001)
    expected = np.trapezoid(2 * u * np.exp(-2 * mu * u), u) / r**2
    h, w = ts.stack.shape[1:]
    yy, xx = np.mgrid[0:h, 0:w]
    checked = 0
    for f in range(t.n_raw):
        for b in range(t.beads_3d.shape[0]):
            c = t.beads_2d[f, b]
            others = np.delete(t.beads_2d[f], b, axis=0)
            if not t.visible[f, b] or np.min(np.linalg.norm(others - c, axis=1)) < 5 * r:
                continue
            if not (3 * r < c[0] < w - 3 * r and 3 * r < c[1] < h - 3 * r):
                continue
            d = np.hypot(xx - c[0], yy - c[1])
            disc = ts.stack[f][d <= r - 0.5].mean()
            ring = ts.stack[f][(d >= 1.5 * r) & (d <= 2.5 * r)].mean()
            ratio = disc / ring
            assert ratio < 0.9
            assert ratio == pytest.approx(expected, abs=0.06)  # the inner disc is a bit darker
            checked += 1
    assert checked >= 10
    # with noise the beads are still clearly darker
    noisy = simulate_tilt_series(params.replace(noise=True))
    c = t.beads_2d[6, 0]
    d = np.hypot(xx - c[0], yy - c[1])
    assert (
        noisy.stack[6][d <= r - 0.5].mean()
        < 0.9 * noisy.stack[6][(d >= 1.5 * r) & (d <= 2.5 * r)].mean()
    )


@pytest.mark.parametrize("noise", [False, True])
def test_background_follows_beer_lambert(noise: bool) -> None:
    params = small(
        n_beads=0,
        noise=noise,
        dose_per_tilt=50.0,
        ice_pretilt_deg=(8.0, 5.0),
        dose_profile="cosine",
    )
    ts = simulate_tilt_series(params)
    t = ts.truth
    t_rel = params.ice_thickness_nm / params.mean_free_path_nm
    assert t.ice_thickness_rel == pytest.approx(t_rel)
    assert np.linalg.norm(t.ice_normal) == pytest.approx(1.0)
    att = np.exp(-t_rel / np.abs(beam_directions(t.proj) @ t.ice_normal))
    np.testing.assert_allclose(t.attenuation, att, rtol=1e-12)
    np.testing.assert_allclose(t.scale_factor, att / np.exp(-t_rel), rtol=1e-12)
    measured = ts.stack.mean(axis=(1, 2), dtype=np.float64) / (t.dose * params.pixel_size**2)
    np.testing.assert_allclose(measured, t.attenuation, rtol=0.01 if noise else 1e-5)
    # the pretilted ice is not symmetric in tilt
    assert abs(t.attenuation[0] - t.attenuation[-1]) > 1e-3
    # the illumination pattern is a few % and identical for every tilt
    rel = ts.stack / ts.stack.mean(axis=(1, 2), keepdims=True)
    if not noise:
        assert 0.01 < rel[0].max() - 1 < 0.05
        np.testing.assert_allclose(rel[0], rel[-1], rtol=1e-5)


def test_flat_ice_scale_factor_is_one_at_zero_tilt() -> None:
    t = simulate_tilt_series(small(n_beads=0, noise=False)).truth
    i0 = int(np.argmin(np.abs(t.tilt_true_deg)))
    assert t.scale_factor[i0] == pytest.approx(1.0, abs=1e-12)
    cos = np.cos(np.radians(t.tilt_true_deg))
    np.testing.assert_allclose(t.attenuation, np.exp(-t.ice_thickness_rel / cos), rtol=1e-9)


def test_poisson_statistics() -> None:
    params = small(n_beads=0, background_variation=0.0, dose_per_tilt=2.0)
    ts = simulate_tilt_series(params)
    img = ts.stack.astype(np.float64)
    assert np.all(img == np.round(img)) and img.min() >= 0
    mean = img.mean(axis=(1, 2))
    var = img.var(axis=(1, 2))
    np.testing.assert_allclose(var / mean, 1.0, atol=0.05)


# ----------------------------------------------------------------------------- dose
def test_acquisition_orders() -> None:
    a = np.arange(-3, 4) * 10.0
    ds = acquisition_order(a, "dose-symmetric", 2)
    seq = a[np.argsort(ds)]
    np.testing.assert_array_equal(seq, [0, 10, 20, -10, -20, 30, -30])
    bi = a[np.argsort(acquisition_order(a, "bidirectional"))]
    np.testing.assert_array_equal(bi, [0, 10, 20, 30, -10, -20, -30])
    uni = a[np.argsort(acquisition_order(a, "unidirectional"))]
    np.testing.assert_array_equal(uni, a)


def test_unequal_dose_profile_in_mdoc_and_order_list(tmp_path: Path) -> None:
    params = small(dose_profile="cosine", dose_per_tilt=3.0, scheme="dose-symmetric")
    ts = simulate_tilt_series(params)
    t = ts.truth
    paths = write_imod_project(ts, tmp_path, "TS_01")
    df = mdocfile.read(paths["mdoc"])
    assert len(df) == t.n_raw
    np.testing.assert_allclose(df["TiltAngle"].to_numpy(), t.tilt_true_deg, atol=1e-6)
    doses = df["ExposureDose"].to_numpy(dtype=float)
    np.testing.assert_allclose(doses, t.dose, rtol=0, atol=1e-12)
    assert doses.std() > 0.1
    assert doses.mean() == pytest.approx(3.0, abs=1e-5)
    np.testing.assert_allclose(doses * np.cos(np.radians(t.tilt_true_deg)), doses[6], rtol=1e-5)
    # DateTime is chronological and agrees with the order list and the pre-exposures
    times = list(df["DateTime"])
    chrono_from_mdoc = np.argsort(np.argsort(times, kind="stable"))
    np.testing.assert_array_equal(chrono_from_mdoc, t.chrono_index)
    order = [line.split(",") for line in paths["order_list"].read_text().split()]
    assert [int(i) for i, _ in order] == list(range(1, t.n_raw + 1))
    np.testing.assert_allclose(
        [float(a) for _, a in order], t.tilt_true_deg[np.argsort(t.chrono_index)]
    )
    pre = np.zeros(t.n_raw)
    seq = np.argsort(t.chrono_index)
    pre[seq] = np.concatenate([[0], np.cumsum(t.dose[seq])[:-1]])
    np.testing.assert_allclose(t.pre_exposure, pre)
    np.testing.assert_allclose(ts.tomogram().pre_exposure, pre)


# ----------------------------------------------------------------------------- config / CLI
def test_params_from_dict_and_errors() -> None:
    p = SimulationParams.from_dict(
        {"raw_size": [64, 96], "excluded_views": [1, 2], "ice_pretilt_deg": [1, 2]}
    )
    assert p.raw_size == (64, 96) and p.excluded_views == (1, 2) and p.ice_pretilt_deg == (1.0, 2.0)
    assert SimulationParams.from_dict(p.to_dict()) == p
    with pytest.raises(ConfigError, match="unknown"):
        SimulationParams.from_dict({"bogus": 1})
    with pytest.raises(ConfigError, match="n_beads"):
        SimulationParams.from_dict({"n_beads": "many"})
    with pytest.raises(ConfigError, match="scheme"):
        SimulationParams(scheme="random")
    with pytest.raises(ConfigError, match="flip_z"):
        SimulationParams(flip_z=True)
    with pytest.raises(ConfigError, match="excluded_views"):
        SimulationParams(excluded_views=(99,))
    with pytest.raises(ConfigError, match="pixel_size"):
        SimulationParams(pixel_size=0)
    with pytest.raises(ConfigError, match="beads"):
        simulate_tilt_series(small(n_beads=500))


def test_cli(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from tiltflow.cli import main

    monkeypatch.chdir(tmp_path)
    (tmp_path / "cfg.yaml").write_text("n_beads: 5\nthickness_px: 100\n")
    rc = main(
        [
            "simulate",
            "--o",
            "sim",
            "--names",
            "X1,X2",
            "--seed",
            "4",
            "--config",
            "cfg.yaml",
            "--size",
            "96",
            "--tilt-step",
            "15",
            "--perturb-tilt",
            "0.5",
            "--exclude",
            "1",
            "--flipZ",
        ]
    )
    assert rc == 0
    t = Truth.from_json("sim/X2/truth.json")
    assert t.beads_3d.shape == (5, 3) and t.raw_size == (96, 96) and t.thickness == 100
    assert t.import_flags["flip_yz"] and t.import_flags["flip_z"] and t.excluded_views == (1,)
    assert Path("sim/import.star").is_file()
    (tmp_path / "bad.yaml").write_text("nbeads: 5\n")
    assert main(["simulate", "--o", "sim2", "--config", "bad.yaml"]) == 2
    assert "nbeads" in capsys.readouterr().err


# ----------------------------------------------------------------------------- importer cross-check
def test_importer_reproduces_simulated_tomogram(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    importer = pytest.importorskip("tiltflow.importer")
    from tiltflow.simulate.dataset import derived_seed

    monkeypatch.chdir(tmp_path)
    params = small(
        excluded_views=(3,), perturb_tilt_deg=0.5, perturb_shift_px=3.0, flip_yz=True, flip_z=True
    )
    star = simulate_dataset(params, Path("p"), ["TS_01"])
    tomos = importer.run_import(
        star, "tomograms.star", importer.ImportOptions(angpix=10.0, flip_yz=True, flip_z=True)
    )
    got = tomos["TS_01"]
    want = simulate_tilt_series(params.replace(seed=derived_seed(params.seed, 0))).tomogram("TS_01")
    np.testing.assert_allclose(got.proj, want.proj, atol=1e-6)
    np.testing.assert_allclose(got.defocus_u, want.defocus_u, atol=1e-6)
    np.testing.assert_allclose(got.defocus_v, want.defocus_v, atol=1e-6)
    np.testing.assert_allclose(got.pre_exposure, want.pre_exposure, atol=1e-6)
    assert got.size == want.size and got.frame_count == want.frame_count


def test_non_square_aligned_size(tmp_path: Path) -> None:
    params = small(raw_size=(160, 128), ali_size=(128, 160), n_beads=6)
    ts = simulate_tilt_series(params)
    t = ts.truth
    paths = write_imod_project(ts, tmp_path, "NS")
    assert "FULLIMAGE 128 160" in paths["tilt"].read_text()
    assert "SizeToOutputInXandY\t128,160" in paths["newst"].read_text()
    geom = ImodGeometry((160, 128), (128, 160), t.thickness)
    np.testing.assert_allclose(
        projection_matrices(geom, t.xf_true, t.tilt_true_deg), t.proj, atol=1e-12
    )
    assert ts.tomogram().size == (128, 120, 160)
    assert ts.stack.shape == (13, 128, 160)
    i0 = int(np.argmin(np.abs(t.tilt_true_deg)))
    assert t.visible[i0].all()
