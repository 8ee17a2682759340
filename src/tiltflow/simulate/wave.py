"""Per-view rendering of a :class:`~tiltflow.simulate.scene.Scene` (and beads).

Every object adds a *complex log-transmission* ``κ · path`` to the pixels it covers
(``κ = i σ V - 1/(2Λ)`` per world px of path: phase of a potential V, Beer–Lambert amplitude
with an attenuation length Λ; the zero-mean weak specimen and texture ``κ = (i - w) σ V`` with
``w = Q/√(1-Q²)``; clutter, which displaces ice, ``κ = i σ ΔV - (ratio - 1)/(2Λ_ice)`` with ΔV
and the attenuation ratio relative to ice, since the ice attenuation of the full slab is applied
to every view outside this renderer):

* phase contrast off: the intensity factor is ``exp(2 Re Σ κ·path)`` (Beer–Lambert only);
* phase contrast on: the contributions are sorted into depth bands (depth = row 2 of the TRUE
  P), band b having the defocus ``Δf_b = Δf_view + hand · pixel_size · (depth_b -
  depth(centre))`` (RELION's Tomogram::getCtf). Multislice in beam order (the most underfocused
  band first): ``ψ ← ψ · exp(Σ_b κ·path)``, then free-space propagation to the next band,
  ``Ψ(k) · exp(i π λ (Δf_b - Δf_next) k²)``; finally the image ``|F⁻¹[Ψ(k) exp(i χ(k; Δf_last))]|²``
  with the view's astigmatism and Cs. A strong phase (gold, carbon at high tilt) thus shifts
  the wave seen by the other bands as a whole, as it should. Empty bands cost nothing.

The image is rendered on a canvas padded by the delocalisation of the CTF (and the texture's
blur) so that the FFT's wrap-around stays outside the image.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import scipy.fft as sfft
from numpy.typing import NDArray

from tiltflow.simulate.optics import frequency_grid, wavelength_A
from tiltflow.simulate.scene import ConvexBody, Scene, convex_path, slab_depth

F64 = NDArray[np.float64]

#: largest χ error (rad) at Nyquist from the depth quantisation of a band (automatic bands)
BAND_PHASE_TOLERANCE = 0.25
MAX_AUTO_BANDS = 16
#: sub-samples per pixel side: beads (as the plain renderer) and clutter spheres
BEAD_SUPERSAMPLE = 4
CLUTTER_SUPERSAMPLE = 2


@dataclass(frozen=True)
class Optics:
    """Constants of one series' rendering (complex κ per world px of path)."""

    pixel_size: float
    voltage_kv: float
    cs_mm: float
    hand: float
    phase: bool
    n_bands: int  # 0 = automatic
    kappa_bead: complex
    #: clutter displaces ice: Re κ = -(ratio - 1) / (2 Λ_ice), Im κ = σ (V - V_ice)
    kappa_protein: complex  # ribosome spheres
    kappa_lipid: complex  # vesicle rims and membranes
    kappa_carbon: complex
    weak: complex  # (i - w): weak specimen / texture per rad of phase
    max_bead_radius_px: float
    carbon_px: float  # carbon thickness (px) for the depth range


_COORDS: dict[tuple[int, int, int], tuple[F64, F64]] = {}


@dataclass(frozen=True)
class Canvas:
    """The rendered rectangle: the image (h, w) padded by ``pad`` px on every side."""

    h: int
    w: int
    pad: int
    H: int
    W: int

    @classmethod
    def make(cls, h: int, w: int, pad: int) -> Canvas:
        H = int(sfft.next_fast_len(h + 2 * pad))
        W = int(sfft.next_fast_len(w + 2 * pad))
        return cls(h, w, pad, H, W)

    def image_coords(self) -> tuple[F64, F64]:
        """Image (raw px) coordinates (ux, uy) of every canvas pixel, (H, W) each."""
        uy, ux = np.mgrid[0 : self.H, 0 : self.W].astype(np.float64)
        return ux - self.pad, uy - self.pad

    def image_coords_cached(self) -> tuple[F64, F64]:
        """:meth:`image_coords`, computed once per canvas."""
        key = (self.H, self.W, self.pad)
        hit = _COORDS.get(key)
        if hit is None:
            _COORDS.clear()
            hit = _COORDS[key] = self.image_coords()
        return hit

    def crop(self, a: np.ndarray) -> np.ndarray:
        p = self.pad
        return a[p : p + self.h, p : p + self.w]


