"""Local defocus of each strip (1D search) and the robust regression of defocus on depth.

Strip fit: the ring modulation ``r(x)`` of a strip (:func:`tiltflow.hand.spectra.ring_modulation`)
is correlated with the model ``m(x; δ) = −cos(2π (x + λ δ k²(x)) + 2 φ_ac)`` (the power of the
CTF ``sin²(χ + φ_ac)`` with the defocus changed by δ from the imported one, minus its mean) on a
grid of δ symmetric around 0; the best δ is refined by a parabola through the three best grid
points. Amplitude, noise and the standard error of δ come from the linearised least squares of
``r ≈ a m(δ)`` at the optimum.

Slope fit: ``Δdefocus / px = slope · depth + intercept_tilt`` over all strips of all tilts,
weighted by the strips' standard errors, Huber-reweighted (IRLS, scale from the MAD), with one
intercept per tilt (so errors of the imported defocus do not bias the slope). RELION adds
``hand · px · Δdepth`` to the defocus, so the slope is the hand (±1).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

F64 = NDArray[np.float64]
I64 = NDArray[np.int64]

#: Huber threshold (robust sigmas)
HUBER_C = 1.345


def search_grid(half_range_A: float, k_hi: float, wavelength: float) -> F64:
    """Symmetric grid of defocus offsets (Å): steps of 1/12 ring at the band's top frequency."""
    step = 1.0 / (12.0 * wavelength * k_hi * k_hi)
    n = max(int(np.ceil(half_range_A / step)), 2)
    return np.asarray(np.arange(-n, n + 1) * step, dtype=np.float64)


@dataclass(frozen=True)
class StripFits:
    """Per strip: defocus offset δ (Å) from the imported defocus, its standard error (Å),
    the ring amplitude's significance ``z`` and whether the optimum is at the search edge."""

    delta_A: F64
    se_A: F64
    z: F64
    amplitude: F64
    at_edge: NDArray[np.bool_]


def _model(x: F64, k2: F64, deltas: F64, wavelength: float, phi_ac: float) -> F64:
    phase = 2.0 * np.pi * (x[None, :] + wavelength * deltas[:, None] * k2[None, :]) + 2.0 * phi_ac
    return np.asarray(-np.cos(phase), dtype=np.float64)


def fit_strips(
    r: ArrayLike, x: ArrayLike, k2: ArrayLike, deltas: ArrayLike, wavelength: float, phi_ac: float
) -> StripFits:
    """Fit δ of every strip: ``r`` (n_strips, n_bins) ring modulation on bins ``x`` with mean |k|² ``k2``."""
    rr = np.asarray(r, dtype=np.float64)
    if rr.ndim == 1:
        rr = rr[None]
    xx = np.asarray(x, dtype=np.float64)
    kk = np.asarray(k2, dtype=np.float64)
    dd = np.asarray(deltas, dtype=np.float64)
    ns = rr.shape[0]
    nan = np.full(ns, np.nan)
    good = np.all(np.isfinite(rr), axis=0) & np.isfinite(kk)
    if good.sum() < 8 or dd.size < 3:
        return StripFits(nan, nan.copy(), nan.copy(), nan.copy(), np.zeros(ns, dtype=bool))
    rr, xx, kk = rr[:, good], xx[good], kk[good]
    rr = rr - rr.mean(axis=1, keepdims=True)
    m = _model(xx, kk, dd, wavelength, phi_ac)  # (n_delta, n_bins)
    m -= m.mean(axis=1, keepdims=True)
    norms = np.sqrt(np.sum(m * m, axis=1))
    score = (m @ rr.T) / norms[:, None]  # (n_delta, n_strips)
    j = np.argmax(score, axis=0)
    edge = (j == 0) | (j == dd.size - 1)
    jc = np.clip(j, 1, dd.size - 2)
    cols = np.arange(ns)
    s0, s1, s2 = score[jc - 1, cols], score[jc, cols], score[jc + 1, cols]
    den = s0 - 2.0 * s1 + s2
    with np.errstate(invalid="ignore", divide="ignore"):
        frac = np.where(den < 0, 0.5 * (s0 - s2) / den, 0.0)
    frac = np.clip(frac, -1.0, 1.0)
    step = dd[1] - dd[0]
    delta = dd[jc] + frac * step
    delta = np.where(edge, dd[j], delta)
    # linearised least squares of r ≈ a m(δ) at the optimum
    mo = _model(xx, kk, delta, wavelength, phi_ac)
    mo -= mo.mean(axis=1, keepdims=True)
    phase = 2.0 * np.pi * (xx[None, :] + wavelength * delta[:, None] * kk[None, :]) + 2.0 * phi_ac
    dm = 2.0 * np.pi * wavelength * kk[None, :] * np.sin(phase)
    dm -= dm.mean(axis=1, keepdims=True)
    mm = np.sum(mo * mo, axis=1)
    a = np.sum(rr * mo, axis=1) / mm
    res = rr - a[:, None] * mo
    dof = max(xx.size - 2, 1)
    sigma = np.sqrt(np.sum(res * res, axis=1) / dof)
    z = a * np.sqrt(mm) / sigma
    with np.errstate(invalid="ignore", divide="ignore"):
        se = sigma / (np.abs(a) * np.sqrt(np.sum(dm * dm, axis=1)))
    return StripFits(delta, se, z, a, edge)


