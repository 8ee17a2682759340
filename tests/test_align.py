"""Alignment refinement (tiltflow.align) on synthetic fiducial tracks with known truth."""

from __future__ import annotations

import numpy as np
import pytest

from tiltflow.align import AlignParams, align_tomogram, tilt_angles_deg, tilt_axis, triangulate
from tiltflow.align.core import _layout, _Problem
from tiltflow.align.frames import Updates, frames, predict, updated_matrices
from tiltflow.align.synthetic import reprojection_error, synthetic_case
from tiltflow.errors import ConfigError
from tiltflow.geometry import ImodGeometry, project, projection_matrices, tomogram_centre
from tiltflow.io.star import StarBlock

NO_PERTURBATION = dict(tilt_err_deg=0.0, rot_err_deg=0.0, shift_err_px=0.0, mag_err=0.0)


def centre_motion(before: np.ndarray, after: np.ndarray, size: tuple[int, int, int]) -> np.ndarray:
    """(n,2) image motion of the tomogram centre between two matrix stacks."""
    c = tomogram_centre(size)
    return project(after, c)[:, 0] - project(before, c)[:, 0]


# --------------------------------------------------------------------------- params


def test_params_from_dict_checks_keys_and_values() -> None:
    p = AlignParams.from_dict(
        {"refine_third_angle": True, "rotation_grouping": "smooth", "rounds": 3, "f_scale_px": 2}
    )
    assert (
        p.refine_third_angle is True
        and p.rotation_grouping == "smooth"
        and p.rounds == 3
        and p.f_scale_px == 2.0
    )
    assert AlignParams.from_dict(None) == AlignParams()
    with pytest.raises(ConfigError, match="unknown align option"):
        AlignParams.from_dict({"refine_tilts": True})
    with pytest.raises(ConfigError, match="rotation_grouping"):
        AlignParams.from_dict({"rotation_grouping": "weekly"})
    with pytest.raises(ConfigError, match="refine_tilt"):
        AlignParams.from_dict({"refine_tilt": "yes"})
    with pytest.raises(ConfigError, match="min_beads_per_tilt"):
        AlignParams.from_dict({"min_beads_per_tilt": 1})
    with pytest.raises(ConfigError, match="rounds"):
        AlignParams.from_dict({"rounds": 1.5})


# --------------------------------------------------------------------------- geometry of the update


@pytest.mark.parametrize(
    "flip_yz,flip_z,axis", [(False, False, 2), (True, False, 1), (True, True, 1)]
)
def test_tilt_axis_and_angles_match_imod_input(flip_yz: bool, flip_z: bool, axis: int) -> None:
    tilts = np.linspace(-57.0, 63.0, 41)
    rng = np.random.default_rng(1)
    a = np.deg2rad(84.0)
    xf = np.column_stack(
        [
            np.full(41, np.cos(a)),
            np.full(41, -np.sin(a)),
            np.full(41, np.sin(a)),
            np.full(41, np.cos(a)),
            rng.normal(0, 5, (41, 2)),
        ]
    )
    geom = ImodGeometry(
        raw_size=(1000, 900), ali_size=(1024, 1024), thickness=250, flip_yz=flip_yz, flip_z=flip_z
    )
    p = projection_matrices(geom, xf, tilts)
    u, reason = tilt_axis(p)
    assert reason == "" and u is not None
    np.testing.assert_allclose(u, np.eye(3)[axis], atol=1e-12)
    np.testing.assert_allclose(tilt_angles_deg(p), tilts, atol=1e-9)