def delocalisation_px(
    max_defocus_A: float, pixel_size: float, voltage_kv: float, cs_mm: float
) -> float:
    """Largest shift (px) of the CTF's point spread at the corner frequency of the image."""
    lam = wavelength_A(voltage_kv)
    k = math.sqrt(2.0) / (2.0 * pixel_size)
    return (lam * abs(max_defocus_A) * k + cs_mm * 1e7 * lam**3 * k**3) / pixel_size


class Accumulator:
    """Contributions (flat canvas pixel, depth, complex value) of one view."""

    def __init__(self) -> None:
        self.idx: list[NDArray[np.int64]] = []
        self.depth: list[F64] = []
        self.val: list[NDArray[np.complex128]] = []

    def add(self, idx: np.ndarray, depth: np.ndarray | float, val: np.ndarray) -> None:
        idx = np.asarray(idx, dtype=np.int64).ravel()
        if idx.size == 0:
            return
        self.idx.append(idx)
        self.depth.append(np.broadcast_to(np.asarray(depth), idx.shape).ravel())
        self.val.append(np.asarray(val).ravel())

    def bands(self, n_bands: int, d0: float, width: float, size: int) -> np.ndarray:
        """Sum into (n_bands, size) complex64 maps (band = floor((depth - d0) / width))."""
        out = np.zeros((n_bands, size), dtype=np.complex64)
        if not self.idx:
            return out
        idx = np.concatenate(self.idx)
        val = np.concatenate(self.val)
        if n_bands > 1:
            b = np.floor((np.concatenate(self.depth) - d0) / width).astype(np.int64)
            idx = idx + np.clip(b, 0, n_bands - 1) * size
        n = n_bands * size
        re = np.bincount(idx, weights=val.real, minlength=n)
        im = np.bincount(idx, weights=val.imag, minlength=n)
        out.real = re.reshape(n_bands, size)
        out.imag = im.reshape(n_bands, size)
        return out


# ---------------------------------------------------------------------- object footprints
def sphere_windows(
    c2d: F64, r_out: F64, r_in: F64, canvas: Canvas, ss: int
) -> list[tuple[NDArray[np.int64], NDArray[np.int64], F64, NDArray[np.bool_]]]:
    """Chords (world px) through spheres / spherical shells projected at ``c2d`` (m, 2).

    Returns per group of equal window size: object indices (g,), flat canvas pixels
    (g, K, K), chords per sub-sample (g, K, K, ss²) and the in-canvas mask (g, K, K).
    """
    out = []
    c = np.asarray(c2d, dtype=np.float64).reshape(-1, 2) + canvas.pad
    half_all = np.ceil(r_out).astype(np.int64) + 1
    inside = (
        (c[:, 0] > -half_all)
        & (c[:, 0] < canvas.W - 1 + half_all)
        & (c[:, 1] > -half_all)
        & (c[:, 1] < canvas.H - 1 + half_all)
        & (r_out > 0)
    )
    sub = (np.arange(ss) + 0.5) / ss - 0.5
    for half in np.unique(half_all[inside]):
        sel = np.flatnonzero(inside & (half_all == half))
        k = np.arange(-half, half + 1)
        cc = c[sel]
        ix0 = np.rint(cc[:, 0]).astype(np.int64)
        iy0 = np.rint(cc[:, 1]).astype(np.int64)
        px = ix0[:, None, None] + k[None, None, :]
        py = iy0[:, None, None] + k[None, :, None]
        dx = (px - cc[:, 0, None, None])[..., None, None] + sub[None, None, None, None, :]
        dy = (py - cc[:, 1, None, None])[..., None, None] + sub[None, None, None, :, None]
        d2 = dx * dx + dy * dy
        ro = r_out[sel][:, None, None, None, None]
        ri = r_in[sel][:, None, None, None, None]
        chord = 2.0 * np.sqrt(np.clip(ro * ro - d2, 0.0, None))
        chord -= 2.0 * np.sqrt(np.clip(ri * ri - d2, 0.0, None))
        g = sel.size
        chord = chord.reshape(g, k.size, k.size, ss * ss)
        pxb = np.broadcast_to(px, (g, k.size, k.size))
        pyb = np.broadcast_to(py, (g, k.size, k.size))
        ok = (pxb >= 0) & (pxb < canvas.W) & (pyb >= 0) & (pyb < canvas.H)
        flat = np.clip(pyb, 0, canvas.H - 1) * canvas.W + np.clip(pxb, 0, canvas.W - 1)
        out.append((sel, flat, chord, ok))
    return out


def box_corners(body: ConvexBody) -> F64:
    """The 8 corners of a box given as 3 plane pairs."""
    inv = np.linalg.inv(body.planes)
    out = []
    for a in (body.lo[0], body.hi[0]):
        for b in (body.lo[1], body.hi[1]):
            for c in (body.lo[2], body.hi[2]):
                out.append(inv @ np.array([a, b, c]))
    return np.asarray(out)


