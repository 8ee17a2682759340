"""How bead-like a detection looks: fitted radius and (an)isotropy, from the unbinned image.

A gold bead is a compact, round, dark object of a known size in every view; the edge of a carbon
film, a membrane or the rim of a vesicle is not, although the matched filter responds to them.
For each position (sub-pixel centre in one frame) :func:`appearance` samples a disc of
``OUTER × radius`` around it (every ``stride`` pixels, so the cost does not grow with the bead
size in pixels) and measures, relative to the median of the outer ring:

- ``radius``: the radius of the projected-sphere template (blurred like the detection template)
  that best fits the background-subtracted radial profile (least squares, free amplitude);
- ``dipole`` and ``quadrupole``: ``|Σ (v - p) e^{iθ}| / Σ |v|`` and ``|Σ (v - p) e^{2iθ}| / Σ |v|``
  over the pixel pairs symmetric about the centre inside 1.5 bead radii, ``v`` the contrast
  relative to the ring and ``p`` the object's own mean radial profile. Both are ~0 for a round
  object (plus noise), also when the image border cuts it; ~0.3-0.6 for a straight edge
  (dipole) or a line (quadrupole);
- ``contrast``: mean contrast inside the fitted radius (negative for dark beads).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from tiltflow.io.mrc import FAULT_AROUND_BYTES, release_pages

F64 = NDArray[np.float64]

#: sampled disc radius, in bead radii (the outer ring is [RING, OUTER])
OUTER = 2.0
RING = 1.6
#: radius of the moment disc, in bead radii
MOMENT_DISC = 1.5
#: samples (windows × pixels) measured together
BATCH_SAMPLES = 400_000
#: resident memory a batch may map from a memory-mapped stack (rows touched × 64 KiB, see
#: :data:`tiltflow.io.mrc.FAULT_AROUND_BYTES`); released after each batch
BATCH_MAPPED_BYTES = 128 * 2**20
#: candidate template radii, in declared radii
RADIUS_GRID = np.round(np.arange(0.4, 1.61, 0.05), 3)


@dataclass(frozen=True)
class Appearance:
    """Shape descriptors per position (see module doc)."""

    radius: F64  # px
    dipole: F64
    quadrupole: F64
    contrast: F64

    @property
    def anisotropy(self) -> F64:
        return np.maximum(self.dipole, self.quadrupole)


def blurred_sphere(radius: float, blur: float, rho: F64) -> F64:
    """Projected sphere profile ``sqrt(1 - ρ²/R²)`` convolved with a 2D Gaussian (σ = blur),
    at radii ``rho``: the radial (Hankel) form of the 2D convolution,
    ``∫ f(ρ') ρ'/σ² exp(-(ρ - ρ')²/2σ²) I0e(ρ ρ'/σ²) dρ'`` on a fine 1D grid."""
    from scipy.special import i0e

    rho = np.asarray(rho, dtype=np.float64)
    sig = max(float(blur), 1e-3)
    rp = np.linspace(0.0, radius, max(64, int(radius * 16)) + 1)
    f = np.sqrt(np.maximum(1.0 - (rp / radius) ** 2, 0.0))
    drp = rp[1] - rp[0]
    kern = (rp[None, :] / sig**2) * np.exp(-((rho[:, None] - rp[None, :]) ** 2) / (2 * sig**2))
    kern = kern * i0e(rho[:, None] * rp[None, :] / sig**2)
    return (kern * f[None, :]).sum(axis=1) * drp


def appearance(
    stack: NDArray[np.floating],
    frames: NDArray[np.integer],
    x: F64,
    y: F64,
    radius_px: float,
    batch: int = 4096,
) -> Appearance:
    """Shape descriptors of the objects centred at ``(x, y)`` in ``frames`` (vectorised)."""
    from tiltflow.fiducials.detect import PROFILE_BLUR_PX

    frames = np.asarray(frames, dtype=np.int64)
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    k = frames.size
    out = {name: np.full(k, np.nan) for name in ("radius", "dipole", "quadrupole", "contrast")}
    if k == 0:
        return Appearance(**out)
    _n, h, w = stack.shape
    stride = max(1, int(radius_px // 6))
    hw = int(np.ceil(OUTER * radius_px))
    oy, ox = np.mgrid[-hw : hw + 1 : stride, -hw : hw + 1 : stride]
    ox, oy = ox.ravel().astype(np.float64), oy.ravel().astype(np.float64)
    keep = ox**2 + oy**2 <= (OUTER * radius_px + stride) ** 2
    ox, oy = ox[keep], oy[keep]
    # bounded memory: the batch's arrays, and the pages its gather maps (one run of
    # FAULT_AROUND_BYTES per sampled row of every window; 2 GB for 600 windows of a 4k stack)
    n_rows = np.unique(oy).size
    by_pages = BATCH_MAPPED_BYTES // (n_rows * FAULT_AROUND_BYTES)
    batch = max(16, min(batch, BATCH_SAMPLES // max(1, ox.size), by_pages))
    nbin = 24
    edges = np.linspace(0.0, OUTER * radius_px, nbin + 1)
    centres = 0.5 * (edges[1:] + edges[:-1])
    blur = max(PROFILE_BLUR_PX, 0.5 * stride)
    cand = RADIUS_GRID * radius_px
    tmpl = np.stack([blurred_sphere(float(rr), blur, centres) for rr in cand])  # (nR, nbin)
    for start in range(0, k, batch):
        sl = slice(start, min(start + batch, k))
        kk = sl.stop - sl.start
        X = np.rint(x[sl])[:, None] + ox[None, :]
        Y = np.rint(y[sl])[:, None] + oy[None, :]
        inside = (X >= 0) & (X < w) & (Y >= 0) & (Y < h)
        vals = stack[
            frames[sl][:, None],
            np.clip(Y, 0, h - 1).astype(np.int64),
            np.clip(X, 0, w - 1).astype(np.int64),
        ].astype(np.float64)
        release_pages(stack)
        dx, dy = X - x[sl][:, None], Y - y[sl][:, None]
        rho = np.hypot(dx, dy)
        ring = inside & (rho >= RING * radius_px) & (rho <= OUTER * radius_px)
        n_ring = ring.sum(axis=1)
        bg = np.where(ring, vals, 0.0).sum(axis=1) / np.maximum(n_ring, 1)
        bg = np.where((n_ring > 0) & (np.abs(bg) > 0), bg, vals.mean(axis=1))
        v = (vals - bg[:, None]) / np.abs(bg)[:, None]
        valid = inside & (rho <= OUTER * radius_px)
        # radial profile (k, nbin)
        b = np.clip(np.searchsorted(edges, rho, side="right") - 1, 0, nbin - 1)
        flat = (np.arange(kk)[:, None] * nbin + b)[valid]
        cnt = np.bincount(flat, minlength=kk * nbin).reshape(kk, nbin)
        tot = np.bincount(flat, weights=v[valid], minlength=kk * nbin).reshape(kk, nbin)
        prof = tot / np.maximum(cnt, 1)
        wgt = cnt.astype(np.float64)
        # free amplitude per template: residual = Σw p² - (Σw p S)² / Σw S²
        ps = np.einsum("kb,rb->kr", wgt * prof, tmpl)
        ss = np.einsum("kb,rb->kr", wgt, tmpl**2)
        resid = -(ps**2) / np.maximum(ss, 1e-12)
        amp = ps / np.maximum(ss, 1e-12)
        resid = np.where(amp < 0, resid, np.inf)  # dark objects only
        best = np.argmin(resid, axis=1)
        rows = np.arange(kk)
        # parabola through the best grid radius and its neighbours (sub-grid radius)
        lo, hi = np.maximum(best - 1, 0), np.minimum(best + 1, cand.size - 1)
        r0, r1, r2 = resid[rows, lo], resid[rows, best], resid[rows, hi]
        with np.errstate(all="ignore"):
            den = r0 - 2 * r1 + r2
            off = np.where(
                (lo < best) & (hi > best) & np.isfinite(r0 + r2) & (den > 0),
                0.5 * (r0 - r2) / den,
                0.0,
            )
        step = cand[1] - cand[0]
        est = cand[best] + np.clip(off, -0.5, 0.5) * step
        out["radius"][sl] = np.where(np.isfinite(r1), est, np.nan)
        # moments over point pairs symmetric about the centre (a bead cut by the image border is
        # sampled symmetrically, so the border itself does not look like an edge)
        Xm, Ym = 2 * x[sl][:, None] - X, 2 * y[sl][:, None] - Y  # mirror about the exact centre
        mirror_in = (Xm >= -0.5) & (Xm < w - 0.5) & (Ym >= -0.5) & (Ym < h - 0.5)
        disc = valid & mirror_in & (rho <= MOMENT_DISC * radius_px)
        # moments of the departure from the object's own radial profile: 0 for any round
        # object, whatever part of the disc is sampled
        v_iso = np.take_along_axis(prof, b, axis=1)
        norm = np.maximum(np.where(disc, np.abs(v), 0.0).sum(axis=1), 1e-12)
        vd = np.where(disc, v - v_iso, 0.0)
        rs = np.where(rho > 1e-9, rho, 1.0)
        c1, s1 = dx / rs, dy / rs  # angles about the exact (sub-pixel) centre, without trig
        m1 = np.hypot((vd * c1).sum(axis=1), (vd * s1).sum(axis=1))
        m2 = np.hypot((vd * (c1 * c1 - s1 * s1)).sum(axis=1), (vd * (2 * c1 * s1)).sum(axis=1))
        out["dipole"][sl] = m1 / norm
        out["quadrupole"][sl] = m2 / norm
        core = valid & (rho <= out["radius"][sl][:, None])
        out["contrast"][sl] = np.where(core, v, 0.0).sum(axis=1) / np.maximum(core.sum(axis=1), 1)
    return Appearance(**out)


#: fitted radius range of a bead, in declared radii (0.4: 5 nm gold next to declared 10 nm,
#: with the measurement's scatter)
RADIUS_RANGE = (0.4, 1.5)


def is_bead_like(app: Appearance, radius_px: float, max_anisotropy: float) -> NDArray[np.bool_]:
    """Dark, round enough, and of a radius within :data:`RADIUS_RANGE` of ``radius_px``."""
    rel = app.radius / radius_px
    return (
        np.isfinite(app.radius)
        & (rel >= RADIUS_RANGE[0] - 1e-9)
        & (rel <= RADIUS_RANGE[1] + 1e-9)
        & (app.anisotropy <= max_anisotropy)
        & (app.contrast < 0)
    )
