"""Ice step, model level: Beer–Lambert fit on intensities computed directly from the model."""

from __future__ import annotations

import numpy as np
import pytest

from tiltflow.errors import ConfigError, NoDataError
from tiltflow.geometry import ImodGeometry, beam_directions, projection_matrices
from tiltflow.ice import IceParams, attenuation, fit_beer_lambert, mean_free_path_nm, scale_factors
from tiltflow.ice.intensity import robust_mean
from tiltflow.ice.model import normal_from_pq, pq_from_normal, tilt_frame


def rot(axis: np.ndarray, deg: float) -> np.ndarray:
    """Right-handed rotation matrix about a unit axis (Rodrigues), independent of the code under test."""
    a = np.radians(deg)
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + np.sin(a) * k + (1 - np.cos(a)) * k @ k


def series(
    flip_yz: bool, tmin: float = -60, tmax: float = 60, step: float = 3, rot_deg: float = 85.0
):
    tilts = np.arange(tmin, tmax + 1e-9, step)
    n = tilts.size
    c, s = np.cos(np.radians(rot_deg)), np.sin(np.radians(rot_deg))
    xf = np.tile([c, -s, s, c, 3.0, -2.0], (n, 1))
    geom = ImodGeometry(raw_size=(256, 256), ali_size=(256, 256), thickness=200, flip_yz=flip_yz)
    return tilts, projection_matrices(geom, xf, tilts)


def truth_normal(flip_yz: bool, about_x: float, about_tilt: float) -> np.ndarray:
    thick, tilt_ax = (2, 1) if flip_yz else (1, 2)
    n = np.zeros(3)
    n[thick] = 1.0
    e_t = np.zeros(3)
    e_t[tilt_ax] = 1.0
    return rot(e_t, about_tilt) @ rot(np.array([1.0, 0, 0]), about_x) @ n


def angle_deg(a: np.ndarray, b: np.ndarray) -> float:
    return float(
        np.degrees(np.arccos(min(1.0, abs(a @ b) / np.linalg.norm(a) / np.linalg.norm(b))))
    )


def model_intensity(t, n, beams, dose, lum=100.0, counts_px=65536, rng=None):
    """Mean counts per pixel of a field of counts_px pixels with Poisson noise (Gaussian approx)."""
    c = np.abs(beams @ (n / np.linalg.norm(n)))
    mean = dose * lum * np.exp(-t / c)
    if rng is not None:
        mean = mean + rng.normal(0.0, np.sqrt(mean / counts_px))
    return mean


@pytest.mark.parametrize("flip_yz", [False, True])
@pytest.mark.parametrize("t", [0.2, 0.7, 1.5])
@pytest.mark.parametrize("pretilt", [0.0, 15.0, -15.0])
def test_fit_recovers_truth_in_tilt_plane(flip_yz, t, pretilt):
    """Pretilt about the tilt axis: t within 3 %, normal within 2°, scales within 1 % (in fact far better)."""
    rng = np.random.default_rng(int(10 * t + pretilt + 100 * flip_yz) % 2**32)
    tilts, proj = series(flip_yz)
    beams = beam_directions(proj)
    n_true = truth_normal(flip_yz, 0.0, pretilt)
    dose = (
        3.0 / np.cos(np.radians(tilts)) * (3.0 / np.mean(3.0 / np.cos(np.radians(tilts))))
    )  # unequal
    i = model_intensity(t, n_true, beams, dose, rng=rng)
    fit = fit_beer_lambert(beams, np.log(i / dose))
    assert abs(fit.t / t - 1) < 0.03
    assert abs(fit.t - t) < 5 * fit.t_sd + 1e-3  # honest uncertainty
    assert angle_deg(fit.normal, n_true) < 2.0
    assert fit.normal @ fit.frame.v0 > 0  # sign convention
    true_scale = np.exp(-t / np.abs(beams @ n_true)) / np.exp(-t)
    assert np.max(np.abs(scale_factors(fit.t, fit.normal, beams) / true_scale - 1)) < 0.01
    assert abs(np.exp(fit.log_l) / 100.0 - 1) < 0.01


def test_noise_free_fit_is_exact_and_scale_definition():
    tilts, proj = series(False)
    beams = beam_directions(proj)
    n_true = truth_normal(False, 0.0, 7.0)
    i = model_intensity(0.5, n_true, beams, np.ones(tilts.size))
    fit = fit_beer_lambert(beams, np.log(i))
    assert fit.t == pytest.approx(0.5, rel=1e-8)
    assert angle_deg(fit.normal, n_true) < 1e-5
    # SPEC §5: 1 for a beam along n; exp(-t(1/cos - 1)) otherwise
    s = scale_factors(0.5, n_true, n_true[None, :])
    assert s[0] == pytest.approx(1.0)
    v = rot(np.array([0.0, 0, 1]), 60) @ n_true
    assert scale_factors(0.5, n_true, v[None, :])[0] == pytest.approx(np.exp(-0.5 * (2 - 1)))
    assert attenuation(0.5, n_true, v[None, :])[0] == pytest.approx(np.exp(-1.0))


