"""Robust per-tilt mean intensity of the bead-free central field of each tilt image.

Steps per tilt: (1) a flat field common to all tilts (detector/illumination pattern, fixed in
detector coordinates while the specimen moves) is estimated as the per-pixel median over tilts of
the binned, mean-normalised images and divided out; (2) the field is a window of
``central_fraction`` of the image width and height centred on the projection of the tomogram
centre (kept inside the image), so every tilt samples the same part of the slab; (3) fiducials are
masked: discs of ``bead_mask_factor × bead radius`` around the projected bead positions when they
are known, plus smoothed dark outliers (below median − k·σ, dilated by a bead radius) in any case;
(4) the mean of the remaining pixels after dropping those further than ``clip_sigma`` robust σ
from the median. The clipping is symmetric and wide, so Poisson skew leaves the mean unbiased
(the median of Poisson counts is not: it is an integer and sits ≈ +1/3 count above the mean).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import ndimage

from tiltflow.errors import InputError
from tiltflow.geometry import project, tomogram_centre

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
    centre = float(np.median(v))
    # very low, discrete counts (most pixels equal the median): MAD is 0 or coarse -> use std
    discrete = 1.4826 * float(np.median(np.abs(v - centre))) <= 1.0 and np.all(v == np.round(v))
    if discrete:
        centre = float(v.mean())
    for _ in range(2):
        sigma = float(np.std(v)) if discrete else 1.4826 * float(np.median(np.abs(v - centre)))
        if sigma <= 0:
            sigma = float(np.std(v))
        if sigma <= 0:
            return centre
        keep = np.abs(v - centre) <= clip_sigma * sigma
        centre = float(v[keep].mean())
    return centre


def flat_field(stack: NDArray, max_side: int = FLAT_FIELD_BINNED_SIDE) -> tuple[F64, int]:
    """Smooth flat field common to all tilts, binned: (hb, wb) array of mean 1 and the bin factor."""
    n, h, w = stack.shape
    b = max(1, int(np.ceil(max(h, w) / max_side)))
    hb, wb = h // b, w // b
    binned = np.empty((n, hb, wb))
    for f in range(n):
        img = np.asarray(stack[f, : hb * b, : wb * b], dtype=np.float64)
        binned[f] = img.reshape(hb, b, wb, b).mean(axis=(1, 3))
    means = binned.reshape(n, -1).mean(axis=1)
    ok = means > 0
    if ok.sum() < 3:
        return np.ones((hb, wb)), b
    ff = np.median(binned[ok] / means[ok, None, None], axis=0)
    ff = ndimage.gaussian_filter(ff, 1.0, mode="nearest")
    ff /= ff.mean()
    return ff, b


def _flat_at(ff: F64, b: int, y0: int, x0: int, hh: int, ww: int) -> F64:
    """Flat field bilinearly interpolated at full-resolution pixels of a window."""
    yy = (np.arange(y0, y0 + hh, dtype=np.float64) - (b - 1) / 2.0) / b
    xx = (np.arange(x0, x0 + ww, dtype=np.float64) - (b - 1) / 2.0) / b
    gy, gx = np.meshgrid(yy, xx, indexing="ij")
    return ndimage.map_coordinates(ff, [gy, gx], order=1, mode="nearest")


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
    n_pixels: NDArray[np.int64]  #: pixels that entered the mean
    window: NDArray[np.int64]  #: (n, 4) x0, y0, width, height of the field


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
) -> TiltIntensities:
    """Measure every tilt of ``stack`` (n, h, w); see the module docstring for the method."""
    stack = np.asarray(stack)
    if stack.ndim != 3:
        raise ValueError(f"stack must be (n, h, w), got shape {stack.shape}")
    p = np.asarray(proj, dtype=np.float64).reshape(-1, 4, 4)
    n, h, w = stack.shape
    if p.shape[0] != n:
        raise ValueError(f"{p.shape[0]} projection matrices for {n} images")
    ww = max(8, min(w, int(round(central_fraction * w))))
    hh = max(8, min(h, int(round(central_fraction * h))))
    centres = project(p, tomogram_centre(size))[:, 0, :]  # (n, 2) x, y
    beads2d = None
    if beads_world is not None and np.asarray(beads_world).size:
        beads2d = project(p, np.asarray(beads_world, dtype=np.float64).reshape(-1, 3))  # (n, m, 2)
    mask_r = bead_mask_factor * bead_radius_px
    smooth_sigma = max(1.0, 0.5 * bead_radius_px)
    dilate = _disc(max(1.0, bead_radius_px))
    ff, b = flat_field(stack) if use_flat_field else (None, 1)

    out_mean = np.empty(n)
    raw_mean = np.empty(n)
    frame_mean = np.array([float(np.mean(stack[f], dtype=np.float64)) for f in range(n)])
    raw_std = np.empty(n)
    neg = np.empty(n)
    npx = np.empty(n, dtype=np.int64)
    windows = np.empty((n, 4), dtype=np.int64)
    ys, xs = np.mgrid[0:hh, 0:ww]
    for f in range(n):
        x0 = int(np.clip(np.round(centres[f, 0] - (ww - 1) / 2.0), 0, w - ww))
        y0 = int(np.clip(np.round(centres[f, 1] - (hh - 1) / 2.0), 0, h - hh))
        windows[f] = (x0, y0, ww, hh)
        raw = np.asarray(stack[f, y0 : y0 + hh, x0 : x0 + ww], dtype=np.float64)
        raw_mean[f] = raw.mean()
        raw_std[f] = raw.std()
        neg[f] = float(np.mean(raw < 0))
        img = raw / _flat_at(ff, b, y0, x0, hh, ww) if ff is not None else raw
        keep = np.ones((hh, ww), dtype=bool)
        if beads2d is not None:
            for bx, by in beads2d[f]:
                lx, ly = bx - x0, by - y0
                if -mask_r <= lx < ww + mask_r and -mask_r <= ly < hh + mask_r:
                    xa, xb = max(0, int(lx - mask_r)), min(ww, int(lx + mask_r) + 2)
                    ya, yb = max(0, int(ly - mask_r)), min(hh, int(ly + mask_r) + 2)
                    sub = (xs[ya:yb, xa:xb] - lx) ** 2 + (ys[ya:yb, xa:xb] - ly) ** 2 <= mask_r**2
                    keep[ya:yb, xa:xb] &= ~sub
        sm = ndimage.gaussian_filter(img, smooth_sigma, mode="nearest")
        vals = sm[keep]
        if vals.size:
            med = float(np.median(vals))
            sig = 1.4826 * float(np.median(np.abs(vals - med)))
            if sig > 0:
                dark = sm < med - dark_mask_sigma * sig
                if dark.any():
                    keep &= ~ndimage.binary_dilation(dark, structure=dilate)
        npx[f] = int(keep.sum())
        out_mean[f] = robust_mean(img[keep], clip_sigma) if npx[f] else np.nan
    return TiltIntensities(out_mean, raw_mean, frame_mean, raw_std, neg, npx, windows)


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
