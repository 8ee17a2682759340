"""Ice step on simulated tilt series (tiltflow.simulate) with known thickness, normal and doses."""

from __future__ import annotations

import numpy as np
import pytest

from tiltflow.cli import main
from tiltflow.errors import InputError
from tiltflow.ice import IceParams, estimate_ice, run_estimate_ice
from tiltflow.io.mrc import write_stack
from tiltflow.io.star import read_star, write_star
from tiltflow.io.tomograms import read_tomogram_set, write_tomogram_set
from tiltflow.model import TomogramSet
from tiltflow.simulate import SimulationParams, simulate_tilt_series

MFP = 350.0


def simulate(t=0.7, pretilt=(0.0, 0.0), flip_yz=False, profile="equal", seed=1, **kw):
    sp = SimulationParams(
        raw_size=(256, 256),
        pixel_size=10.0,
        tilt_min=kw.pop("tilt_min", -60.0),
        tilt_max=kw.pop("tilt_max", 60.0),
        tilt_step=kw.pop("tilt_step", 3.0),
        scheme="dose-symmetric",
        dose_per_tilt=3.0,
        dose_profile=profile,
        n_beads=kw.pop("n_beads", 30),
        bead_radius_A=50.0,
        ice_thickness_nm=t * MFP,
        mean_free_path_nm=MFP,
        ice_pretilt_deg=pretilt,
        flip_yz=flip_yz,
        seed=seed,
        thickness_px=int(t * MFP)
        + 100,  # the reconstruction holds the whole slab (beads not clipped)
        **kw,
    )
    return simulate_tilt_series(sp)


def errors(sim, res):
    tr, k = sim.truth, sim.kept
    t_err = res.t / tr.ice_thickness_rel - 1
    ang = np.degrees(np.arccos(min(1.0, abs(float(tr.ice_normal @ res.normal)))))
    s_err = float(np.max(np.abs(res.scale / tr.scale_factor[k] - 1)))
    return t_err, ang, s_err


CASES = [
    # t, (about x, about tilt axis), flip_yz, dose profile
    (0.2, (0.0, 0.0), False, "equal"),
    (0.7, (0.0, 0.0), True, "equal"),
    (1.5, (0.0, 0.0), False, "cosine"),
    (0.2, (0.0, 15.0), True, "cosine"),
    (0.7, (0.0, -15.0), False, "equal"),
    (1.5, (0.0, 15.0), True, "equal"),
    (0.2, (15.0, 0.0), False, "equal"),
    (0.7, (-15.0, 0.0), True, "cosine"),
    (1.5, (15.0, 0.0), False, "cosine"),
    (0.7, (15.0, -15.0), False, "cosine"),
    (1.5, (-15.0, 15.0), True, "cosine"),
]


@pytest.mark.parametrize("t,pretilt,flip_yz,profile", CASES)
def test_ice_fit_on_simulated_series(t, pretilt, flip_yz, profile):
    """Done-criteria: t within 3 %, normal within 2°, every scale factor within 1 %."""
    sim = simulate(t, pretilt, flip_yz, profile, seed=int(10 * t) + 3 * int(flip_yz))
    tomo = sim.tomogram("TS_01", perturbed=True)
    rng = np.random.default_rng(0)
    beads = sim.truth.beads_3d + rng.normal(
        0.0, 0.3, sim.truth.beads_3d.shape
    )  # fiducial-step accuracy
    res = estimate_ice(tomo, sim.kept_stack(), IceParams(), beads)
    t_err, ang, s_err = errors(sim, res)
    print(
        f"t={t} pretilt={pretilt} flip={flip_yz} {profile}: dt={100 * t_err:+.2f}% angle={ang:.2f}° "
        f"max scale err={100 * s_err:.2f}% source={res.normal_source}"
    )
    assert res.status == "fitted"
    assert abs(t_err) < 0.03
    assert ang < 2.0
    assert s_err < 0.01
    assert res.normal @ res.normal >= 0.999999
    assert abs(res.luminance / sim.truth.luminance - 1) < 0.02
    assert res.n_used >= tomo.n_tilts - 2
    if pretilt[0] != 0.0:
        assert res.normal_source == "fiducials"


def test_without_fiducials_pretilt_about_tilt_axis_is_exact_and_perpendicular_is_reported():
    sim = simulate(0.7, (0.0, 15.0), False, "cosine", seed=5, n_beads=20)
    res = estimate_ice(
        sim.tomogram(), sim.kept_stack(), IceParams(), None
    )  # beads masked as dark outliers
    t_err, ang, s_err = errors(sim, res)
    assert abs(t_err) < 0.03 and ang < 2.0 and s_err < 0.01
    assert res.normal_source == "tilt plane"
    # 15° about the axis perpendicular to the tilt axis: not visible in single-axis images;
    # t is then t/cos(15°) (documented), the per-tilt attenuations stay right
    sim = simulate(0.7, (15.0, 0.0), False, "equal", seed=6)
    res = estimate_ice(
        sim.tomogram(), sim.kept_stack(), IceParams(normal_from_beads="never"), sim.truth.beads_3d
    )
    assert res.t == pytest.approx(0.7 / np.cos(np.radians(15.0)), rel=0.01)
    att = res.fit_intensity / res.luminance
    assert np.max(np.abs(att / sim.truth.attenuation[sim.kept] - 1)) < 0.01
    assert any("not observable" in m for m in res.messages)


