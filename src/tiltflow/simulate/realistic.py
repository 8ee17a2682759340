"""The realistic rendering path of :func:`~tiltflow.simulate.simulate_tilt_series`.

Used when any image feature of the realism section of
:class:`~tiltflow.simulate.SimulationParams` is on (otherwise the plain renderer runs and the
output is unchanged). Order of operations per view:

1. relative intensity: phase contrast (:mod:`.wave`, all beads and the scene) or
   Beer–Lambert (the regular beads exactly as the plain renderer, times the scene's and the
   extra beads' transmission);
2. × dose · luminance · ice attenuation · illumination pattern, × the grid-bar shadow;
3. drift blur of one view; 4. Poisson noise (the plain renderer's stream);
5. hot pixels and X-ray spikes.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numpy.typing import NDArray

from tiltflow.geometry import tomogram_centre
from tiltflow.simulate import detector, wave
from tiltflow.simulate import scene as sc
from tiltflow.simulate.optics import amplitude_ratio, interaction_constant
from tiltflow.simulate.params import AMPLITUDE_CONTRAST, CS_MM, VOLTAGE_KV, SimulationParams
from tiltflow.simulate.render import render_tilt

F64 = NDArray[np.float64]


def build_scene(
    params: SimulationParams,
    proj: F64,
    normal: F64,
    size: tuple[int, int, int],
    tilts: F64,
    pad: int,
    rngs: tuple[np.random.Generator, np.random.Generator, np.random.Generator],
) -> tuple[sc.Scene, tuple[int, int, int]]:
    """The 3D scene (specimen, texture, clutter, carbon, grid bar) of one series."""
    rng_specimen, rng_texture, rng_clutter = rngs
    ice_px = params.ice_thickness_nm * 10.0 / params.pixel_size
    scene = sc.Scene(centre=tomogram_centre(size), normal=normal, ice_px=ice_px)
    axes = sc.lateral_frame(normal, params.flip_yz)
    w, h = params.raw_size
    region = sc.ice_region(
        proj, (-pad, -pad, w - 1 + pad, h - 1 + pad), scene.centre, normal, axes, 0.5 * ice_px
    )
    if params.specimen_phase_rms > 0:
        scene.specimen_xyz, scene.specimen_amp = sc.specimen_points(
            region, scene, axes, params.specimen_phase_rms, rng_specimen
        )
    if params.texture_phase_rms > 0:
        scene.texture = sc.texture_octaves(
            region, scene, axes, params.texture_phase_rms, params.pixel_size, rng_texture
        )
    if params.ribosomes_per_um2 or params.vesicles_per_um2 or params.membranes_per_um2:
        sc.clutter_objects(
            region,
            scene,
            axes,
            params.pixel_size,
            params.ribosomes_per_um2,
            params.ribosome_diameter_nm,
            params.vesicles_per_um2,
            params.membranes_per_um2,
            params.bilayer_nm,
            rng_clutter,
        )
    if params.carbon_thickness_nm > 0:
        scene.carbon = sc.carbon_film(
            scene,
            axes,
            params.pixel_size,
            params.carbon_thickness_nm,
            params.carbon_edge_nm,
            params.carbon_edge_angle_deg,
            params.carbon_side,
        )
    if params.grid_bar_cover > 0:
        scene.grid_bar = sc.place_grid_bar(
            scene,
            axes,
            params.pixel_size,
            params.grid_bar_depth_nm,
            proj,
            tilts,
            params.grid_bar_cover,
            params.grid_bar_side,
            (h, w),
        )
    return scene, axes


def canvas_pad(params: SimulationParams, defocus_u: F64, defocus_v: F64, tilts: F64) -> int:
    """Padding (px) of the rendered canvas: CTF delocalisation and the texture blur."""
    pad = 0.0
    if params.phase_contrast:
        w, h = params.raw_size
        ice_px = params.ice_thickness_nm * 10.0 / params.pixel_size
        a = math.radians(min(float(np.max(np.abs(tilts))), 85.0))
        depth = 0.5 * math.hypot(w, h) * math.tan(a) + ice_px / math.cos(a) + 50.0
        max_df = float(max(np.max(defocus_u), np.max(defocus_v))) + params.pixel_size * depth
        pad = wave.delocalisation_px(max_df, params.pixel_size, VOLTAGE_KV, CS_MM) + 4.0
        pad = min(pad, 256.0)
    if params.texture_phase_rms > 0:
        sigma = 0.25 * max(sc.TEXTURE_DIAMETERS_NM) * 10.0 / params.pixel_size
        pad = max(pad, 3.0 * sigma)
    return int(math.ceil(pad))


def _optics(params: SimulationParams) -> wave.Optics:
    px = params.pixel_size
    sigma = interaction_constant(VOLTAGE_KV)
    w_amp = amplitude_ratio(AMPLITUDE_CONTRAST)
    mu_px = params.bead_contrast * px
    carbon_lambda_px = params.carbon_mfp_nm * 10.0 / px
    # Clutter lies inside the ice and displaces it: the ice attenuation of every view (in
    # ``level``) is that of the full slab, so a clutter object adds only its inelastic
    # attenuation in excess of the ice it replaces, (ratio - 1) / Λ_ice per unit path (ratios:
    # SimulationParams.protein_absorption / lipid_absorption). Its phase is already relative to
    # ice (clutter_potential_V). The former amplitude, w · σV (the CTF amplitude-contrast ratio
    # applied to the potential), made a ribosome absorb like 2.15 times its volume of ice (1.15
    # on top of the full ice path), biasing the ice fit's thickness by +4-6 %.
    ice_lambda_px = params.mean_free_path_nm * 10.0 / px
    clutter_phase = sigma * params.clutter_potential_V * px
    radii = [params.bead_radius_A]
    if params.n_small_beads or params.n_bead_clusters:
        radii.append(params.small_bead_radius_A)
    return wave.Optics(
        pixel_size=px,
        voltage_kv=VOLTAGE_KV,
        cs_mm=CS_MM,
        hand=float(params.hand),
        phase=bool(params.phase_contrast),
        n_bands=int(params.phase_bands),
        kappa_bead=complex(-0.5 * mu_px, sigma * params.bead_potential_V * px),
        kappa_protein=complex(
            -0.5 * (params.protein_absorption - 1.0) / ice_lambda_px, clutter_phase
        ),
        kappa_lipid=complex(-0.5 * (params.lipid_absorption - 1.0) / ice_lambda_px, clutter_phase),
        kappa_carbon=complex(-0.5 / carbon_lambda_px, sigma * params.carbon_potential_V * px),
        weak=complex(-w_amp, 1.0),
        max_bead_radius_px=max(radii) / px,
        carbon_px=params.carbon_thickness_nm * 10.0 / px,
    )


def render_realistic(
    params: SimulationParams,
    stack: np.ndarray,
    proj: F64,
    normal: F64,
    size: tuple[int, int, int],
    beads: F64,
    bead_radii_px: F64,
    regular_2d: F64,
    tilts: F64,
    level: F64,
    pattern: F64,
    defocus: tuple[F64, F64, F64],
    rng_noise: np.random.Generator,
    rngs: tuple[np.random.Generator, ...],
) -> dict[str, Any]:
    """Fill ``stack`` (n, h, w) in place; return the truth's extra entries.

    ``level`` = dose · luminance · ice attenuation per view (the empty-ice counts without the
    illumination pattern); ``regular_2d`` the projections of the regular beads (first in
    ``beads``); ``defocus`` = (U, V, angle) per view in Å, Å, deg.
    """
    rng_specimen, rng_texture, rng_clutter, rng_hot, rng_xray, rng_drift = rngs
    n = proj.shape[0]
    w, h = params.raw_size
    du, dv, dang = defocus
    pad = canvas_pad(params, du, dv, tilts)
    canvas = wave.Canvas.make(h, w, pad)
    scene, _axes = build_scene(
        params, proj, normal, size, tilts, pad, (rng_specimen, rng_texture, rng_clutter)
    )
    optics = _optics(params)
    phase = optics.phase
    n_regular = regular_2d.shape[1]
    r_px = params.bead_radius_A / params.pixel_size
    mu_px = params.bead_contrast * params.pixel_size
    # beads rendered by the wave renderer: all with phase contrast, the extra ones otherwise
    wave_beads = beads if phase else beads[n_regular:]
    wave_radii = bead_radii_px if phase else bead_radii_px[n_regular:]
    has_scene = bool(
        scene.specimen_xyz.shape[0]
        or scene.texture
        or scene.sphere_xyz.shape[0]
        or scene.membranes
        or scene.carbon is not None
    )
    use_wave = phase or has_scene or wave_beads.shape[0] > 0
    kgrid = wave.KGrid(canvas, params.pixel_size, VOLTAGE_KV, CS_MM) if phase else None
    tex_filters = wave.texture_filters(scene, canvas) if scene.texture else None

    extras: dict[str, Any] = {"clutter": scene.summary() if has_scene else {}}
    # detector / stage artefacts
    hot_xy, hot_gain = detector.hot_pixel_layout(
        params.n_hot_pixels, (h, w), params.hot_pixel_gain, rng_hot
    )
    xray_rows, xray_gain = detector.xray_layout(
        n, params.xrays_per_view, (h, w), params.xray_gain, rng_xray
    )
    drift_f = -1
    drift_angle = 0.0
    if params.drift_blur_px > 0:
        drift_f = params.drift_view - 1 if params.drift_view else int(rng_drift.integers(n))
        drift_angle = float(rng_drift.uniform(0.0, 180.0))
        extras["drift"] = {
            "view": drift_f,
            "length_px": float(params.drift_blur_px),
            "angle_deg": drift_angle,
        }
    extras["hot_pixels"] = hot_xy
    extras["hot_pixel_gain"] = hot_gain
    extras["xray_spikes"] = xray_rows
    if scene.carbon is not None:
        extras["carbon"] = {
            **scene.carbon.to_dict(),
            "thickness_px": params.carbon_thickness_nm * 10.0 / params.pixel_size,
            "side": int(params.carbon_side),
            "mfp_nm": float(params.carbon_mfp_nm),
        }
    grid_uv: tuple[F64, F64] | None = None
    if scene.grid_bar is not None:
        extras["grid_bar"] = {**scene.grid_bar.to_dict(), "mfp_nm": sc.GRID_BAR_MFP_NM}
        uy, ux = np.mgrid[0:h, 0:w].astype(np.float64)
        grid_uv = (ux, uy)
    grid_lambda_px = sc.GRID_BAR_MFP_NM * 10.0 / params.pixel_size

    for f in range(n):
        p = proj[f]
        if phase:
            rel = wave.render_view(
                p,
                canvas,
                optics,
                scene,
                wave_beads,
                wave_radii,
                (float(du[f]), float(dv[f]), float(dang[f])),
                kgrid,
                tex_filters,
            )
            mean = level[f] * pattern * rel
        else:
            m2 = p[:2, :3]
            in_plane = float(np.linalg.det(m2 @ m2.T) ** 0.25)
            mean = render_tilt(level[f], pattern, regular_2d[f], r_px, mu_px, in_plane)
            if use_wave:
                mean = mean * wave.render_view(
                    p,
                    canvas,
                    optics,
                    scene,
                    wave_beads,
                    wave_radii,
                    (float(du[f]), float(dv[f]), float(dang[f])),
                    None,
                    tex_filters,
                )
        if scene.grid_bar is not None and grid_uv is not None:
            length, _ = sc.convex_path(p, scene.grid_bar, grid_uv[0], grid_uv[1])
            if np.any(length > 0):
                mean = mean * np.exp(-length / grid_lambda_px)
        if f == drift_f:
            mean = detector.motion_blur(mean, params.drift_blur_px, drift_angle)
        mean = np.clip(mean, 0.0, None)
        if params.noise:
            stack[f] = rng_noise.poisson(mean)
        else:
            stack[f] = mean
        lvl = float(level[f])
        detector.apply_spikes(stack[f], hot_xy, hot_gain, lvl)
        sel = xray_rows[:, 0] == f
        detector.apply_spikes(stack[f], xray_rows[sel, 1:], xray_gain[sel], lvl)
    return extras
