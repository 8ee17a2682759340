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
from typing import Any

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
from tiltflow.simulate.params import AMPLITUDE_CONTRAST, CS_MM, VOLTAGE_KV, SimulationParams
from tiltflow.simulate.realistic import render_realistic
from tiltflow.simulate.render import illumination_pattern, render_tilt
from tiltflow.simulate.truth import Truth

F64 = NDArray[np.float64]

#: number formats of the written IMOD files (also used to round the truth)
XF_FORMAT = "%12.7f%12.7f%12.7f%12.7f%12.3f%12.3f"
TLT_FORMAT = "%.4f"
DOSE_FORMAT = "%.6f"  # ExposureDose in the .mdoc
DEFOCUS_DECIMALS = 2  # nm in the .defocus file

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


def _plain(d: dict[str, Any]) -> dict[str, Any]:
    """A parameter dict with tuples as lists (JSON-able)."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}


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


def place_extra_beads(
    params: SimulationParams,
    size: tuple[int, int, int],
    normal: F64,
    existing: F64,
    tilts: F64,
    rng: np.random.Generator,
) -> tuple[F64, F64, list[str], NDArray[np.int64]]:
    """The extra beads of the realism section: centres (k, 3), radii (k,) px, kinds, cluster ids.

    * ``small``: ``n_small_beads`` of radius ``small_bead_radius_A`` in the field;
    * ``cluster``: ``n_bead_clusters`` groups of 2-3 beads in contact (centres at one depth,
      lateral distance = the sum of the radii), each bead big or small at random;
    * ``edge``: ``n_edge_beads`` on an ice surface in a band across the field edge
      perpendicular to the tilt axis (world x), from 3 radii inside the 0° field to halfway to
      the edge of what the highest tilt sees: each is visible in only part of the series
      (``visible`` of the truth, from the true projections, says where).

    Depths follow ``surface_fraction`` as for the regular beads. Beads other than cluster
    partners keep a lateral gap of at least their diameters' sum to every other bead.
    """
    t_ax, tilt_ax = world_axes(params.flip_yz)
    lat = (0, tilt_ax)
    c = tomogram_centre(size)
    r = params.bead_radius_A / params.pixel_size
    rs = params.small_bead_radius_A / params.pixel_size
    half_field = 0.5 * min(size[lat[0]], size[lat[1]], *params.raw_size)
    radius = half_field - max(4.0 * r, 3.0 * params.shift_sd_px, 0.06 * half_field * 2)
    if radius <= 0:
        raise ConfigError("simulation: the field is too small for beads of this radius")
    ice_px = params.ice_thickness_nm * 10.0 / params.pixel_size
    r0 = params.bead_radius_A / params.pixel_size
    placed_lat: list[F64] = [
        np.array([b[lat[0]] - c[lat[0]], b[lat[1]] - c[lat[1]]]) for b in existing
    ]
    placed_r: list[float] = [r0] * len(placed_lat)
    out_lat: list[F64] = []
    out_depth: list[float] = []
    out_r: list[float] = []
    kinds: list[str] = []
    cluster: list[int] = []

    def depth() -> float:
        if rng.uniform() < params.surface_fraction:
            return float(np.sign(rng.uniform(-1, 1)) * 0.5 * ice_px)
        return float(rng.uniform(-0.45 * ice_px, 0.45 * ice_px))

    def free(p: F64, rad: float, skip: int = 0) -> bool:
        n_chk = len(placed_lat) - skip
        for q, rq in zip(placed_lat[:n_chk], placed_r[:n_chk]):
            if np.sum((q - p) ** 2) < (2.0 * (rq + rad)) ** 2:
                return False
        return True

    def disc() -> F64:
        while True:
            u = rng.uniform(-1.0, 1.0, size=2)
            if u @ u <= 1.0:
                return u * radius

    def accept(p: F64, rad: float, d: float, kind: str, cl: int) -> None:
        placed_lat.append(p)
        placed_r.append(rad)
        out_lat.append(p)
        out_depth.append(d)
        out_r.append(rad)
        kinds.append(kind)
        cluster.append(cl)

    def give_up(what: str) -> ConfigError:
        return ConfigError(
            f"simulation: could not place the {what} beads without overlaps; use fewer beads "
            "or a larger image"
        )

    for _ in range(params.n_small_beads):
        for _try in range(2000):
            p = disc()
            if free(p, rs):
                accept(p, rs, depth(), "small", -1)
                break
        else:
            raise give_up("small")
    for k in range(params.n_bead_clusters):
        for _try in range(2000):
            p = disc()
            if free(p, r):
                break
        else:
            raise give_up("cluster")
        d = depth()
        members = [(p, r)]
        n_mem = int(rng.integers(2, 4))
        for _m in range(n_mem - 1):
            for _try in range(200):
                rad = r if rng.uniform() < 0.5 else rs
                pa, ra = members[int(rng.integers(len(members)))]
                phi = rng.uniform(0.0, 2.0 * np.pi)
                q = pa + (ra + rad) * np.array([np.cos(phi), np.sin(phi)])
                ok_members = all(
                    np.sum((q - pm) ** 2) >= (rm + rad) ** 2 * (1.0 - 1e-9) for pm, rm in members
                )
                if ok_members and free(q, rad) and q @ q <= (radius + 2.0 * r) ** 2:
                    members.append((q, rad))
                    break
        for q, rad in members:
            accept(q, rad, d, "cluster", k)
    if params.n_edge_beads:
        a_max = np.deg2rad(float(np.max(np.abs(tilts))))
        x_lo = half_field - 3.0 * r
        x_hi = 0.5 * half_field * (1.0 + 1.0 / max(np.cos(a_max), 0.2))
        x_hi = max(x_hi, x_lo + 4.0 * r)
        for _ in range(params.n_edge_beads):
            for _try in range(2000):
                x = float(rng.uniform(x_lo, x_hi)) * (1.0 if rng.uniform() < 0.5 else -1.0)
                y = float(rng.uniform(-0.8, 0.8)) * (half_field - 2.0 * r)
                p = np.array([x, y])
                if free(p, r):
                    side = 1.0 if rng.uniform() < 0.5 else -1.0
                    accept(p, r, side * 0.5 * ice_px, "edge", -1)
                    break
            else:
                raise give_up("edge")
    k = len(out_lat)
    if k == 0:
        return np.zeros((0, 3)), np.zeros(0), [], np.zeros(0, dtype=np.int64)
    lateral = np.asarray(out_lat)
    dep = np.asarray(out_depth)
    xyz = np.tile(c, (k, 1))
    xyz[:, lat[0]] += lateral[:, 0]
    xyz[:, lat[1]] += lateral[:, 1]
    n_lat = normal[lat[0]] * lateral[:, 0] + normal[lat[1]] * lateral[:, 1]
    xyz[:, t_ax] = c[t_ax] + (dep - n_lat) / normal[t_ax]
    return xyz, np.asarray(out_r), kinds, np.asarray(cluster, dtype=np.int64)


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
            hand=float(t.hand),
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
    nominal = tilt_angles(params)
    # the true (and .tlt) angles are the nominal ones (order list, mdoc) + the tilt offset
    tilt_true = (
        round_as_written(nominal + params.tilt_offset_deg, TLT_FORMAT)
        if params.tilt_offset_deg
        else nominal
    )
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
    # realism: extra random streams (the six above are unchanged)
    (
        rng_xbeads,
        rng_specimen,
        rng_texture,
        rng_clutter,
        rng_hot,
        rng_xray,
        rng_drift,
    ) = (np.random.default_rng(s) for s in np.random.SeedSequence([int(params.seed), 1]).spawn(7))
    n_regular = beads.shape[0]
    r_px = params.bead_radius_A / params.pixel_size
    bead_radii = np.full(n_regular, r_px)
    bead_kind = ["field"] * n_regular
    bead_cluster = np.full(n_regular, -1, dtype=np.int64)
    if params.n_small_beads or params.n_bead_clusters or params.n_edge_beads:
        xb, xr, xk, xc = place_extra_beads(
            params, geom.tomogram_size, normal, beads, tilt_true, rng_xbeads
        )
        beads = np.concatenate([beads, xb])
        bead_radii = np.concatenate([bead_radii, xr])
        bead_kind += xk
        bead_cluster = np.concatenate([bead_cluster, xc])
    beads_2d = project(proj, beads)
    visible = (
        (beads_2d[..., 0] >= 0)
        & (beads_2d[..., 0] <= w - 1)
        & (beads_2d[..., 1] >= 0)
        & (beads_2d[..., 1] <= h - 1)
    )

    # --- dose and ice
    chrono = acquisition_order(nominal, params.scheme, params.dose_symmetric_group)
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
    mu_px = params.bead_contrast * params.pixel_size
    stack = np.empty((n, h, w), dtype=np.float32)
    extras: dict[str, Any] = {}
    if not params.realistic_images:
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
    else:
        extras = render_realistic(
            params,
            stack,
            proj,
            normal,
            geom.tomogram_size,
            beads,
            bead_radii,
            beads_2d[:, :n_regular],
            tilt_true,
            dose * luminance * attenuation,
            pattern,
            (d1 * 10.0, d2 * 10.0, ang),
            rng_noise,
            (rng_specimen, rng_texture, rng_clutter, rng_hot, rng_xray, rng_drift),
        )

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
        hand=float(params.hand),
        nominal_tilt_deg=nominal,
        tilt_offset_deg=float(params.tilt_offset_deg),
        bead_radii_A=bead_radii * params.pixel_size,
        bead_kind=tuple(bead_kind),
        bead_cluster=bead_cluster,
        hot_pixels=extras.get("hot_pixels", np.zeros((0, 2), dtype=np.int64)),
        hot_pixel_gain=extras.get("hot_pixel_gain", np.zeros(0)),
        xray_spikes=extras.get("xray_spikes", np.zeros((0, 3), dtype=np.int64)),
        drift=extras.get("drift", {}),
        carbon=extras.get("carbon", {}),
        grid_bar=extras.get("grid_bar", {}),
        clutter=extras.get("clutter", {}),
        realism=_plain(params.realism()),
    )
    return SimulatedTiltSeries(stack=stack, truth=truth, params=params)