def test_normalised_stack_raises_clear_error_and_cos_fallback():
    sim = simulate(0.5, seed=7)
    tomo = sim.tomogram()
    stack = sim.kept_stack().astype(np.float64)
    norm = (stack - stack.mean(axis=(1, 2), keepdims=True)) / stack.std(axis=(1, 2), keepdims=True)
    with pytest.raises(
        InputError, match=r"TS_01\.mrc.*not in counts|TS_01\.mrc.*normalised"
    ) as exc:
        estimate_ice(tomo, norm, IceParams())
    assert "--fallback cos" in str(exc.value)
    res = estimate_ice(tomo, norm, IceParams(fallback="cos"))
    assert res.status == "fallback_cos"
    tilts = sim.truth.tilt_true_deg[sim.kept]
    assert np.allclose(res.scale, np.cos(np.radians(tilts)), atol=1e-9)
    assert res.t == 0.0 and res.luminance == 0.0
    # per-tilt normalised to a constant positive mean (e.g. 8-bit conversion): also refused
    flat = stack / stack.mean(axis=(1, 2), keepdims=True) * 128.0
    with pytest.raises(InputError, match="normalised per tilt"):
        estimate_ice(tomo, flat, IceParams())


def test_run_estimate_ice_files_and_cli(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    sim = simulate(0.7, (0.0, 10.0), True, "cosine", seed=9)
    tomo = sim.tomogram("TS_01").replace(
        tilt_series="stacks/TS_01.mrc",
        extra={"rlnTomoFiducialsStarFile": "fid/fiducials_TS_01.star"},
    )
    write_stack("stacks/TS_01.mrc", sim.kept_stack(), 10.0)
    b = sim.truth.beads_3d * 10.0
    write_star(
        "fid/fiducials_TS_01.star",
        {
            "fiducials": {
                "rlnOriginXAngst": list(b[:, 0]),
                "rlnOriginYAngst": list(b[:, 1]),
                "rlnOriginZAngst": list(b[:, 2]),
            }
        },
    )
    write_tomogram_set("in/tomograms.star", TomogramSet((tomo,)))
    out = run_estimate_ice("in/tomograms.star", "ice", IceParams())
    back = read_tomogram_set("ice/tomograms.star")
    tb = back["TS_01"]
    assert tb.extra["rlnTomoFiducialsStarFile"] == "fid/fiducials_TS_01.star"
    assert tb.extra["rlnTomoRelativeIceThickness"] == pytest.approx(0.7, rel=0.03)
    n = np.array([tb.extra[f"rlnTomoIceNormal{a}"] for a in "XYZ"])
    assert np.degrees(np.arccos(min(1.0, abs(n @ sim.truth.ice_normal)))) < 2.0
    assert np.allclose(tb.ctf_scale, sim.truth.scale_factor[sim.kept], rtol=0.01)
    assert np.allclose(tb.proj, tomo.proj, rtol=1e-11, atol=1e-9)
    assert np.allclose(tb.pre_exposure, tomo.pre_exposure, rtol=1e-11)
    assert np.allclose(out["TS_01"].ctf_scale, tb.ctf_scale, rtol=1e-10)
    side = read_star("ice/ice_TS_01.star")
    fit, tilts = side["fit"], side["tilts"]
    assert fit["tfStatus"][0] == "fitted"
    assert float(fit["tfThicknessNm"][0]) == pytest.approx(0.7 * MFP, rel=0.03)
    assert float(fit["tfMeanFreePathNm"][0]) == 350.0
    assert len(tilts) == tomo.n_tilts
    assert np.allclose(tilts["tfScaleFactor"].to_numpy(float), tb.ctf_scale, rtol=1e-9)
    assert (tmp_path / "ice" / "ice_TS_01.png").stat().st_size > 1000
    # figure off (the workflow's step job): the same side file, no PNG; the figure drawn from
    # the side file alone is the step's own, byte for byte
    from test_step_figures import FIGURE_SIZE, png_size

    from tiltflow.qc.step_figures import render_step_figure

    run_estimate_ice("in/tomograms.star", "nofig", IceParams(), figure=False)
    assert not (tmp_path / "nofig" / "ice_TS_01.png").exists()
    assert (tmp_path / "nofig/ice_TS_01.star").read_bytes() == (
        tmp_path / "ice/ice_TS_01.star"
    ).read_bytes()
    assert render_step_figure("ice", "nofig/ice_TS_01.star", "nofig/ice_TS_01.png") == "ok"
    assert png_size("nofig/ice_TS_01.png") == FIGURE_SIZE["ice"]
    assert (tmp_path / "nofig/ice_TS_01.png").read_bytes() == (
        tmp_path / "ice/ice_TS_01.png"
    ).read_bytes()
    # same through the CLI, deterministic output
    assert main(["estimate-ice", "--t", "in/tomograms.star", "--o", "cli"]) == 0
    assert (tmp_path / "cli/tomograms.star").read_text() == (
        tmp_path / "ice/tomograms.star"
    ).read_text()
    assert (tmp_path / "cli/ice_TS_01.star").read_text() == (
        tmp_path / "ice/ice_TS_01.star"
    ).read_text()
    # a normalised stack through the CLI: exit 2, message names the stack; fallback works
    stack = sim.kept_stack().astype(np.float32)
    write_stack("stacks/TS_01.mrc", (stack - stack.mean()) / stack.std(), 10.0)
    capsys.readouterr()
    assert main(["estimate-ice", "--t", "in/tomograms.star", "--o", "bad"]) == 2
    err = capsys.readouterr().err
    assert "stacks/TS_01.mrc" in err and "counts" in err
    assert main(["estimate-ice", "--t", "in/tomograms.star", "--o", "fb", "--fallback", "cos"]) == 0
    fb = read_tomogram_set("fb/tomograms.star")["TS_01"]
    assert fb.extra["rlnTomoRelativeIceThickness"] == 0.0
    assert read_star("fb/ice_TS_01.star")["fit"]["tfStatus"][0] == "fallback_cos"


def test_relion_formula_on_our_labels_reproduces_our_scale_factors(tmp_path, monkeypatch):
    """Issue #14.3: rlnCtfScalefactor = rlnTomoRelativeLuminance · exp(−t / |n · v_f|) (RELION)."""
    from tiltflow.geometry import beam_directions

    monkeypatch.chdir(tmp_path)
    sim = simulate(0.5, (0.0, 8.0), False, "equal", seed=4)
    tomo = sim.tomogram("TS_01").replace(tilt_series="stacks/TS_01.mrc")
    write_stack("stacks/TS_01.mrc", sim.kept_stack(), 10.0)
    write_tomogram_set("in/tomograms.star", TomogramSet((tomo,)))
    run_estimate_ice("in/tomograms.star", "ice", IceParams())
    tb = read_tomogram_set("ice/tomograms.star")["TS_01"]
    lum = tb.extra["rlnTomoRelativeLuminance"]
    t = tb.extra["rlnTomoRelativeIceThickness"]
    n = np.array([tb.extra[f"rlnTomoIceNormal{a}"] for a in "XYZ"])
    v = beam_directions(tb.proj)
    relion = lum * np.exp(-t / np.abs(v @ n))
    assert np.allclose(relion, tb.ctf_scale, rtol=1e-5)  # as written (%.6g-class text)
    assert lum == pytest.approx(np.exp(t), rel=1e-6)  # dimensionless, not counts per dose
    # the counts-per-dose luminance of the fit is kept in the side file
    fit = read_star("ice/ice_TS_01.star")["fit"]
    assert float(fit["tfLuminance"][0]) > 10 * lum


@pytest.mark.parametrize("case", ["inverted", "narrow"])
def test_non_physical_fit_is_a_failure_not_a_result(case):
    """Issue #11.6: a negative thickness (inverted contrast, ±6° of tilts) is refused."""
    if case == "inverted":
        sim = simulate(0.5, seed=3)
        stack = sim.kept_stack().astype(np.float64)
        inverted = (2.0 * stack.mean() - stack).clip(min=0)  # bright where the ice is thick
        tomo = sim.tomogram("TS_01")
    else:
        sim = simulate(0.5, seed=5, tilt_min=-6.0, tilt_max=6.0, tilt_step=3.0)
        stack = sim.kept_stack().astype(np.float64)
        # 5 tilts over ±6°: make the fit see intensity rising with path length
        cos = np.cos(np.radians(sim.truth.tilt_true_deg[sim.kept]))
        inverted = stack * (1.0 / cos**8)[:, None, None]
        tomo = sim.tomogram("TS_01")
    with pytest.raises(InputError, match="not physical"):
        estimate_ice(tomo, inverted.astype(np.float32), IceParams())
    res = estimate_ice(tomo, inverted.astype(np.float32), IceParams(fallback="cos"))
    assert res.status == "fallback_cos" and res.t == 0.0


def test_threads_give_the_same_numbers_and_name_the_first_bad_frame():
    """Frames measured on 2 threads: the same result to the bit; a NaN in two frames is
    reported for the first of them."""
    from tiltflow.ice.intensity import measure_intensities

    sim = simulate(0.7, seed=4)
    tomo = sim.tomogram("TS_01", perturbed=False)
    stack = sim.kept_stack()
    one = estimate_ice(tomo, stack, IceParams(threads=1), sim.truth.beads_3d)
    two = estimate_ice(tomo, stack, IceParams(threads=2), sim.truth.beads_3d)
    assert np.array_equal(one.scale, two.scale)
    assert one.t == two.t
    bad = np.array(stack, dtype=np.float32)
    bad[7, 10, 20] = np.nan
    bad[3, 100, 5] = np.inf
    with pytest.raises(InputError, match=r"frame 4\b"):
        measure_intensities(bad, tomo.proj, tomo.size, 5.0, threads=2, source="x.mrc")
    with pytest.raises(Exception, match="threads"):
        IceParams(threads=0)
