"""Hand step (issue #15): rlnTomoHand from the defocus gradient of tilted images.

The images come from the hand package's own generator (tiltflow.hand.synthetic): a thin slab of
weak-phase random potential, every pixel imaged with its own defocus exactly as RELION 4 models
it (view defocus + hand · px · depth), astigmatism, Poisson noise at 3 e/Å² per tilt. Test-sized:
1024² px at 1.5 Å/px, 4 µm defocus, 0° plus six tilts of ±36-60°.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from tiltflow.errors import ConfigError
from tiltflow.geometry import ImodGeometry, projection_matrices, tomogram_centre
from tiltflow.hand import (
    STATUS_DETERMINED,
    STATUS_UNDETERMINED,
    HandParams,
    apply_result,
    find_hand,
    run_find_hand,
)
from tiltflow.hand.depth import SpecimenPlane, depth_maps, specimen_plane
from tiltflow.hand.fit import fit_slope, fit_strips
from tiltflow.hand.spectra import (
    FrequencyGrid,
    PhaseBins,
    amplitude_phase,
    ctf_x,
    wavelength_A,
)
from tiltflow.hand.synthetic import (
    HandSimulation,
    SimulatedSeries,
    simulate_hand_series,
    write_series,
)
from tiltflow.io.star import read_star
from tiltflow.io.tomograms import read_tomogram_set


@pytest.fixture(scope="module")
def sim_plus() -> SimulatedSeries:
    return simulate_hand_series(HandSimulation(hand=1.0, seed=1))


@pytest.fixture(scope="module")
def sim_minus() -> SimulatedSeries:
    # another geometry: tilt axis at 40° in the raw image, no flipYZ (tomogram Y = thickness)
    return simulate_hand_series(
        HandSimulation(hand=-1.0, seed=2, tilt_axis_deg=40.0, flip_yz=False, flip_z=False)
    )


@pytest.fixture(scope="module")
def sim_binned() -> SimulatedSeries:
    # a 4k-class image binned to 8 Å/px: Thon rings only up to 1/16 Å⁻¹
    return simulate_hand_series(HandSimulation(pixel_size=8.0, hand=1.0, seed=3))




# ------------------------------------------------------------------ the measurement


@pytest.mark.parametrize("which", ["sim_plus", "sim_minus"])
def test_hand_is_found(which: str, request: pytest.FixtureRequest) -> None:
    sim: SimulatedSeries = request.getfixturevalue(which)
    hand = sim.sim.hand
    res = find_hand(sim.tomo, sim.stack, HandParams())
    assert res.status == STATUS_DETERMINED, res.reasons
    assert res.hand_measured == hand and res.hand_out == hand
    assert abs(res.slope - hand) <= 0.2, (res.slope, res.slope_se)
    assert abs(res.slope / res.slope_se) > 10
    assert res.agreement == 1.0
    high = np.abs(np.asarray(sim.sim.tilts_deg)) >= 30
    assert np.array_equal(res.selected, high) and np.array_equal(res.measured, high)
    assert np.all(np.abs(res.tilt_slope[high] - hand) < 0.5)
    assert res.plane.source == "beam"


def test_only_the_high_tilts_are_read_once(
    sim_plus: SimulatedSeries, recording_stack: type
) -> None:
    stack = recording_stack(sim_plus.stack)
    res = find_hand(sim_plus.tomo, stack, HandParams())  # type: ignore[arg-type]
    assert sorted(stack.reads) == sorted(np.flatnonzero(res.selected).tolist())
    assert 0 not in stack.reads


def test_binned_8A_is_undetermined(sim_binned: SimulatedSeries, recording_stack: type) -> None:
    stack = recording_stack(sim_binned.stack)
    res = find_hand(sim_binned.tomo, stack, HandParams())  # type: ignore[arg-type]
    assert res.status == STATUS_UNDETERMINED
    assert res.hand_measured == 0.0 and res.hand_out == sim_binned.tomo.hand
    assert "too few Thon rings" in res.reasons[0] and "8 Å/px" in res.reasons[0]
    assert np.all(res.rings[res.selected] < 4)
    assert stack.reads == []  # nothing to measure: no image is read


def test_noise_only_is_undetermined(sim_plus: SimulatedSeries) -> None:
    rng = np.random.default_rng(7)
    noise = rng.poisson(6.75, sim_plus.stack.shape).astype(np.float32)
    res = find_hand(sim_plus.tomo, noise, HandParams())
    assert res.status == STATUS_UNDETERMINED
    assert res.hand_out == sim_plus.tomo.hand
    # --force does not invent a hand where no slope could be fitted
    forced = find_hand(sim_plus.tomo, noise, HandParams(force=True))
    assert forced.hand_out == sim_plus.tomo.hand


def test_force_writes_an_undetermined_sign(sim_minus: SimulatedSeries) -> None:
    # an impossible agreement makes the result undetermined; --force still writes the sign
    strict = HandParams(min_z=1e6)
    res = find_hand(sim_minus.tomo.replace(hand=1.0), sim_minus.stack, strict)
    assert res.status == STATUS_UNDETERMINED and res.hand_out == 1.0
    assert any("slope / se" in r for r in res.reasons)
    forced = find_hand(
        sim_minus.tomo.replace(hand=1.0), sim_minus.stack, dataclasses.replace(strict, force=True)
    )
    assert forced.hand_out == -1.0


def test_wrong_pixel_size_is_not_a_hand(sim_plus: SimulatedSeries) -> None:
    # a pixel size the images were not taken at puts the Thon rings elsewhere than the imported
    # defocus predicts: no strip fits, and no hand is written
    for px in (0.5, 1.2):
        res = find_hand(sim_plus.tomo.replace(pixel_size=px), sim_plus.stack, HandParams())
        assert res.status == STATUS_UNDETERMINED and res.hand_out == sim_plus.tomo.hand


def test_defocus_errors_are_measured_and_corrected(sim_minus: SimulatedSeries) -> None:
    rng = np.random.default_rng(5)
    n = sim_minus.tomo.n_tilts
    err = rng.choice([-1, 1], n) * rng.uniform(200.0, 600.0, n)
    err[2] = 20.0  # within the tolerance: left alone
    tomo = sim_minus.tomo.replace(
        defocus_u=sim_minus.tomo.defocus_u + err, defocus_v=sim_minus.tomo.defocus_v + err
    )
    res = find_hand(tomo, sim_minus.stack, HandParams(correct_defocus=True))
    assert res.status == STATUS_DETERMINED
    m = res.measured
    # the measured defocus at the tomogram-centre depth is the truth within ~2 Thon-ring bins
    miss = np.abs(res.correction_A[m] + err[m])
    assert np.all(miss < np.maximum(60.0, 4.0 * res.correction_se_A[m])), (
        miss,
        res.correction_se_A,
    )
    assert np.array_equal(res.corrected, m & (np.abs(err) > 100))
    fixed = apply_result(tomo, res, correct_defocus=True)
    truth_u = sim_minus.true_defocus_u
    assert np.all(np.abs(fixed.defocus_u[res.corrected] - truth_u[res.corrected]) < 100.0)
    assert np.array_equal(fixed.defocus_u[~res.corrected], tomo.defocus_u[~res.corrected])
    assert np.allclose(fixed.defocus_u - fixed.defocus_v, tomo.defocus_u - tomo.defocus_v)
    kept = apply_result(tomo, res, correct_defocus=False)
    assert np.array_equal(kept.defocus_u, tomo.defocus_u)


# ------------------------------------------------------------------ pieces


def test_depth_maps_follow_the_projection() -> None:
    geom = ImodGeometry(raw_size=(900, 700), ali_size=(880, 720), thickness=300.0, shift=(4, -7))
    ang = np.deg2rad(33.0)
    xf = np.tile([np.cos(ang), np.sin(ang), -np.sin(ang), np.cos(ang), 12.0, -5.0], (5, 1))
    proj = projection_matrices(geom, xf, [-50.0, -20.0, 0.0, 25.0, 55.0])
    size = geom.tomogram_size
    centre = tomogram_centre(size)
    normal = np.array([0.1, 0.98, 0.05])
    normal /= np.linalg.norm(normal)
    plane = SpecimenPlane(normal, centre + 20.0 * normal, "test")
    maps = depth_maps(proj, size, plane)
    rng = np.random.default_rng(0)
    uv = rng.uniform(0, 700, (6, 2))
    for f in range(proj.shape[0]):
        p = proj[f]
        m = np.stack([p[0, :3], p[1, :3], normal])
        rhs = np.column_stack([uv[:, 0] - p[0, 3], uv[:, 1] - p[1, 3]])
        rhs = np.column_stack([rhs, np.full(6, normal @ plane.point)])
        x = np.linalg.solve(m, rhs.T).T  # world points on the plane seen at uv
        assert np.allclose((p[:2, :3] @ x.T).T + p[:2, 3], uv)
        want = x @ p[2, :3] + p[2, 3] - (p[2, :3] @ centre + p[2, 3])
        assert np.allclose(maps.depth(f, uv), want)
    ray = np.cross(proj[:, 0, :3], proj[:, 1, :3])
    ray /= np.linalg.norm(ray, axis=1, keepdims=True)
    assert np.allclose(np.abs(maps.angle_deg), np.degrees(np.arccos(np.abs(ray @ normal))))
    assert np.sign(maps.angle_deg[0]) == -np.sign(maps.angle_deg[-1])


def test_specimen_plane_from_fiducials(sim_plus: SimulatedSeries) -> None:
    tomo = sim_plus.tomo
    c = tomogram_centre(tomo.size)
    rng = np.random.default_rng(1)
    pre = np.deg2rad(8.0)
    normal = np.array([np.sin(pre), 0.0, np.cos(pre)])  # flipYZ world: thickness along Z
    e1 = np.array([np.cos(pre), 0.0, -np.sin(pre)])
    e2 = np.array([0.0, 1.0, 0.0])
    ab = rng.uniform(-400, 400, (20, 2))
    side = np.where(np.arange(20) % 2 == 0, 1.0, -1.0)[:, None]
    beads = c + 15.0 + ab[:, :1] * e1 + ab[:, 1:] * e2 + side * 90.0 * normal
    plane, msgs = specimen_plane(tomo, "auto", beads)
    assert plane.source == "fiducials" and "20 fiducials" in msgs[0]
    assert np.degrees(np.arccos(min(abs(plane.normal @ normal), 1.0))) < 0.5
    assert abs((plane.point - c - 15.0) @ normal) < 1.0
    beam, msgs = specimen_plane(tomo, "auto", beads[:3])
    assert beam.source == "beam" and "too few" in msgs[0]
    ice, _ = specimen_plane(
        tomo.replace(
            extra={"rlnTomoIceNormalX": 0.0, "rlnTomoIceNormalY": 0.0, "rlnTomoIceNormalZ": -1.0}
        )
    )
    assert ice.source == "ice" and np.allclose(ice.normal, [0, 0, 1])
    from tiltflow.errors import InputError

    with pytest.raises(InputError, match="rlnTomoIceNormal"):
        specimen_plane(tomo, "ice")
    with pytest.raises(InputError, match="too few"):
        specimen_plane(tomo, "fiducials", beads[:3])


def test_phase_bins_hold_equal_pixel_counts() -> None:
    grid = FrequencyGrid.make(512, 1.5)
    lam = wavelength_A(300.0)
    bins = PhaseBins.make(grid, 41000.0, 39000.0, 30.0, lam, 2.7, 1 / 30.0, 1 / 8.0)
    c = bins.counts[bins.fit]
    half = c.size // 2
    assert c.min() > 0.7 * np.median(c) and c.max() < 1.3 * np.median(c)
    assert abs(c[:half].mean() / c[half:].mean() - 1.0) < 0.05  # no trend with frequency
    # the bins follow the astigmatic phase: every pixel's x is inside its bin
    d = 40000.0 + 1000.0 * np.cos(2 * (grid.theta - np.deg2rad(30.0)))
    xp = ctf_x(grid.k2, d, lam, 2.7)
    ok = bins.index < bins.n_bins
    lo = bins.x_start + bins.index[ok] / bins.per_ring
    assert np.all((xp[ok] >= lo - 1e-9) & (xp[ok] < lo + 1.0 / bins.per_ring + 1e-9))


def test_fit_strips_recovers_a_defocus_offset() -> None:
    lam = wavelength_A(300.0)
    phi = amplitude_phase(0.07)
    x = np.linspace(1.0, 12.0, 110)
    k2 = x / (lam * 40000.0)
    rng = np.random.default_rng(3)
    true = np.array([-900.0, 0.0, 350.0])
    r = -np.cos(2 * np.pi * (x[None] + lam * true[:, None] * k2[None]) + 2 * phi)
    r = 0.1 * r * np.exp(-x / 8.0)[None] + rng.normal(0, 0.02, (3, x.size))
    deltas = np.arange(-3000.0, 3000.1, 50.0)
    fits = fit_strips(r, x, k2, deltas, lam, phi)
    assert np.all(np.abs(fits.delta_A - true) < 4 * fits.se_A + 10), (fits.delta_A, fits.se_A)
    assert np.all(fits.z > 10) and not fits.at_edge.any()


def test_fit_slope_is_robust_to_outliers() -> None:
    rng = np.random.default_rng(4)
    groups = np.repeat(np.arange(6), 5)
    depth = rng.uniform(-400, 400, groups.size)
    y = -1.0 * depth + rng.normal(0, 150, 6)[groups] + rng.normal(0, 5.0, groups.size)
    y[[3, 17]] += [300.0, -250.0]  # two wrong strips
    fit = fit_slope(y, np.full(y.size, 5.0), depth, groups, 6)
    assert abs(fit.slope + 1.0) < 4 * fit.slope_se and fit.slope_se < 0.02
    assert fit.weights[3] < 0.2 * np.median(fit.weights)
    assert np.all(np.abs(fit.group_slopes + 1.0) < 0.2)


def test_params_are_checked() -> None:
    with pytest.raises(ConfigError, match="tile_px"):
        HandParams(tile_px=33)
    with pytest.raises(ConfigError, match="res_high_A"):
        HandParams(res_high_A=40.0)
    with pytest.raises(ConfigError, match="plane"):
        HandParams.from_dict({"plane": "ice-ish"})
    with pytest.raises(ConfigError, match="no_such"):
        HandParams.from_dict({"no_such": 1})
    assert HandParams.from_dict({"search_A": None, "force": True}).force


def test_cli_defaults_are_the_params_defaults() -> None:
    from tiltflow.cli import find_hand as cli

    d = HandParams()
    for field, value in cli._DEFAULTS.items():
        assert getattr(d, field) == value, field
    fields = {f.name for f in dataclasses.fields(HandParams)}
    assert set(cli.OPTIONS.values()) <= fields


# ------------------------------------------------------------------ files and CLI


def test_find_hand_verb_writes_the_set_side_file_and_figure(
    sim_plus: SimulatedSeries, sim_binned: SimulatedSeries, tmp_path: Path, monkeypatch
) -> None:
    from tiltflow.cli import main

    monkeypatch.chdir(tmp_path)
    write_series(sim_plus, "in", name="TS_plus")
    # a second tomogram in the same set: the binned one, in its own stack
    star_b = write_series(sim_binned, "in_b", name="TS_binned")
    from tiltflow.io.tomograms import write_tomogram_set

    merged = read_tomogram_set("in/tomograms.star").merged(read_tomogram_set(star_b))
    write_tomogram_set("in/tomograms.star", merged)
    assert main(["find-hand", "--t", "in/tomograms.star", "--o", "out", "--min_tilt", "30"]) == 0
    out = read_tomogram_set("out/tomograms.star")
    assert out["TS_plus"].hand == 1.0  # measured (the import said -1)
    assert out["TS_binned"].hand == -1.0  # undetermined: the input hand stays
    from test_step_figures import FIGURE_SIZE, png_size

    from tiltflow.qc.step_figures import render_step_figure

    for name in ("TS_plus", "TS_binned"):
        assert Path(f"out/hand_{name}.png").stat().st_size > 20000
        # drawn from the side file alone: the step's own figure, byte for byte
        assert render_step_figure("hand", f"out/hand_{name}.star", f"fig/{name}.png") == "ok"
        assert png_size(f"fig/{name}.png") == FIGURE_SIZE["hand"]
        assert Path(f"fig/{name}.png").read_bytes() == Path(f"out/hand_{name}.png").read_bytes()
    blocks = read_star("out/hand_TS_plus.star")
    assert set(blocks) == {"fit", "tilts", "strips"}
    fit = blocks["fit"].iloc[0]
    assert fit["tfStatus"] == "determined" and float(fit["tfHandMeasured"]) == 1.0
    assert abs(float(fit["tfSlope"]) - 1.0) < 0.2
    tilts = blocks["tilts"]
    assert len(tilts) == sim_plus.tomo.n_tilts
    strips = blocks["strips"]
    assert {"tfDepthPx", "tfDeltaDefocusA", "tfDeltaDefocusPx", "tfUsed"} <= set(strips.columns)
    assert set(strips["tfTiltIndex"].astype(int)) == set(
        np.flatnonzero(tilts["tfMeasured"].astype(int))
    )
    binned = read_star("out/hand_TS_binned.star")["fit"].iloc[0]
    assert binned["tfStatus"] == "undetermined" and "Thon_rings" in binned["tfReason"]
    # the same again is byte-identical (deterministic outputs)
    assert main(["find-hand", "--t", "in/tomograms.star", "--o", "out2", "--tomo", "TS_plus"]) == 0
    assert Path("out2/hand_TS_plus.star").read_bytes() == Path("out/hand_TS_plus.star").read_bytes()
    # figure off (the workflow's step job): the same side file, no PNG
    from tiltflow.hand import HandParams, run_find_hand

    run_find_hand(
        "in/tomograms.star", "out3", HandParams(min_tilt_deg=30), names=["TS_plus"], figure=False
    )
    assert Path("out3/hand_TS_plus.star").read_bytes() == Path("out/hand_TS_plus.star").read_bytes()
    assert not Path("out3/hand_TS_plus.png").exists()
    assert read_tomogram_set("out2/tomograms.star").names == ["TS_plus"]


def test_find_hand_refuses_to_write_over_its_input(
    sim_plus: SimulatedSeries, tmp_path: Path, monkeypatch
) -> None:
    from tiltflow.errors import InputError

    monkeypatch.chdir(tmp_path)
    star = write_series(sim_plus, "in", name="TS")
    with pytest.raises(InputError, match="input set"):
        run_find_hand(star, "in")
    with pytest.raises(InputError, match="not in the set"):
        run_find_hand(star, "out", names=["nope"])
