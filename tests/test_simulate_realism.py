"""The simulator's realism features (issue #9 item 1, issue #15 item 3), against independent
expectations: exact default output, CTF zeros, Fresnel fringes, the hand-dependent defocus
gradient, a carbon edge moving like a plane, hot pixels, beads leaving the field, touching
clusters, drift blur, a grid-bar shadow and a tilt offset the importer copes with."""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import numpy as np
import pytest

from tiltflow.errors import ConfigError
from tiltflow.simulate import (
    SimulatedTiltSeries,
    SimulationParams,
    Truth,
    simulate_dataset,
    simulate_tilt_series,
    write_imod_project,
)
from tiltflow.simulate.params import PRESETS

SMALL = dict(
    raw_size=(128, 128), tilt_step=10.0, n_beads=6, thickness_px=120, ice_thickness_nm=60.0
)
#: 300 kV: relativistic wavelength (Å) and interaction constant (rad / (V Å)), textbook values
LAMBDA_300 = 0.0196875
SIGMA_300 = 6.5262e-4
CS_A = 2.7e7
Q0 = 0.1


def small(**kw: object) -> SimulationParams:
    d: dict[str, object] = dict(SMALL)
    d.update(kw)
    return SimulationParams(**d)  # type: ignore[arg-type]


def sha(a: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()


def chi(k: np.ndarray, defocus: float) -> np.ndarray:
    return math.pi * LAMBDA_300 * defocus * k**2 - 0.5 * math.pi * CS_A * LAMBDA_300**3 * k**4


def radial_profile(ps: np.ndarray) -> np.ndarray:
    """Mean of an unshifted 2D power spectrum in rings of 1 frequency bin (square images)."""
    n = ps.shape[0]
    k = np.fft.fftfreq(n) * n
    r = np.rint(np.hypot(k[:, None], k[None, :])).astype(int)
    return np.bincount(r.ravel(), ps.ravel()) / np.maximum(np.bincount(r.ravel()), 1)


# ----------------------------------------------------------------------------- defaults
# sha256 of the stacks before the realism features existed (commit 00e0f5f)
DEFAULT_HASHES = {
    "small": "13c372c4aff1ae4337b9aa6fb768c092603612d9ab40475d2a42bf02645bb90f",
    "small_nonoise": "f952109869a902a9fb221653ff26e03e014dc30af924290ff9c5c1e8b313a8d8",
    "small_pert": "b687dbb6e866255b18e16f3d214b6d1b420c45e67eeb25f9ea701318de7dadef",
}
DEFAULT_FILES = {
    "TS_01.defocus": "f1265af68a375c68d5bcf1e922f531d8746c59130324c3949f76e2d54f3f25ce",
    "TS_01.mrc": "d9dc22e1b767fed32a46d2d6247bd06090cbdc6d3205cd3d8b7964d29f4ab2e5",
    "TS_01.mrc.mdoc": "f245a5f98b0ec52b828abb63e8b5afa42d09a1132c8f52692945276b91c028c1",
    "TS_01.tlt": "ca45db29c5b63e515415d577f8fb9c0f43a9410d7bf94826cdf16743c7f4aade",
    "TS_01.xf": "bfc4b54d92a1fc4a8506da780d55c08156f93c90d207b99269b7c46f3bb44866",
    "TS_01_order_list.csv": "4167a5bee251e78df13e48fc400996178312c3c0eddd12bca30751c02e9c3247",
}


def test_default_output_is_byte_identical_to_before() -> None:
    cases = {
        "small": SMALL,
        "small_nonoise": dict(SMALL, noise=False, seed=3),
        "small_pert": dict(
            raw_size=(96, 128),
            tilt_step=15.0,
            n_beads=4,
            thickness_px=100,
            perturb_tilt_deg=0.5,
            perturb_shift_px=2,
            dose_profile="cosine",
            seed=7,
        ),
    }
    for name, kw in cases.items():
        ts = simulate_tilt_series(SimulationParams(**kw))  # type: ignore[arg-type]
        assert sha(ts.stack) == DEFAULT_HASHES[name], name
    assert not SimulationParams().realistic_images
    assert not SimulationParams.from_preset("clean").realistic_images


def test_default_files_are_byte_identical_to_before(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    simulate_dataset(SimulationParams(**SMALL), Path("out"), ["TS_01"])  # type: ignore[arg-type]
    for name, digest in DEFAULT_FILES.items():
        data = (tmp_path / "out" / "TS_01" / name).read_bytes()
        assert hashlib.sha256(data).hexdigest() == digest, name


def test_hand_alone_changes_no_image_and_is_written_to_the_tomogram() -> None:
    ts = simulate_tilt_series(small(hand=1.0))
    assert sha(ts.stack) == DEFAULT_HASHES["small"]
    assert ts.truth.hand == 1.0
    assert ts.tomogram().hand == 1.0


def test_detector_artefacts_use_their_own_streams() -> None:
    base = simulate_tilt_series(small()).stack
    ts = simulate_tilt_series(small(n_hot_pixels=7, xrays_per_view=1.0))
    t = ts.truth
    touched = np.zeros(base.shape, bool)
    touched[:, t.hot_pixels[:, 1], t.hot_pixels[:, 0]] = True
    x = t.xray_spikes
    touched[x[:, 0], x[:, 2], x[:, 1]] = True
    # everything else is the default stack, Poisson draws included
    np.testing.assert_array_equal(ts.stack[~touched], base[~touched])
    assert np.all(ts.stack[touched] > base[touched])


# ----------------------------------------------------------------------------- optics
def test_optics_constants() -> None:
    from tiltflow.simulate.optics import interaction_constant, wavelength_A

    assert wavelength_A(300.0) == pytest.approx(LAMBDA_300, rel=1e-4)
    assert interaction_constant(300.0) == pytest.approx(SIGMA_300, rel=2e-3)
    # a 10 nm gold bead (25 V above ice) shifts the phase by 1-2 rad at its centre
    assert 1.0 < SIGMA_300 * 25.0 * 100.0 < 2.0


def phase_view(tilt: float, **kw: object) -> SimulatedTiltSeries:
    d: dict[str, object] = dict(
        raw_size=(256, 256),
        pixel_size=5.0,
        defocus_um=2.0,
        defocus_sd_nm=0.0,
        astigmatism_nm=0.0,
        tilt_min=tilt,
        tilt_max=tilt,
        n_beads=0,
        noise=False,
        background_variation=0.0,
        shift_sd_px=0.0,
        ice_thickness_nm=30.0,
        thickness_px=100,
        phase_contrast=True,
        specimen_phase_rms=0.05,
    )
    d.update(kw)
    return simulate_tilt_series(SimulationParams(**d))  # type: ignore[arg-type]


def test_thon_rings_have_their_zeros_where_chi_predicts() -> None:
    ts = phase_view(0.0)
    im = ts.stack[0].astype(np.float64)
    im = im / im.mean() - 1.0
    prof = radial_profile(np.abs(np.fft.fft2(im)) ** 2)
    n, px = im.shape[0], 5.0
    df = float(ts.truth.defocus_u[0])
    k = np.arange(prof.size) / (n * px)
    # zeros of sin(χ + asin Q): χ + asin(Q) = jπ
    kk = np.linspace(0, 0.1, 100001)
    arg = chi(kk, df) + math.asin(Q0)
    for j in (1, 2):
        k_pred = kk[np.argmin(np.abs(arg - j * math.pi))]
        sel = (k > 0.8 * k_pred) & (k < 1.15 * k_pred)
        k_found = k[sel][np.argmin(prof[sel])]
        assert k_found == pytest.approx(k_pred, rel=0.03), j
    # and the rings are there: the first maximum is far above the first zero
    k1 = kk[np.argmin(np.abs(arg - 0.5 * math.pi))]
    i1 = int(round(k1 * n * px))
    i0 = int(round(kk[np.argmin(np.abs(arg - math.pi))] * n * px))
    assert prof[i1] > 20 * prof[i0]


def test_phase_contrast_keeps_the_mean_counts() -> None:
    ph = phase_view(0.0, n_beads=0)
    t = ph.truth
    level = t.dose[0] * t.luminance * t.attenuation[0]
    assert ph.stack[0].mean() / level == pytest.approx(1.0, abs=0.01)


def test_gold_bead_has_a_dark_core_and_a_bright_fresnel_fringe() -> None:
    kw: dict[str, object] = dict(n_beads=1, specimen_phase_rms=0.0, pixel_size=5.0)
    for phase in (True, False):
        ts = phase_view(0.0, **{**kw, "phase_contrast": phase})
        t = ts.truth
        level = t.dose[0] * t.luminance * t.attenuation[0]
        im = ts.stack[0] / level
        cx, cy = t.beads_2d[0, 0]
        yy, xx = np.mgrid[0 : im.shape[0], 0 : im.shape[1]]
        r = np.hypot(xx - cx, yy - cy)
        r_px = t.bead_radii_A[0] / t.pixel_size
        core = im[r < 0.5 * r_px].mean()
        ring = max(im[(r >= r_px + i) & (r < r_px + i + 1)].mean() for i in range(8))
        assert core < 0.8
        if phase:
            assert ring > 1.02  # bright fringe outside the bead (underfocus)
        else:
            assert ring <= 1.0 + 1e-6  # Beer–Lambert: no fringe (float32 counts)


def fit_defocus(strip: np.ndarray, px: float) -> float:
    """Defocus (Å) maximising the correlation of a strip's power spectrum with sin²(χ+asin Q)."""
    h, w = strip.shape
    win = np.hanning(w)[None, :] * np.hanning(w)[:, None]
    profs = []
    for y0 in range(0, h - w + 1, w // 2):
        tile = strip[y0 : y0 + w]
        tile = tile / tile.mean() - 1.0
        profs.append(radial_profile(np.abs(np.fft.fft2(tile * win)) ** 2))
    prof = np.mean(profs, axis=0)
    k = np.arange(prof.size) / (w * px)
    sel = (k > 0.02) & (k < 0.095)
    y = np.log(prof[sel])
    y = y - np.polyval(np.polyfit(k[sel], y, 3), k[sel])
    best, best_df = -2.0, 0.0
    for df in np.arange(10000.0, 35000.0, 10.0):
        m = np.sin(chi(k[sel], df) + math.asin(Q0)) ** 2
        c = np.corrcoef(y, m)[0, 1]
        if c > best:
            best, best_df = c, df
    return float(best_df)


def test_hand_sets_the_defocus_gradient_of_a_tilted_view() -> None:
    """60° view, tilt axis along image y: the defocus fitted in strips left and right of the
    axis differs by hand · px · (depth difference of the ice mid-plane), as in RELION."""
    diffs = {}
    for hand in (1.0, -1.0):
        ts = phase_view(60.0, hand=hand, tilt_axis_deg=0.0, raw_size=(320, 256))
        t = ts.truth
        im = ts.stack[0].astype(np.float64)
        p = t.proj[0]
        centre = (np.array([320, 100, 256]) - 1.0) / 2.0 + 1.0  # tomogram centre (RELION 4)
        fits, depths = [], []
        for x0 in (16, 208):
            fits.append(fit_defocus(im[:, x0 : x0 + 96], 5.0))
            # depth of the ice mid-plane (world y = centre) at the strip centre, image y = 128
            u, v = x0 + 48.0, 128.0
            m = p[:3, :3]
            # solve P·X = (u, v, d) with X_y = centre_y for (X_x, X_z, d)
            a = np.array([[m[0, 0], m[0, 2], 0.0], [m[1, 0], m[1, 2], 0.0], [m[2, 0], m[2, 2], -1]])
            rhs = np.array([u, v, 0.0]) - p[:3, 3] - m[:, 1] * centre[1]
            depths.append(np.linalg.solve(a, rhs)[2])
        d_centre = p[2, :3] @ centre + p[2, 3]
        expected = [
            t.defocus_u[0] + hand * t.pixel_size * (d - d_centre) for d in depths
        ]
        assert fits[0] == pytest.approx(expected[0], abs=250.0)
        assert fits[1] == pytest.approx(expected[1], abs=250.0)
        diffs[hand] = (fits[1] - fits[0], expected[1] - expected[0])
    for hand, (got, want) in diffs.items():
        assert abs(want) > 1000.0  # ~0.16 µm across the two strips
        # hand +1: the strip at larger depth (row 2 of P) is more underfocused
        assert np.sign(got) == np.sign(want) == np.sign(hand * (depths[1] - depths[0]))
        assert got == pytest.approx(want, rel=0.25)
    assert np.sign(diffs[1.0][0]) == -np.sign(diffs[-1.0][0])


def test_hand_does_not_matter_for_an_untilted_flat_specimen() -> None:
    a = phase_view(0.0, hand=1.0, ice_thickness_nm=0.5, n_beads=1).stack
    b = phase_view(0.0, hand=-1.0, ice_thickness_nm=0.5, n_beads=1).stack
    assert np.max(np.abs(a - b)) / a.mean() < 1e-3
    c = phase_view(60.0, hand=1.0).stack
    d = phase_view(60.0, hand=-1.0).stack
    assert np.max(np.abs(c - d)) / c.mean() > 1e-2


# ----------------------------------------------------------------------------- carbon
def edge_lines(t: Truth, f: int) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Projected film edges at the slab's two faces: (point, direction, inward normal) in 2D."""
    planes = np.asarray(t.carbon["planes"])
    lo, hi = np.asarray(t.carbon["lo"]), np.asarray(t.carbon["hi"])
    n, m = planes
    d = np.cross(n, m)
    p = t.proj[f]
    out = []
    for face in (lo[0], hi[0]):
        a = np.stack([n, m, d])
        x0 = np.linalg.solve(a, np.array([face, lo[1], d @ np.array([64.5, 60.5, 64.5])]))
        m_in = m - (m @ n) * n
        pts = [x0, x0 + 100 * d, x0 + 10 * m_in]
        uv = [p[:2, :3] @ q + p[:2, 3] for q in pts]
        direc = uv[1] - uv[0]
        nrm = np.array([-direc[1], direc[0]])
        if nrm @ (uv[2] - uv[0]) < 0:
            nrm = -nrm
        out.append((uv[0], direc, nrm))
    return out


def test_carbon_edge_moves_like_a_3d_plane() -> None:
    ts = simulate_tilt_series(
        small(
            n_beads=0,
            noise=False,
            background_variation=0.0,
            tilt_step=30.0,
            carbon_thickness_nm=15.0,
            carbon_edge_nm=20.0,
            carbon_edge_angle_deg=20.0,
        )
    )
    t = ts.truth
    yy, xx = np.mgrid[0:128, 0:128].astype(float)
    fracs = []
    for f in range(t.n_raw):
        level = t.dose[f] * t.luminance * t.attenuation[f]
        rel = ts.stack[f] / level
        masked = rel < 1.0 - 1e-6
        analytic = np.zeros_like(masked)
        for o, _d, nrm in edge_lines(t, f):
            analytic |= (xx - o[0]) * nrm[0] + (yy - o[1]) * nrm[1] >= 0
        assert np.mean(masked != analytic) < 0.01, f
        fracs.append(masked.mean())
        # Beer–Lambert deep inside the film: exp(-path / Λ), path = thickness / |n·v|
        n = np.asarray(t.carbon["planes"])[0]
        v = t.proj[f, 2, :3] / np.linalg.norm(t.proj[f, 2, :3])
        path_A = t.carbon["thickness_px"] * t.pixel_size / abs(n @ v)
        o, _d, nrm = edge_lines(t, f)[0]
        inside = ((xx - o[0]) * nrm[0] + (yy - o[1]) * nrm[1]) > 20 * np.linalg.norm(nrm)
        if inside.any():
            assert np.median(rel[inside]) == pytest.approx(
                math.exp(-path_A / (t.carbon["mfp_nm"] * 10.0)), rel=1e-4
            )
    assert max(fracs) - min(fracs) > 0.1  # the masked part of the field changes with tilt


# ----------------------------------------------------------------------------- detector
def test_hot_pixels_and_xrays_sit_where_the_truth_says() -> None:
    ts = simulate_tilt_series(SimulationParams.from_preset("hot", **SMALL))  # type: ignore[arg-type]
    t = ts.truth
    assert t.hot_pixels.shape == (30, 2)
    from scipy.ndimage import median_filter

    for f in range(t.n_raw):
        im = ts.stack[f].astype(float)
        level = t.dose[f] * t.luminance * t.attenuation[f]
        med = median_filter(im, size=5)
        x, y = t.hot_pixels[:, 0], t.hot_pixels[:, 1]
        assert np.all(im[y, x] - med[y, x] > 4.0 * level)
        hits = t.xray_spikes[t.xray_spikes[:, 0] == f]
        assert np.all(im[hits[:, 2], hits[:, 1]] - med[hits[:, 2], hits[:, 1]] > 4.0 * level)
        # nothing else is that bright
        mask = np.ones(im.shape, bool)
        mask[y, x] = False
        mask[hits[:, 2], hits[:, 1]] = False
        assert np.all((im - med)[mask] < 4.0 * level)
    assert t.xray_spikes.shape[0] > 0


# ----------------------------------------------------------------------------- beads
def test_edge_beads_enter_and_leave_the_field_as_projected() -> None:
    ts = simulate_tilt_series(
        small(raw_size=(160, 160), n_beads=3, n_edge_beads=6, noise=False, tilt_step=5.0)
    )
    t = ts.truth
    edge = np.flatnonzero(np.array(t.bead_kind) == "edge")
    assert edge.size == 6
    w, h = t.raw_size
    xyz1 = np.concatenate([t.beads_3d, np.ones((t.beads_3d.shape[0], 1))], axis=1)
    uv = np.einsum("fij,mj->fmi", t.proj[:, :2, :], xyz1)
    vis = (uv[..., 0] >= 0) & (uv[..., 0] <= w - 1) & (uv[..., 1] >= 0) & (uv[..., 1] <= h - 1)
    np.testing.assert_array_equal(vis, t.visible)
    changing = [b for b in edge if vis[:, b].any() and not vis[:, b].all()]
    assert len(changing) >= 3  # in the field for part of the series only
    r = t.bead_radii_A / t.pixel_size
    for f in range(t.n_raw):
        level = t.dose[f] * t.luminance * t.attenuation[f]
        for b in edge:
            u, v = uv[f, b]
            if r[b] + 1 < u < w - 2 - r[b] and r[b] + 1 < v < h - 2 - r[b]:
                assert ts.stack[f, int(round(v)), int(round(u))] < 0.8 * level
    # the highest tilts see beads the 0° view does not (or the other way round)
    f0 = int(np.argmin(np.abs(t.tilt_true_deg)))
    assert (vis[f0, edge] != vis[0, edge]).any() or (vis[f0, edge] != vis[-1, edge]).any()


def test_clusters_touch_and_small_beads_are_small() -> None:
    ts = simulate_tilt_series(
        small(raw_size=(256, 256), n_bead_clusters=4, n_small_beads=5, surface_fraction=0.5)
    )
    t = ts.truth
    kind = np.array(t.bead_kind)
    r = t.bead_radii_A
    assert np.all(r[kind == "small"] == 25.0)
    assert set(np.unique(r[kind == "cluster"])) <= {25.0, 50.0}
    xyz = t.beads_3d
    for k in range(4):
        mem = np.flatnonzero(t.bead_cluster == k)
        assert 2 <= mem.size <= 3
        rpx = r[mem] / t.pixel_size
        d = np.linalg.norm(xyz[mem, None] - xyz[None, mem], axis=-1)
        touch = np.abs(d - (rpx[:, None] + rpx[None, :])) < 1e-6
        np.fill_diagonal(touch, False)
        # connected by contacts, and no two overlap
        assert touch.any(axis=1).all()
        iu = np.triu_indices(mem.size, 1)
        assert np.all(d[iu] >= (rpx[:, None] + rpx[None, :])[iu] - 1e-6)
    # other beads keep clear of each other
    rpx_all = r / t.pixel_size
    dd = np.linalg.norm(xyz[:, None] - xyz[None, :], axis=-1)
    same = (t.bead_cluster[:, None] == t.bead_cluster[None, :]) & (t.bead_cluster[:, None] >= 0)
    np.fill_diagonal(same, True)
    assert np.all(dd[~same] > (rpx_all[:, None] + rpx_all[None, :])[~same])
    # beads inside the ice, not only on its surfaces
    normal = t.ice_normal
    c = (np.array([256.0, 120.0, 256.0]) - 1.0) / 2.0 + 1.0
    depth = np.abs((xyz - c) @ normal)
    assert np.any(depth < 0.4 * t.ice_thickness_nm * 10 / t.pixel_size)


def test_drift_blurs_one_view_along_its_direction() -> None:
    kw: dict[str, object] = dict(n_beads=4, noise=False, background_variation=0.0)
    ref = simulate_tilt_series(small(**kw))
    ts = simulate_tilt_series(small(**kw, drift_blur_px=10.0, drift_view=7))
    t = ts.truth
    f = t.drift["view"]
    assert f == 6
    same = [g for g in range(t.n_raw) if g != f]
    np.testing.assert_array_equal(ts.stack[same], ref.stack[same])
    a = np.deg2rad(t.drift["angle_deg"])
    level = t.dose[f] * t.luminance * t.attenuation[f]

    def moments(im: np.ndarray, cx: float, cy: float) -> tuple[float, float]:
        yy, xx = np.mgrid[0:128, 0:128].astype(float)
        sel = np.hypot(xx - cx, yy - cy) < 14
        wgt = np.clip(level - im, 0, None) * sel
        dx, dy = xx - cx, yy - cy
        along = dx * np.cos(a) + dy * np.sin(a)
        across = -dx * np.sin(a) + dy * np.cos(a)
        s = wgt.sum()
        m1 = (wgt * along).sum() / s
        m2 = (wgt * across).sum() / s
        return (
            float((wgt * (along - m1) ** 2).sum() / s),
            float((wgt * (across - m2) ** 2).sum() / s),
        )

    checked = 0
    for b in range(4):
        cx, cy = t.beads_2d[f, b]
        others = np.delete(t.beads_2d[f], b, axis=0)
        if not (16 < cx < 111 and 16 < cy < 111) or np.min(
            np.hypot(*(others - [cx, cy]).T)
        ) < 30:
            continue
        va0, vc0 = moments(ref.stack[f], cx, cy)
        va1, vc1 = moments(ts.stack[f], cx, cy)
        assert va1 - va0 == pytest.approx(10.0**2 / 12.0, rel=0.2)  # uniform motion: L²/12
        assert abs(vc1 - vc0) < 0.5
        checked += 1
    assert checked >= 1


def test_grid_bar_shadow_is_the_projection_of_a_3d_box() -> None:
    from matplotlib.path import Path as MplPath
    from scipy.spatial import ConvexHull

    ts = simulate_tilt_series(
        small(n_beads=0, noise=False, background_variation=0.0, tilt_step=5.0, grid_bar_cover=0.3)
    )
    t = ts.truth
    planes = np.asarray(t.grid_bar["planes"])
    lo, hi = np.asarray(t.grid_bar["lo"]), np.asarray(t.grid_bar["hi"])
    axis = np.cross(planes[0], planes[1])
    corners = []
    for a in (lo[0], hi[0]):
        for b in (lo[1], hi[1]):
            for c in (-1e5, 1e5):
                corners.append(np.linalg.solve(np.stack([planes[0], planes[1], axis]), [a, b, c]))
    yy, xx = np.mgrid[0:128, 0:128].astype(float)
    pts = np.column_stack([xx.ravel(), yy.ravel()])
    fracs = []
    for f in range(t.n_raw):
        level = t.dose[f] * t.luminance * t.attenuation[f]
        dark = (ts.stack[f] / level < 0.999).ravel()
        uv = np.array([t.proj[f, :2, :3] @ q + t.proj[f, :2, 3] for q in corners])
        hull = uv[ConvexHull(uv).vertices]
        inside = MplPath(hull).contains_points(pts)
        assert np.mean(dark != inside) < 0.01, f
        fracs.append(dark.mean())
    f_hi = int(np.argmax(t.tilt_true_deg))
    f_lo = int(np.argmin(t.tilt_true_deg))
    assert fracs[f_hi] == pytest.approx(0.3, abs=0.03)
    assert fracs[f_lo] == 0.0
    assert fracs[int(np.argmin(np.abs(t.tilt_true_deg)))] == 0.0


# ----------------------------------------------------------------------------- tilt offset
def test_tilt_offset_between_tlt_and_nominal_angles_is_imported_right(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tiltflow.cli import main
    from tiltflow.io.tomograms import read_tomogram_set

    monkeypatch.chdir(tmp_path)
    params = small(tilt_offset_deg=0.8, tilt_step=3.0, tilt_min=-30.0, tilt_max=30.0)
    star = simulate_dataset(params, Path("out"), ["TS_01"])
    d = Path("out/TS_01")
    tlt = np.loadtxt(d / "TS_01.tlt")
    order = np.loadtxt(d / "TS_01_order_list.csv", delimiter=",")
    np.testing.assert_allclose(np.sort(order[:, 1]) + 0.8, tlt, atol=1e-9)
    mdoc = [float(line.split("=")[1]) for line in (d / "TS_01.mrc.mdoc").read_text().splitlines()
            if line.startswith("TiltAngle")]
    np.testing.assert_allclose(np.array(mdoc) + 0.8, tlt, atol=1e-9)
    t = Truth.from_json(d / "truth.json")
    np.testing.assert_allclose(t.tilt_true_deg - t.nominal_tilt_deg, 0.8, atol=1e-9)
    main(["import-imod", "--i", str(star), "--o", "imp", "--angpix", "10"])
    tomo = read_tomogram_set("imp/tomograms.star")["TS_01"]
    np.testing.assert_allclose(tomo.pre_exposure, t.pre_exposure[t.kept])
    np.testing.assert_allclose(tomo.proj, t.proj[t.kept], atol=1e-6)


# ----------------------------------------------------------------------------- truth, presets
def test_truth_round_trips_the_new_fields_and_old_files_still_load(tmp_path: Path) -> None:
    p = SimulationParams.from_preset("all", **SMALL)  # type: ignore[arg-type]
    ts = simulate_tilt_series(p)
    paths = write_imod_project(ts, tmp_path / "TS", "TS")
    t = Truth.from_json(paths["truth"])
    for name in ("bead_radii_A", "nominal_tilt_deg", "hot_pixels", "xray_spikes", "bead_cluster"):
        np.testing.assert_array_equal(getattr(t, name), getattr(ts.truth, name))
    assert t.bead_kind == ts.truth.bead_kind
    assert t.carbon == ts.truth.carbon and t.grid_bar == ts.truth.grid_bar
    assert t.drift == ts.truth.drift and t.realism["phase_contrast"] is True
    assert t.tilt_offset_deg == 0.8
    # a truth.json from before: the new keys absent
    d = json.loads(paths["truth"].read_text())
    new = ("hand nominal_tilt_deg tilt_offset_deg bead_radii_A bead_kind bead_cluster hot_pixels "
           "hot_pixel_gain xray_spikes drift carbon grid_bar clutter realism").split()
    for k in new:
        del d[k]
    old = Truth.from_dict(d)
    assert old.hand == -1.0 and old.tilt_offset_deg == 0.0
    np.testing.assert_array_equal(old.nominal_tilt_deg, old.tilt_true_deg)
    np.testing.assert_array_equal(old.bead_radii_A, np.full(old.beads_3d.shape[0], 50.0))
    assert old.bead_kind == ("field",) * old.beads_3d.shape[0]
    assert old.hot_pixels.shape == (0, 2) and old.carbon == {}


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_simulates(name: str) -> None:
    p = SimulationParams.from_preset(name, **SMALL)  # type: ignore[arg-type]
    assert p.realistic_images == (name != "clean")
    ts = simulate_tilt_series(p)
    assert np.all(np.isfinite(ts.stack)) and ts.stack.min() >= 0
    t = ts.truth
    level = t.dose * t.luminance * t.attenuation
    assert 0.3 < np.median(ts.stack / level[:, None, None]) < 1.2


def test_preset_cli_and_validation(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tiltflow.cli import main

    monkeypatch.chdir(tmp_path)
    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps({"n_hot_pixels": 3}))
    main(["simulate", "--o", "o", "--preset", "hot", "--config", str(cfg), "--xrays", "0",
          "--size", "96", "--tilt-step", "30", "--beads", "2", "--thickness", "80"])
    t = Truth.from_json("o/TS_01/truth.json")
    assert t.hot_pixels.shape == (3, 2)  # --config over the preset
    assert t.xray_spikes.shape == (0, 3)  # the flag over both
    with pytest.raises(ConfigError, match="unknown simulation preset"):
        SimulationParams.from_preset("nope")
    for bad in (dict(hand=0.5), dict(carbon_side=0), dict(grid_bar_cover=1.0),
                dict(n_hot_pixels=-1), dict(drift_view=99), dict(tilt_offset_deg=20.0)):
        with pytest.raises(ConfigError):
            small(**bad)
