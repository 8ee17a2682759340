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
import os
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache, partial
from types import ModuleType
from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy.special import spherical_jn

from tiltflow.backend import fft_workers, get_fft, get_ndimage, to_numpy
from tiltflow.io.mrc import release_pages, require_finite
from tiltflow.neighbours import close_pairs
from tiltflow.stats import median_rows
from tiltflow.threads import thread_map

F64 = NDArray[np.float64]

#: 2D detections more anisotropic than this are not beads (edges, lines; beads: < 0.15)
DETECTION_MAX_ANISOTROPY = 0.3
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
    #: fitted radius (px) and anisotropy of each detection (:mod:`tiltflow.fiducials.shape`)
    radius: F64 | None = None
    anisotropy: F64 | None = None

    def __len__(self) -> int:
        return int(self.frame.size)

    def subset(self, keep: NDArray[np.bool_] | NDArray[np.int64]) -> Detections:
        return Detections(
            self.frame[keep],
            self.x[keep],
            self.y[keep],
            self.peak[keep],
            self.amplitude[keep],
            self.significance[keep],
            radius=None if self.radius is None else self.radius[keep],
            anisotropy=None if self.anisotropy is None else self.anisotropy[keep],
        )


def _bin_stack(xp: ModuleType, stack: Any, b: int) -> Any:
    """Block-mean binning of (n, h, w) by ``b`` (the last h % b rows / w % b columns are dropped).

    ``stack`` is a numpy or CuPy array (``xp``), hence ``Any``.
    """
    if b == 1:
        return stack
    n, h, w = stack.shape
    hb, wb = h // b, w // b
    out = stack[:, 0 : hb * b : b, 0 : wb * b : b].copy()
    for dy in range(b):  # strided sums: far faster than a mean over reshaped axes
        for dx in range(b):
            if dy or dx:
                out += stack[:, dy : hb * b : b, dx : wb * b : b]
    return out * (1.0 / (b * b))