def test_updated_matrices_equal_model_and_move_centre_by_shift() -> None:
    case = synthetic_case(3, n_tilts=21, n_beads=10)
    t = case.imported
    fr = frames(t.proj, t.size)
    rng = np.random.default_rng(0)
    n = t.n_tilts
    upd = Updates(
        rng.normal(0, 3, (n, 2)),
        rng.normal(0, 0.01, n),
        rng.normal(0, 0.01, n),
        rng.normal(0, 0.02, n),
        rng.normal(0, 0.02, n),
    )
    p_new = updated_matrices(fr, upd)
    np.testing.assert_allclose(
        project(p_new, case.beads_true), predict(fr, upd, case.beads_true), atol=1e-9
    )
    np.testing.assert_allclose(centre_motion(t.proj, p_new, t.size), upd.shift, atol=1e-9)
    # tilt-angle change: rotating the world by θ about the tilt axis turns the beam by -θ
    upd_t = Updates(
        np.zeros((n, 2)), np.zeros(n), np.zeros(n), np.full(n, np.deg2rad(0.7)), np.zeros(n)
    )
    d = tilt_angles_deg(updated_matrices(fr, upd_t), fr.u) - tilt_angles_deg(t.proj, fr.u)
    np.testing.assert_allclose(np.abs(d), 0.7, atol=1e-9)
    assert np.all(
        np.linalg.norm(updated_matrices(fr, Updates.zeros(n)) - t.proj, axis=(1, 2)) < 1e-9
    )


def test_triangulate_recovers_points() -> None:
    case = synthetic_case(
        4, n_tilts=31, n_beads=12, noise_px=0.0, n_outliers=0, withheld_fraction=0.0, n_spurious=0
    )
    o = case.obs
    got = triangulate(case.true.proj, o["bead"], o["tilt"], o[["x", "y"]].to_numpy(), 12)
    np.testing.assert_allclose(got, case.beads_true, atol=1e-6)


def test_analytic_jacobian_matches_finite_differences() -> None:
    case = synthetic_case(
        5, n_tilts=15, n_beads=8, n_outliers=0, n_spurious=0, withheld_fraction=0.0
    )
    t = case.imported
    fr = frames(t.proj, t.size)
    prm = AlignParams(
        refine_third_angle=True,
        rotation_grouping="smooth",
        magnification_grouping="grouped",
        group_size=4,
    )
    act_t = np.ones(fr.n, dtype=bool)
    act_b = np.ones(8, dtype=bool)
    lay = _layout(fr, act_t, act_b, prm, True)
    o = case.obs[case.obs["bead"] >= 0]
    prob = _Problem(
        fr,
        lay,
        case.beads_init,
        o["bead"],
        o["tilt"],
        o[["x", "y"]].to_numpy(),
        prm,
        300.0,
    )
    rng = np.random.default_rng(2)
    x = lay.pack(Updates.zeros(fr.n), case.beads_init) + rng.normal(0, 1e-2, lay.n_params)
    jac = prob.jac(x).toarray()
    num = np.zeros_like(jac)
    h = 1e-6
    for j in range(lay.n_params):
        e = np.zeros(lay.n_params)
        e[j] = h
        num[:, j] = (prob.fun(x + e) - prob.fun(x - e)) / (2 * h)
    np.testing.assert_allclose(jac, num, atol=2e-5 * np.abs(num).max())


# --------------------------------------------------------------------------- recovery (Done-when 1)

RECOVERY_CASES = [
    (0, 41, 20, False),
    (1, 61, 40, False),
    (2, 51, 30, True),
    (3, 61, 20, True),
    (4, 41, 40, True),
    (5, 41, 30, False),
]


@pytest.mark.parametrize("seed,n_tilts,n_beads,flip_yz", RECOVERY_CASES)
def test_perturbed_alignment_is_recovered(
    seed: int, n_tilts: int, n_beads: int, flip_yz: bool
) -> None:
    case = synthetic_case(seed, n_tilts=n_tilts, n_beads=n_beads, flip_yz=flip_yz, noise_px=0.4)
    before = reprojection_error(case.imported.proj, case.beads_init, case.true_2d, case.visible)
    assert before.mean() > 3.0  # the perturbation is real
    res = align_tomogram(case.imported, case.beads_init, case.obs, AlignParams())
    err = reprojection_error(res.tomogram.proj, res.beads, case.true_2d, case.visible)
    assert err.mean() <= 0.25 and err.max() <= 1.0, (err.mean(), err.max())
    assert res.summary["status"] == "refined" and res.messages == []
    # every gross outlier was dropped, every withheld detection picked up by its own bead
    o = res.observations
    assert set(o["status"][case.outlier_rows]) == {"outlier"}
    np.testing.assert_array_equal(
        o["bead"][case.withheld_rows], case.obs_true_bead[case.withheld_rows]
    )
    assert np.all(o["picked_up"][case.withheld_rows])
    # no spurious detection was attached to a bead
    spurious = case.obs_true_bead < 0
    assert np.all(o["bead"][spurious] == -1)


