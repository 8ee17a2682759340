"""Tilt images for the QC figures: read one frame, bin by block means (never decimate), band-pass
so that gold beads stand out, crops around beads, and a scale bar length."""

from __future__ import annotations

import math
import os

import numpy as np


def read_frame(path: str | os.PathLike[str], index: int) -> np.ndarray:
    """One frame of an MRC stack (memory-mapped read) as float32."""
    import mrcfile

    with mrcfile.mmap(str(path), mode="r", permissive=True) as mrc:
        data = mrc.data
        frame = data[index] if data.ndim == 3 else data
        return np.asarray(frame, dtype=np.float32)


def bin_factor(shape: tuple[int, ...], max_side: int) -> int:
    return max(1, int(math.ceil(max(shape) / max_side)))


def block_mean(img: np.ndarray, b: int) -> np.ndarray:
    """Mean over ``b × b`` blocks (trailing rows/columns that do not fill a block dropped)."""
    h, w = img.shape
    a = np.asarray(img[: (h // b) * b, : (w // b) * b], dtype=np.float32)
    if b == 1:
        return a
    return a.reshape(h // b, b, w // b, b).mean(axis=(1, 3), dtype=np.float32)


def band_pass(img: np.ndarray, bead_radius_px: float) -> np.ndarray:
    """Difference of Gaussians tuned to the bead size (px of ``img``): keeps blobs about a bead
    across and removes the noise finer than that and the background (ice, carbon) coarser."""
    from scipy.ndimage import gaussian_filter

    r = max(float(bead_radius_px), 1.0)
    a = np.asarray(img, dtype=np.float32)
    return gaussian_filter(a, max(0.5, 0.3 * r), mode="nearest") - gaussian_filter(
        a, 3.0 * r, mode="nearest"
    )


def display_range(img: np.ndarray, lo: float = 0.5, hi: float = 99.5) -> tuple[float, float]:
    finite = img[np.isfinite(img)]
    if not finite.size:
        return 0.0, 1.0
    a, b = np.percentile(finite, [lo, hi])
    return (float(a), float(b)) if b > a else (float(a) - 1.0, float(a) + 1.0)


def crop(img: np.ndarray, x: float, y: float, half: int) -> np.ndarray:
    """``(2 half + 1)²`` window centred on pixel (round(x), round(y)); outside the image = NaN."""
    h, w = img.shape
    out = np.full((2 * half + 1, 2 * half + 1), np.nan, dtype=np.float32)
    cx, cy = int(round(x)), int(round(y))
    x0, x1 = max(cx - half, 0), min(cx + half + 1, w)
    y0, y1 = max(cy - half, 0), min(cy + half + 1, h)
    if x0 < x1 and y0 < y1:
        out[y0 - (cy - half) : y1 - (cy - half), x0 - (cx - half) : x1 - (cx - half)] = img[
            y0:y1, x0:x1
        ]
    return out


def nice_length(target: float) -> float:
    """The 1-2-5 × 10^k value nearest below ``target`` (for scale bars and arrow keys)."""
    if not math.isfinite(target) or target <= 0:
        return 1.0
    k = math.floor(math.log10(target))
    for m in (5, 2, 1):
        if m * 10**k <= target:
            return float(m * 10**k)
    return float(10**k)
