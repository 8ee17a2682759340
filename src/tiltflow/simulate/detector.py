"""Detector and stage artefacts: drift blur (before the noise), hot pixels and X-ray spikes
(after it)."""

from __future__ import annotations

import numpy as np
import scipy.fft as sfft
from numpy.typing import NDArray

F64 = NDArray[np.float64]


def motion_blur(image: F64, length_px: float, angle_deg: float) -> F64:
    """``image`` blurred by a uniform linear motion of ``length_px`` at ``angle_deg`` (from
    image x towards y); edges are padded by reflection so nothing wraps around."""
    if length_px <= 0:
        return image
    h, w = image.shape
    pad = int(np.ceil(length_px)) + 2
    big = np.pad(image, pad, mode="reflect")
    hh, ww = big.shape
    ky = np.fft.fftfreq(hh)[:, None]
    kx = np.fft.rfftfreq(ww)[None, :]
    t = np.deg2rad(angle_deg)
    kernel = np.sinc(length_px * (kx * np.cos(t) + ky * np.sin(t)))
    out = sfft.irfft2(sfft.rfft2(big, workers=1) * kernel, s=(hh, ww), workers=1)
    return np.asarray(out[pad : pad + h, pad : pad + w], dtype=np.float64)


def hot_pixel_layout(
    n: int, shape: tuple[int, int], gain: float, rng: np.random.Generator
) -> tuple[NDArray[np.int64], F64]:
    """``n`` distinct detector pixels (x, y) and their gains (× the view's mean counts)."""
    h, w = shape
    flat = rng.choice(h * w, size=min(n, h * w), replace=False)
    xy = np.column_stack([flat % w, flat // w]).astype(np.int64)
    gains = np.asarray(rng.uniform(0.5, 2.0, xy.shape[0]), dtype=np.float64) * gain
    return xy, gains


def xray_layout(
    n_views: int, per_view: float, shape: tuple[int, int], gain: float, rng: np.random.Generator
) -> tuple[NDArray[np.int64], F64]:
    """X-ray spikes: rows (view, x, y) of every hit pixel (a spike covers 1-3 neighbouring px)
    and their gains (× the view's mean counts)."""
    h, w = shape
    rows: list[tuple[int, int, int]] = []
    gains: list[float] = []
    for f in range(n_views):
        for _ in range(int(rng.poisson(per_view))):
            x, y = int(rng.integers(0, w)), int(rng.integers(0, h))
            g = gain * float(rng.uniform(0.5, 2.0))
            n_px = int(rng.integers(1, 4))
            dirs = [(0, 0), (1, 0), (0, 1), (-1, 0), (0, -1)]
            pick = [dirs[0]] + [dirs[i] for i in rng.permutation(4)[: n_px - 1] + 1]
            for k, (dx, dy) in enumerate(pick):
                xx, yy = x + dx, y + dy
                if 0 <= xx < w and 0 <= yy < h and (f, xx, yy) not in rows:
                    rows.append((f, xx, yy))
                    gains.append(g * (1.0 if k == 0 else 0.4))
    arr = np.asarray(rows, dtype=np.int64).reshape(-1, 3)
    return arr, np.asarray(gains, dtype=np.float64)


def apply_spikes(image: np.ndarray, xy: NDArray[np.int64], gains: F64, level: float) -> None:
    """In place: add ``gain × level`` counts to the pixels ``xy`` (k, 2) (x, y)."""
    if xy.shape[0] == 0:
        return
    x, y = xy[:, 0], xy[:, 1]
    image[y, x] = image[y, x] + gains * level
