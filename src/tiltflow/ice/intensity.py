"""Robust per-tilt mean intensity of the bead-free central field of each tilt image.

Steps per tilt: (1) a flat field common to all tilts (detector/illumination pattern, fixed in
detector coordinates while the specimen moves) is estimated as the per-pixel median over tilts of
the binned, mean-normalised images and divided out; (2) the field is a window of
``central_fraction`` of the image width and height centred on the projection of the tomogram
centre (kept inside the image), so every tilt samples the same part of the slab; (3) fiducials are
masked: discs of ``bead_mask_factor × bead radius`` around the projected bead positions when they
are known, plus smoothed dark outliers (below median − k·σ, dilated by a bead radius) in any case;
(4) regions that are not ice — a carbon film, a grid-bar shadow: the darker of two regions of
clearly different transmission (:func:`non_ice_mask`, an Otsu split that counts only when the
distribution is bimodal) — are masked in each tilt, for the flat field (median over the tilts of
the ice pixels only, so a film edge moving with the tilt is not taken up) and for the mean;
(5) compact dense objects (:func:`dense_object_mask`: regions whose local mean, at the bead
scale up to 8× larger, lies more than ``dense_mask_sigma`` noise σ from the ice level; the cut is
symmetric, so noise leaves the mean unbiased) are masked, so specimen structure that absorbs more than the ice it displaces (ribosomes, dense
granules, contamination) does not read as extra ice thickness; (6) the mean of the remaining
pixels after dropping those further than ``clip_sigma`` robust σ from the median. The clipping is symmetric and wide, so Poisson skew leaves the mean unbiased
(the median of Poisson counts is not: it is an integer and sits ≈ +1/3 count above the mean).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import ndimage

from tiltflow.errors import InputError
from tiltflow.geometry import project, tomogram_centre
from tiltflow.io.mrc import nonfinite_error, release_pages
from tiltflow.stats import median
from tiltflow.threads import thread_map

F64 = NDArray[np.float64]

#: binned flat-field side (px) at most
FLAT_FIELD_BINNED_SIDE = 128


def robust_mean(values: ArrayLike, clip_sigma: float = 5.0) -> float:
    """Mean of ``values`` after dropping those beyond ``clip_sigma`` robust σ of the median.

    σ = 1.4826·MAD, or the standard deviation for low integer counts (MAD ≤ 1 count). Two
    passes (the second around the first clipped mean).
    """
    v = np.asarray(values, dtype=np.float64).reshape(-1)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return float("nan")
    centre = median(v)
    # very low, discrete counts (most pixels equal the median): MAD is 0 or coarse -> use std
    mad0 = 1.4826 * median(np.abs(v - centre))
    discrete = mad0 <= 1.0 and bool(np.all(v == np.round(v)))
    if discrete:
        centre = float(v.mean())
    for i in range(2):
        if discrete:
            sigma = float(np.std(v))
        else:  # the first pass is around the median: its MAD is mad0
            sigma = mad0 if i == 0 else 1.4826 * median(np.abs(v - centre))
        if sigma <= 0:
            sigma = float(np.std(v))
        if sigma <= 0:
            return centre
        keep = np.abs(v - centre) <= clip_sigma * sigma
        centre = float(v[keep].mean())
    return centre


def block_mean(img: NDArray, b: int) -> F64:
    """Mean over ``b × b`` blocks (the trailing rows/columns that do not fill a block are dropped).

    Sums of ``b`` adjacent columns are one matrix-vector product (BLAS, float32: 4-10× faster
    than a mean over reshaped axes, which numpy reduces with strided loops), then ``b`` rows are
    summed in float64.
    """
    h, w = img.shape
    hb, wb = h // b, w // b
    a = np.asarray(img[: hb * b, : wb * b], dtype=np.float32)
    if b == 1:
        return a.astype(np.float64)
    cols = a.reshape(hb * b, wb, b) @ np.ones(b, dtype=np.float32)  # (hb * b, wb)
    return cols.reshape(hb, b, wb).sum(axis=1, dtype=np.float64) * (1.0 / (b * b))


def flat_field_bin(h: int, w: int, max_side: int = FLAT_FIELD_BINNED_SIDE) -> int:
    """Bin factor of the flat field for ``h × w`` images (binned side at most ``max_side``)."""
    return max(1, int(np.ceil(max(h, w) / max_side)))


#: Otsu separation (between-class / total variance) above which a window is two regions (a
#: unimodal, Gaussian-like distribution gives 2/π ≈ 0.64, a clean two-level image ≈ 1; cellular
#: clutter over a film edge gives 0.7-0.8)
TWO_REGION_ETA = 0.7
#: the non-ice regions are found on the window smoothed by (window side / this), binned px
REGION_SMOOTH_DIVISOR = 24.0
#: least relative transmission step between the regions (carbon, grid bar vs ice)
TWO_REGION_STEP = 0.03
#: least fraction of the pixels in each of the two regions (a few bright outliers -- hot pixels,
#: X-ray spikes, smoothed -- are not "the ice" next to a dark rest)
TWO_REGION_MIN_FRACTION = 0.05


def otsu(values: F64, bins: int = 256) -> tuple[float, float]:
    """Otsu's threshold of ``values`` and its separation η = σ²_between / σ²_total."""
    v = np.asarray(values, dtype=np.float64).reshape(-1)
    v = v[np.isfinite(v)]
    if v.size < 16 or float(np.ptp(v)) <= 0:
        return float("nan"), 0.0
    hist, edges = np.histogram(v, bins=bins)
    p = hist / hist.sum()
    mids = 0.5 * (edges[1:] + edges[:-1])
    w0 = np.cumsum(p)
    m = np.cumsum(p * mids)
    mt = m[-1]
    with np.errstate(divide="ignore", invalid="ignore"):
        sb = (mt * w0 - m) ** 2 / (w0 * (1 - w0))
    sb = np.where(np.isfinite(sb), sb, 0.0)
    i = int(np.argmax(sb))
    total = float(np.var(v))
    return float(edges[i + 1]), float(sb[i] / total) if total > 0 else 0.0