def test_noise_free_recovery_is_exact() -> None:
    case = synthetic_case(7, n_tilts=41, n_beads=25, noise_px=0.0, n_outliers=0)
    res = align_tomogram(case.imported, case.beads_init, case.obs, AlignParams())
    err = reprojection_error(res.tomogram.proj, res.beads, case.true_2d)
    assert err.max() < 1e-5


def test_third_angle_recovers_and_keeps_gauge() -> None:
    case = synthetic_case(8, n_tilts=41, n_beads=30, noise_px=0.3)
    res = align_tomogram(
        case.imported, case.beads_init, case.obs, AlignParams(refine_third_angle=True)
    )
    err = reprojection_error(res.tomogram.proj, res.beads, case.true_2d, case.visible)
    assert err.mean() <= 0.25 and err.max() <= 1.0
    exact = synthetic_case(8, n_tilts=41, n_beads=30, noise_px=0.0, n_outliers=0, **NO_PERTURBATION)
    res0 = align_tomogram(
        exact.true, exact.beads_true + 2.0, exact.obs, AlignParams(refine_third_angle=True)
    )
    assert np.abs(centre_motion(exact.true.proj, res0.tomogram.proj, exact.true.size)).max() < 1e-4
    assert np.abs(res0.tomogram.proj - exact.true.proj).max() < 1e-4


# --------------------------------------------------------------------------- gauge (Done-when 2)


@pytest.mark.parametrize("flip_yz", [False, True])
def test_true_alignment_is_kept(flip_yz: bool) -> None:
    rng = np.random.default_rng(11)
    # noise-free tracks, initial beads 2 px off: the true alignment must come back unchanged
    case = synthetic_case(
        11, n_tilts=41, n_beads=30, flip_yz=flip_yz, noise_px=0.0, n_outliers=0, **NO_PERTURBATION
    )
    b0 = case.beads_true + rng.normal(0, 2.0, case.beads_true.shape)
    res = align_tomogram(case.true, b0, case.obs, AlignParams())
    move = np.linalg.norm(centre_motion(case.true.proj, res.tomogram.proj, case.true.size), axis=1)
    assert move.max() < 1e-6
    np.testing.assert_allclose(res.beads, case.beads_true, atol=1e-6)
    # with 0.1 px localisation noise no tilt moves by more than 0.1 px at the tomogram centre
    noisy = synthetic_case(
        11, n_tilts=41, n_beads=30, flip_yz=flip_yz, noise_px=0.1, **NO_PERTURBATION
    )
    res = align_tomogram(noisy.true, b0, noisy.obs, AlignParams())
    move = centre_motion(noisy.true.proj, res.tomogram.proj, noisy.true.size)
    assert np.linalg.norm(move, axis=1).max() <= 0.1
    assert res.summary["max_centre_shift_px"] == pytest.approx(
        np.linalg.norm(move, axis=1).max(), abs=1e-9
    )


