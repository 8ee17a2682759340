"""Image formation: Beer–Lambert ice background, dark projected gold spheres, Poisson noise.

All functions are vectorised over pixels; loops run over tilts only.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

F64 = NDArray[np.float64]

#: sub-samples per pixel side when integrating the bead transmission
SUPERSAMPLE = 4


def bead_log_transmission(
    centres: F64,
    radius_px: float,
    contrast_per_px: float,
    shape: tuple[int, int],
    in_plane_scale: float = 1.0,
    supersample: int = SUPERSAMPLE,
) -> F64:
    """Log of the transmission of dark spheres projected at ``centres`` (m, 2) -> (h, w).

    Each pixel's transmission is the area average (``supersample``² sub-pixels) of
    ``exp(-contrast_per_px * chord)``, ``chord = 2 sqrt(r² - d²)`` the path length (world px)
    through a sphere of radius ``radius_px`` whose centre projects at distance ``d``.
    ``in_plane_scale`` is the image px per world px of the projection (1 for a pure rotation).
    Only a small window around each bead is evaluated; overlapping beads multiply.
    """
    h, w = shape
    out = np.zeros((h, w), dtype=np.float64)
    centres = np.asarray(centres, dtype=np.float64).reshape(-1, 2)
    r_img = radius_px * in_plane_scale
    half = int(np.ceil(r_img)) + 1
    inside = (
        (centres[:, 0] > -half)
        & (centres[:, 0] < w - 1 + half)
        & (centres[:, 1] > -half)
        & (centres[:, 1] < h - 1 + half)
    )
    c = centres[inside]
    if c.shape[0] == 0 or radius_px <= 0 or contrast_per_px <= 0:
        return out
    k = np.arange(-half, half + 1)
    sub = (np.arange(supersample) + 0.5) / supersample - 0.5
    ix0 = np.rint(c[:, 0]).astype(np.int64)
    iy0 = np.rint(c[:, 1]).astype(np.int64)
    # pixel grids (m, ky, kx)
    px = ix0[:, None, None] + k[None, None, :]
    py = iy0[:, None, None] + k[None, :, None]
    # sub-sample offsets from the bead centre (m, ky, kx, s, s) in image px
    dx = (px - c[:, 0, None, None])[..., None, None] + sub[None, None, None, None, :]
    dy = (py - c[:, 1, None, None])[..., None, None] + sub[None, None, None, :, None]
    d2 = (dx * dx + dy * dy) / (in_plane_scale * in_plane_scale)
    chord = 2.0 * np.sqrt(np.clip(radius_px * radius_px - d2, 0.0, None))
    trans = np.exp(-contrast_per_px * chord).mean(axis=(-2, -1))  # (m, ky, kx)
    logt = np.log(trans)
    pxb = np.broadcast_to(px, logt.shape)
    pyb = np.broadcast_to(py, logt.shape)
    ok = (pxb >= 0) & (pxb < w) & (pyb >= 0) & (pyb < h) & (logt < 0)
    np.add.at(out, (pyb[ok], pxb[ok]), logt[ok])
    return out


def illumination_pattern(shape: tuple[int, int], amplitude: float, rng: np.random.Generator) -> F64:
    """Smooth multiplicative pattern ``1 + g`` (h, w), g of relative amplitude ``amplitude``.

    ``g`` is a sum of a few random low-frequency cosines (1-2 periods over the field), shifted
    to have exactly zero mean over the image, so the image mean is unchanged.
    """
    h, w = shape
    if amplitude <= 0:
        return np.ones((h, w))
    y = np.arange(h, dtype=np.float64)[:, None] / h
    x = np.arange(w, dtype=np.float64)[None, :] / w
    g = np.zeros((h, w))
    n_waves = 4
    for _ in range(n_waves):
        fx, fy = rng.uniform(-1.5, 1.5, size=2)
        phase = rng.uniform(0, 2 * np.pi)
        g += np.cos(2 * np.pi * (fx * x + fy * y) + phase)
    g -= g.mean()
    peak = np.abs(g).max()
    if peak > 0:
        g *= amplitude / peak
    return 1.0 + g


def render_tilt(
    mean_background: float,
    pattern: F64,
    bead_centres: F64,
    radius_px: float,
    contrast_per_px: float,
    in_plane_scale: float = 1.0,
) -> F64:
    """Expected counts of one tilt: ``mean_background · pattern · bead transmission`` (h, w)."""
    logt = bead_log_transmission(
        bead_centres, radius_px, contrast_per_px, pattern.shape, in_plane_scale
    )
    return mean_background * pattern * np.exp(logt)