def non_ice_mask(sm: F64, usable: NDArray[np.bool_] | None = None) -> NDArray[np.bool_]:
    """Pixels of a smoothed, flat-fielded image that are not ice: the darker of two regions of
    clearly different transmission (carbon film, grid-bar shadow), when the image has two.

    Ice is the brighter region (carbon and metal absorb). One Otsu split of the ``usable``
    pixels; it counts as two regions when their separation η exceeds :data:`TWO_REGION_ETA` and
    their mean levels differ by :data:`TWO_REGION_STEP` or more and each holds at least
    :data:`TWO_REGION_MIN_FRACTION` of the pixels; cellular texture and noise are unimodal and are
    left alone. Applied twice, so carbon and a grid bar are both found.
    """
    usable = np.ones(sm.shape, bool) if usable is None else usable.copy()
    out = np.zeros(sm.shape, bool)
    for _ in range(2):
        vals = sm[usable]
        if vals.size < 64:
            break
        # Otsu on the values clipped to their 0.5-99.5 % range: isolated extremes (hot pixels)
        # must not make a unimodal field look like two regions
        a, b = np.percentile(vals, [0.5, 99.5])
        thr, eta = otsu(np.clip(vals, a, b))
        if not np.isfinite(thr) or eta < TWO_REGION_ETA:
            break
        lo, hi = vals[vals <= thr], vals[vals > thr]
        if min(lo.size, hi.size) < TWO_REGION_MIN_FRACTION * vals.size:
            break
        if (hi.mean() - lo.mean()) < TWO_REGION_STEP * abs(hi.mean()):
            break
        dark = usable & (sm <= thr)
        out |= dark
        usable &= ~dark
    return out


#: the non-ice regions are found on the field block-averaged to about this many px a side
REGION_SIDE = 128


def _block_sum(x: NDArray, q: int) -> NDArray:
    """``x[:hq*q, :wq*q].reshape(hq, q, wq, q).sum(axis=(1, 3))`` (float64 for float input, int64
    for bool/uint8), with numpy's own summation order -- along each row of a block, then over the
    rows, in sequence, which is how numpy reduces fewer than 8 contiguous elements -- but from
    strided slices (numpy's multi-axis reduction over tiny blocks is ~5-10x slower). From 8 up
    numpy sums pairwise, and a single row or column of blocks it may sum as one run: its own
    reduction is used then."""
    h, w = x.shape
    hq, wq = h // q, w // q
    x = x[: hq * q, : wq * q]
    if x.dtype.kind in "bu":
        x = x.astype(np.int64)
    if q >= 8 or min(hq, wq) < 2:  # (a single block row/column: numpy may merge the axes)
        return x.reshape(hq, q, wq, q).sum(axis=(1, 3))
    cols = x[:, 0::q] + x[:, 1::q] if q > 1 else x.copy()
    for j in range(2, q):
        cols += x[:, j::q]
    out = cols[0::q] + cols[1::q] if q > 1 else cols
    for i in range(2, q):
        out += cols[i::q]
    return out