@dataclass(frozen=True)
class SlopeFit:
    """Robust fit of ``y = slope · depth + intercept[tilt]`` (y = Δdefocus / px)."""

    slope: float
    slope_se: float
    intercepts: F64  #: (n_groups,) px; NaN for a group without data
    intercept_se: F64
    scale: float  #: robust scale of the standardised residuals
    weights: F64  #: final weights of the points (0 = rejected)
    residuals: F64  #: px
    group_slopes: F64  #: (n_groups,) slope of each group alone (NaN with < 2 distinct depths)
    group_slope_se: F64


def _huber(u: F64) -> F64:
    a = np.abs(u)
    return np.where(a <= HUBER_C, 1.0, HUBER_C / np.maximum(a, 1e-300))


def _group_means(v: F64, w: F64, g: I64, n: int) -> tuple[F64, F64]:
    sw = np.bincount(g, weights=w, minlength=n)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.bincount(g, weights=w * v, minlength=n) / sw
    return np.asarray(mean, dtype=np.float64), np.asarray(sw, dtype=np.float64)


def fit_slope(
    y: ArrayLike,
    se: ArrayLike,
    depth: ArrayLike,
    group: ArrayLike,
    n_groups: int,
    iterations: int = 30,
) -> SlopeFit:
    """Weighted Huber IRLS of ``y`` on ``depth`` with one intercept per ``group`` (see module doc).

    ``se`` is the standard error of each ``y``; its floor is half the median so that a few
    overconfident strips cannot dominate. The reported standard errors are scaled by the robust
    scale of the standardised residuals.
    """
    yv = np.asarray(y, dtype=np.float64)
    dv = np.asarray(depth, dtype=np.float64)
    gv = np.asarray(group, dtype=np.int64)
    sv = np.asarray(se, dtype=np.float64)
    nan_g = np.full(n_groups, np.nan)
    if yv.size < 3:
        return SlopeFit(
            np.nan,
            np.nan,
            nan_g,
            nan_g.copy(),
            np.nan,
            np.zeros(yv.size),
            np.full(yv.size, np.nan),
            nan_g.copy(),
            nan_g.copy(),
        )
    floor = 0.5 * float(np.median(sv))
    base_w = 1.0 / np.maximum(sv, max(floor, 1e-12)) ** 2
    h = np.ones_like(yv)
    slope, scale = 0.0, 1.0
    for _ in range(iterations):
        w = base_w * h
        dm, _ = _group_means(dv, w, gv, n_groups)
        ym, _ = _group_means(yv, w, gv, n_groups)
        dc = dv - dm[gv]
        yc = yv - ym[gv]
        sxx = float(np.sum(w * dc * dc))
        if sxx <= 0:
            break
        new_slope = float(np.sum(w * dc * yc)) / sxx
        res = yc - new_slope * dc
        u = res * np.sqrt(base_w)
        mad = float(np.median(np.abs(u[h > 0] - np.median(u[h > 0])))) if (h > 0).any() else 0.0
        scale = max(1.4826 * mad, 1e-12)
        h_new = _huber(u / scale)
        if abs(new_slope - slope) < 1e-10 and np.allclose(h_new, h, atol=1e-8):
            slope = new_slope
            break
        slope, h = new_slope, h_new
    w = base_w * h
    dm, sw = _group_means(dv, w, gv, n_groups)
    ym, _ = _group_means(yv, w, gv, n_groups)
    dc = dv - dm[gv]
    sxx = float(np.sum(w * dc * dc))
    n_par = 1 + int(np.count_nonzero(sw > 0))
    dof = max(yv.size - n_par, 1)
    res = yv - ym[gv] - slope * dc
    chi2 = float(np.sum(w * res * res)) / dof
    s2 = max(chi2, 1e-300)
    slope_se = float(np.sqrt(s2 / sxx)) if sxx > 0 else np.nan
    intercepts = ym - slope * dm
    with np.errstate(invalid="ignore", divide="ignore"):
        icpt_se = np.sqrt(s2 / sw + (dm**2) * (slope_se**2))
    # every group on its own (same weights, same scale)
    gs, gse = nan_g.copy(), nan_g.copy()
    sxx_g = np.bincount(gv, weights=w * dc * dc, minlength=n_groups)
    sxy_g = np.bincount(gv, weights=w * dc * (yv - ym[gv]), minlength=n_groups)
    ok = sxx_g > 1e-9 * max(float(sxx_g.max()), 1e-300)
    gs[ok] = sxy_g[ok] / sxx_g[ok]
    gse[ok] = np.sqrt(s2 / sxx_g[ok])
    return SlopeFit(
        slope=slope,
        slope_se=slope_se,
        intercepts=np.asarray(intercepts, dtype=np.float64),
        intercept_se=np.asarray(icpt_se, dtype=np.float64),
        scale=float(np.sqrt(s2)),
        weights=np.asarray(w, dtype=np.float64),
        residuals=np.asarray(res, dtype=np.float64),
        group_slopes=gs,
        group_slope_se=gse,
    )


def fixed_slope_intercepts(
    y: ArrayLike,
    weights: ArrayLike,
    depth: ArrayLike,
    group: ArrayLike,
    n_groups: int,
    slope: float,
    scale: float,
) -> tuple[F64, F64]:
    """Per-group intercepts (and standard errors) of ``y − slope · depth`` with given weights."""
    yv = np.asarray(y, dtype=np.float64) - float(slope) * np.asarray(depth, dtype=np.float64)
    w = np.asarray(weights, dtype=np.float64)
    gv = np.asarray(group, dtype=np.int64)
    mean, sw = _group_means(yv, w, gv, n_groups)
    with np.errstate(invalid="ignore", divide="ignore"):
        se_out = np.sqrt(max(scale, 1e-300) ** 2 / sw)
    return np.asarray(mean, dtype=np.float64), np.asarray(se_out, dtype=np.float64)