def _local_maxima(
    xp: ModuleType, z: Any, threshold: float, half: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Peaks of ``z`` (n, h, w) above ``threshold`` that are the maximum of their
    ``(2 half + 1)²`` neighbourhood (ties: the first in raster order) -> frame, y, x, value.

    Equivalent to comparing with a maximum filter, but only the pixels above the threshold that
    are 3x3 maxima are compared with each other (few), instead of filtering every pixel.
    """
    above = z > threshold
    c = z[:, 1:-1, 1:-1]
    m = above[:, 1:-1, 1:-1].copy()
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            if dy == 0 and dx == 0:
                continue
            nb = z[:, 1 + dy : z.shape[1] - 1 + dy, 1 + dx : z.shape[2] - 1 + dx]
            m &= c >= nb
    f_i, y_i, x_i = (to_numpy(a) for a in xp.nonzero(m))
    y_i, x_i = y_i + 1, x_i + 1
    val = to_numpy(z[f_i, y_i, x_i]).astype(np.float64) if f_i.size else np.zeros(0)
    if f_i.size > 1 and half > 1:
        pairs = close_pairs(np.column_stack([x_i, y_i]), half, chebyshev=True, groups=f_i)
        if pairs.size:
            order = np.lexsort((y_i * z.shape[2] + x_i, -val))  # high first, then raster
            rank = np.empty(f_i.size, np.int64)
            rank[order] = np.arange(f_i.size)
            a, bb = pairs[:, 0], pairs[:, 1]
            loser = np.where(rank[a] < rank[bb], bb, a)
            keep = np.ones(f_i.size, bool)
            keep[loser] = False
            f_i, y_i, x_i, val = f_i[keep], y_i[keep], x_i[keep], val[keep]
    return f_i.astype(np.int64), y_i, x_i, val


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
    chunk: int | None = None,
    source: str | os.PathLike[str] | None = None,
) -> Detections:
    """Coarse 2D detections (binned-grid peaks mapped to raw pixels) in every frame of ``stack``.

    ``stack`` is (n, h, w) in raw pixels; ``radius_px`` the bead radius in raw pixels;
    ``threshold`` the minimum normalised peak height (noise sigma). Positions are the raw
    coordinates of the binned peak pixels (refine with :func:`fit_beads`). This is the one pass
    over every pixel: a frame holding NaN or inf raises :class:`~tiltflow.errors.InputError`
    naming ``source`` (the stack file) and the frame. See :func:`detect_peaks_scales`.
    """
    return detect_peaks_scales(
        stack, (radius_px,), threshold, binning, xp=xp, threads=threads, chunk=chunk,
        source=source,
    )[0]


def detect_peaks_scales(
    stack: NDArray[np.floating],
    radii_px: Sequence[float],
    threshold: float,
    binning: int,
    xp: ModuleType = np,
    threads: int = 1,
    chunk: int | None = None,
    source: str | os.PathLike[str] | None = None,
) -> list[Detections]:
    """:func:`detect_peaks` for several bead radii at once (one :class:`Detections` each), from
    one read, one binning and one forward FFT of every frame: only the matched filter and the
    peak search are done per radius."""
    n, h, w = stack.shape
    if chunk is None:  # frames per chunk: about CHUNK_BYTES of raw float32 per chunk
        chunk = max(1, min(8, int(CHUNK_BYTES // max(1, 4 * h * w))))
    b = max(1, int(binning))
    rbs = [float(r) / b for r in radii_px]
    hb, wb = h // b, w // b
    pad = int(math.ceil(3 * max(rbs))) + 2
    from scipy.fft import next_fast_len

    # FFT size: at least the reflect-padded image, rounded up to a fast length (extra rows and
    # columns are reflect-padded at the far side)
    fshape = (next_fast_len(hb + 2 * pad, real=True), next_fast_len(wb + 2 * pad, real=True))
    extra = (fshape[0] - hb - 2 * pad, fshape[1] - wb - 2 * pad)
    fft = get_fft(xp)
    nd = get_ndimage(xp)
    kw = fft_workers(xp, threads)
    filts = [xp.asarray(matched_filter_spectrum(fshape, rb).astype(np.float32)) for rb in rbs]
    # per-frame medians of the noise level: exact and fast on the CPU, CuPy's own on the GPU
    rmed = median_rows if xp is np else partial(xp.median, axis=1)

    Peaks = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]

    def one_chunk(start: int) -> list[Peaks]:
        raw = xp.asarray(np.ascontiguousarray(stack[start : start + chunk], dtype=np.float32))
        block = _bin_stack(xp, raw, b)
        mean = block.mean(axis=(1, 2), keepdims=True)
        # NaN / inf anywhere in a frame: the binned mean plus the rows / columns binning drops
        sums = mean.reshape(-1)
        if hb * b < h:
            sums = sums + raw[:, hb * b :, :].sum(axis=(1, 2))
        if wb * b < w:
            sums = sums + raw[:, : hb * b, wb * b :].sum(axis=(1, 2))
        require_finite(source, to_numpy(sums), stack[start : start + chunk], start, n)
        del raw
        release_pages(stack, start, start + chunk)  # read: resident memory stays one chunk
        block = block / xp.where(xp.abs(mean) > 0, mean, 1) - 1  # relative contrast
        block = xp.pad(
            block, ((0, 0), (pad, pad + extra[0]), (pad, pad + extra[1])), mode="reflect"
        )
        spec = fft.rfft2(block, axes=(1, 2), **kw)
        del block
        out: list[Peaks] = []
        for rb, filt in zip(rbs, filts, strict=True):
            size_max = 2 * int(math.ceil(rb)) + 1
            size_loc = max(16, int(round(16 * rb)))
            cmap = -fft.irfft2(spec * filt, s=fshape, axes=(1, 2), **kw)
            inner = cmap[:, pad : pad + hb, pad : pad + wb]
            # global robust sigma per frame (MAD), then local sigma from the clipped square
            sub = inner[:, ::2, ::2].reshape(inner.shape[0], -1)  # robust stats on a subsample
            med = rmed(sub)
            mad = rmed(xp.abs(sub - med[:, None]))
            sig = xp.maximum(1.4826 * mad, 1e-12)[:, None, None]
            sq = xp.minimum(cmap**2, (_CLIP * sig) ** 2)
            var = nd.uniform_filter(sq, size=(1, size_loc, size_loc), mode="reflect") / _CLIP_MEAN
            z = cmap / xp.sqrt(xp.maximum(var, (0.05 * sig) ** 2))
            # one padding pixel each side, so peaks on the image border are tested too
            f_i, y_i, x_i, zval = _local_maxima(
                xp, z[:, pad - 1 : pad + hb + 1, pad - 1 : pad + wb + 1], threshold,
                size_max // 2,
            )
            y_i, x_i = y_i + pad - 1, x_i + pad - 1
            out.append(
                (
                    f_i.astype(np.int64) + start,
                    (y_i - pad) * b + (b - 1) / 2.0,
                    (x_i - pad) * b + (b - 1) / 2.0,
                    zval.astype(np.float64),
                )
            )
        return out

    starts = list(range(0, n, chunk))
    parallel = xp is np and threads > 1 and len(starts) > 1
    if parallel:  # chunks in parallel, each chunk's FFTs single-threaded
        kw = fft_workers(xp, 1)
    results = thread_map(one_chunk, starts, threads if parallel else 1)

    def cat(parts: list[np.ndarray], dt: type[np.generic]) -> np.ndarray:
        return np.concatenate(parts).astype(dt) if parts else np.zeros(0, dt)

    found = []
    for i in range(len(rbs)):
        per = [r[i] for r in results]
        k = int(sum(p[0].size for p in per))
        found.append(
            Detections(
                frame=cat([p[0] for p in per], np.int64),
                x=cat([p[2] for p in per], np.float64),
                y=cat([p[1] for p in per], np.float64),
                peak=cat([p[3] for p in per], np.float64),
                amplitude=np.full(k, np.nan),
                significance=np.full(k, np.nan),
            )
        )
    return found


def bead_profile(radius_px: float, blur_px: float = PROFILE_BLUR_PX) -> tuple[F64, F64, F64]:
    """Radial profile of a projected sphere (1 at the centre before the blur) blurred by a
    Gaussian.

    Returns ``(r, S(r), dS/dr)`` sampled every 1/16 px out to ``radius + 5 blur + 2``. The blur
    is the radial (Hankel) form of the 2D convolution
    (:func:`tiltflow.fiducials.shape.blurred_sphere`): ~10x closer to an exact quadrature than
    blurring a 1/16 px grid, and 10-30x faster (0.02 s instead of 0.2-0.6 s for a 37 px bead).
    """
    from tiltflow.fiducials.shape import blurred_sphere

    step = 1.0 / 16.0
    rmax = radius_px + 5 * blur_px + 2.0
    r = np.arange(0.0, rmax + step, step)
    prof = blurred_sphere(float(radius_px), float(blur_px), r)
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


@lru_cache(maxsize=16)
def _profile_table(
    radius_px: float, r_max: float, block: int = 1
) -> tuple[F64, F64, float]:
    """Bead profile S and dS/dr sampled every 1/16 px on [0, r_max + 1], 0 beyond the profile;
    for means over ``block`` x ``block`` pixels the box's variance ``(block² - 1)/12`` is added
    to the profile's Gaussian blur."""
    blur = math.sqrt(PROFILE_BLUR_PX**2 + (block**2 - 1) / 12.0)
    rtab, stab, dtab = bead_profile(radius_px, blur)
    step = rtab[1] - rtab[0]
    n = int(math.ceil((r_max + 1.0) / step)) + 2
    s_out = np.zeros(max(n, stab.size))
    d_out = np.zeros_like(s_out)
    s_out[: stab.size] = stab
    d_out[: dtab.size] = dtab
    return s_out, d_out, 1.0 / step


def _lookup(table: F64, r: F64, inv_step: float) -> F64:
    """Linear interpolation of a profile table at radii ``r``."""
    return _lookup2(table, None, r, inv_step)[0]


def _lookup2(
    table: F64, table2: F64 | None, r: F64, inv_step: float
) -> tuple[F64, F64 | None]:
    """Linear interpolation of one or two tables at radii ``r`` (one index computation)."""
    t = r * inv_step
    i = np.minimum(t.astype(np.int32), table.size - 2)
    f = t - i
    a = table[i]
    out = a + f * (table[i + 1] - a)
    if table2 is None:
        return out, None
    a2 = table2[i]
    return out, a2 + f * (table2[i + 1] - a2)


#: the second round of :func:`fit_beads` fits means over ``radius // FINE_BLOCK_RADIUS`` (>= 1)
#: pixels squared: a bead of 37 px radius (10 nm gold at 1.35 Å/px) is fitted to the 3 x 3
#: means of its ~10 000 window pixels, then :data:`N_LAST` step(s) on every pixel. Every pixel
#: counts: at a few electrons per pixel the centre is noise-limited (on issue #10's 4k case,
#: sampling every 3rd pixel made the 2D centres 3-4 x less precise, 3 x 3 means alone 15 %).
FINE_BLOCK_RADIUS = 12.0


def fine_block(radius_px: float) -> int:
    """Side (pixels) of the pixel blocks the final round of :func:`fit_beads` fits."""
    return max(1, int(radius_px // FINE_BLOCK_RADIUS))


#: raw bytes of the frames one detection chunk holds (bounds the memory of :func:`detect_peaks`)
CHUNK_BYTES = 96 * 2**20
#: pixels of all windows fitted together (bounds the memory of :func:`fit_beads`)
FIT_BATCH_PIXELS = 400_000
#: Gauss-Newton steps of the second round, and of the last (every pixel, blocks > 1 px only)
N_FINE = 3
N_LAST = 1


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
    threads: int = 1,
) -> BeadFit:
    """Sub-pixel bead centres (see :func:`_fit_batch`), in batches of windows of bounded memory
    (:data:`FIT_BATCH_PIXELS`), run on ``threads`` threads. Each window's result does not depend
    on the batching."""
    frames = np.asarray(frames, dtype=np.int64)
    k = frames.size
    r_mask = 1.5 * radius_px + 2.0
    per_window = math.pi * (r_mask + 1.0) ** 2
    size = max(16, int(FIT_BATCH_PIXELS // per_window))
    if threads > 1:
        size = min(size, max(16, -(-k // threads)))
    if k <= size:
        fit = _fit_batch(stack, frames, x0, y0, radius_px, n_iter, max_move, nbr_x, nbr_y)
        release_pages(stack)
        return fit
    x0 = np.asarray(x0, dtype=np.float64)
    y0 = np.asarray(y0, dtype=np.float64)
    nx = None if nbr_x is None else np.asarray(nbr_x, dtype=np.float64)
    ny = None if nbr_y is None else np.asarray(nbr_y, dtype=np.float64)
    parts = [slice(i, min(i + size, k)) for i in range(0, k, size)]

    def run(sl: slice) -> BeadFit:
        fit = _fit_batch(
            stack, frames[sl], x0[sl], y0[sl], radius_px, n_iter, max_move,
            None if nx is None else nx[sl], None if ny is None else ny[sl],
        )
        release_pages(stack)
        return fit

    fits = thread_map(run, parts, threads)
    return BeadFit(
        *(np.concatenate([getattr(f, name) for f in fits])
          for name in ("x", "y", "amplitude", "significance", "rms", "ok"))
    )


def _windows(
    stack: NDArray[np.floating],
    frames: NDArray[np.integer],
    ix0: F64,
    iy0: F64,
    hw: int,
    r_mask: float,
    block: int,
) -> tuple[F64, F64, F64, NDArray[np.bool_]]:
    """The fitting windows about integer centres ``(ix0, iy0)``: means over ``block`` x
    ``block`` pixels tiling the square ``[-hw, -hw + block * nb)`` of offsets, the blocks whose
    centre is within ``r_mask`` kept (a disc).

    Returns the block-centre offsets ``ox, oy`` (P,), the block means (k, P) float64 and
    ``inside`` (k, P): all of the block's pixels inside the image. Each window is read once,
    as one square patch (one vectorised gather of k patches); blocks are means over reshaped
    axes, so no per-pixel index arrays are built.
    """
    k = frames.size
    n, h, w = stack.shape
    nb = 2 * hw // block + 1
    side = nb * block
    oy_, ox_ = np.mgrid[0:nb, 0:nb] * block - hw + (block - 1) / 2.0
    disc = ox_**2 + oy_**2 <= r_mask**2
    ox, oy = ox_[disc].astype(np.float64), oy_[disc].astype(np.float64)
    # image row / column of each patch's first pixel (a diverged, non-finite centre reads the
    # corner; its fit is marked not ok)
    y_start = np.nan_to_num(iy0, nan=0.0, posinf=0.0, neginf=0.0).astype(np.int64) - hw
    x_start = np.nan_to_num(ix0, nan=0.0, posinf=0.0, neginf=0.0).astype(np.int64) - hw
    jj = np.arange(side)
    edge = np.zeros(0, dtype=np.int64)
    if side <= h and side <= w:
        # patches clipped into the image; a window reaching past an edge is re-indexed below
        ys = np.clip(y_start, 0, h - side)
        xs = np.clip(x_start, 0, w - side)
        view = np.lib.stride_tricks.sliding_window_view(stack, (side, side), axis=(1, 2))
        patch = np.asarray(view[frames, ys, xs], dtype=np.float32)  # (k, side, side)
        edge = np.nonzero((ys != y_start) | (xs != x_start))[0]
        if edge.size:
            ry = np.clip(y_start[edge, None] - ys[edge, None] + jj[None, :], 0, side - 1)
            rx = np.clip(x_start[edge, None] - xs[edge, None] + jj[None, :], 0, side - 1)
            patch[edge] = patch[edge[:, None, None], ry[:, :, None], rx[:, None, :]]
    else:  # an image smaller than the window: gather with clipped indices
        ry = np.clip(y_start[:, None] + jj[None, :], 0, h - 1)
        rx = np.clip(x_start[:, None] + jj[None, :], 0, w - 1)
        patch = np.asarray(
            stack[frames[:, None, None], ry[:, :, None], rx[:, None, :]], dtype=np.float32
        )
    in_y = (y_start[:, None] + jj[None, :] >= 0) & (y_start[:, None] + jj[None, :] < h)
    in_x = (x_start[:, None] + jj[None, :] >= 0) & (x_start[:, None] + jj[None, :] < w)
    if block > 1:
        means = patch.reshape(k, nb, block, nb, block).mean(axis=(2, 4), dtype=np.float64)
        in_y = in_y.reshape(k, nb, block).all(axis=2)
        in_x = in_x.reshape(k, nb, block).all(axis=2)
        vals = means.reshape(k, -1)[:, disc.ravel()]
    else:
        vals = patch.reshape(k, -1)[:, disc.ravel()].astype(np.float64)
    if edge.size or side > h or side > w:
        inside = (in_y[:, :, None] & in_x[:, None, :]).reshape(k, -1)[:, disc.ravel()]
    else:  # every window inside the image
        inside = np.ones((k, ox.size), dtype=bool)
    return ox, oy, vals, inside


def _fit_batch(
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

    Model per window (a disc of ``1.5 r + 2`` px about the rounded centre, image pixels only):
    ``a + g·(dx, dy) + b·S(|x - c|)`` (+ ``b_q·S(|x - c_q|)`` for known overlapping neighbours),
    linear in ``(a, g, b)`` and Gauss-Newton in ``c``. Vectorised over the positions; the normal
    equations are built from per-window sums (no design matrices). The windows are re-centred
    between rounds: a first round on every ``r // 6``-th pixel (large beads), a second on means
    over blocks of :func:`fine_block` px, and for blocks > 1 px a last Gauss-Newton step on every
    pixel (:data:`N_LAST`), which keeps the full-resolution precision. ``max_move`` (default one bead radius) bounds how far a centre may move from its start
    before the fit is marked not ok. ``nbr_x, nbr_y``: the neighbours' centres, (k,) or (k, q)
    for up to q neighbours per window (a touching triangle), NaN = none.
    """
    frames = np.asarray(frames, dtype=np.int64)
    x0 = np.asarray(x0, dtype=np.float64)
    y0 = np.asarray(y0, dtype=np.float64)
    k = frames.size
    if k == 0:
        z = np.zeros(0)
        return BeadFit(z, z.copy(), z.copy(), z.copy(), z.copy(), np.zeros(0, bool))
    n, h, w = stack.shape
    r_mask = 1.5 * radius_px + 2.0
    hw = int(math.ceil(r_mask)) + 1

    # the first round (coarse, from a binned-grid start) samples every radius // 6-th pixel; the
    # second fits means over blocks of fine_block(radius) px (1 = single pixels, below 24 px
    # radius: every pixel counts) and, after blocks > 1 px, N_LAST steps on every pixel
    stride0 = max(1, int(radius_px // 6))
    block1 = fine_block(radius_px)
    max_move = radius_px if max_move is None else max_move
    cx, cy = x0.copy(), y0.copy()
    has_nbr = nbr_x is not None and nbr_y is not None and bool(np.isfinite(np.asarray(nbr_x)).any())
    nq = 0  # overlapping neighbours modelled per window (columns of nbr_x / nbr_y)
    if has_nbr:
        nx = np.asarray(nbr_x, dtype=np.float64).reshape(k, -1)
        ny = np.asarray(nbr_y, dtype=np.float64).reshape(k, -1)
        nb_ok = np.isfinite(nx) & np.isfinite(ny)  # (k, nq)
        nq = nx.shape[1]
    nc = 4 + nq

    def dot(a: F64, b: F64) -> F64:
        return np.einsum("kp,kp->k", a, b)

    amp: F64 = np.zeros(k)
    sig: F64 = np.zeros(k)
    rms: F64 = np.full(k, np.nan)
    # (pixel block side, strided sampling instead of block means, Gauss-Newton steps)
    rounds = [(stride0, True, n_iter), (block1, False, N_FINE)]
    if block1 > 1:
        rounds.append((1, False, N_LAST))
    for block, strided, iters in rounds:
        ix0 = np.rint(cx)
        iy0 = np.rint(cy)
        if strided:
            stab, dtab, inv_step = _profile_table(float(radius_px), float(r_mask + 1.5 * hw))
            oy_, ox_ = np.mgrid[-hw : hw + 1 : block, -hw : hw + 1 : block]
            disc = ox_**2 + oy_**2 <= r_mask**2
            ox, oy = ox_[disc].astype(np.float64), oy_[disc].astype(np.float64)
            X = ix0[:, None] + ox[None, :]  # (k, P)
            Y = iy0[:, None] + oy[None, :]
            inside = (X >= 0) & (X < w) & (Y >= 0) & (Y < h)
            vals = stack[
                frames[:, None],
                np.clip(Y, 0, h - 1).astype(np.int64),
                np.clip(X, 0, w - 1).astype(np.int64),
            ].astype(np.float64)
        else:
            stab, dtab, inv_step = _profile_table(
                float(radius_px), float(r_mask + 1.5 * hw), block
            )
            ox, oy, vals, inside = _windows(stack, frames, ix0, iy0, hw, r_mask, block)
            X = ix0[:, None] + ox[None, :]  # (k, P) block centres
            Y = iy0[:, None] + oy[None, :]
        dxw, dyw = ox / hw, oy / hw
        wgt = inside.astype(np.float64)
        npx = wgt.sum(axis=1)
        scale = dot(vals, wgt) / np.maximum(npx, 1)
        scale = np.where(np.abs(scale) > 0, np.abs(scale), 1.0)
        v = vals / scale[:, None] * wgt  # weighted data (zero outside the image)
        wx, wy = wgt * dxw, wgt * dyw
        base = np.zeros((k, nc, nc))
        base[:, 0, 0] = npx
        base[:, 0, 1] = base[:, 1, 0] = wx.sum(axis=1)
        base[:, 0, 2] = base[:, 2, 0] = wy.sum(axis=1)
        base[:, 1, 1] = wx @ dxw
        base[:, 1, 2] = base[:, 2, 1] = wx @ dyw
        base[:, 2, 2] = wy @ dyw
        atv_base = np.stack([v.sum(axis=1), v @ dxw, v @ dyw], axis=1)
        vv = dot(v, v)
        sns: list[F64] = []  # each neighbour's profile over the window (0 where none)
        svn: list[F64] = []
        for q in range(nq):
            rn = np.sqrt((X - nx[:, q, None]) ** 2 + (Y - ny[:, q, None]) ** 2)
            sn = np.where(
                nb_ok[:, q, None], _lookup(stab, np.nan_to_num(rn, nan=0.0), inv_step), 0.0
            ) * wgt
            c = 4 + q
            base[:, 0, c] = base[:, c, 0] = sn.sum(axis=1)
            base[:, 1, c] = base[:, c, 1] = sn @ dxw
            base[:, 2, c] = base[:, c, 2] = sn @ dyw
            for q2, sn2 in enumerate(sns):
                base[:, c, 4 + q2] = base[:, 4 + q2, c] = dot(sn, sn2)
            base[:, c, c] = dot(sn, sn) + (~nb_ok[:, q]) * 1.0  # no neighbour: AtA regular
            sns.append(sn)
            svn.append(dot(v, sn))
        for _ in range(iters):
            ddx = X - cx[:, None]
            ddy = Y - cy[:, None]
            r = np.sqrt(ddx**2 + ddy**2)
            s, ds_ = _lookup2(stab, dtab, r, inv_step)
            assert ds_ is not None
            ds = ds_
            ws = wgt * s
            ata = base.copy()
            ata[:, 0, 3] = ata[:, 3, 0] = ws.sum(axis=1)
            ata[:, 1, 3] = ata[:, 3, 1] = ws @ dxw
            ata[:, 2, 3] = ata[:, 3, 2] = ws @ dyw
            ata[:, 3, 3] = dot(ws, s)
            atv = np.empty((k, nc))
            atv[:, :3] = atv_base
            atv[:, 3] = dot(v, s)
            for q, sn in enumerate(sns):
                ata[:, 3, 4 + q] = ata[:, 4 + q, 3] = dot(ws, sn)
                atv[:, 4 + q] = svn[q]
            ata += np.eye(nc)[None] * 1e-9
            lin = np.linalg.solve(ata, atv[..., None])[..., 0]
            b = lin[:, 3]
            model = (
                lin[:, 0:1]
                + lin[:, 1:2] * dxw[None, :]
                + lin[:, 2:3] * dyw[None, :]
                + b[:, None] * s
            )
            for q, sn in enumerate(sns):
                model = model + lin[:, 4 + q : 5 + q] * sn
            resid = v - model * wgt
            jfac = -b[:, None] * ds / np.where(r > 1e-9, r, 1.0) * wgt
            jx = jfac * ddx
            jy = jfac * ddy
            jxx, jxy, jyy = dot(jx, jx), dot(jx, jy), dot(jy, jy)
            gx, gy = dot(jx, resid), dot(jy, resid)
            # variable projection (Golub-Pereyra/Kaufman): the linear parameters are optimal for
            # the current centre, so the Gauss-Newton step of the centre uses the Schur
            # complement of the linear block (quadratic convergence, unlike alternating updates)
            jta = np.empty((k, 2, nc))
            for row_i, jj in enumerate((jx, jy)):
                jta[:, row_i, 0] = jj.sum(axis=1)
                jta[:, row_i, 1] = jj @ dxw
                jta[:, row_i, 2] = jj @ dyw
                jta[:, row_i, 3] = dot(jj, s)
                for q, sn in enumerate(sns):
                    jta[:, row_i, 4 + q] = dot(jj, sn)
            corr = jta @ np.linalg.solve(ata, np.transpose(jta, (0, 2, 1)))  # (k, 2, 2)
            jxx, jxy, jyy = jxx - corr[:, 0, 0], jxy - corr[:, 0, 1], jyy - corr[:, 1, 1]
            damp = 1e-6 + 1e-3 * np.abs(jxx + jyy)
            jxx, jyy = jxx + damp, jyy + damp
            det = jxx * jyy - jxy**2
            stx = (jyy * gx - jxy * gy) / det
            sty = (jxx * gy - jxy * gx) / det
            norm = np.hypot(stx, sty)
            lim = 0.5 * radius_px
            f = np.minimum(1.0, lim / np.maximum(norm, 1e-12))
            cx = cx + stx * f
            cy = cy + sty * f
        # residual sum of squares from the normal equations at the last linear solve
        rss = np.maximum(vv - 2 * np.einsum("kc,kc->k", lin, atv) + np.einsum(
            "kc,kcd,kd->k", lin, ata, lin), 0.0)
        dof = np.maximum(npx - 6, 1)
        s2 = rss / dof
        cov = np.linalg.inv(ata)
        se_b = np.sqrt(np.maximum(cov[:, 3, 3] * s2, 1e-30))
        amp = np.asarray(lin[:, 3], dtype=np.float64)
        sig = np.asarray(-amp / se_b, dtype=np.float64)
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
    shape_filter: bool = True,
    source: str | os.PathLike[str] | None = None,
    peaks: Detections | None = None,
) -> Detections:
    """2D detections in every frame, refined to sub-pixel precision on the unbinned image.

    Peaks whose fit does not converge, moves by more than a radius, is bright, or has an
    amplitude significance below ``min_significance`` are dropped; refined detections closer
    than one radius in the same frame are merged (the higher peak wins). With ``shape_filter``
    detections that do not look like a bead (:func:`tiltflow.fiducials.shape.is_bead_like`:
    anisotropy above :data:`DETECTION_MAX_ANISOTROPY` — edges, lines — or a fitted radius
    outside 0.4–1.5 × ``radius_px``) are dropped too; each kept detection carries its fitted
    radius and anisotropy.
    """
    b = default_binning(radius_px) if binning is None else int(binning)
    det = (
        peaks
        if peaks is not None  # from detect_peaks_scales, at binning b
        else detect_peaks(stack, radius_px, threshold, b, xp=xp, threads=threads, source=source)
    )
    if len(det) == 0:
        return det
    fit = fit_beads(stack, det.frame, det.x, det.y, radius_px, threads=threads)
    keep = fit.ok & (fit.significance >= min_significance)
    out = Detections(det.frame, fit.x, fit.y, det.peak, fit.amplitude, fit.significance).subset(
        keep
    )
    out = _dedupe(out, radius_px)
    if not shape_filter or len(out) == 0:
        return out
    from tiltflow.fiducials.shape import appearance, is_bead_like

    app = appearance(stack, out.frame, out.x, out.y, radius_px)
    out = Detections(
        out.frame, out.x, out.y, out.peak, out.amplitude, out.significance,
        radius=app.radius, anisotropy=app.anisotropy,
    )
    return out.subset(is_bead_like(app, radius_px, DETECTION_MAX_ANISOTROPY))


def _dedupe(det: Detections, radius_px: float) -> Detections:
    """Drop detections within one radius of a higher peak in the same frame."""
    if len(det) < 2:
        return det
    pairs = close_pairs(np.column_stack([det.x, det.y]), radius_px, groups=det.frame)
    if pairs.size == 0:
        return det
    drop = np.where(det.peak[pairs[:, 0]] >= det.peak[pairs[:, 1]], pairs[:, 1], pairs[:, 0])
    keep = np.ones(len(det), bool)
    keep[drop] = False
    return det.subset(keep)
