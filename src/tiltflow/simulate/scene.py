"""3D content of the realistic simulator (everything but the regular beads), in world px.

Every object lives in world coordinates and is projected with the TRUE matrices of each view,
so it moves with tilt like the 3D object it is:

* a weak-phase random specimen: points filling the ice slab (random phases);
* a 1/f texture: Gaussian blobs of 5-40 nm in octaves of equal variance;
* clutter: ribosome-like blobs (two touching spheres), vesicles (spherical shells), membranes
  (thin boxes spanning 40-95 % of the ice, leaning up to 40° from edge-on); they displace the
  ice (rendered as their excess over it, see :mod:`.wave`), so the ice slab keeps its
  thickness, which is the truth's;
* a carbon film (a slab on one ice surface ∩ a half-space: the straight film edge) and a grid
  bar (an opaque box far below the ice) as convex bodies ``lo <= n·x <= hi``.

The ice slab is ``|n·(x - c)| <= T/2`` (n the ice normal, c the tomogram centre, T the ice
thickness in px); "lateral" coordinates are offsets along world x and the world tilt axis,
with the thickness coordinate solved from the normal as in :func:`core.place_beads`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

F64 = NDArray[np.float64]
F32 = NDArray[np.float32]

#: points of the random specimen per world px² of ice (nearest-pixel splat: RMS = amp·√ρ)
SPECIMEN_POINTS_PER_PX2 = 1.0
#: octaves of the 1/f texture: blob diameters (nm); blob density 1/(2d)³
TEXTURE_DIAMETERS_NM: tuple[float, ...] = (5.0, 10.0, 20.0, 40.0)
#: vesicle radius range (nm) and membrane length range (nm)
VESICLE_RADIUS_NM = (20.0, 60.0)
MEMBRANE_LENGTH_NM = (100.0, 300.0)
#: grid bar: width and thickness (nm) of the copper bar, and its attenuation length (nm)
GRID_BAR_WIDTH_NM = 25000.0
GRID_BAR_THICKNESS_NM = 1000.0
GRID_BAR_MFP_NM = 20.0


@dataclass(frozen=True)
class ConvexBody:
    """``lo_i <= planes_i · x <= hi_i`` for every row i (world px; ±inf for half-spaces)."""

    planes: F64  # (k, 3) unit normals
    lo: F64  # (k,)
    hi: F64  # (k,)

    def to_dict(self) -> dict[str, list]:
        return {
            "planes": self.planes.tolist(),
            "lo": [float(v) for v in self.lo],
            "hi": [float(v) for v in self.hi],
        }


@dataclass
class Scene:
    """The 3D objects of one simulated tilt series (see the module docstring)."""

    centre: F64
    normal: F64
    ice_px: float
    specimen_xyz: F64 = field(default_factory=lambda: np.zeros((0, 3)))
    specimen_amp: F32 = field(default_factory=lambda: np.zeros(0, dtype=np.float32))
    #: per octave: (xyz (n, 3), amplitude (n,) in rad·px², Gaussian sigma in px)
    texture: list[tuple[F64, F64, float]] = field(default_factory=list)
    #: clutter spheres: centres (k, 3), outer and inner radii (px; inner 0 = solid)
    sphere_xyz: F64 = field(default_factory=lambda: np.zeros((0, 3)))
    sphere_r_out: F64 = field(default_factory=lambda: np.zeros(0))
    sphere_r_in: F64 = field(default_factory=lambda: np.zeros(0))
    #: kind of each clutter sphere: 0 ribosome part, 1 vesicle
    sphere_kind: NDArray[np.int64] = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    membranes: list[ConvexBody] = field(default_factory=list)
    carbon: ConvexBody | None = None
    grid_bar: ConvexBody | None = None
    _specimen_soa: NDArray[np.float32] | None = field(default=None, repr=False)
    _texture_soa: list[NDArray[np.float32]] = field(default_factory=list, repr=False)

    def specimen_soa(self) -> NDArray[np.float32]:
        """The specimen points as rows x, y, z (3, n) float32 (cached)."""
        cached = self._specimen_soa
        if cached is None or cached.shape[1] != self.specimen_xyz.shape[0]:
            cached = np.ascontiguousarray(self.specimen_xyz.T, dtype=np.float32)
            self._specimen_soa = cached
        return cached

    def texture_soa(self, j: int) -> NDArray[np.float32]:
        """Octave ``j``'s blob centres as rows x, y, z (3, n) float32 (cached)."""
        while len(self._texture_soa) <= j:
            k = len(self._texture_soa)
            self._texture_soa.append(np.ascontiguousarray(self.texture[k][0].T, dtype=np.float32))
        return self._texture_soa[j]

    def summary(self) -> dict[str, object]:
        """What truth.json records of the scene (counts and the 3D bodies)."""
        kinds = self.sphere_kind
        return {
            "specimen_points": int(self.specimen_xyz.shape[0]),
            "texture_blobs": [int(t[0].shape[0]) for t in self.texture],
            "ribosomes": int(np.count_nonzero(kinds == 0) // 2),
            "vesicles": {
                "centres": self.sphere_xyz[kinds == 1].tolist(),
                "radii_px": [float(v) for v in self.sphere_r_out[kinds == 1]],
            },
            "membranes": [m.to_dict() for m in self.membranes],
        }


# ---------------------------------------------------------------------- geometry helpers
def ray_basis(p: F64) -> tuple[F64, F64]:
    """``(Minv, t)`` of one 4x4 P: the world point of image (u, v) at depth d is
    ``Minv @ ((u, v, d) - t)``."""
    m = np.asarray(p[:3, :3], dtype=np.float64)
    minv: F64 = np.asarray(np.linalg.inv(m), dtype=np.float64)
    return minv, np.asarray(p[:3, 3], dtype=np.float64)


def convex_path(p: F64, body: ConvexBody, ux: F64, uy: F64) -> tuple[F64, F64]:
    """Path length (world px) of the rays through image points (ux, uy) inside ``body``, and
    the depth (row 2 of P) of the middle of that segment (NaN where the ray misses).

    Along a ray, ``n·x = α(u) + β d`` is linear in the depth d, so each pair of planes cuts an
    interval of d; the body is their intersection.
    """
    minv, t = ray_basis(p)
    r = body.planes @ minv  # (k, 3): n·x = r·((u, v, d) - t)
    ux = np.asarray(ux, dtype=np.float64)
    uy = np.asarray(uy, dtype=np.float64)
    d_lo = np.full(np.broadcast(ux, uy).shape, -np.inf)
    d_hi = np.full(d_lo.shape, np.inf)
    for i in range(r.shape[0]):
        alpha = r[i, 0] * ux + r[i, 1] * uy - float(r[i] @ t)
        beta = float(r[i, 2])
        lo, hi = float(body.lo[i]), float(body.hi[i])
        if abs(beta) < 1e-12:
            inside = (alpha >= lo) & (alpha <= hi)
            d_lo = np.where(inside, d_lo, np.inf)
            continue
        with np.errstate(invalid="ignore"):
            a = (lo - alpha) / beta
            b = (hi - alpha) / beta
        d_lo = np.maximum(d_lo, np.minimum(a, b))
        d_hi = np.minimum(d_hi, np.maximum(a, b))
    scale = float(np.linalg.norm(minv[:, 2]))
    with np.errstate(invalid="ignore"):
        length = np.clip(d_hi - d_lo, 0.0, None) * scale
        length = np.where(np.isfinite(length), length, 0.0)
        mid = np.where(length > 0, 0.5 * (d_lo + d_hi), np.nan)
    return length, mid


def slab_depth(p: F64, normal: F64, offset: float, ux: F64, uy: F64) -> F64:
    """Depth (row 2 of P) at image points where the ray crosses the plane ``n·x = offset``."""
    minv, t = ray_basis(p)
    r = normal @ minv
    alpha = r[0] * ux + r[1] * uy - float(r @ t)
    return (offset - alpha) / r[2]


def lateral_frame(normal: F64, flip_yz: bool) -> tuple[int, int, int]:
    """(lateral axis 0, lateral axis 1, thickness axis) world indices."""
    return (0, 2, 1) if not flip_yz else (0, 1, 2)


def slab_points(
    centre: F64,
    normal: F64,
    axes: tuple[int, int, int],
    lateral: F64,
    s: F64,
) -> F64:
    """World points with lateral offsets ``lateral`` (n, 2) and normal offsets ``s`` (n,)."""
    a0, a1, t_ax = axes
    xyz = np.tile(centre, (lateral.shape[0], 1))
    xyz[:, a0] += lateral[:, 0]
    xyz[:, a1] += lateral[:, 1]
    n_lat = normal[a0] * lateral[:, 0] + normal[a1] * lateral[:, 1]
    xyz[:, t_ax] = centre[t_ax] + (s - n_lat) / normal[t_ax]
    return xyz


def ice_region(
    proj: F64,
    canvas: tuple[float, float, float, float],
    centre: F64,
    normal: F64,
    axes: tuple[int, int, int],
    half_thickness: float,
) -> tuple[float, float, float, float]:
    """Lateral bounding box (offsets from the centre) of the ice seen by any view.

    ``canvas = (u0, v0, u1, v1)`` is the image rectangle rendered (raw px, padding included).
    """
    a0, a1, _ = axes
    u0, v0, u1, v1 = canvas
    us = np.array([u0, u1, u0, u1], dtype=np.float64)
    vs = np.array([v0, v0, v1, v1], dtype=np.float64)
    lats: list[F64] = []
    c_off = float(normal @ centre)
    for p in np.asarray(proj).reshape(-1, 4, 4):
        minv, t = ray_basis(p)
        for s in (-half_thickness, half_thickness):
            d = slab_depth(p, normal, c_off + s, us, vs)
            uvd = np.stack([us, vs, d], axis=1) - t
            x = uvd @ minv.T
            lats.append(x[:, [a0, a1]] - centre[[a0, a1]])
    lat = np.concatenate(lats)
    lo = lat.min(axis=0)
    hi = lat.max(axis=0)
    return float(lo[0]), float(hi[0]), float(lo[1]), float(hi[1])


def _unit(v: F64) -> F64:
    return v / np.linalg.norm(v)


def in_plane_direction(normal: F64, axes: tuple[int, int, int], angle_deg: float) -> F64:
    """Unit vector in the ice plane at ``angle_deg`` from world x towards the tilt axis."""
    a0, a1, _ = axes
    e = np.zeros(3)
    t = np.deg2rad(angle_deg)
    e[a0] = np.cos(t)
    e[a1] = np.sin(t)
    return _unit(e - (e @ normal) * normal)


# ---------------------------------------------------------------------- builders
def specimen_points(
    region: tuple[float, float, float, float],
    scene: Scene,
    axes: tuple[int, int, int],
    rms: float,
    rng: np.random.Generator,
) -> tuple[F64, F32]:
    """Random weak-phase specimen: uniform points in the ice, normal random phases (rad)."""
    a_lo, a_hi, b_lo, b_hi = region
    area = (a_hi - a_lo) * (b_hi - b_lo)
    n = int(rng.poisson(SPECIMEN_POINTS_PER_PX2 * area))
    lat = np.column_stack([rng.uniform(a_lo, a_hi, n), rng.uniform(b_lo, b_hi, n)])
    s = rng.uniform(-0.5 * scene.ice_px, 0.5 * scene.ice_px, n)
    xyz = slab_points(scene.centre, scene.normal, axes, lat, s)
    amp = rng.normal(0.0, rms / np.sqrt(SPECIMEN_POINTS_PER_PX2), n).astype(np.float32)
    return xyz, amp


def texture_octaves(
    region: tuple[float, float, float, float],
    scene: Scene,
    axes: tuple[int, int, int],
    rms: float,
    pixel_size: float,
    rng: np.random.Generator,
) -> list[tuple[F64, F64, float]]:
    """1/f texture: per octave Gaussian blobs (sigma = d/4) of density 1/(2d)³, each octave
    contributing the same phase variance ``rms²/J`` to a 0° view."""
    a_lo, a_hi, b_lo, b_hi = region
    area = (a_hi - a_lo) * (b_hi - b_lo)
    out: list[tuple[F64, F64, float]] = []
    n_oct = len(TEXTURE_DIAMETERS_NM)
    for d_nm in TEXTURE_DIAMETERS_NM:
        d_px = d_nm * 10.0 / pixel_size
        sigma = 0.25 * d_px
        rho_area = scene.ice_px / (2.0 * d_px) ** 3  # blobs per px² of ice
        n = int(rng.poisson(rho_area * area))
        lat = np.column_stack([rng.uniform(a_lo, a_hi, n), rng.uniform(b_lo, b_hi, n)])
        s = rng.uniform(-0.5 * scene.ice_px, 0.5 * scene.ice_px, n)
        xyz = slab_points(scene.centre, scene.normal, axes, lat, s)
        # variance of a projected map of unit-integral 2D Gaussians: rho A² / (4π σ²)
        amp_sd = np.sqrt(rms * rms / n_oct * 4.0 * np.pi * sigma * sigma / max(rho_area, 1e-12))
        out.append((xyz, rng.normal(0.0, amp_sd, n), float(sigma)))
    return out


def clutter_objects(
    region: tuple[float, float, float, float],
    scene: Scene,
    axes: tuple[int, int, int],
    pixel_size: float,
    ribosomes_per_um2: float,
    ribosome_diameter_nm: float,
    vesicles_per_um2: float,
    membranes_per_um2: float,
    bilayer_nm: float,
    rng: np.random.Generator,
) -> None:
    """Fill ``scene`` with ribosomes, vesicles and membranes (numbers ∝ the ice area)."""
    a_lo, a_hi, b_lo, b_hi = region
    area_um2 = (a_hi - a_lo) * (b_hi - b_lo) * (pixel_size * 1e-4) ** 2
    half_t = 0.5 * scene.ice_px
    nm = 10.0 / pixel_size  # px per nm
    xyz: list[F64] = []
    r_out: list[F64] = []
    r_in: list[F64] = []
    kind: list[NDArray[np.int64]] = []

    def lateral(n: int) -> F64:
        return np.column_stack([rng.uniform(a_lo, a_hi, n), rng.uniform(b_lo, b_hi, n)])

    # ribosomes: a large (r = 0.4 D) and a small (0.3 D) sphere in contact
    n_rib = int(rng.poisson(ribosomes_per_um2 * area_um2))
    if n_rib:
        big = 0.4 * ribosome_diameter_nm * nm
        small = 0.3 * ribosome_diameter_nm * nm
        s = rng.uniform(-1.0, 1.0, n_rib) * max(half_t - big, 0.0)
        c = slab_points(scene.centre, scene.normal, axes, lateral(n_rib), s)
        u = rng.normal(size=(n_rib, 3))
        u /= np.linalg.norm(u, axis=1, keepdims=True)
        c2 = c + 0.85 * (big + small) * u
        xyz += [c, c2]
        r_out += [np.full(n_rib, big), np.full(n_rib, small)]
        r_in += [np.zeros(n_rib), np.zeros(n_rib)]
        kind += [np.zeros(n_rib, np.int64), np.zeros(n_rib, np.int64)]
    # vesicles: hollow spheres with a bilayer rim, inside the ice
    n_ves = int(rng.poisson(vesicles_per_um2 * area_um2))
    if n_ves:
        r = rng.uniform(*VESICLE_RADIUS_NM, n_ves) * nm
        r = np.minimum(r, max(0.48 * scene.ice_px, 2.0 * bilayer_nm * nm))
        s = rng.uniform(-1.0, 1.0, n_ves) * np.clip(half_t - r, 0.0, None)
        xyz.append(slab_points(scene.centre, scene.normal, axes, lateral(n_ves), s))
        r_out.append(r)
        r_in.append(np.clip(r - bilayer_nm * nm, 0.0, None))
        kind.append(np.ones(n_ves, np.int64))
    if xyz:
        scene.sphere_xyz = np.concatenate(xyz)
        scene.sphere_r_out = np.concatenate(r_out)
        scene.sphere_r_in = np.concatenate(r_in)
        scene.sphere_kind = np.concatenate(kind)
    # membranes: thin boxes through the ice, their sheet normal in the ice plane
    n_mem = int(rng.poisson(membranes_per_um2 * area_um2))
    for _ in range(n_mem):
        c = slab_points(scene.centre, scene.normal, axes, lateral(1), np.zeros(1))[0]
        m0 = in_plane_direction(scene.normal, axes, float(rng.uniform(0.0, 180.0)))
        b = _unit(np.cross(scene.normal, m0))
        # the sheet leans by up to 40° from edge-on (in a 0° view)
        lean = np.deg2rad(rng.uniform(-40.0, 40.0))
        m = np.cos(lean) * m0 + np.sin(lean) * scene.normal
        up = -np.sin(lean) * m0 + np.cos(lean) * scene.normal
        half_len = 0.5 * rng.uniform(*MEMBRANE_LENGTH_NM) * nm
        half_h = 0.5 * rng.uniform(0.4, 0.95) * scene.ice_px
        halves = np.array([0.5 * bilayer_nm * nm, half_h, half_len])
        planes = np.stack([m, up, b])
        mid = planes @ c
        scene.membranes.append(ConvexBody(planes, mid - halves, mid + halves))


def carbon_film(
    scene: Scene,
    axes: tuple[int, int, int],
    pixel_size: float,
    thickness_nm: float,
    edge_nm: float,
    edge_angle_deg: float,
    side: int,
) -> ConvexBody:
    """Slab of ``thickness_nm`` on the ``side`` ice surface ∩ ``m·(x - c) >= edge_nm``."""
    n = scene.normal
    c = scene.centre
    t_px = thickness_nm * 10.0 / pixel_size
    half = 0.5 * scene.ice_px
    lo, hi = (half, half + t_px) if side > 0 else (-half - t_px, -half)
    m = in_plane_direction(n, axes, edge_angle_deg)
    e = edge_nm * 10.0 / pixel_size
    return ConvexBody(
        np.stack([n, m]),
        np.array([n @ c + lo, m @ c + e]),
        np.array([n @ c + hi, np.inf]),
    )


def grid_bar_body(
    scene: Scene,
    axes: tuple[int, int, int],
    pixel_size: float,
    depth_nm: float,
    x_edge: float,
    direction: int,
) -> ConvexBody:
    """Opaque box ``depth_nm`` below the ice (along -normal), parallel to the tilt axis,
    from lateral ``x_edge`` (px from the centre along world x) outwards (``direction`` ±1)."""
    n = scene.normal
    c = scene.centre
    a0, _, _ = axes
    ex = np.zeros(3)
    ex[a0] = 1.0
    ex = _unit(ex - (ex @ n) * n) * direction
    px = 10.0 / pixel_size
    top = -0.5 * scene.ice_px - depth_nm * px
    bottom = top - GRID_BAR_THICKNESS_NM * px
    e0 = ex @ c + x_edge
    return ConvexBody(
        np.stack([n, ex]),
        np.array([n @ c + bottom, e0]),
        np.array([n @ c + top, e0 + GRID_BAR_WIDTH_NM * px]),
    )


def shadow_fraction(p: F64, body: ConvexBody, shape: tuple[int, int], step: int = 8) -> float:
    """Fraction of the image (h, w) whose rays cross ``body`` (on a grid of ``step`` px)."""
    h, w = shape
    uy, ux = np.mgrid[0:h:step, 0:w:step].astype(np.float64)
    length, _ = convex_path(p, body, ux, uy)
    return float(np.mean(length > 0))


def place_grid_bar(
    scene: Scene,
    axes: tuple[int, int, int],
    pixel_size: float,
    depth_nm: float,
    proj: F64,
    tilts: F64,
    cover: float,
    side: int,
    shape: tuple[int, int],
) -> ConvexBody:
    """The grid bar whose shadow covers ``cover`` of the view with the extreme tilt on ``side``
    and as little as possible of the opposite extreme (bisection on the bar edge)."""
    f_hi = int(np.argmax(tilts)) if side > 0 else int(np.argmin(tilts))
    f_lo = int(np.argmin(tilts)) if side > 0 else int(np.argmax(tilts))
    best: tuple[float, ConvexBody] | None = None
    px = 10.0 / pixel_size
    far = (GRID_BAR_THICKNESS_NM + depth_nm) * px * 4.0 + 4.0 * max(shape)
    for direction in (1, -1):
        # x_edge: lower = the bar reaches further in (at -W/2 it covers everything)
        lo, hi = -0.5 * GRID_BAR_WIDTH_NM * px, far
        for _ in range(60):
            mid = 0.5 * (lo + hi)
            frac = shadow_fraction(
                proj[f_hi], grid_bar_body(scene, axes, pixel_size, depth_nm, mid, direction), shape
            )
            if frac > cover:
                lo = mid
            else:
                hi = mid
        body = grid_bar_body(scene, axes, pixel_size, depth_nm, hi, direction)
        other = shadow_fraction(proj[f_lo], body, shape)
        if best is None or other < best[0]:
            best = (other, body)
    assert best is not None
    return best[1]
