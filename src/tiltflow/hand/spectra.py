"""Power spectra of tiles and strips of a tilt image, their rotational averages and background.

A tilt image is cut into square tiles (``tile_px``, overlapping by ``tile_overlap``). Each tile
is windowed (Hann), Fourier transformed and its power normalised by its mean (so a spectrum is
in contrast units whatever the dose); the power spectra of the tiles whose centres fall into the same
strip across the tilt axis are summed (Welch). A strip's 2D spectrum is averaged in rings of
equal CTF phase for the tilt's imported astigmatism (:class:`PhaseBins`): with
``x = λ D(θ) k² − ½ Cs λ³ k⁴`` (``χ = π x``, ``D(θ)`` the imported defocus in the direction θ of
the frequency), Thon rings are periodic in ``x`` with period 1, and equal steps of ``x`` hold
equal numbers of spectrum pixels, so every bin has the same noise. The smooth background is a
running mean over exactly one ring period (twice), which removes a ring-periodic modulation
completely; what is left, ``s / background − 1``, is the ring modulation the fit correlates with.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import scipy.fft
from numpy.typing import ArrayLike, NDArray
from scipy.ndimage import uniform_filter1d

F64 = NDArray[np.float64]
I64 = NDArray[np.int64]

#: bins per Thon ring (unit of x)
BINS_PER_RING = 10
#: rows of tiles transformed at once (bounds the memory of one batch)
TILE_BATCH = 16


def wavelength_A(voltage_kv: float) -> float:
    """Relativistic electron wavelength (Å) at ``voltage_kv`` kV."""
    v = float(voltage_kv) * 1e3
    return float(12.2643247 / np.sqrt(v * (1.0 + 0.978466e-6 * v)))


def amplitude_phase(amplitude_contrast: float) -> float:
    """Phase (rad) added to χ by the amplitude contrast: ``atan(Q0 / sqrt(1 − Q0²))``."""
    q = float(amplitude_contrast)
    return float(np.arctan2(q, np.sqrt(max(1.0 - q * q, 0.0))))


def ctf_x(
    k2: ArrayLike, defocus_A: ArrayLike, wavelength: float, cs_mm: float
) -> NDArray[np.float64]:
    """``x = χ / π = λ D k² − ½ Cs λ³ k⁴`` (defocus positive = underfocus, Å; k² in Å⁻²)."""
    k2 = np.asarray(k2, dtype=np.float64)
    cs = float(cs_mm) * 1e7
    return np.asarray(
        wavelength * np.asarray(defocus_A) * k2 - 0.5 * cs * wavelength**3 * k2 * k2,
        dtype=np.float64,
    )


@functools.lru_cache(maxsize=4)
def hann2d(n: int) -> NDArray[np.float32]:
    """Separable 2D Hann window of side ``n`` (float32, cached: do not modify)."""
    w = np.hanning(n + 2)[1:-1]
    out = np.asarray(np.outer(w, w), dtype=np.float32)
    out.setflags(write=False)
    return out


def tile_origins(shape: tuple[int, int], tile: int, step: int) -> I64:
    """Top-left corners ``(x0, y0)`` (m, 2) of the tiles covering an image of ``shape = (h, w)``.

    Tiles fit inside the image; the grid is centred (equal margins left/right, top/bottom).
    """
    h, w = shape
    if h < tile or w < tile:
        return np.zeros((0, 2), dtype=np.int64)

    def axis(n: int) -> I64:
        count = (n - tile) // step + 1
        span = (count - 1) * step + tile
        start = (n - span) // 2
        return np.asarray(start + step * np.arange(count), dtype=np.int64)

    xs, ys = axis(w), axis(h)
    gx, gy = np.meshgrid(xs, ys)
    return np.stack([gx.ravel(), gy.ravel()], axis=1)


def strips_of_tiles(
    centres: ArrayLike, grad: ArrayLike, image_centre: ArrayLike, strip_px: float
) -> tuple[I64, int, F64]:
    """Strip index (0..n-1) of every tile centre (m, 2), the number of strips and the unit
    direction across the strips (along the depth gradient ``grad``).

    Strips are ``strip_px`` wide, perpendicular to the gradient (parallel to the tilt axis),
    the middle one centred on ``image_centre``. A zero gradient puts every tile into one strip.
    """
    c = np.asarray(centres, dtype=np.float64).reshape(-1, 2)
    g = np.asarray(grad, dtype=np.float64).reshape(2)
    norm = float(np.linalg.norm(g))
    if c.shape[0] == 0:
        return np.zeros(0, dtype=np.int64), 0, np.array([1.0, 0.0])
    if norm < 1e-12:
        return np.zeros(c.shape[0], dtype=np.int64), 1, np.array([1.0, 0.0])
    e = g / norm
    s = (c - np.asarray(image_centre, dtype=np.float64)) @ e
    idx = np.floor(s / float(strip_px) + 0.5).astype(np.int64)
    idx -= idx.min()
    return idx, int(idx.max()) + 1, e


def strip_spectra(
    image: ArrayLike,
    origins: ArrayLike,
    strip: ArrayLike,
    n_strips: int,
    tile: int,
    workers: int = 1,
) -> tuple[NDArray[np.float64], I64]:
    """Summed tile power spectra per strip ``(n_strips, tile, tile // 2 + 1)`` and tiles per strip.

    Every tile is Hann-windowed and its power spectrum divided by the square of its windowed
    mean (the DC term of its transform), so spectra are in contrast units whatever the dose; the
    mean itself only leaks into the lowest frequencies, far below the fitted band. Tiles with a
    non-positive or non-finite mean (no counts, masked) are left out. One pass over the pixels
    (window) plus the transforms.
    """
    img = np.asarray(image, dtype=np.float32)
    org = np.asarray(origins, dtype=np.int64).reshape(-1, 2)
    sidx = np.asarray(strip, dtype=np.int64).reshape(-1)
    out = np.zeros((n_strips, tile, tile // 2 + 1), dtype=np.float32)
    counts = np.zeros(n_strips, dtype=np.int64)
    if org.shape[0] == 0:
        return out.astype(np.float64), counts
    win = hann2d(tile)
    win_sum = float(win.sum(dtype=np.float64))
    buf = np.empty((min(TILE_BATCH, org.shape[0]), tile, tile), dtype=np.float32)
    for start in range(0, org.shape[0], TILE_BATCH):
        o = org[start : start + TILE_BATCH]
        s = sidx[start : start + TILE_BATCH]
        b = o.shape[0]
        for i, (x0, y0) in enumerate(o):
            np.multiply(img[y0 : y0 + tile, x0 : x0 + tile], win, out=buf[i])
        f = scipy.fft.rfft2(buf[:b], axes=(1, 2), workers=workers)
        mean = f[:, 0, 0].real.astype(np.float64) / win_sum
        power = f.real * f.real
        power += f.imag * f.imag
        for i in range(b):
            if not (np.isfinite(mean[i]) and mean[i] > 0):
                continue
            power[i] *= np.float32(1.0 / (mean[i] * mean[i]))
            out[s[i]] += power[i]
            counts[s[i]] += 1
    return out.astype(np.float64), counts


@dataclass(frozen=True)
class FrequencyGrid:
    """|k|² (Å⁻²) and direction θ (rad, atan2(ky, kx)) of a tile's rfft2 grid."""

    k2: F64  # (tile, tile // 2 + 1)
    theta: F64
    on_axis: NDArray[np.bool_]  #: pixels on the kx = 0 or ky = 0 lines (edge artefacts)
    nyquist: float  #: Å⁻¹

    @classmethod
    def make(cls, tile: int, pixel_size: float) -> FrequencyGrid:
        ky = scipy.fft.fftfreq(tile, d=pixel_size)
        kx = scipy.fft.rfftfreq(tile, d=pixel_size)
        gx, gy = np.meshgrid(kx, ky)
        axis = (np.abs(gx) < 0.5 / (tile * pixel_size)) | (np.abs(gy) < 0.5 / (tile * pixel_size))
        return cls(
            k2=gx * gx + gy * gy,
            theta=np.arctan2(gy, gx),
            on_axis=axis,
            nyquist=0.5 / pixel_size,
        )


@dataclass(frozen=True)
class PhaseBins:
    """Rotational-average bins of equal CTF phase for one tilt (imported defocus and astigmatism).

    ``index`` maps every spectrum pixel to a bin (``n_bins`` = outside). Bins are
    1/``per_ring`` of a ring wide, from ``x_start``; ``fit`` selects the bins of the fitted band
    (the others only help the background at the band edges). ``k2`` is the mean |k|² of each bin.
    """

    index: I64
    n_bins: int
    per_ring: int
    x_start: float
    x: F64  # (n_bins,) bin centres
    k2: F64  # (n_bins,)
    counts: F64  # (n_bins,)
    fit: NDArray[np.bool_]  # (n_bins,)

    @classmethod
    def make(
        cls,
        grid: FrequencyGrid,
        defocus_u: float,
        defocus_v: float,
        angle_deg: float,
        wavelength: float,
        cs_mm: float,
        k_lo: float,
        k_hi: float,
        per_ring: int = BINS_PER_RING,
        margin_rings: float = 1.0,
    ) -> PhaseBins:
        mean = 0.5 * (defocus_u + defocus_v)
        half = 0.5 * (defocus_u - defocus_v)
        d_theta = mean + half * np.cos(2.0 * (grid.theta - np.deg2rad(angle_deg)))
        xp = ctf_x(grid.k2, d_theta, wavelength, cs_mm)
        x_lo = float(ctf_x(k_lo * k_lo, mean, wavelength, cs_mm))
        x_hi = float(ctf_x(k_hi * k_hi, mean, wavelength, cs_mm))
        # extend by a margin for the background filter, but not into the k ~ 0 peak or past
        # the highest frequency the grid holds in every direction (Nyquist)
        x_nyq = float(ctf_x(grid.nyquist**2, mean - abs(half), wavelength, cs_mm))
        start = max(x_lo - margin_rings, 0.5 * x_lo)
        stop = min(x_hi + margin_rings, max(x_hi, x_nyq))
        n_bins = max(int(np.ceil((stop - start) * per_ring)), 1)
        b = np.floor((xp - start) * per_ring).astype(np.int64)
        valid = (b >= 0) & (b < n_bins) & ~grid.on_axis
        index = np.where(valid, b, n_bins)
        counts = np.bincount(index.ravel(), minlength=n_bins + 1)[:n_bins].astype(np.float64)
        ksum = np.bincount(index.ravel(), weights=grid.k2.ravel(), minlength=n_bins + 1)[:n_bins]
        x = start + (np.arange(n_bins) + 0.5) / per_ring
        with np.errstate(invalid="ignore", divide="ignore"):
            k2 = np.where(counts > 0, ksum / np.maximum(counts, 1), np.nan)
        fit = (x >= x_lo) & (x <= x_hi) & (counts > 0)
        return cls(index, n_bins, per_ring, start, x, k2, counts, fit)

    def profiles(self, spectra: ArrayLike) -> NDArray[np.float64]:
        """Rotational averages ``(n_strips, n_bins)`` of 2D spectra ``(n_strips, *grid)``."""
        s = np.asarray(spectra, dtype=np.float64)
        n = s.shape[0]
        flat = s.reshape(n, -1)
        idx = self.index.ravel()
        nb1 = self.n_bins + 1
        offs = (np.arange(n)[:, None] * nb1 + idx[None, :]).ravel()
        sums = np.bincount(offs, weights=flat.ravel(), minlength=n * nb1).reshape(n, nb1)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.asarray(sums[:, : self.n_bins] / self.counts[None, :], dtype=np.float64)


def ring_modulation(profiles: ArrayLike, per_ring: int) -> NDArray[np.float64]:
    """``profile / background − 1`` (n, n_bins); background = running mean over one ring, twice.

    Empty bins (NaN) are filled by linear interpolation first; NaN is returned where nothing
    could be filled.
    """
    p = np.array(profiles, dtype=np.float64, copy=True)
    if p.ndim == 1:
        p = p[None]
    for row in p:
        bad = ~np.isfinite(row)
        if bad.any() and (~bad).sum() >= 2:
            xi = np.flatnonzero(~bad)
            row[bad] = np.interp(np.flatnonzero(bad), xi, row[xi])
    bg = uniform_filter1d(p, size=per_ring, axis=1, mode="nearest")
    # an even box is centred half a bin off; the second pass shifts the other way
    origin = -1 if per_ring % 2 == 0 else 0
    bg = uniform_filter1d(bg, size=per_ring, axis=1, mode="nearest", origin=origin)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.asarray(p / bg - 1.0, dtype=np.float64)