def add_body(
    acc: Accumulator,
    p: F64,
    body: ConvexBody,
    kappa: complex,
    canvas: Canvas,
    window: tuple[int, int, int, int] | None = None,
) -> None:
    """Add ``κ · path`` of a convex body over the canvas (or a window y0, y1, x0, x1)."""
    y0, y1, x0, x1 = window if window is not None else (0, canvas.H, 0, canvas.W)
    if y1 <= y0 or x1 <= x0:
        return
    cy, cx = np.mgrid[y0:y1, x0:x1]
    length, mid = convex_path(p, body, cx - canvas.pad, cy - canvas.pad)
    hit = length > 0
    if np.any(hit):
        acc.add((cy * canvas.W + cx)[hit], mid[hit], kappa * length[hit])


def splat_bilinear(
    uv: F64, weights: F64, canvas: Canvas
) -> tuple[NDArray[np.int64], F64, NDArray[np.bool_]]:
    """Flat canvas pixels (4n,), bilinear weights × ``weights`` (4n,) and the point mask (n,)."""
    u = uv[:, 0] + canvas.pad
    v = uv[:, 1] + canvas.pad
    ok = (u >= 0) & (u < canvas.W - 1) & (v >= 0) & (v < canvas.H - 1)
    u, v, wt = u[ok], v[ok], weights[ok]
    i0 = np.floor(u).astype(np.int64)
    j0 = np.floor(v).astype(np.int64)
    fx = u - i0
    fy = v - j0
    base = j0 * canvas.W + i0
    idx = np.concatenate([base, base + 1, base + canvas.W, base + canvas.W + 1])
    w = np.concatenate(
        [(1 - fx) * (1 - fy) * wt, fx * (1 - fy) * wt, (1 - fx) * fy * wt, fx * fy * wt]
    )
    return idx, w, ok


def project_depth(p: F64, xyz: F64) -> tuple[F64, F64]:
    """Image positions (n, 2) and depths (n,) (rows 0-2 of P) of world points (n, 3)."""
    q = xyz @ p[:3, :3].T + p[:3, 3]
    return q[:, :2], q[:, 2]