def test_gauge_has_no_net_motion_under_noise() -> None:
    """With 0.3 px noise single tilts move by their statistical error, but the tomogram as a whole
    does not: no net 3D translation of the centre, mean tilt change and magnification zero."""
    case = synthetic_case(12, n_tilts=41, n_beads=30, noise_px=0.3, **NO_PERTURBATION)
    res = align_tomogram(case.true, case.beads_true + 1.5, case.obs, AlignParams())
    move = centre_motion(case.true.proj, res.tomogram.proj, case.true.size)
    a = case.true.proj[:, :2, :3]
    t3d = np.linalg.lstsq(a.reshape(-1, 3), move.reshape(-1), rcond=None)[0]
    assert np.linalg.norm(t3d) < 0.01
    assert abs(res.tilts["d_tilt_deg"].mean()) < 1e-3
    assert abs(res.tilts["d_mag"].mean()) < 1e-6
    assert np.linalg.norm(move, axis=1).max() < 0.4  # per-tilt noise: σ/√(beads) scale


# --------------------------------------------------------------------------- degenerate input


def test_too_few_beads_leaves_alignment_as_imported() -> None:
    case = synthetic_case(13, n_tilts=31, n_beads=2, n_spurious=0)
    res = align_tomogram(case.imported, case.beads_init, case.obs, AlignParams())
    np.testing.assert_array_equal(res.tomogram.proj, case.imported.proj)
    assert res.summary["status"] == "as_imported"
    assert res.tilts["flagged"].all() and set(res.tilts["flag"]) == {"not_refined"}
    assert any("kept as imported" in m and "2 bead(s)" in m for m in res.messages)


def test_tilt_without_beads_is_flagged_and_kept() -> None:
    case = synthetic_case(14, n_tilts=41, n_beads=30)
    obs = case.obs[case.obs["tilt"] != 17].reset_index(drop=True)
    res = align_tomogram(case.imported, case.beads_init, obs, AlignParams())
    np.testing.assert_array_equal(res.tomogram.proj[17], case.imported.proj[17])
    row = res.tilts.row(17)
    assert bool(row["flagged"]) and row["flag"] == "too_few_beads" and row["n_obs"] == 0
    assert int(res.tilts["flagged"].sum()) == 1
    assert any(m.startswith("tilt 17 ") and "kept as imported" in m for m in res.messages)
    others = np.ones(41, dtype=bool)
    others[17] = False
    err = reprojection_error(
        res.tomogram.proj[others], res.beads, case.true_2d[others], case.visible[others]
    )
    assert err.mean() <= 0.25 and err.max() <= 1.0


def test_beads_in_one_plane_keep_tilt_angles() -> None:
    case = synthetic_case(15, n_tilts=41, n_beads=30, noise_px=0.3, tilt_err_deg=0.0)
    # move every bead onto the mid-plane of the slab (world Y = depth without flipYZ)
    flat = case.beads_true.copy()
    flat[:, 1] = tomogram_centre(case.true.size)[1]
    true_2d = project(case.true.proj, flat)
    rng = np.random.default_rng(0)
    o = case.obs.copy()
    real = case.obs_true_bead >= 0
    xy = true_2d[o["tilt"][real], case.obs_true_bead[real]] + rng.normal(
        0, 0.3, (int(real.sum()), 2)
    )
    o.loc[real, ["x", "y"]] = xy
    a = o["bead"] >= 0
    init = triangulate(
        case.imported.proj, o["bead"][a], o["tilt"][a], o[["x", "y"]].to_numpy()[a], 30
    )
    res = align_tomogram(case.imported, init, o, AlignParams())
    assert any("single plane" in m and "tilt angles kept as imported" in m for m in res.messages)
    assert set(res.tilts["flag"]) == {"tilt_angle_kept"}
    np.testing.assert_allclose(res.tilts["d_tilt_deg"], 0.0, atol=1e-9)
    np.testing.assert_allclose(
        tilt_angles_deg(res.tomogram.proj), tilt_angles_deg(case.imported.proj), atol=1e-9
    )
    err = np.linalg.norm(project(res.tomogram.proj, res.beads) - true_2d, axis=2)[case.visible]
    assert err.mean() <= 0.25  # shifts, rotation and magnification still refined


# --------------------------------------------------------------------------- options


