"""Per-tilt 2D detection of dark gold beads and sub-pixel refinement.

Detection (per tilt, vectorised over chunks of tilts, through :mod:`tiltflow.backend`):

1. bin by ``binning`` (block mean), reflect-pad by a few bead radii (no wrap-around artefacts);
2. matched filter in Fourier space: the analytic transform of a projected sphere of the bead
   radius, low-passed by a small Gaussian (pixel blur, soft edges) and high-passed by
   ``1 - Gaussian`` at twice the bead radius (removes ice gradients and illumination);
3. normalise by a *local* robust noise estimate: the filtered map squared, clipped at 3 global
   robust sigma (so beads do not inflate it), box-averaged over ~16 bead radii;
4. local maxima of the normalised map above ``threshold`` (units of noise sigma).

Sub-pixel refinement (:func:`fit_beads`) fits ``a + g·(x, y) + b·S(|x - c|)`` to the *unbinned*
image in a small circular window around each peak, with S the projected-sphere profile blurred
by half a pixel; only pixels inside the image count, so beads cut by the image edge are fitted
without bias. The fit is exact for any radially symmetric bead profile (softer edges, fringes),
since a symmetric template gives a symmetric least-squares objective about the true centre.
It returns the centre, the amplitude ``b`` and its significance ``-b / se(b)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy.special import spherical_jn

from tiltflow.backend import fft_workers, get_fft, get_ndimage, to_numpy

F64 = NDArray[np.float64]

#: Gaussian blur (px) assumed on top of the geometric bead profile (pixel area, soft edges)
PROFILE_BLUR_PX = 0.6
#: clip level (in global robust sigma) of the squared map used for the local noise estimate
_CLIP = 3.0
#: E[min(x², c²)] for a standard normal x and c = _CLIP (makes the clipped mean unbiased)
_CLIP_MEAN = (
    math.erf(_CLIP / math.sqrt(2)) - 2 * _CLIP * math.exp(-(_CLIP**2) / 2) / math.sqrt(2 * math.pi)
) + _CLIP**2 * (1 - math.erf(_CLIP / math.sqrt(2)))


def default_binning(radius_px: float) -> int:
    """Binning that leaves the bead radius at about 3-6 binned pixels (>= 1)."""
    return max(1, int(radius_px // 3.0))


@dataclass(frozen=True)
class Detections:
    """2D detections of one tilt series (raw-image pixels; one row per detection)."""

    frame: NDArray[np.int64]  # (k,) stack frame (row of the tomogram table)
    x: F64  # (k,) raw-image x (sub-pixel after refinement)
    y: F64  # (k,)
    peak: F64  # (k,) normalised matched-filter peak height (noise sigma)
    amplitude: F64  # (k,) fitted bead amplitude (negative = dark)
    significance: F64  # (k,) -amplitude / se(amplitude)

    def __len__(self) -> int:
        return int(self.frame.size)

    def subset(self, keep: NDArray[np.bool_] | NDArray[np.int64]) -> Detections:
        return Detections(
            *(
                getattr(self, f)[keep]
                for f in ("frame", "x", "y", "peak", "amplitude", "significance")
            )
        )


def _bin_stack(xp: ModuleType, stack: Any, b: int) -> Any:
    """Block-mean binning of (n, h, w) by ``b`` (the last h % b rows / w % b columns are dropped).

    ``stack`` is a numpy or CuPy array (``xp``), hence ``Any``.
    """
    if b == 1:
        return stack
    n, h, w = stack.shape
    hb, wb = h // b, w // b
    s = stack[:, : hb * b, : wb * b]
    return s.reshape(n, hb, b, wb, b).mean(axis=(2, 4))


def matched_filter_spectrum(shape: tuple[int, int], radius: float) -> F64:
    """Real rfft2-domain filter (h, w//2+1): projected-sphere transform x low-pass x high-pass.

    ``radius`` is in pixels of the filtered image. Sign: correlation with a *bright* sphere; the
    caller negates the result for dark beads.
    """
    h, w = shape
    fy = np.fft.fftfreq(h)[:, None]
    fx = np.fft.rfftfreq(w)[None, :]
    f = np.sqrt(fx**2 + fy**2)
    k = 2 * np.pi * f * radius
    with np.errstate(divide="ignore", invalid="ignore"):
        sphere = np.where(k > 1e-8, 3.0 * spherical_jn(1, k) / np.where(k > 1e-8, k, 1.0), 1.0)
    sigma_lp = 0.5
    lowpass = np.exp(-2 * np.pi**2 * sigma_lp**2 * f**2)
    sigma_hp = 2.0 * radius
    highpass = 1.0 - np.exp(-2 * np.pi**2 * sigma_hp**2 * f**2)
    return sphere * lowpass * highpass


def detect_peaks(
    stack: NDArray[np.floating],
    radius_px: float,
    threshold: float,
    binning: int,
    xp: ModuleType = np,
    threads: int = 1,
    chunk: int = 8,
) -> Detections:
    """Coarse 2D detections (binned-grid peaks mapped to raw pixels) in every frame of ``stack``.

    ``stack`` is (n, h, w) in raw pixels; ``radius_px`` the bead radius in raw pixels;
    ``threshold`` the minimum normalised peak height (noise sigma). Positions are the raw
    coordinates of the binned peak pixels (refine with :func:`fit_beads`).
    """
    n, h, w = stack.shape
    b = max(1, int(binning))
    rb = radius_px / b
    hb, wb = h // b, w // b
    pad = int(math.ceil(3 * rb)) + 2
    fshape = (hb + 2 * pad, wb + 2 * pad)
    fft = get_fft(xp)
    nd = get_ndimage(xp)
    kw = fft_workers(xp, threads)
    filt = xp.asarray(matched_filter_spectrum(fshape, rb).astype(np.float32))
    size_max = 2 * int(math.ceil(rb)) + 1
    size_loc = max(16, int(round(16 * rb)))
    frames_out, ys, xs, peaks = [], [], [], []
    for start in range(0, n, chunk):
        block = xp.asarray(np.ascontiguousarray(stack[start : start + chunk], dtype=np.float32))
        block = _bin_stack(xp, block, b)
        mean = block.mean(axis=(1, 2), keepdims=True)
        block = block / xp.where(xp.abs(mean) > 0, mean, 1) - 1  # relative contrast
        block = xp.pad(block, ((0, 0), (pad, pad), (pad, pad)), mode="reflect")
        spec = fft.rfft2(block, axes=(1, 2), **kw)
        cmap = -fft.irfft2(spec * filt, s=fshape, axes=(1, 2), **kw)
        inner = cmap[:, pad : pad + hb, pad : pad + wb]
        # global robust sigma per frame (MAD), then local sigma from the clipped square
        sub = inner[:, ::2, ::2].reshape(inner.shape[0], -1)  # robust stats on a subsample
        med = xp.median(sub, axis=1)
        mad = xp.median(xp.abs(sub - med[:, None]), axis=1)
        sig = xp.maximum(1.4826 * mad, 1e-12)[:, None, None]
        sq = xp.minimum(cmap**2, (_CLIP * sig) ** 2)
        var = nd.uniform_filter(sq, size=(1, size_loc, size_loc), mode="reflect") / _CLIP_MEAN
        z = cmap / xp.sqrt(xp.maximum(var, (0.05 * sig) ** 2))
        zmax = nd.maximum_filter(z, size=(1, size_max, size_max), mode="constant", cval=-np.inf)
        is_peak = (z == zmax) & (z > threshold)
        is_peak[:, :pad, :] = False
        is_peak[:, pad + hb :, :] = False
        is_peak[:, :, :pad] = False
        is_peak[:, :, pad + wb :] = False
        f_i, y_i, x_i = (to_numpy(a) for a in xp.nonzero(is_peak))
        zval = to_numpy(z[is_peak]) if f_i.size else np.zeros(0)
        frames_out.append(f_i.astype(np.int64) + start)
        ys.append((y_i - pad) * b + (b - 1) / 2.0)
        xs.append((x_i - pad) * b + (b - 1) / 2.0)
        peaks.append(zval.astype(np.float64))
    k = int(sum(a.size for a in frames_out))

    def cat(parts: list[np.ndarray], dt: type[np.generic]) -> np.ndarray:
        return np.concatenate(parts).astype(dt) if parts else np.zeros(0, dt)

    return Detections(
        frame=cat(frames_out, np.int64),
        x=cat(xs, np.float64),
        y=cat(ys, np.float64),
        peak=cat(peaks, np.float64),
        amplitude=np.full(k, np.nan),
        significance=np.full(k, np.nan),
    )


def bead_profile(radius_px: float, blur_px: float = PROFILE_BLUR_PX) -> tuple[F64, F64, F64]:
    """Radial profile of a projected sphere (1 at the centre) blurred by a Gaussian.

    Returns ``(r, S(r), dS/dr)`` sampled every 1/16 px out to ``radius + 5 blur + 2``.
    """
    step = 1.0 / 16.0
    rmax = radius_px + 5 * blur_px + 2.0
    r = np.arange(0.0, rmax + step, step)
    # 2D Gaussian blur of a radial function: Hankel-style numerical convolution on a grid
    g = np.arange(-rmax - 4 * blur_px, rmax + 4 * blur_px + step, step)
    xx, yy = np.meshgrid(g, g, indexing="xy")
    rr2 = xx**2 + yy**2
    sphere = np.sqrt(np.maximum(radius_px**2 - rr2, 0.0)) / radius_px
    from scipy.ndimage import gaussian_filter  # host-side, tiny and one-off

    blurred = gaussian_filter(sphere, blur_px / step, mode="constant")
    c = g.size // 2
    row = blurred[c, c:]
    prof = np.interp(r, g[c:] - g[c], row)
    return r, prof, np.gradient(prof, step)


@dataclass(frozen=True)
class BeadFit:
    """Result of :func:`fit_beads` (one row per input position)."""

    x: F64
    y: F64
    amplitude: F64  # b of the model (negative: dark bead)
    significance: F64  # -b / se(b)
    rms: F64  # residual rms of the window (image units)
    ok: NDArray[np.bool_]  # converged, inside the image, moved less than a radius


def fit_beads(
    stack: NDArray[np.floating],
    frames: NDArray[np.integer],
    x0: F64,
    y0: F64,
    radius_px: float,
    n_iter: int = 5,
    max_move: float | None = None,
    nbr_x: F64 | None = None,
    nbr_y: F64 | None = None,
) -> BeadFit:
    """Sub-pixel bead centres by a windowed least-squares fit of the projected-sphere profile.

    Vectorised over the positions: all windows are fitted together. ``max_move`` (default one
    bead radius) bounds how far a centre may move from its start before the fit is marked not ok.
    ``nbr_x, nbr_y`` (NaN = none) give the known position of an overlapping neighbour bead in the
    same image; its profile is then modelled too (free amplitude, fixed centre), so beads that
    overlap in projection are still measured without bias.
    """
    frames = np.asarray(frames, dtype=np.int64)
    x0 = np.asarray(x0, dtype=np.float64)
    y0 = np.asarray(y0, dtype=np.float64)
    k = frames.size
    if k == 0:
        z = np.zeros(0)
        return BeadFit(z, z.copy(), z.copy(), z.copy(), z.copy(), np.zeros(0, bool))
    n, h, w = stack.shape
    rtab, stab, dtab = bead_profile(radius_px)
    r_mask = 1.5 * radius_px + 2.0
    hw = int(math.ceil(r_mask)) + 1
    off = np.arange(-hw, hw + 1)
    max_move = radius_px if max_move is None else max_move
    cx, cy = x0.copy(), y0.copy()
    has_nbr = nbr_x is not None and nbr_y is not None and bool(np.isfinite(np.asarray(nbr_x)).any())
    if has_nbr:
        nx = np.asarray(nbr_x, dtype=np.float64)
        ny = np.asarray(nbr_y, dtype=np.float64)
    lin = np.zeros((k, 4))
    rms = np.full(k, np.nan)
    sig = np.zeros(k)
    amp = np.zeros(k)
    for rnd in range(2):
        ix0 = np.rint(cx).astype(np.int64)
        iy0 = np.rint(cy).astype(np.int64)
        X = ix0[:, None, None] + off[None, None, :]  # (k, 1, W)
        Y = iy0[:, None, None] + off[None, :, None]  # (k, W, 1)
        X, Y = np.broadcast_arrays(X, Y)
        inside = (X >= 0) & (X < w) & (Y >= 0) & (Y < h)
        vals = stack[frames[:, None, None], np.clip(Y, 0, h - 1), np.clip(X, 0, w - 1)].astype(
            np.float64
        )
        within = ((X - ix0[:, None, None]) ** 2 + (Y - iy0[:, None, None]) ** 2) <= r_mask**2
        wgt = (inside & within).astype(np.float64)
        # normalise intensities per window (robust to the dose scale)
        scale = np.sum(vals * wgt, axis=(1, 2)) / np.maximum(wgt.sum(axis=(1, 2)), 1)
        scale = np.where(np.abs(scale) > 0, np.abs(scale), 1.0)
        v = vals / scale[:, None, None]
        dxw = (X - ix0[:, None, None]) / hw
        dyw = (Y - iy0[:, None, None]) / hw
        wf = wgt.reshape(k, -1)
        vf = v.reshape(k, -1)
        for _ in range(n_iter if rnd == 0 else 3):
            ddx = X - cx[:, None, None]
            ddy = Y - cy[:, None, None]
            r = np.sqrt(ddx**2 + ddy**2)
            s = np.interp(r, rtab, stab, right=0.0)
            ds = np.interp(r, rtab, dtab, right=0.0)
            # linear part: a + gx dx + gy dy + b s
            cols = [np.ones_like(s), dxw, dyw, s]
            if has_nbr:
                rn = np.sqrt((X - nx[:, None, None]) ** 2 + (Y - ny[:, None, None]) ** 2)
                cols.append(
                    np.where(
                        np.isfinite(rn),
                        np.interp(np.nan_to_num(rn, nan=1e9), rtab, stab, right=0.0),
                        0.0,
                    )
                )
            A = np.stack(cols, axis=-1)  # (k, W, W, 4 or 5)
            Af = A.reshape(k, -1, A.shape[-1])
            Aw = (Af * wf[..., None]).swapaxes(1, 2)  # (k, nc, P)
            AtA = Aw @ Af
            Atv = (Aw @ vf[..., None])[..., 0]
            AtA += np.eye(A.shape[-1])[None] * 1e-9
            lin = np.linalg.solve(AtA, Atv[..., None])[..., 0]
            resid = v - (Af @ lin[..., None])[..., 0].reshape(v.shape)
            b = lin[:, 3]
            rsafe = np.where(r > 1e-9, r, 1.0)
            jx = -b[:, None, None] * ds * ddx / rsafe  # d model / d cx
            jy = -b[:, None, None] * ds * ddy / rsafe
            J = np.stack([jx.reshape(k, -1), jy.reshape(k, -1)], axis=-1)  # (k, P, 2)
            Jw = (J * wf[..., None]).swapaxes(1, 2)
            JtJ = Jw @ J
            Jtr = (Jw @ resid.reshape(k, -1)[..., None])[..., 0]
            JtJ += np.eye(2)[None] * (1e-6 + 1e-3 * np.trace(JtJ, axis1=1, axis2=2))[:, None, None]
            step = np.linalg.solve(JtJ, Jtr[..., None])[..., 0]
            norm = np.linalg.norm(step, axis=1)
            lim = 0.5 * radius_px
            step *= np.minimum(1.0, lim / np.maximum(norm, 1e-12))[:, None]
            cx = cx + step[:, 0]
            cy = cy + step[:, 1]
        npx = wgt.sum(axis=(1, 2))
        rss = np.einsum("kyx,kyx->k", wgt, resid**2)
        dof = np.maximum(npx - 6, 1)
        s2 = rss / dof
        cov = np.linalg.inv(AtA)
        se_b = np.sqrt(np.maximum(cov[:, 3, 3] * s2, 1e-30))
        amp = lin[:, 3]
        sig = -amp / se_b
        rms = np.sqrt(s2)
    moved = np.hypot(cx - x0, cy - y0)
    ok = (
        np.isfinite(cx)
        & np.isfinite(cy)
        & (moved <= max_move)
        & (cx > -0.5)
        & (cx < w - 0.5)
        & (cy > -0.5)
        & (cy < h - 0.5)
    )
    return BeadFit(x=cx, y=cy, amplitude=amp, significance=sig, rms=rms, ok=ok)


def detect(
    stack: NDArray[np.floating],
    radius_px: float,
    threshold: float,
    binning: int | None = None,
    xp: ModuleType = np,
    threads: int = 1,
    min_significance: float = 3.0,
) -> Detections:
    """2D detections in every frame, refined to sub-pixel precision on the unbinned image.

    Peaks whose fit does not converge, moves by more than a radius, is bright, or has an
    amplitude significance below ``min_significance`` are dropped; refined detections closer
    than one radius in the same frame are merged (the higher peak wins).
    """
    b = default_binning(radius_px) if binning is None else int(binning)
    det = detect_peaks(stack, radius_px, threshold, b, xp=xp, threads=threads)
    if len(det) == 0:
        return det
    fit = fit_beads(stack, det.frame, det.x, det.y, radius_px)
    keep = fit.ok & (fit.significance >= min_significance)
    out = Detections(det.frame, fit.x, fit.y, det.peak, fit.amplitude, fit.significance).subset(
        keep
    )
    return _dedupe(out, radius_px)


def _dedupe(det: Detections, radius_px: float) -> Detections:
    """Drop detections within one radius of a higher peak in the same frame."""
    if len(det) < 2:
        return det
    from scipy.spatial import cKDTree

    pts = np.column_stack([det.x, det.y, det.frame * (10.0 * radius_px + 1e6)])
    pairs = cKDTree(pts).query_pairs(radius_px, output_type="ndarray")
    if pairs.size == 0:
        return det
    drop = np.where(det.peak[pairs[:, 0]] >= det.peak[pairs[:, 1]], pairs[:, 1], pairs[:, 0])
    keep = np.ones(len(det), bool)
    keep[drop] = False
    return det.subset(keep)