def project_soa(p: F64, soa: NDArray[np.float32]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(u, v, depth) of many world points stored as rows x, y, z (3, n) float32 (fast: a
    (n, 3) @ (3, 3) matmul does not use BLAS)."""
    x, y, z = soa
    out = []
    for i in range(3):
        r = p[i].astype(np.float32)
        out.append(x * r[0] + y * r[1] + z * r[2] + r[3])
    return out[0], out[1], out[2]


def splat_nearest(
    u: np.ndarray, v: np.ndarray, canvas: Canvas
) -> tuple[NDArray[np.int64], NDArray[np.bool_]]:
    """Flat canvas pixel of the nearest pixel centre of each point inside, and the point mask."""
    iu = np.rint(u).astype(np.int64) + canvas.pad
    iv = np.rint(v).astype(np.int64) + canvas.pad
    ok = (iu >= 0) & (iu < canvas.W) & (iv >= 0) & (iv < canvas.H)
    return iv[ok] * canvas.W + iu[ok], ok


# ---------------------------------------------------------------------- one view
def render_view(
    p: F64,
    canvas: Canvas,
    optics: Optics,
    scene: Scene,
    beads_xyz: F64,
    bead_radii_px: F64,
    defocus: tuple[float, float, float],
    kgrid: KGrid | None,
    texture_filters: list[F64] | None,
) -> F64:
    """Relative intensity (h, w) of one view (1 = empty ice): see the module docstring.

    ``defocus`` = (U, V, angle) of the view (Å, Å, deg); ``kgrid`` the canvas's
    :class:`KGrid` (phase contrast only); ``texture_filters`` the rfft Gaussian of each
    texture octave on the canvas.
    """
    acc = Accumulator()
    size = canvas.H * canvas.W
    phase = optics.phase
    centre_depth = float(p[2, :3] @ scene.centre + p[2, 3])

    # beads: sub-pixel averaged transmission, per bead
    if beads_xyz.shape[0]:
        uv, dep = project_depth(p, beads_xyz)
        kb = optics.kappa_bead
        for sel, flat, chord, ok in sphere_windows(
            uv, bead_radii_px, np.zeros_like(bead_radii_px), canvas, BEAD_SUPERSAMPLE
        ):
            if phase:
                val = np.log(np.exp(kb * chord).mean(axis=-1))
            else:
                val = 0.5 * np.log(np.exp(2.0 * kb.real * chord).mean(axis=-1)) + 0j
            keep = ok & (np.abs(val) > 0)
            acc.add(
                flat[keep], np.broadcast_to(dep[sel][:, None, None], keep.shape)[keep], val[keep]
            )

    # clutter spheres (ribosomes: protein, vesicles: lipid rims): linear in the path
    if scene.sphere_xyz.shape[0]:
        uv, dep = project_depth(p, scene.sphere_xyz)
        kappa = np.where(scene.sphere_kind == 1, optics.kappa_lipid, optics.kappa_protein)
        for sel, flat, chord, ok in sphere_windows(
            uv, scene.sphere_r_out, scene.sphere_r_in, canvas, CLUTTER_SUPERSAMPLE
        ):
            mean_chord = chord.mean(axis=-1)
            keep = ok & (mean_chord > 0)
            k_obj = np.broadcast_to(kappa[sel][:, None, None], keep.shape)
            acc.add(
                flat[keep],
                np.broadcast_to(dep[sel][:, None, None], keep.shape)[keep],
                k_obj[keep] * mean_chord[keep],
            )

    # membranes: convex boxes over the window of their projected corners
    for body in scene.membranes:
        corners = box_corners(body)
        uv, _ = project_depth(p, corners)
        x0 = max(int(np.floor(uv[:, 0].min())) + canvas.pad - 1, 0)
        x1 = min(int(np.ceil(uv[:, 0].max())) + canvas.pad + 2, canvas.W)
        y0 = max(int(np.floor(uv[:, 1].min())) + canvas.pad - 1, 0)
        y1 = min(int(np.ceil(uv[:, 1].max())) + canvas.pad + 2, canvas.H)
        add_body(acc, p, body, optics.kappa_lipid, canvas, (y0, y1, x0, x1))

    # carbon film: the whole canvas
    if scene.carbon is not None:
        add_body(acc, p, scene.carbon, optics.kappa_carbon, canvas)

    # random weak-phase specimen: points on their nearest pixel (a white random phase)
    if scene.specimen_xyz.shape[0]:
        u, v, dep = project_soa(p, scene.specimen_soa())
        idx, ok = splat_nearest(u, v, canvas)
        acc.add(idx, dep[ok], optics.weak * scene.specimen_amp[ok])

    # 1/f texture: splat per octave, Gaussian blur in Fourier space, at the ice mid-plane depth
    if scene.texture and texture_filters is not None:
        spec = np.zeros((canvas.H, canvas.W // 2 + 1), dtype=np.complex128)
        for j, ((xyz, amp, _sigma), filt) in enumerate(zip(scene.texture, texture_filters)):
            if xyz.shape[0] == 0:
                continue
            u, v, _ = project_soa(p, scene.texture_soa(j))
            idx, wts, _ = splat_bilinear(np.column_stack([u, v]), amp, canvas)
            m = np.bincount(idx, weights=wts, minlength=size).reshape(canvas.H, canvas.W)
            spec += sfft.rfft2(m, workers=1) * filt
        tex = sfft.irfft2(spec, s=(canvas.H, canvas.W), workers=1)
        ux, uy = canvas.image_coords_cached()
        mid = slab_depth(p, scene.normal, float(scene.normal @ scene.centre), ux, uy)
        acc.add(np.arange(size), mid.ravel(), optics.weak * tex.ravel())

    if not phase:
        logt = acc.bands(1, 0.0, 1.0, size)[0].reshape(canvas.H, canvas.W)
        return canvas.crop(np.exp(2.0 * logt.real.astype(np.float64)))

    # --- phase contrast: depth bands
    assert kgrid is not None
    lam = kgrid.lam
    extra = optics.carbon_px + optics.max_bead_radius_px + 1.0
    cu = np.array([0, canvas.W - 1, 0, canvas.W - 1], dtype=np.float64) - canvas.pad
    cv = np.array([0, 0, canvas.H - 1, canvas.H - 1], dtype=np.float64) - canvas.pad
    c_off = float(scene.normal @ scene.centre)
    half = 0.5 * scene.ice_px + extra
    dd = np.concatenate([slab_depth(p, scene.normal, c_off + s, cu, cv) for s in (-half, half)])
    d_min, d_max = float(dd.min()), float(dd.max())
    span = max(d_max - d_min, 1e-6)
    if optics.n_bands > 0:
        n_b = optics.n_bands
    else:
        k_nyq2 = (0.5 / optics.pixel_size) ** 2
        bw_max = 2.0 * BAND_PHASE_TOLERANCE / (np.pi * lam * optics.pixel_size * k_nyq2)
        n_b = int(min(max(math.ceil(span / bw_max), 1), MAX_AUTO_BANDS))
    width = span / n_b
    logt_b = acc.bands(n_b, d_min, width, size)

    u_def, v_def, ang = defocus
    # defocus (relative to the view's, i.e. the tomogram centre's) of each band's centre
    rel_df = (
        optics.hand * optics.pixel_size * (d_min + (np.arange(n_b) + 0.5) * width - centre_depth)
    )
    # multislice in beam order: the most underfocused band is the first the beam meets
    shape = (canvas.H, canvas.W)
    psi: np.ndarray | None = None  # None = still the incident plane wave
    cur = 0.0
    for b in np.argsort(-rel_df, kind="stable"):
        lb = logt_b[b]
        if not np.any(lb):
            continue
        t_b = exp_minus_one(lb).reshape(shape)
        t_b += 1.0
        if psi is None:
            psi = t_b
        else:
            # propagation to this band: imaging the wave here with defocus Δf_b must equal
            # imaging it at the previous band with Δf_prev, so multiply by exp(iπλ(Δf_prev-Δf_b)k²)
            dist = cur - float(rel_df[b])
            if dist > 0:
                spec = sfft.fft2(psi, workers=1)
                spec *= unit_phasor(kgrid.defocus_phase(dist))
                psi = sfft.ifft2(spec, workers=1)
            psi *= t_b
        cur = float(rel_df[b])
    if psi is None:
        return np.ones((canvas.h, canvas.w))
    # image with the defocus of the last band (astigmatism and Cs included)
    spec = sfft.fft2(psi, workers=1)
    spec *= unit_phasor(kgrid.chi(u_def + cur, v_def + cur, ang))
    out = canvas.crop(sfft.ifft2(spec, workers=1))
    re = out.real.astype(np.float64)
    im = out.imag.astype(np.float64)
    return re * re + im * im


def texture_filters(scene: Scene, canvas: Canvas) -> list[F64]:
    """rfft-domain Gaussian of each texture octave (k in cycles per px)."""
    ky = np.fft.fftfreq(canvas.H)[:, None]
    kx = np.fft.rfftfreq(canvas.W)[None, :]
    k2 = kx * kx + ky * ky
    return [np.exp(-2.0 * np.pi**2 * sigma * sigma * k2) for _, _, sigma in scene.texture]


class KGrid:
    """The canvas's FFT grid in the forms χ needs (float32): |k|², cos 2θ, sin 2θ, |k|⁴."""

    def __init__(self, canvas: Canvas, pixel_size: float, voltage_kv: float, cs_mm: float):
        k2, theta = frequency_grid((canvas.H, canvas.W), pixel_size)
        self.k2 = k2.astype(np.float32)
        self.c2 = np.cos(2.0 * theta).astype(np.float32)
        self.s2 = np.sin(2.0 * theta).astype(np.float32)
        lam = wavelength_A(voltage_kv)
        self.lam = lam
        self.cs_term = (0.5 * np.pi * cs_mm * 1e7 * lam**3 * k2 * k2).astype(np.float32)

    def chi(self, defocus_u: float, defocus_v: float, angle_deg: float) -> np.ndarray:
        """χ (float32) as :func:`tiltflow.simulate.optics.chi`."""
        a = np.deg2rad(angle_deg)
        dmean = 0.5 * (defocus_u + defocus_v)
        dast = 0.5 * (defocus_u - defocus_v)
        df = dmean + dast * (
            self.c2 * np.float32(np.cos(2 * a)) + self.s2 * np.float32(np.sin(2 * a))
        )
        return np.float32(np.pi * self.lam) * df * self.k2 - self.cs_term

    def defocus_phase(self, dz: float) -> np.ndarray:
        """``π λ dz k²`` (float32): the change of χ for a defocus change dz (Å)."""
        return np.float32(np.pi * self.lam * dz) * self.k2


def exp_minus_one(z: np.ndarray) -> np.ndarray:
    """``exp(z) - 1`` of a complex64 array, accurate for small z, in float32 arithmetic."""
    a = z.real
    b = z.imag
    c = np.cos(b)
    half = np.sin(0.5 * b)
    out = np.empty(z.shape, dtype=np.complex64)
    out.real = np.expm1(a) * c - 2.0 * half * half
    out.imag = np.exp(a) * np.sin(b)
    return out


def unit_phasor(phi: np.ndarray) -> np.ndarray:
    """``exp(i φ)`` as complex64."""
    out = np.empty(phi.shape, dtype=np.complex64)
    out.real = np.cos(phi)
    out.imag = np.sin(phi)
    return out