def _non_ice_regions(
    img: F64, usable: NDArray[np.bool_], sigma: float, margin: float
) -> NDArray[np.bool_]:
    """:func:`non_ice_mask` of the field ``img`` smoothed by ``sigma`` and dilated by ``margin``
    (both in ``img`` px), computed on a copy block-averaged to about :data:`REGION_SIDE` px a
    side (the regions are large), then expanded back to ``img``'s grid."""
    hb, wb = img.shape
    q = max(1, min(hb, wb) // REGION_SIDE)
    if q > 1:
        coarse = _block_sum(img, q) / (q * q)
        use = 2 * _block_sum(usable.view(np.uint8), q) > q * q  # more than half usable
    else:
        coarse, use = img, usable
    other = non_ice_mask(_gauss(coarse, sigma / q), use)
    if not other.any():
        return np.zeros(img.shape, bool)
    other = ndimage.binary_dilation(other, structure=_disc(max(1.0, margin / q)))
    if q > 1:
        full = np.zeros(img.shape, bool)
        up = np.repeat(np.repeat(other, q, axis=0), q, axis=1)
        full[: up.shape[0], : up.shape[1]] = up
        # the trailing rows/columns that did not fill a block take their neighbour's value
        full[up.shape[0] :, : up.shape[1]] = up[-1:, :]
        full[:, up.shape[1] :] = full[:, up.shape[1] - 1 : up.shape[1]]
        return full
    return other


def flat_field_from_binned(binned: F64, exclude: NDArray[np.bool_] | None = None) -> F64:
    """Flat field of mean 1 from ``(n, hb, wb)`` binned frames: median over tilts, smoothed.

    ``exclude`` (n, hb, wb) marks pixels that are not ice (carbon, grid bar) in each frame; they
    do not enter the median, so the flat field cannot take up specimen structure that moves
    with the tilt. Pixels excluded in every frame get 1.
    """
    n = binned.shape[0]
    if exclude is None:
        exclude = np.zeros(binned.shape, bool)
    good = ~exclude
    sums = np.where(good, binned, 0.0).reshape(n, -1).sum(axis=1)
    cnt = good.reshape(n, -1).sum(axis=1)
    means = sums / np.maximum(cnt, 1)
    ok = (means > 0) & (cnt > 0)
    if ok.sum() < 3:
        return np.ones(binned.shape[1:])
    norm = np.where(good[ok], binned[ok] / means[ok, None, None], np.nan)
    with np.errstate(all="ignore"):
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            ff = np.nanmedian(norm, axis=0)
    ff = np.where(np.isfinite(ff), ff, 1.0)
    ff = ndimage.gaussian_filter(ff, 1.0, mode="nearest")
    return ff / ff.mean()


def flat_field(stack: NDArray, max_side: int = FLAT_FIELD_BINNED_SIDE) -> tuple[F64, int]:
    """Smooth flat field common to all tilts, binned: (hb, wb) array of mean 1 and the bin factor."""
    n, h, w = stack.shape
    b = flat_field_bin(h, w, max_side)
    binned = np.stack([block_mean(stack[f], b) for f in range(n)])
    return flat_field_from_binned(binned), b


def measurement_binning(bead_radius_px: float, hh: int, ww: int) -> int:
    """Bin factor of the intensity statistics: bead radius ≈ 3 binned px, window ≥ 64 binned px.

    The statistic is a mean, which block averaging preserves exactly; binning only coarsens the
    bead and dark-region masks, which stay ≥ 3 px across. It makes the cost of the masks and of
    the robust mean independent of the pixel size (linear in pixels × tilts overall).
    """
    b = max(1, int(np.floor(bead_radius_px / 3.0)))
    b = min(b, max(1, min(hh, ww) // 64))
    return b


def _flat_at(ff: F64, b: int, y0: float, x0: float, hh: int, ww: int, step: int = 1) -> F64:
    """Flat field bilinearly interpolated at the centres of ``hh × ww`` (binned by ``step``)
    pixels of a window whose first full-resolution pixel is (x0, y0)."""
    off = (step - 1) / 2.0 - (b - 1) / 2.0
    yy = (y0 + step * np.arange(hh, dtype=np.float64) + off) / b
    xx = (x0 + step * np.arange(ww, dtype=np.float64) + off) / b
    # bilinear interpolation on a regular grid is separable: along y (rows of ff), then along x
    # -- what map_coordinates(order=1, mode="nearest") gives (coordinates clamped to the grid)
    iy, ty = _linear_taps(yy, ff.shape[0])
    ix, tx = _linear_taps(xx, ff.shape[1])
    rows = ff[iy] * (1.0 - ty)[:, None] + ff[iy + (ff.shape[0] > 1)] * ty[:, None]
    return rows[:, ix] * (1.0 - tx) + rows[:, ix + (ff.shape[1] > 1)] * tx


def _linear_taps(c: F64, n: int) -> tuple[NDArray[np.intp], F64]:
    """Lower grid index and weight of the upper one for linear interpolation at ``c`` on a grid of
    ``n`` points, ``c`` clamped to [0, n - 1] (the edge value is repeated beyond it)."""
    c = np.clip(c, 0.0, n - 1.0)
    i = np.minimum(np.floor(c).astype(np.intp), max(n - 2, 0))
    return i, c - i


#: local-mean scales of :func:`dense_object_mask`, × the bead radius (Gaussian σ = half of it)
DENSE_SCALES: tuple[float, ...] = (1.0, 2.0, 4.0, 8.0)
#: ... used while the Gaussian σ is at most the window side / this
DENSE_MAX_SCALE_DIVISOR = 16.0


def _gauss(img: F64, sigma: float) -> F64:
    """``ndimage.gaussian_filter(img, sigma, mode="nearest")`` of a 2-D float64 image, bit for bit:
    the same 1-D passes (rows along axis 0 first, then axis 1), each run along contiguous lines
    -- the axis-0 pass on a transposed copy, in place -- which ndimage does ~2x faster than along
    strided ones."""
    t = np.ascontiguousarray(img.T, dtype=np.float64)
    ndimage.gaussian_filter1d(t, sigma, axis=1, mode="nearest", output=t)
    out = np.ascontiguousarray(t.T)
    ndimage.gaussian_filter1d(out, sigma, axis=1, mode="nearest", output=out)
    return out


def _masked_smooth(img: F64, keep: NDArray[np.bool_], sigma: float) -> F64:
    """Gaussian local mean of ``img`` over the ``keep`` pixels only (NaN where they weigh < 0.2).

    The Gaussians of the weights (``keep``) and of the kept values are :func:`_gauss`'s passes on
    one stacked array (the same numbers as two ``gaussian_filter`` calls)."""
    h, w = img.shape
    t = np.empty((2, w, h))
    t[0] = keep.T
    t[1] = np.where(keep.T, img.T, 0.0)
    ndimage.gaussian_filter1d(t, sigma, axis=2, mode="nearest", output=t)  # along axis 0 of img
    sm = np.ascontiguousarray(t.transpose(0, 2, 1))
    ndimage.gaussian_filter1d(sm, sigma, axis=2, mode="nearest", output=sm)
    wgt, val = sm[0], sm[1]
    return np.divide(val, wgt, out=np.full(img.shape, np.nan), where=wgt > 0.2)


def dense_object_mask(
    img: F64, keep: NDArray[np.bool_], radius: float, k_sigma: float
) -> NDArray[np.bool_]:
    """Pixels of compact objects darker than the ice (binned window ``img``, usable ``keep``).

    At each scale of :data:`DENSE_SCALES` (× ``radius``, the bead radius in ``img`` px), from the
    smallest: the local mean over the kept pixels, the ice level ``c`` = its median and the noise
    σ from the *bright* side only (1.4826 × the median excess above ``c``: dense objects only
    darken, so their tail cannot inflate it); pixels further than ``k_sigma·σ`` from ``c`` are
    masked, dilated by the scale, and leave the kept set before the next scale (scales above
    1/:data:`DENSE_MAX_SCALE_DIVISOR` of the window side are skipped). The cut is symmetric, so
    noise (and symmetric structure: a thickness ramp, phase-contrast texture, which 3σ hardly
    reaches) loses as much above the ice level as below it and the mean stays unbiased, while the
    one-sided dark tail of objects that absorb more than the ice they displace is removed.
    """
    out = np.zeros(img.shape, bool)
    if k_sigma <= 0:
        return out
    h, w = img.shape
    kk = keep.copy()
    for f in DENSE_SCALES:
        s = max(1.0, 0.5 * f * radius)
        if s > min(h, w) / DENSE_MAX_SCALE_DIVISOR:
            break  # too few independent local means: one noise dip would take a large area
        # large scales on a block-averaged copy (blocks of ≤ s/2 px): same local means, cheaper
        q = max(1, min(int(s // 2), h // 16, w // 16))
        hq, wq = h // q, w // q
        if q > 1:
            kq = _block_sum(kk.view(np.uint8), q)
            iq = _block_sum(np.where(kk, img, 0.0), q)
            use = kq > 0
            img_q = np.where(use, iq / np.maximum(kq, 1), 0.0)
        else:
            use, img_q = kk, img
        sm = _masked_smooth(img_q, use, s / q)
        ok = use & np.isfinite(sm)
        vals = sm[ok]
        if vals.size < 64:
            break
        c = median(vals)
        up = vals[vals > c] - c
        sig = 1.4826 * median(up) if up.size else 0.0
        if sig <= 0:
            continue
        # the bright side at the same distance too: noise loses as much above as below the
        # ice level, so the mean stays unbiased at low counts
        dark = ok & (np.abs(sm - c) > k_sigma * sig)
        if not dark.any():
            continue
        size = 2 * int(np.ceil(s / q)) + 1
        grown_q = _grow_square(dark, size)
        if q > 1:
            grown = np.zeros(img.shape, bool)
            up_q = np.repeat(np.repeat(grown_q, q, axis=0), q, axis=1)
            grown[: hq * q, : wq * q] = up_q
        else:
            grown = grown_q
        out |= grown & keep
        kk &= ~grown
    return out


def _grow_square(mask: NDArray[np.bool_], size: int) -> NDArray[np.bool_]:
    """``ndimage.maximum_filter(mask, size) > 0`` for an odd ``size``: the OR over a centred
    ``size × size`` square (pixels outside the image count as False, which for a maximum is what
    the filter's reflecting edge gives), as a running OR per axis by doubling shifts."""
    r = size // 2
    if r <= 0:
        return mask.copy()
    h, w = mask.shape
    a = np.zeros((h + 2 * r, w), bool)
    a[r : r + h] = mask
    n, span = a.shape[0], 1  # a[i] = OR of rows i .. i + span - 1 of the padded mask
    while 2 * span <= size:
        a[: n - span] |= a[span:]
        span *= 2
    if span < size:
        a[: n - (size - span)] |= a[size - span :]
    b = np.zeros((h, w + 2 * r), bool)
    b[:, r : r + w] = a[:h]
    n, span = b.shape[1], 1
    while 2 * span <= size:
        b[:, : n - span] |= b[:, span:]
        span *= 2
    if span < size:
        b[:, : n - (size - span)] |= b[:, size - span :]
    return b[:, :w]


def _disc(radius: float) -> NDArray[np.bool_]:
    r = int(np.ceil(radius))
    yy, xx = np.mgrid[-r : r + 1, -r : r + 1]
    return (xx * xx + yy * yy) <= radius * radius


@dataclass(frozen=True)
class TiltIntensities:
    """Per-tilt measurements (arrays of length n_tilts)."""

    mean: F64  #: robust mean counts per pixel of the bead-free central field (flat-fielded)
    raw_mean: F64  #: plain mean of the raw central field
    frame_mean: F64  #: plain mean of the whole raw frame
    raw_std: F64  #: standard deviation of the raw central field
    negative_fraction: F64  #: fraction of negative raw pixels in the central field
    n_pixels: NDArray[np.int64]  #: full-resolution pixels that entered the mean
    window: NDArray[np.int64]  #: (n, 4) x0, y0, width, height of the field
    masked_fraction: F64 | None = None  #: fraction of the field excluded (beads, dark regions)
    binning: int = 1  #: bin factor of the statistics


def measure_intensities(
    stack: NDArray,
    proj: ArrayLike,
    size: tuple[int, int, int],
    bead_radius_px: float,
    central_fraction: float = 0.5,
    clip_sigma: float = 5.0,
    bead_mask_factor: float = 2.0,
    dark_mask_sigma: float = 5.0,
    beads_world: ArrayLike | None = None,
    use_flat_field: bool = True,
    binning: int | None = None,
    source: str | os.PathLike[str] | None = None,
    dense_mask_sigma: float = 3.0,
    threads: int = 1,
) -> TiltIntensities:
    """Measure every tilt of ``stack`` (n, h, w); see the module docstring for the method.

    The stack is read once, a tilt at a time (a memory map stays a memory map): each frame gives
    its binned copy for the flat field, its mean, and its central window binned by ``binning``
    (default :func:`measurement_binning`); everything else works on those small arrays. A frame
    holding NaN or inf raises :class:`~tiltflow.errors.InputError` naming ``source`` (the first
    such frame, whatever ``threads``). With ``threads`` > 1 the frames are read and measured in
    parallel (numpy, BLAS and ndimage release the GIL); every frame's numbers are the same.
    """
    if getattr(stack, "ndim", 0) != 3:
        stack = np.asarray(stack)
    if stack.ndim != 3:
        raise ValueError(f"stack must be (n, h, w), got shape {stack.shape}")
    p = np.asarray(proj, dtype=np.float64).reshape(-1, 4, 4)
    n, h, w = stack.shape
    if p.shape[0] != n:
        raise ValueError(f"{p.shape[0]} projection matrices for {n} images")
    ww = max(8, min(w, int(round(central_fraction * w))))
    hh = max(8, min(h, int(round(central_fraction * h))))
    bm = binning or measurement_binning(bead_radius_px, hh, ww)
    hb, wb = hh // bm, ww // bm
    centres = project(p, tomogram_centre(size))[:, 0, :]  # (n, 2) x, y
    beads2d = None
    if beads_world is not None and np.asarray(beads_world).size:
        beads2d = project(p, np.asarray(beads_world, dtype=np.float64).reshape(-1, 3))  # (n, m, 2)
    mask_r = bead_mask_factor * bead_radius_px / bm  # binned px
    smooth_sigma = max(1.0, 0.5 * bead_radius_px / bm)
    dilate = _disc(max(1.0, bead_radius_px / bm))
    # carbon / grid bar are large regions: found on the window smoothed at a scale that blurs
    # cellular clutter (objects of tens of nm) but keeps a straight edge
    region_sigma = max(2 * smooth_sigma, min(hb, wb) / REGION_SMOOTH_DIVISOR)
    bff = flat_field_bin(h, w)

    raw_mean = np.empty(n)
    frame_mean = np.empty(n)
    raw_std = np.empty(n)
    neg = np.empty(n)
    windows = np.empty((n, 4), dtype=np.int64)
    win_b = np.empty((n, hb, wb))
    ff_binned = np.empty((n, h // bff, w // bff)) if use_flat_field else None
    # ---- the one pass over the stack
    def read_frame(f: int) -> None:
        frame = np.asarray(stack[f], dtype=np.float32)  # a native float32 map stays a map
        x0 = int(np.clip(np.round(centres[f, 0] - (ww - 1) / 2.0), 0, w - ww))
        y0 = int(np.clip(np.round(centres[f, 1] - (hh - 1) / 2.0), 0, h - hh))
        windows[f] = (x0, y0, ww, hh)
        fb = block_mean(frame, bff)  # the frame binned for the flat field, and its sum
        total = float(fb.sum()) * bff * bff
        hc, wc = fb.shape[0] * bff, fb.shape[1] * bff
        if hc < h:  # the rows and columns binning drops
            total += float(frame[hc:].sum(dtype=np.float64))
        if wc < w:
            total += float(frame[:hc, wc:].sum(dtype=np.float64))
        frame_mean[f] = total / (h * w)
        if not np.isfinite(frame_mean[f]):
            raise nonfinite_error(source, frame, f, n)
        if ff_binned is not None:
            ff_binned[f] = fb
        raw = frame[y0 : y0 + hh, x0 : x0 + ww]
        win_b[f] = block_mean(raw, bm)
        # plausibility of counts (check_counts): mean, spread and negative pixels, on the
        # binned window and every 4th row of the raw one
        raw_mean[f] = float(win_b[f].mean())
        rows = raw[::4]
        raw_std[f] = float(rows.std(dtype=np.float64))
        neg[f] = float(np.count_nonzero(rows < 0)) / rows.size
        del frame, raw, rows
        release_pages(stack, f, f + 1)  # resident memory stays one frame per thread

    thread_map(read_frame, range(n), threads)  # the first bad frame (in order) raises
    ff = None
    if ff_binned is not None:
        sm_ff = ndimage.gaussian_filter(ff_binned, (0, 1.0, 1.0), mode="nearest")
        excl = np.stack([non_ice_mask(sm_ff[f]) for f in range(n)])
        ff = flat_field_from_binned(ff_binned, excl)

    out_mean = np.empty(n)
    npx = np.empty(n, dtype=np.int64)
    masked = np.empty(n)
    ys, xs = np.mgrid[0:hb, 0:wb]

    def measure_frame(f: int) -> None:
        x0, y0 = int(windows[f, 0]), int(windows[f, 1])
        img = win_b[f] / _flat_at(ff, bff, y0, x0, hb, wb, bm) if ff is not None else win_b[f]
        keep = np.ones((hb, wb), dtype=bool)
        if beads2d is not None:
            # bead centres in binned window coordinates
            lx = (beads2d[f, :, 0] - x0 - (bm - 1) / 2.0) / bm
            ly = (beads2d[f, :, 1] - y0 - (bm - 1) / 2.0) / bm
            near = (lx > -mask_r) & (lx < wb + mask_r) & (ly > -mask_r) & (ly < hb + mask_r)
            for bx, by in zip(lx[near], ly[near], strict=True):
                xa, xb = max(0, int(bx - mask_r)), min(wb, int(bx + mask_r) + 2)
                ya, yb = max(0, int(by - mask_r)), min(hb, int(by + mask_r) + 2)
                sub = (xs[ya:yb, xa:xb] - bx) ** 2 + (ys[ya:yb, xa:xb] - by) ** 2 <= mask_r**2
                keep[ya:yb, xa:xb] &= ~sub
        sm = _gauss(img, smooth_sigma)
        # carbon film, grid-bar shadow: the darker of two regions, with a margin of a bead
        # radius plus the smoothing for the transition
        keep &= ~_non_ice_regions(img, keep, region_sigma, 2 * smooth_sigma + 1)
        vals = sm[keep]
        if vals.size:
            med = median(vals)
            sig = 1.4826 * median(np.abs(vals - med))
            if sig > 0:
                dark = sm < med - dark_mask_sigma * sig
                if dark.any():
                    # dilation by a square of the bead radius: separable, so cheap
                    size = dilate.shape[0]
                    grown = _grow_square(dark, size)
                    keep &= ~grown
        # compact objects denser than ice at larger scales (0 = off)
        keep &= ~dense_object_mask(img, keep, bead_radius_px / bm, dense_mask_sigma)
        nkeep = int(keep.sum())
        npx[f] = nkeep * bm * bm
        masked[f] = 1.0 - nkeep / keep.size
        out_mean[f] = robust_mean(img[keep], clip_sigma) if nkeep else np.nan

    thread_map(measure_frame, range(n), threads)
    return TiltIntensities(out_mean, raw_mean, frame_mean, raw_std, neg, npx, windows, masked, bm)


def check_counts(meas: TiltIntensities, stack_name: str) -> None:
    """Raise an :class:`InputError` naming the stack when its values cannot be electron counts.

    Criteria: a tilt with mean ≤ 0; more than 1 % negative pixels (median over tilts); a mean
    below 0.1 standard deviations (mean near zero, e.g. a normalised stack).
    """
    hint = (
        "the ice fit needs images in counts (or counts times a constant gain); this stack looks "
        "normalised (e.g. by newstack -float or a denoiser). Use the unnormalised stack, or set "
        "ice fallback to 'cos' (CLI --fallback cos) to write cos(tilt) scale factors instead"
    )
    bad = np.flatnonzero(~(meas.raw_mean > 0))
    if bad.size:
        raise InputError(
            stack_name,
            f"{bad.size} tilt image(s) have a mean intensity <= 0 (first: frame {int(bad[0])}, "
            f"mean {meas.raw_mean[bad[0]]:.4g}); {hint}",
        )
    negf = float(np.median(meas.negative_fraction))
    if negf > 0.01:
        raise InputError(stack_name, f"{100 * negf:.1f} % of the pixels are negative; {hint}")
    ratio = meas.raw_mean / np.maximum(meas.raw_std, 1e-300)
    if float(np.median(ratio)) < 0.1:
        raise InputError(
            stack_name,
            f"mean intensity is near zero relative to its spread (mean/std = {np.median(ratio):.3g}); {hint}",
        )
