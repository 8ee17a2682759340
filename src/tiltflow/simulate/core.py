"""Synthetic IMOD-aligned tilt series with known truth (in memory).

Geometry: the true alignment (``xf_true``, ``tilt_true_deg``) and the import flags of the
params give the RELION 4 matrices ``proj`` of every raw view through
:func:`tiltflow.geometry.projection_matrices`; the 3D beads are projected with those matrices
(:func:`tiltflow.geometry.project`) to render the images, so the simulator also checks the
geometry module. The *written* alignment (``.xf`` / ``.tlt``) may be perturbed from the truth.

Stack order is sorted by tilt angle; the chronological order comes from the acquisition scheme.
All numbers that go into text files are rounded exactly as they are written (the truth holds
the rounded values), so reading the files back reproduces the truth bit for bit.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from tiltflow.errors import ConfigError
from tiltflow.geometry import (
    ImodGeometry,
    beam_directions,
    project,
    projection_matrices,
    tomogram_centre,
)
from tiltflow.model import Tomogram
from tiltflow.simulate.params import SimulationParams
from tiltflow.simulate.render import illumination_pattern, render_tilt
from tiltflow.simulate.truth import Truth

F64 = NDArray[np.float64]

#: number formats of the written IMOD files (also used to round the truth)
XF_FORMAT = "%12.7f%12.7f%12.7f%12.7f%12.3f%12.3f"
TLT_FORMAT = "%.4f"
DOSE_FORMAT = "%.6f"  # ExposureDose in the .mdoc
DEFOCUS_DECIMALS = 2  # nm in the .defocus file

VOLTAGE_KV = 300.0
CS_MM = 2.7
AMPLITUDE_CONTRAST = 0.1
HAND = -1.0
OPTICS_GROUP = "optics1"


# ---------------------------------------------------------------------- helpers
def round_as_written(values: F64, fmt: str) -> F64:
    """Values rounded through their text form (``float(fmt % v)``), same shape."""
    v = np.asarray(values, dtype=np.float64)
    flat = [float(fmt % x) for x in v.ravel()]
    return np.array(flat, dtype=np.float64).reshape(v.shape)


def round_xf(xf: F64) -> F64:
    """``.xf`` lines rounded as :data:`XF_FORMAT` writes them."""
    xf = np.asarray(xf, dtype=np.float64).reshape(-1, 6)
    out = np.empty_like(xf)
    out[:, :4] = round_as_written(xf[:, :4], "%.7f")
    out[:, 4:] = round_as_written(xf[:, 4:], "%.3f")
    return out


def tilt_angles(params: SimulationParams) -> F64:
    """Nominal tilt angles (deg) in stack order (ascending)."""
    a = params.tilt_min + params.tilt_step * np.arange(params.n_tilts, dtype=np.float64)
    return round_as_written(a, TLT_FORMAT)


def acquisition_order(angles: F64, scheme: str, group: int = 2) -> NDArray[np.int64]:
    """0-based chronological index of each view (angles in stack order).

    * ``dose-symmetric``: Hagen scheme from the tilt nearest 0°, alternating groups of
      ``group`` tilts on the positive and the negative side;
    * ``bidirectional``: from the tilt nearest 0° up to the maximum, then down to the minimum;
    * ``unidirectional``: from the minimum to the maximum.
    """
    angles = np.asarray(angles, dtype=np.float64)
    n = angles.size
    by_angle = np.argsort(angles, kind="stable")
    if scheme == "unidirectional":
        seq = list(by_angle)
    else:
        i0 = int(np.argmin(np.abs(angles)))
        pos = [
            int(i)
            for i in by_angle
            if angles[i] > angles[i0] or (angles[i] == angles[i0] and i > i0)
        ]
        neg = [
            int(i)
            for i in by_angle[::-1]
            if angles[i] < angles[i0] or (angles[i] == angles[i0] and i < i0)
        ]
        if scheme == "bidirectional":
            seq = [i0] + pos + neg
        elif scheme == "dose-symmetric":
            seq = [i0]
            while pos or neg:
                seq += pos[:group]
                pos = pos[group:]
                seq += neg[:group]
                neg = neg[group:]
        else:
            raise ConfigError(f"unknown acquisition scheme {scheme!r}")
    chrono = np.empty(n, dtype=np.int64)
    chrono[np.asarray(seq, dtype=np.int64)] = np.arange(n)
    return chrono


def dose_per_view(angles: F64, params: SimulationParams) -> F64:
    """Dose (e/Å²) of each view: equal, or ∝ 1/cos(tilt) with mean ``dose_per_tilt``."""
    if params.dose_profile == "equal":
        return np.full(angles.shape, float(params.dose_per_tilt))
    w = 1.0 / np.cos(np.deg2rad(angles))
    return params.dose_per_tilt * w / w.mean()


def pre_exposures(dose: F64, chrono: NDArray[np.int64]) -> F64:
    """Dose received before each view (sum of the doses of the views acquired earlier)."""
    order = np.argsort(chrono)
    cum = np.concatenate([[0.0], np.cumsum(dose[order])[:-1]])
    out = np.empty_like(dose)
    out[order] = cum
    return out


def xf_lines(rotation_deg: F64, mag: F64, shifts: F64) -> F64:
    """``.xf`` lines rotating by ``-rotation_deg`` (tilt-axis convention), scaled by ``mag``.

    ``A = mag · [[cos θ, sin θ], [-sin θ, cos θ]]`` so that ``θ = atan2(-A21, A11)``.
    """
    th = np.deg2rad(np.asarray(rotation_deg, dtype=np.float64))
    c, s = np.cos(th) * mag, np.sin(th) * mag
    return np.stack([c, s, -s, c, shifts[:, 0], shifts[:, 1]], axis=1)


def _axis_rotation(axis: F64, angle_deg: float) -> F64:
    """Right-handed 3x3 rotation about a unit axis (Rodrigues)."""
    a = np.asarray(axis, dtype=np.float64)
    a = a / np.linalg.norm(a)
    t = np.deg2rad(angle_deg)
    k = np.array([[0, -a[2], a[1]], [a[2], 0, -a[0]], [-a[1], a[0], 0]])
    return np.eye(3) + np.sin(t) * k + (1 - np.cos(t)) * (k @ k)


def world_axes(flip_yz: bool) -> tuple[int, int]:
    """(thickness axis, tilt axis) indices of the world coordinates for the flags."""
    return (2, 1) if flip_yz else (1, 2)


def ice_normal(params: SimulationParams) -> F64:
    """Unit ice normal in world coordinates.

    Flat ice has its normal along the world thickness axis (y without flip_yz, z with it).
    ``ice_pretilt_deg = (a, b)`` rotates it right-handedly by ``a`` about world x, then by ``b``
    about the world tilt axis (z without flip_yz, y with it).
    """
    t_ax, tilt_ax = world_axes(params.flip_yz)
    n = np.zeros(3)
    n[t_ax] = 1.0
    ex = np.array([1.0, 0.0, 0.0])
    e_tilt = np.zeros(3)
    e_tilt[tilt_ax] = 1.0
    n = (
        _axis_rotation(e_tilt, params.ice_pretilt_deg[1])
        @ _axis_rotation(ex, params.ice_pretilt_deg[0])
        @ n
    )
    return n / np.linalg.norm(n)


def place_beads(
    params: SimulationParams,
    size: tuple[int, int, int],
    normal: F64,
    rng: np.random.Generator,
) -> F64:
    """3D bead centres (m, 3) in world px inside the tomogram.

    Lateral positions are uniform in a disc around the tomogram centre (margin for the image
    rotation, the shifts and the bead size), at least 4 radii apart laterally. A fraction
    ``surface_fraction`` of the beads sits on the two ice surfaces (balanced between them),
    the rest uniformly inside the ice; depth is measured along the ice normal.
    """
    m = params.n_beads
    if m == 0:
        return np.zeros((0, 3))
    t_ax, tilt_ax = world_axes(params.flip_yz)
    lat = (0, tilt_ax)
    c = tomogram_centre(size)
    r = params.bead_radius_A / params.pixel_size
    half_field = 0.5 * min(size[lat[0]], size[lat[1]], *params.raw_size)
    radius = half_field - max(4.0 * r, 3.0 * params.shift_sd_px, 0.06 * half_field * 2)
    if radius <= 0:
        raise ConfigError("simulation: the field is too small for beads of this radius")
    min_sep = 4.0 * r
    accepted: list[F64] = []
    tries = 0
    while len(accepted) < m:
        tries += 1
        if tries > 200 * m + 1000:
            raise ConfigError(
                f"simulation: could not place {m} beads at least {min_sep:.1f} px apart in the field; "
                "use fewer or smaller beads or a larger image"
            )
        u = rng.uniform(-1.0, 1.0, size=2)
        if u @ u > 1.0:
            continue
        p = u * radius
        if accepted and np.min(np.sum((np.asarray(accepted) - p) ** 2, axis=1)) < min_sep * min_sep:
            continue
        accepted.append(p)
    lateral = np.asarray(accepted)  # (m, 2) offsets from the centre
    ice_px = params.ice_thickness_nm * 10.0 / params.pixel_size
    n_surf = int(round(params.surface_fraction * m))
    signs = np.where(np.arange(n_surf) % 2 == 0, 1.0, -1.0)
    depth = np.empty(m)
    depth[:n_surf] = signs * (0.5 * ice_px + rng.normal(0.0, 0.1 * r, size=n_surf))
    depth[n_surf:] = rng.uniform(-0.45 * ice_px, 0.45 * ice_px, size=m - n_surf)
    depth = depth[rng.permutation(m)]
    xyz = np.tile(c, (m, 1))
    xyz[:, lat[0]] += lateral[:, 0]
    xyz[:, lat[1]] += lateral[:, 1]
    # solve n·(p - c) = depth for the thickness coordinate
    n_lat = normal[lat[0]] * lateral[:, 0] + normal[lat[1]] * lateral[:, 1]
    xyz[:, t_ax] = c[t_ax] + (depth - n_lat) / normal[t_ax]
    lo, hi = 1.0 + r, size[t_ax] - r
    xyz[:, t_ax] = np.clip(xyz[:, t_ax], lo, max(lo, hi))
    return xyz


# ---------------------------------------------------------------------- result
@dataclass(frozen=True)
class SimulatedTiltSeries:
    """A rendered raw tilt stack (stack order = ascending tilt) with its truth and params."""

    stack: np.ndarray  # (n_raw, h, w) float32 counts
    truth: Truth
    params: SimulationParams

    @property
    def kept(self) -> NDArray[np.int64]:
        """0-based raw indices of the views kept (not in EXCLUDELIST)."""
        return self.truth.kept

    def kept_stack(self) -> np.ndarray:
        """The stack without the excluded views (what the importer's culled stack holds)."""
        return self.stack[self.kept]

    def geometry(self) -> ImodGeometry:
        """The IMOD geometry (sizes, thickness, flags) of the written project."""
        t = self.truth
        return ImodGeometry(
            raw_size=t.raw_size,
            ali_size=t.ali_size,
            thickness=float(t.thickness),
            flip_yz=bool(t.import_flags["flip_yz"]),
            flip_z=bool(t.import_flags["flip_z"]),
        )

    def tomogram(self, name: str = "TS_01", perturbed: bool = True) -> Tomogram:
        """The tomogram the importer produces from the written files (kept views, stack order).

        ``perturbed=True`` uses the written (possibly perturbed) alignment, ``False`` the truth.
        Pre-exposures are the true cumulative doses (equal to chronological index × dose for the
        equal-dose profile).
        """
        t = self.truth
        k = self.kept
        geom = self.geometry()
        if perturbed:
            proj = projection_matrices(geom, t.xf_written[k], t.tilt_written_deg[k])
        else:
            proj = t.proj[k].copy()
        return Tomogram(
            name=name,
            tilt_series=f"{name}.mrc",
            frame_count=int(k.size),
            size=geom.tomogram_size,
            hand=HAND,
            optics_group=OPTICS_GROUP,
            pixel_size=float(t.pixel_size),
            voltage=VOLTAGE_KV,
            cs=CS_MM,
            amplitude_contrast=AMPLITUDE_CONTRAST,
            fractional_dose=float(self.params.dose_per_tilt),
            proj=proj,
            defocus_u=t.defocus_u[k].copy(),
            defocus_v=t.defocus_v[k].copy(),
            defocus_angle=t.defocus_angle[k].copy(),
            ctf_scale=np.ones(k.size),
            pre_exposure=t.pre_exposure[k].copy(),
        )


# ---------------------------------------------------------------------- main entry
def simulate_tilt_series(params: SimulationParams) -> SimulatedTiltSeries:
    """Render one synthetic tilt series and its truth, deterministically from ``params.seed``."""
    ss = np.random.SeedSequence(int(params.seed))
    rng_geom, rng_beads, rng_pert, rng_ctf, rng_noise, rng_pattern = (
        np.random.default_rng(s) for s in ss.spawn(6)
    )
    n = params.n_tilts
    raw_size = (int(params.raw_size[0]), int(params.raw_size[1]))
    ali_size = params.ali_size_eff
    w, h = raw_size

    # --- true and written alignment
    tilt_true = tilt_angles(params)
    shifts = rng_geom.normal(0.0, params.shift_sd_px, size=(n, 2))
    xf_true = round_xf(xf_lines(np.full(n, params.tilt_axis_deg), np.ones(n), shifts))
    d_tilt = rng_pert.uniform(-1, 1, n) * params.perturb_tilt_deg
    d_rot = rng_pert.uniform(-1, 1, n) * params.perturb_rotation_deg
    d_shift = rng_pert.uniform(-1, 1, (n, 2)) * params.perturb_shift_px
    d_mag = rng_pert.uniform(-1, 1, n) * params.perturb_mag
    tilt_written = round_as_written(tilt_true + d_tilt, TLT_FORMAT)
    xf_written = round_xf(
        xf_lines(params.tilt_axis_deg + d_rot, 1.0 + d_mag, xf_true[:, 4:] + d_shift)
    )
    if not (params.perturb_rotation_deg or params.perturb_mag or params.perturb_shift_px):
        xf_written = xf_true.copy()

    geom = ImodGeometry(
        raw_size=raw_size,
        ali_size=ali_size,
        thickness=float(params.thickness_px),
        flip_yz=params.flip_yz,
        flip_z=params.flip_z,
    )
    proj = projection_matrices(geom, xf_true, tilt_true)

    # --- specimen
    normal = ice_normal(params)
    beads = place_beads(params, geom.tomogram_size, normal, rng_beads)
    beads_2d = project(proj, beads)
    visible = (
        (beads_2d[..., 0] >= 0)
        & (beads_2d[..., 0] <= w - 1)
        & (beads_2d[..., 1] >= 0)
        & (beads_2d[..., 1] <= h - 1)
    )

    # --- dose and ice
    chrono = acquisition_order(tilt_true, params.scheme, params.dose_symmetric_group)
    dose = round_as_written(dose_per_view(tilt_true, params), DOSE_FORMAT)  # as in the .mdoc
    pre = pre_exposures(dose, chrono)
    t_rel = params.ice_thickness_nm / params.mean_free_path_nm
    cos_nv = np.abs(beam_directions(proj) @ normal)
    attenuation = np.exp(-t_rel / cos_nv)
    scale = attenuation / np.exp(-t_rel)
    luminance = params.pixel_size**2

    # --- CTF (rounded as written in the .defocus file, nm)
    dmean = params.defocus_um * 1000.0 + rng_ctf.normal(0.0, params.defocus_sd_nm, n)
    d1 = round_as_written(dmean + 0.5 * params.astigmatism_nm, "%.2f")
    d2 = round_as_written(dmean - 0.5 * params.astigmatism_nm, "%.2f")
    ang = round_as_written(np.full(n, rng_ctf.uniform(-90.0, 90.0)), "%.2f")

    # --- images
    pattern = illumination_pattern((h, w), params.background_variation, rng_pattern)
    r_px = params.bead_radius_A / params.pixel_size
    mu_px = params.bead_contrast * params.pixel_size
    stack = np.empty((n, h, w), dtype=np.float32)
    for f in range(n):
        m2 = proj[f, :2, :3]
        in_plane = float(np.linalg.det(m2 @ m2.T) ** 0.25)
        mean = render_tilt(
            dose[f] * luminance * attenuation[f], pattern, beads_2d[f], r_px, mu_px, in_plane
        )
        if params.noise:
            stack[f] = rng_noise.poisson(mean)
        else:
            stack[f] = mean

    truth = Truth(
        proj=proj,
        beads_3d=beads,
        beads_2d=beads_2d,
        visible=visible,
        tilt_true_deg=tilt_true,
        xf_true=xf_true,
        tilt_written_deg=tilt_written,
        xf_written=xf_written,
        ice_thickness_rel=float(t_rel),
        ice_normal=normal,
        scale_factor=scale,
        attenuation=attenuation,
        dose=dose,
        pre_exposure=pre,
        chrono_index=chrono,
        defocus_u=d1 * 10.0,
        defocus_v=d2 * 10.0,
        defocus_angle=ang,
        excluded_views=tuple(sorted(set(int(v) for v in params.excluded_views))),
        pixel_size=float(params.pixel_size),
        bead_radius_A=float(params.bead_radius_A),
        raw_size=raw_size,
        ali_size=ali_size,
        thickness=int(params.thickness_px),
        luminance=float(luminance),
        ice_thickness_nm=float(params.ice_thickness_nm),
        mean_free_path_nm=float(params.mean_free_path_nm),
        tilt_axis_deg=float(params.tilt_axis_deg),
        import_flags={
            "flip_yz": bool(params.flip_yz),
            "flip_z": bool(params.flip_z),
            "flip_ang": False,
        },
    )
    return SimulatedTiltSeries(stack=stack, truth=truth, params=params)