def test_normal_tilt_about_perpendicular_axis_is_unobservable_and_fixed_q_recovers():
    """Beams of a single-axis series lie in one plane: only t/R is seen (R = cos of the out-of-plane tilt)."""
    tilts, proj = series(False)
    beams = beam_directions(proj)
    n_true = truth_normal(False, 15.0, 5.0)  # 15° about x = out of the tilt plane
    i = model_intensity(0.7, n_true, beams, np.ones(tilts.size))
    fit = fit_beer_lambert(beams, np.log(i))
    assert not fit.q_fitted
    frame = fit.frame
    r = np.linalg.norm(n_true - (n_true @ frame.w) * frame.w)
    assert fit.t == pytest.approx(0.7 / r, rel=1e-6)  # effective thickness
    # per-tilt attenuation is still exact: the scale factors are off by one constant exp(t - t/R)
    assert np.allclose(
        np.exp(-fit.t / np.abs(beams @ fit.normal)),
        np.exp(-0.7 / np.abs(beams @ n_true)),
        rtol=1e-6,
    )
    _, q = pq_from_normal(frame, n_true)
    fit2 = fit_beer_lambert(beams, np.log(i), q_fixed=q)
    assert fit2.t == pytest.approx(0.7, rel=1e-6)
    assert angle_deg(fit2.normal, n_true) < 1e-4


def test_q_is_fitted_when_beams_leave_the_tilt_plane():
    """Two tilt axes (beams not coplanar): the full normal is observable and fitted."""
    _, proj = series(False)
    b1 = beam_directions(proj)
    b2 = (rot(np.array([0.0, 1.0, 0.0]), 90) @ b1.T).T  # second axis (dual-axis-like)
    beams = np.vstack([b1, b2])
    n_true = truth_normal(False, 12.0, -8.0)
    i = model_intensity(0.9, n_true, beams, np.ones(beams.shape[0]))
    fit = fit_beer_lambert(beams, np.log(i))
    assert fit.q_fitted
    assert fit.t == pytest.approx(0.9, rel=1e-6)
    assert angle_deg(fit.normal, n_true) < 1e-3


def test_outlier_tilt_left_out_and_nan_dose_tilt_gets_model_scale():
    tilts, proj = series(True)
    beams = beam_directions(proj)
    n_true = truth_normal(True, 0.0, -10.0)
    y = np.log(model_intensity(1.0, n_true, beams, np.ones(tilts.size)))
    y[5] += 0.2  # e.g. a grid bar shadow
    y[12] = np.nan  # unknown dose
    fit = fit_beer_lambert(beams, y)
    assert not fit.used[5] and not fit.used[12]
    assert fit.t == pytest.approx(1.0, rel=1e-6)
    assert fit.residual[5] == pytest.approx(0.2, abs=1e-6)
    assert np.isfinite(scale_factors(fit.t, fit.normal, beams)[12])


def test_tiny_tilt_range_has_large_uncertainty():
    tilts, proj = series(False, -6, 6, 1)
    beams = beam_directions(proj)
    rng = np.random.default_rng(3)
    i = model_intensity(0.5, truth_normal(False, 0, 0), beams, np.ones(tilts.size), rng=rng)
    fit = fit_beer_lambert(beams, np.log(i))
    wide_tilts, wide_proj = series(False)
    wb = beam_directions(wide_proj)
    wide = fit_beer_lambert(
        wb,
        np.log(
            model_intensity(0.5, truth_normal(False, 0, 0), wb, np.ones(wide_tilts.size), rng=rng)
        ),
    )
    assert fit.t_sd > 20 * wide.t_sd


def test_tilt_frame_and_normal_parametrisation():
    tilts, proj = series(False)
    fr = tilt_frame(beam_directions(proj))
    assert tilts[fr.zero_index] == 0.0
    assert np.allclose(np.abs(fr.angles_deg), np.abs(tilts), atol=1e-9)
    assert abs(fr.w @ fr.v0) < 1e-12 and abs(fr.u @ fr.v0) < 1e-12
    n = normal_from_pq(fr, 0.2, -0.1)
    assert np.allclose(pq_from_normal(fr, -n), (0.2, -0.1))


def test_too_few_tilts():
    _, proj = series(False)
    y = np.full(proj.shape[0], np.nan)
    y[:3] = 1.0
    with pytest.raises(NoDataError):
        fit_beer_lambert(beam_directions(proj), y)


@pytest.mark.parametrize("lam", [300.0, 30.0, 3.0, 1.0])
def test_robust_mean_unbiased_for_poisson(lam):
    """3 e/Å² × (10 Å)² = 300 counts and lower: |bias| < 0.1 % (the median would be off by ~1/(3λ))."""
    x = np.random.default_rng(1).poisson(lam, size=2_000_000).astype(np.float64)
    assert abs(robust_mean(x) / x.mean() - 1) < 1e-3


def test_robust_mean_rejects_outliers():
    rng = np.random.default_rng(2)
    x = rng.poisson(300, size=100_000).astype(np.float64)
    x[:200] = 0.0  # dead pixels / unmasked bead cores
    x[200:220] = 1e5  # hot pixels
    assert abs(robust_mean(x) / 300.0 - 1) < 1e-3


def test_mean_free_path_defaults_and_params():
    assert mean_free_path_nm(300.0) == 350.0
    assert mean_free_path_nm(200.0) == 300.0
    assert mean_free_path_nm(250.0) == pytest.approx(325.0)
    assert mean_free_path_nm(120.0, 200.0) == 200.0
    with pytest.raises(ConfigError, match="mean_free_path_nm"):
        mean_free_path_nm(120.0)
    p = IceParams.from_dict({"fallback": "cos", "mean_free_path_nm": 400, "central_fraction": 0.4})
    assert p.fallback == "cos" and p.mean_free_path_nm == 400.0 and p.central_fraction == 0.4
    with pytest.raises(ConfigError, match="unknown ice option"):
        IceParams.from_dict({"trimm": 0.1})
    with pytest.raises(ConfigError, match="fallback"):
        IceParams.from_dict({"fallback": "sin"})
    with pytest.raises(ConfigError, match="central_fraction"):
        IceParams(central_fraction=0.0)