def test_fixed_and_grouped_parameters() -> None:
    case = synthetic_case(16, n_tilts=41, n_beads=30, noise_px=0.3)
    res = align_tomogram(
        case.imported,
        case.beads_init,
        case.obs,
        AlignParams(refine_tilt=False, refine_magnification=False),
    )
    np.testing.assert_allclose(res.tilts["d_tilt_deg"], 0.0, atol=1e-9)
    np.testing.assert_allclose(res.tilts["d_mag"], 0.0, atol=0)
    res = align_tomogram(
        case.imported,
        case.beads_init,
        case.obs,
        AlignParams(rotation_grouping="single", magnification_grouping="grouped", group_size=10),
    )
    rot = res.tilts["d_rot_deg"]
    assert np.ptp(rot) < 1e-12 and abs(rot[0]) > 0
    order = np.argsort(res.tilts["tilt_angle_deg"])
    mag = res.tilts["d_mag"][order]
    groups = np.arange(41) // 10
    for g in range(5):
        assert np.ptp(mag[groups == g]) < 1e-12
    assert len(np.unique(np.round(mag, 12))) == 5
    res = align_tomogram(
        case.imported, case.beads_init, case.obs, AlignParams(magnification_grouping="single")
    )
    np.testing.assert_allclose(res.tilts["d_mag"], 0.0, atol=0)
    # smoothing: a large weight makes the rotation change a straight line in tilt angle
    res = align_tomogram(
        case.imported,
        case.beads_init,
        case.obs,
        AlignParams(rotation_grouping="smooth", smoothing_weight=1e4),
    )
    rot = res.tilts["d_rot_deg"][order]
    assert np.abs(np.diff(rot, 2)).max() < 1e-3
    assert np.ptp(rot) > 0.05


def test_observations_accept_tracks_labels_and_reject_bad_indices() -> None:
    case = synthetic_case(17, n_tilts=21, n_beads=10)
    o = case.obs.rename(
        columns={
            "bead": "tfBeadIndex",
            "tilt": "tfTiltIndex",
            "x": "tfObsX",
            "y": "tfObsY",
            "score": "tfScore",
        }
    )
    a = align_tomogram(case.imported, case.beads_init, o, AlignParams())
    b = align_tomogram(case.imported, case.beads_init, case.obs, AlignParams())
    np.testing.assert_array_equal(a.tomogram.proj, b.tomogram.proj)
    bad = case.obs.copy()
    bad.loc[0, "tilt"] = 21
    from tiltflow.errors import InputError

    with pytest.raises(InputError, match="tilt 21"):
        align_tomogram(case.imported, case.beads_init, bad)
    # NaN initial beads are triangulated
    nan_init = case.beads_init.copy()
    nan_init[3] = np.nan
    c = align_tomogram(case.imported, nan_init, case.obs, AlignParams())
    assert np.all(np.isfinite(c.beads))
    assert isinstance(c.observations, StarBlock) and len(c.observations) == len(case.obs)


def test_auto_grouping_prior_weights_and_no_bias_on_even_counts() -> None:
    from tiltflow.align.core import neighbour_prior_weights

    w = neighbour_prior_weights(np.array([40.0, 40, 40, 40, 40, 40, 30, 20, 10, 5]))
    # no prior above 75 % of the median count (40), then sqrt(0.75 · 40 / n - 1)
    want = [0, 0, 0, 0, 0, 0, 0, np.sqrt(0.5), np.sqrt(2.0), np.sqrt(5.0)]
    np.testing.assert_allclose(w, want, atol=1e-12)
    case = synthetic_case(7, n_tilts=41, n_beads=25, noise_px=0.0, n_outliers=0)
    res = align_tomogram(
        case.imported, case.beads_init, case.obs,
        AlignParams(rotation_grouping="auto", magnification_grouping="auto"),
    )
    err = reprojection_error(res.tomogram.proj, res.beads, case.true_2d)
    assert err.max() < 1e-5  # every tilt well observed: fitted freely, exactly
