"""QC figures of one tomogram (matplotlib Agg; deterministic, palette PNGs kept small).

Each figure is one PNG (:data:`FIGURES`): the report shows them on the tomogram's page and
Snakemake's report lists them one by one. :func:`render_figures` writes them all (a figure whose
data are missing says why instead); :func:`plot_tomogram` writes the one-page overview
``results/qc/<name>.png`` (all figures stacked under a title that wraps, never cut).
"""

from __future__ import annotations

import io
import math
import os
import textwrap
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from tiltflow.qc.figures import FIGURE_KEYS, FIGURES, JPEG_FIGURES, figure_filename
from tiltflow.qc.images import (
    band_pass,
    bin_factor,
    block_mean,
    crop,
    display_range,
    nice_length,
    read_frame,
)
from tiltflow.qc.metrics import (
    Thresholds,
    TomogramQC,
    depth_axis,
    flag_reasons,
    lowest_dose_frame,
    path_factor,
    projections,
    tilt_angles_deg,
)

#: largest side (px) of the full tilt image drawn
MAX_DISPLAY_PX = 720
DPI = 80

#: colours used in every figure with the same meaning
C_BEFORE = "#8c8c8c"  # imported alignment (before refinement)
C_IMPORTED = "#e8384f"  # projections with the imported matrices
C_AFTER = "#1f77b4"  # refined alignment
C_REFINED = "#00d0ff"  # projections with the refined matrices (on images)
C_OBSERVED = "#ffd400"  # observed beads (on images)
C_TRUTH = "#2ca02c"
C_THRESHOLD = "#d62728"

STYLE = {
    "font.size": 9.5,
    "axes.titlesize": 10.5,
    "axes.labelsize": 9.5,
    "legend.fontsize": 8.5,
    "xtick.labelsize": 8.5,
    "ytick.labelsize": 8.5,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "grid.linewidth": 0.6,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "legend.framealpha": 0.85,
    "savefig.dpi": DPI,
    "figure.dpi": DPI,
}


#: palette size of the figures with colour maps (the others: 40 colours)
PALETTE_COLOURS: dict[str, int] = {"coverage": 160, "sideview": 64, "quiver": 32}


class NotAvailable(Exception):
    """A figure cannot be drawn; the message says why (shown instead of the figure)."""


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


# ---------------------------------------------------------------------------------------------
# saving


def png_bytes(fig: Any, colors: int = 40) -> bytes:
    """The figure as a palette PNG (matplotlib's RGBA output quantised: ~4× smaller, same look)."""
    from PIL import Image

    buf = io.BytesIO()
    fig.savefig(
        buf,
        format="png",
        dpi=DPI,
        metadata={"Software": None},
        facecolor="white",
        bbox_inches="tight",
        pad_inches=0.08,
    )
    buf.seek(0)
    with Image.open(buf) as im:
        rgb = im.convert("RGB")
    pal = rgb.quantize(colors=colors, method=Image.Quantize.FASTOCTREE, dither=Image.Dither.NONE)
    out = io.BytesIO()
    pal.save(out, format="PNG", compress_level=9)
    return out.getvalue()


def jpeg_bytes(fig: Any, quality: int = 65) -> bytes:
    """The figure as a JPEG (figures that are mostly a grey-scale image)."""
    from PIL import Image

    buf = io.BytesIO()
    fig.savefig(
        buf,
        format="png",
        dpi=DPI,
        metadata={"Software": None},
        facecolor="white",
        bbox_inches="tight",
        pad_inches=0.08,
    )
    buf.seek(0)
    with Image.open(buf) as im:
        rgb = im.convert("RGB")
    out = io.BytesIO()
    rgb.save(out, format="JPEG", quality=quality, optimize=True, subsampling=0)
    return out.getvalue()


def write_png(path: str | os.PathLike[str], data: bytes) -> None:
    from tiltflow.io.atomic import atomic_path

    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def message_png(title: str, why: str, width_in: float = 6.0) -> bytes:
    """A small figure that says why there is no figure."""
    plt = _plt()
    with plt.rc_context(STYLE):
        fig = plt.figure(figsize=(width_in, 1.1))
        fig.text(0.02, 0.68, title, fontsize=11, weight="bold", va="center")
        fig.text(0.02, 0.3, textwrap.fill(f"not available: {why}", 95), fontsize=9.5, va="center")
        try:
            return png_bytes(fig, colors=16)
        finally:
            plt.close(fig)


# ---------------------------------------------------------------------------------------------
# helpers


def _angles(qc: TomogramQC) -> np.ndarray:
    if qc.tomo is None:
        raise NotAvailable("no tomogram (an earlier step failed)")
    return tilt_angles_deg(qc.tomo)


def _tracks_for_images(qc: TomogramQC) -> Any:
    tr = qc.tracks_after if qc.tracks_after is not None else qc.tracks_before
    if tr is None:
        raise NotAvailable("no bead tracks (fiducials step did not run or found none)")
    return tr


def _proj_sets(qc: TomogramQC) -> tuple[np.ndarray | None, np.ndarray | None]:
    n = qc.n_tilts or 0
    imp = projections(qc.tomo_imported, qc.beads_imported)
    ref = projections(qc.tomo_refined, qc.beads_refined)
    imp = imp if imp is not None and imp.shape[0] == n else None
    ref = ref if ref is not None and ref.shape[0] == n else None
    return imp, ref


def _log_limits(*arrays: Any, extra: Sequence[float] = ()) -> tuple[float, float]:
    vals = [np.asarray(a, dtype=float).ravel() for a in arrays if a is not None]
    v = np.concatenate(vals + [np.asarray(extra, dtype=float)]) if vals or extra else np.ones(1)
    v = v[np.isfinite(v) & (v > 0)]
    if not v.size:
        return 0.01, 10.0
    lo, hi = float(v.min()), float(v.max())
    return 10 ** math.floor(math.log10(lo * 0.7)), 10 ** math.ceil(math.log10(hi * 1.4))


def _plain_log_ticks(ax: Any, axis: str = "y") -> None:
    """Log axis labelled 0.01, 0.1, 1, 10 (not 10⁻²)."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    a = ax.yaxis if axis == "y" else ax.xaxis
    a.set_major_locator(LogLocator(base=10))
    a.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    a.set_minor_formatter(NullFormatter())


def _scale_bar(ax: Any, width_px: float, height_px: float, pixel_size_a: float) -> None:
    from matplotlib.patches import Rectangle

    length_nm = nice_length(0.2 * width_px * pixel_size_a / 10.0)
    length_px = length_nm * 10.0 / pixel_size_a
    x0, y0 = 0.04 * width_px, 0.04 * height_px
    ax.add_patch(
        Rectangle(
            (x0, y0), length_px, 0.012 * height_px, facecolor="white", edgecolor="black", lw=0.8
        )
    )
    ax.text(
        x0 + length_px / 2,
        y0 + 0.025 * height_px,
        f"{length_nm:g} nm",
        color="white",
        ha="center",
        va="bottom",
        fontsize=9.5,
        weight="bold",
        path_effects=_outline(),
    )


def _outline() -> list[Any]:
    import matplotlib.patheffects as pe

    return [pe.withStroke(linewidth=2.2, foreground="black")]


def _deg(a: float) -> str:
    """A tilt angle as a signed whole number of degrees ('+0', never '-0')."""
    v = int(round(float(a)))
    return f"{v:+d}" if v else "0"


def _observed_on(tr: Any, f: int) -> tuple[np.ndarray, np.ndarray]:
    sel = (tr.tilt == f) & (tr.bead >= 0)
    return tr.bead[sel], tr.obs[sel]


# ---------------------------------------------------------------------------------------------
# figures


def _gap_cross() -> Any:
    """A '+' with a hole in the middle: marks a bead without hiding it."""
    from matplotlib.path import Path as MPath

    verts, codes = [], []
    for dx, dy in ((1, 0), (-1, 0), (0, 1), (0, -1)):
        verts += [(0.5 * dx, 0.5 * dy), (dx, dy)]
        codes += [MPath.MOVETO, MPath.LINETO]
    return MPath(verts, codes)


def _marker_pt(ax: Any, fig: Any, radius_data: float) -> float:
    """Marker size (points, diameter) of a circle of ``radius_data`` in ``ax``'s x units."""
    x0, x1 = ax.get_xlim()
    width_pt = ax.get_position().width * fig.get_size_inches()[0] * 72
    return 2 * radius_data * width_pt / abs(x1 - x0)


def fig_beads(qc: TomogramQC, th: Thresholds) -> Any:
    tomo = qc.tomo
    if tomo is None:
        raise NotAvailable("no tomogram (an earlier step failed)")
    f = lowest_dose_frame(tomo)
    try:
        img = read_frame(tomo.tilt_series, f)
    except Exception as exc:  # noqa: BLE001 - a QC figure must not fail on an unreadable stack
        raise NotAvailable(f"stack {tomo.tilt_series} not readable ({type(exc).__name__})") from exc
    r = qc.bead_radius_px or 5.0
    h, w = img.shape
    b = bin_factor(img.shape, MAX_DISPLAY_PX)
    disp = band_pass(block_mean(img, b), r / b)
    lo, hi = display_range(disp, 0.2, 99.8)
    full_bp = band_pass(img, r) if b > 1 else disp
    angle = float(tilt_angles_deg(tomo)[f])
    angle = 0.0 if abs(angle) < 0.05 else angle  # no "-0.0°"
    imp, ref = _proj_sets(qc)
    tr = qc.tracks_after if qc.tracks_after is not None else qc.tracks_before
    beads_f, obs_f = (np.zeros(0, int), np.zeros((0, 2))) if tr is None else _observed_on(tr, f)
    cross = _gap_cross()

    plt = _plt()
    fig = plt.figure(figsize=(9.6, 6.4))
    gs = fig.add_gridspec(3, 2, width_ratios=(3.0, 1), hspace=0.32, wspace=0.06)
    ax = fig.add_subplot(gs[:, 0])
    ax.imshow(
        disp,
        cmap="gray",
        vmin=lo,
        vmax=hi,
        origin="lower",
        extent=(-0.5, disp.shape[1] * b - 0.5, -0.5, disp.shape[0] * b - 0.5),
        interpolation="antialiased",
    )
    ax.grid(False)
    ax.set_xlim(-0.5, w - 0.5)
    ax.set_ylim(-0.5, h - 0.5)
    ms = max(6.0, _marker_pt(ax, fig, 2.0 * r))
    handles = []
    for key, pred, colour in (("imported", imp, C_IMPORTED), ("refined", ref, C_REFINED)):
        if pred is None:
            continue
        p = pred[f]
        label = f"3D beads projected with the {key} alignment"
        if beads_f.size:
            ok = beads_f < p.shape[0]
            d = np.linalg.norm(obs_f[ok] - p[beads_f[ok]], axis=1)
            if d.size:
                label += f": {np.mean(d):.2f} px from the detected bead (mean)"
        (hd,) = ax.plot(p[:, 0], p[:, 1], "o", mfc="none", mec=colour, ms=ms, mew=1.1, label=label)
        handles.append(hd)
    if obs_f.size:
        (hd,) = ax.plot(
            obs_f[:, 0],
            obs_f[:, 1],
            marker=cross,
            ls="none",
            color=C_OBSERVED,
            ms=ms * 1.25,
            mew=1.2,
            label=f"bead detected on this tilt ({obs_f.shape[0]})",
        )
        handles.insert(0, hd)
    ax.set_xlabel("x (px)")
    ax.set_ylabel("y (px)")
    _scale_bar(ax, w, h, float(tomo.pixel_size))
    ax.set_title(
        f"tilt {f} ({angle:+.1f}°, acquired first), {tomo.pixel_size:g} Å/px"
        + (f", shown binned ×{b}" if b > 1 else "")
    )
    if handles:
        ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(0.0, -0.09), fontsize=9)
    else:
        ax.text(
            0.5,
            0.97,
            "no beads tracked",
            transform=ax.transAxes,
            ha="center",
            va="top",
            color="white",
            fontsize=11,
            path_effects=_outline(),
        )

    # three beads enlarged: median, 90th percentile and largest imported offset
    chosen: list[int] = []
    if beads_f.size:
        off = np.zeros(beads_f.size)
        if imp is not None:
            ok = beads_f < imp.shape[1]
            off[ok] = np.linalg.norm(obs_f[ok] - imp[f][beads_f[ok]], axis=1)
        order = np.argsort(off, kind="stable")
        for q in (0.5, 0.9, 1.0):
            i = int(order[int(round(q * (len(order) - 1)))])
            if i not in chosen:
                chosen.append(i)
    for k in range(3):
        zax = fig.add_subplot(gs[k, 1])
        zax.grid(False)
        zax.set_xticks([])
        zax.set_yticks([])
        if k >= len(chosen):
            zax.axis("off")
            continue
        i = chosen[k]
        x, y = obs_f[i]
        spread = [0.0]
        for pred in (imp, ref):
            if pred is not None and beads_f[i] < pred.shape[1]:
                spread.append(float(np.max(np.abs(pred[f][beads_f[i]] - obs_f[i]))))
        half = int(math.ceil(max(3.5 * r, max(spread) + 2.5 * r)))
        c = crop(full_bp, x, y, half)
        cl, ch = display_range(c, 0.2, 99.8)
        cx, cy = int(round(x)), int(round(y))
        zax.imshow(
            c,
            cmap="gray",
            vmin=cl,
            vmax=ch,
            origin="lower",
            interpolation="nearest",
            extent=(cx - half - 0.5, cx + half + 0.5, cy - half - 0.5, cy + half + 0.5),
        )
        zax.set_xlim(cx - half - 0.5, cx + half + 0.5)
        zax.set_ylim(cy - half - 0.5, cy + half + 0.5)
        zms = _marker_pt(zax, fig, 1.6 * r)
        zax.plot([x], [y], marker=cross, ls="none", color=C_OBSERVED, ms=zms * 1.3, mew=1.4)
        txt = []
        for key, pred, colour in (("imported", imp, C_IMPORTED), ("refined", ref, C_REFINED)):
            if pred is not None and beads_f[i] < pred.shape[1]:
                p = pred[f][beads_f[i]]
                zax.plot([p[0]], [p[1]], "o", mfc="none", mec=colour, ms=zms, mew=1.4)
                txt.append(f"{key} {np.linalg.norm(p - obs_f[i]):.2f} px")
        zax.set_title(f"bead {beads_f[i]}\n" + ", ".join(txt), fontsize=8.5)
        _scale_bar_small(zax, half, float(tomo.pixel_size), cx, cy)
    return fig


def _scale_bar_small(ax: Any, half: int, pixel_size_a: float, cx: float, cy: float) -> None:
    length_nm = nice_length(0.5 * half * pixel_size_a / 10.0)
    length_px = length_nm * 10.0 / pixel_size_a
    x0, y0 = cx - half + 0.12 * half, cy - half + 0.12 * half
    ax.plot(
        [x0, x0 + length_px],
        [y0, y0],
        "-",
        color="white",
        lw=2.5,
        solid_capstyle="butt",
        path_effects=_outline(),
    )
    ax.text(
        x0 + length_px / 2,
        y0 + 0.06 * half,
        f"{length_nm:g} nm",
        color="white",
        ha="center",
        va="bottom",
        fontsize=8,
        path_effects=_outline(),
    )


def fig_gallery(qc: TomogramQC, th: Thresholds) -> Any:
    tomo = qc.tomo
    if tomo is None:
        raise NotAvailable("no tomogram (an earlier step failed)")
    tr = _tracks_for_images(qc)
    angles = tilt_angles_deg(tomo)
    n = tomo.n_tilts
    imp, ref = _proj_sets(qc)
    pred = ref if ref is not None else imp
    r = qc.bead_radius_px or 5.0
    beads = np.unique(tr.bead[tr.bead >= 0])
    if not beads.size:
        raise NotAvailable("no beads tracked")
    res = qc.bead_residual_after if qc.bead_residual_after is not None else qc.bead_residual_before
    score = np.array(
        [res[b] if res is not None and b < len(res) and np.isfinite(res[b]) else -1 for b in beads]
    )
    order = beads[np.argsort(-score, kind="stable")]
    n_rows = min(5, order.size)
    picks = [int(order[int(round(i))]) for i in np.linspace(0, order.size - 1, n_rows)]
    picks = list(dict.fromkeys(picks))
    by_angle = np.argsort(angles, kind="stable")
    n_cols = min(8, n)
    cols = [int(by_angle[int(round(i))]) for i in np.linspace(0, n - 1, n_cols)]
    cols = list(dict.fromkeys(cols))
    bg = max(1, int(r // 4))  # keep ≥ 4 px per bead radius
    half = int(math.ceil(3.2 * r / bg))
    size = 2 * half + 1
    gap = max(2, size // 12)
    mosaic = np.full(
        (len(picks) * (size + gap) - gap, len(cols) * (size + gap) - gap), np.nan, np.float32
    )
    obs_lookup = {(int(b), int(t)): tr.obs[i] for i, (b, t) in enumerate(zip(tr.bead, tr.tilt))}
    marks: list[tuple[float, float, str]] = []
    missing: list[tuple[int, int]] = []
    for j, f in enumerate(cols):
        try:
            frame = read_frame(tomo.tilt_series, f)
        except Exception as exc:  # noqa: BLE001
            raise NotAvailable(f"stack not readable ({type(exc).__name__})") from exc
        bp = band_pass(block_mean(frame, bg), r / bg)
        lo, hi = display_range(bp, 0.05, 99.7)
        for i, bead in enumerate(picks):
            o = obs_lookup.get((bead, f))
            p = pred[f][bead] if pred is not None and bead < pred.shape[1] else None
            centre = o if o is not None else p
            if centre is None:
                missing.append((i, j))
                continue
            cb = (np.asarray(centre) - (bg - 1) / 2) / bg  # binned-pixel coordinates
            c = crop(bp, cb[0], cb[1], half)
            c = np.clip((c - lo) / (hi - lo), 0, 1)
            y0, x0 = i * (size + gap), j * (size + gap)
            mosaic[y0 : y0 + size, x0 : x0 + size] = c[::-1]  # row 0 at the top, y up in a crop
            if p is not None:
                pb = (np.asarray(p) - (bg - 1) / 2) / bg
                dx, dy = pb[0] - round(cb[0]), pb[1] - round(cb[1])
                marks.append((x0 + half + dx, y0 + half - dy, "ref"))
            if o is None:
                missing.append((i, j))
    plt = _plt()
    cell_in = 0.8
    fig = plt.figure(figsize=(1.6 + cell_in * len(cols), 0.9 + cell_in * len(picks)))
    ax = fig.add_axes((1.3 / (1.6 + cell_in * len(cols)), 0.05, 0.0, 0.0))
    w_in, h_in = fig.get_size_inches()
    ax.set_position(
        (1.4 / w_in, 0.15 / h_in, cell_in * len(cols) / w_in, cell_in * len(picks) / h_in)
    )
    cmap = plt.get_cmap("gray").with_extremes(bad="white")
    ax.imshow(mosaic, cmap=cmap, vmin=0, vmax=1, interpolation="nearest")
    ax.grid(False)
    for x, y, _ in marks:
        ax.plot(
            [x], [y], "o", mfc="none", mec=C_REFINED, ms=cell_in * 72 * 2.9 * r / bg / size, mew=1.0
        )
    for i, j in missing:
        ax.text(
            j * (size + gap) + half,
            i * (size + gap) + size - 2,
            "not detected",
            color="#ff5050",
            ha="center",
            va="bottom",
            fontsize=7.5,
            path_effects=_outline(),
        )
    ax.set_xticks([j * (size + gap) + half for j in range(len(cols))])
    ax.set_xticklabels([f"{_deg(angles[f])}°" for f in cols])
    ax.xaxis.tick_top()
    ax.set_yticks([i * (size + gap) + half for i in range(len(picks))])
    labels = []
    for b in picks:
        rv = res[b] if res is not None and b < len(res) else math.nan
        labels.append(f"bead {b}\n{rv:.2f} px" if math.isfinite(rv) else f"bead {b}")
    ax.set_yticklabels(labels)
    ax.tick_params(length=0)
    for s in ax.spines.values():
        s.set_visible(False)
    crop_nm = size * bg * float(tomo.pixel_size) / 10
    ax.set_xlabel(f"tilt angle; each crop {crop_nm:.0f} nm across", labelpad=4)
    ax.xaxis.set_label_position("top")
    return fig


def fig_residuals(qc: TomogramQC, th: Thresholds) -> Any:
    angles = _angles(qc)
    tb, ta = qc.tilt_residual_before, qc.tilt_residual_after
    bb, ba = qc.bead_residual_before, qc.bead_residual_after
    if all(a is None for a in (tb, ta, bb, ba)):
        raise NotAvailable("no residuals in the fiducials/align side files")
    plt = _plt()
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10.5, 3.9), gridspec_kw={"wspace": 0.25})
    lo, hi = _log_limits(tb, ta, bb, ba, extra=[th.max_residual_px])
    thr_label = f"flag threshold for the mean: {th.max_residual_px:g} px"
    for ax, x, before, after, xlabel in (
        (a1, angles, tb, ta, "tilt angle (°)"),
        (a2, None, bb, ba, "bead number"),
    ):
        if before is not None:
            xb = np.arange(len(before)) if x is None else x
            ax.plot(xb, before, "o", ms=4, color=C_BEFORE, label="imported alignment")
        if after is not None:
            xa = np.arange(len(after)) if x is None else x
            order = np.argsort(xa, kind="stable")
            ax.plot(
                np.asarray(xa)[order],
                np.asarray(after)[order],
                "o-",
                ms=3.5,
                lw=0.8,
                color=C_AFTER,
                label="refined alignment",
            )
        ax.axhline(th.max_residual_px, color=C_THRESHOLD, ls="--", lw=1, label=thr_label)
        ax.set_yscale("log")
        ax.set_ylim(lo, hi)
        _plain_log_ticks(ax)
        ax.set_xlabel(xlabel)
        ax.set_ylabel("mean residual (px)")
    flagged = qc.align_tilts.get("flagged")
    if flagged is not None and ta is not None and np.nansum(flagged) > 0:
        sel = np.nan_to_num(flagged) > 0
        a1.plot(angles[sel], ta[sel], "x", color=C_THRESHOLD, ms=8, mew=1.6, label="tilt flagged")
    px = qc.pixel_size
    title = "per tilt"
    if px:
        title += f" (1 px = {px / 10:g} nm)"
    a1.set_title(title)
    a2.set_title("per bead")
    a1.legend(loc="upper center", bbox_to_anchor=(1.1, -0.17), ncol=4, fontsize=9)
    return fig


def _image_size(tomo: Any) -> tuple[float, float]:
    """(width, height) of the tilt images in px (from the stack header)."""
    try:
        import mrcfile

        with mrcfile.mmap(str(tomo.tilt_series), mode="r", permissive=True) as mrc:
            hh, ww = mrc.data.shape[-2:]
            return float(ww), float(hh)
    except Exception:  # noqa: BLE001 - fall back to the tomogram's size
        return float(tomo.size[0]), float(tomo.size[2 if depth_axis(tomo) == 1 else 1])


def fig_quiver(qc: TomogramQC, th: Thresholds) -> Any:
    tomo = qc.tomo
    if tomo is None:
        raise NotAvailable("no tomogram (an earlier step failed)")
    tr = qc.tracks_after
    if tr is None or tr.fit is None:
        raise NotAvailable("no refined tracks (align step did not run)")
    angles = tilt_angles_deg(tomo)
    n = tomo.n_tilts
    w, h = _image_size(tomo)
    sel = (tr.bead >= 0) & np.all(np.isfinite(tr.fit), axis=1) & (tr.tilt >= 0) & (tr.tilt < n)
    d = tr.obs[sel] - tr.fit[sel]
    mag = np.linalg.norm(d, axis=1)
    if not mag.size:
        raise NotAvailable("no refined residuals")
    ref_len = float(np.percentile(mag, 95)) or 1.0
    scale = 0.16 / ref_len  # tile widths per px of residual: the 95th percentile is 16 %
    key_px = nice_length(1.5 * ref_len)
    ncol = int(math.ceil(math.sqrt(n * 1.6)))
    nrow = int(math.ceil(n / ncol))
    aspect = h / w
    gap = 0.3
    pitch = 1.1
    plt = _plt()
    fig = plt.figure(figsize=(9.0, 9.0 * (nrow * (aspect + gap) + 0.35) / (ncol * pitch)))
    ax = fig.add_axes((0.0, 0.0, 1.0, 1.0))
    ax.set_axis_off()
    by_angle = np.argsort(angles, kind="stable")
    tb, xs, ys = tr.tilt[sel], tr.obs[sel, 0], tr.obs[sel, 1]
    flagged = qc.align_tilts.get("flagged")
    X, Y, U, V = [], [], [], []
    for k, f in enumerate(by_angle):
        col, row = k % ncol, k // ncol
        x0, y0 = col * pitch, -row * (aspect + gap)
        bad = flagged is not None and np.nan_to_num(flagged[f]) > 0
        ax.add_patch(
            _rect(x0, y0, 1.0, aspect, "#d62728" if bad else "#aaaaaa", 1.4 if bad else 0.6)
        )
        s = tb == f
        X.append(x0 + xs[s] / w)
        Y.append(y0 + ys[s] / w)
        U.append(d[s, 0] * scale)
        V.append(d[s, 1] * scale)
        mean = float(np.mean(mag[s])) if s.any() else math.nan
        ax.text(
            x0 + 0.5,
            y0 + aspect + 0.03,
            f"{_deg(angles[f])}°  {mean:.2f} px",
            ha="center",
            va="bottom",
            fontsize=7.5,
            color="#d62728" if bad else "black",
        )
    Xa, Ya = np.concatenate(X), np.concatenate(Y)
    ax.plot(Xa, Ya, ".", ms=1.5, color="#555555")
    style = {
        "angles": "xy",
        "scale_units": "xy",
        "scale": 1,
        "color": C_AFTER,
        "width": 0.0018,
        "headwidth": 3.2,
        "headlength": 3.5,
        "headaxislength": 3.1,
        "minlength": 0.2,
    }
    ax.quiver(Xa, Ya, np.concatenate(U), np.concatenate(V), **style)
    ky = -(nrow - 1) * (aspect + gap) - gap * 0.9
    ax.quiver([0.02], [ky], [key_px * scale], [0.0], **style)
    ax.text(
        key_px * scale + 0.08,
        ky,
        f"= {key_px:g} px residual (arrows magnified "
        f"×{scale * w:.0f} relative to the image; dot = detected bead)",
        va="center",
        fontsize=8.5,
    )
    ax.set_xlim(-0.03, ncol * pitch)
    ax.set_ylim(-(nrow - 1) * (aspect + gap) - gap * 1.4, aspect + gap * 0.8)
    ax.set_aspect("equal")
    return fig


def _rect(x: float, y: float, w: float, h: float, colour: str, lw: float) -> Any:
    from matplotlib.patches import Rectangle

    return Rectangle((x, y), w, h, fill=False, edgecolor=colour, lw=lw)


#: align tilts-block change columns: label -> (panel, words, factor to the shown unit)
KNOWN_DELTAS: dict[str, tuple[str, str, float]] = {
    "tfDTiltDeg": ("tilt", "tilt angle", 1.0),
    "tfDThirdDeg": ("tilt", "third angle (about the beam axis of the tilt axis)", 1.0),
    "tfDRotDeg": ("rot", "in-plane rotation", 1.0),
    "tfDShiftXPx": ("shift", "shift along x", 1.0),
    "tfDShiftYPx": ("shift", "shift along y", 1.0),
    "tfDMag": ("mag", "magnification", 100.0),
}
DELTA_PANELS: dict[str, tuple[str, str]] = {
    "tilt": ("tilt angle change", "change (°)"),
    "rot": ("in-plane rotation change", "change (°)"),
    "shift": ("shift change", "change (px)"),
    "mag": ("magnification change", "change (%)"),
}


def _words(label: str) -> str:
    import re

    core = re.sub(r"^tf(Delta|Change|D)", "", label)
    return " ".join(re.findall(r"[A-Z][a-z]*|[0-9]+", core)).lower() or label


def fig_changes(qc: TomogramQC, th: Thresholds) -> Any:
    angles = _angles(qc)
    if not qc.deltas:
        raise NotAvailable("no parameter changes in the align side file (align did not run)")
    panels: dict[str, list[tuple[str, np.ndarray]]] = {k: [] for k in DELTA_PANELS}
    other: list[tuple[str, np.ndarray]] = []
    for label, values in qc.deltas.items():
        if label in KNOWN_DELTAS:
            panel, words, factor = KNOWN_DELTAS[label]
            v = values * factor
            if label == "tfDThirdDeg" and not np.any(np.nan_to_num(v)):
                continue  # not refined
            panels[panel].append((words, v))
        else:
            other.append((_words(label), values))
    keys = [k for k in DELTA_PANELS if panels[k]] + (["other"] if other else [])
    plt = _plt()
    ncols = 2
    nrows = int(math.ceil(len(keys) / ncols))
    fig, axes = plt.subplots(
        nrows,
        ncols,
        figsize=(10.5, 3.1 * nrows),
        squeeze=False,
        gridspec_kw={"hspace": 0.6, "wspace": 0.42},
    )
    order = np.argsort(angles, kind="stable")
    colours = ("#1f77b4", "#ff7f0e", "#2ca02c")
    px = qc.pixel_size
    for ax, key in zip(axes.ravel(), keys):
        series = panels[key] if key != "other" else other
        title, ylabel = DELTA_PANELS.get(key, ("other changes", "change"))
        for (words, v), colour in zip(series, colours):
            ax.plot(angles[order], v[order], "o-", ms=3, lw=0.8, color=colour, label=words)
        ax.axhline(0, color="black", lw=0.6)
        ax.set_title(title)
        ax.set_ylabel(ylabel)
        ax.set_xlabel("tilt angle (°)")
        if key == "shift" and px:
            sec = ax.secondary_yaxis(
                "right", functions=(lambda p, s=px: p * s / 10.0, lambda q, s=px: q * 10.0 / s)
            )
            sec.set_ylabel("change (nm)")
        if len(series) > 1 or key in ("other",):
            ax.set_title(title, loc="left")
            ax.legend(
                loc="lower right",
                bbox_to_anchor=(1.0, 1.0),
                ncol=len(series),
                fontsize=8.5,
                frameon=False,
                borderaxespad=0.1,
            )
    for ax in axes.ravel()[len(keys) :]:
        ax.set_visible(False)
    return fig


def fig_coverage(qc: TomogramQC, th: Thresholds) -> Any:
    tomo = qc.tomo
    if tomo is None:
        raise NotAvailable("no tomogram (an earlier step failed)")
    tr = _tracks_for_images(qc)
    angles = tilt_angles_deg(tomo)
    n = tomo.n_tilts
    m = qc.n_beads or int(tr.bead.max()) + 1
    m = max(m, int(tr.bead.max()) + 1 if len(tr) else 0)
    if not m:
        raise NotAvailable("no beads")
    res = np.full((m, n), np.nan)
    ok = (tr.bead >= 0) & (tr.tilt >= 0) & (tr.tilt < n)
    if tr.residual is not None:
        res[tr.bead[ok], tr.tilt[ok]] = tr.residual[ok]
    seen = np.zeros((m, n), bool)
    seen[tr.bead[ok], tr.tilt[ok]] = True
    rejected = np.zeros((m, n), bool)
    tb = qc.tracks_before
    if qc.tracks_after is not None and tb is not None and len(tb) == len(tr):
        rej = (tr.bead < 0) & (tb.bead >= 0) & (tb.tilt >= 0) & (tb.tilt < n)
        rejected[tb.bead[rej], tb.tilt[rej]] = True
    outside = np.zeros((m, n), bool)
    imp, ref = _proj_sets(qc)
    pred = ref if ref is not None else imp
    if pred is not None and pred.shape[1] == m:
        try:
            import mrcfile

            with mrcfile.mmap(str(tomo.tilt_series), mode="r", permissive=True) as mrc:
                hh, ww = mrc.data.shape[-2:]
            p = np.transpose(pred, (1, 0, 2))
            outside = (
                (p[..., 0] < 0) | (p[..., 1] < 0) | (p[..., 0] > ww - 1) | (p[..., 1] > hh - 1)
            )
        except Exception:  # noqa: BLE001
            pass
    by_angle = np.argsort(angles, kind="stable")
    res, seen, rejected, outside = (a[:, by_angle] for a in (res, seen, rejected, outside))
    from matplotlib.colors import ListedColormap, LogNorm
    from matplotlib.patches import Patch

    plt = _plt()
    fig_h = min(9.0, 2.0 + 0.16 * m)
    fig, ax = plt.subplots(figsize=(10.5, fig_h))
    base = np.where(outside & ~seen, 0, np.where(rejected, 2, np.where(seen, np.nan, 1)))
    ax.imshow(
        base,
        cmap=ListedColormap(["white", "#c8c8c8", "#e8384f"]),
        vmin=0,
        vmax=2,
        aspect="auto",
        interpolation="nearest",
    )
    lo, hi = _log_limits(res)
    im = ax.imshow(
        np.where(seen & ~rejected, np.clip(res, lo, hi), np.nan),
        cmap="viridis",
        norm=LogNorm(vmin=lo, vmax=hi),
        aspect="auto",
        interpolation="nearest",
    )
    ax.grid(False)
    step = max(1, n // 14)
    ticks = list(range(0, n, step))
    ax.set_xticks(ticks)
    ax.set_xticklabels([_deg(angles[by_angle[i]]) for i in ticks])
    ax.set_xlabel("tilt angle (°)")
    ax.set_ylabel("bead number")
    from matplotlib.ticker import MaxNLocator

    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    counts = seen.sum(axis=1)
    ax.set_title(
        f"{int(seen.any(axis=0).sum())} of {n} tilts with beads; beads detected on "
        f"{int(np.median(counts)) if counts.size else 0} tilts (median)"
    )
    cb = fig.colorbar(im, ax=ax, pad=0.01, fraction=0.04)
    cb.set_label("residual after refinement (px)")
    ax.legend(
        handles=[
            Patch(facecolor="#c8c8c8", label="not detected"),
            Patch(facecolor="white", edgecolor="#999999", label="outside the image"),
            Patch(facecolor="#e8384f", label="rejected as outlier"),
        ],
        loc="upper center",
        bbox_to_anchor=(0.5, -0.12 * 6 / fig_h),
        ncol=3,
        fontsize=9,
    )
    return fig


def _surface_groups(h: np.ndarray) -> tuple[np.ndarray, list[float]]:
    """Split bead heights along the normal into two surfaces (largest gap), -1 = in between."""
    if h.size < 4:
        return np.zeros(h.size, int), [float(np.median(h))] if h.size else []
    order = np.argsort(h)
    gaps = np.diff(h[order])
    k = int(np.argmax(gaps))
    lo_grp, hi_grp = order[: k + 1], order[k + 1 :]
    groups = np.full(h.size, -1)
    levels = []
    for gi, idx in enumerate((lo_grp, hi_grp)):
        med = float(np.median(h[idx]))
        mad = 1.4826 * float(np.median(np.abs(h[idx] - med))) if idx.size > 2 else 0.0
        near = idx[np.abs(h[idx] - med) <= max(3 * mad, 2.0)]
        groups[near] = gi
        levels.append(float(np.median(h[near])) if near.size else med)
    return groups, levels


def fig_sideview(qc: TomogramQC, th: Thresholds) -> Any:
    tomo = qc.tomo_refined if qc.tomo_refined is not None else qc.tomo
    beads = qc.beads_refined if qc.beads_refined is not None else qc.beads_imported
    if tomo is None or beads is None or not beads.shape[0]:
        raise NotAvailable("no 3D beads (fiducials or align did not run)")
    from tiltflow.geometry import beam_directions, tomogram_centre

    px_nm = float(tomo.pixel_size) / 10.0
    depth = depth_axis(tomo)
    v = beam_directions(tomo.proj)
    axis_vec = np.cross(
        v[int(np.argmin(tilt_angles_deg(tomo)))], v[int(np.argmax(tilt_angles_deg(tomo)))]
    )
    others = [i for i in range(3) if i != depth]
    along = (
        others[int(np.argmax(np.abs(axis_vec[others])))] if np.linalg.norm(axis_vec) else others[1]
    )
    across = [i for i in others if i != along][0]
    size = np.asarray(tomo.size, dtype=float)
    centre = tomogram_centre((int(size[0]), int(size[1]), int(size[2])))
    normal = qc.ice.get("normal") if qc.ice else None
    names = "XYZ"
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(10.5, 4.3), gridspec_kw={"wspace": 0.22})
    groups = np.zeros(beads.shape[0], int)
    levels: list[float] = []
    n_vec = None
    if normal is not None and np.all(np.isfinite(normal)):
        n_vec = np.asarray(normal, dtype=float) / np.linalg.norm(normal)
        groups, levels = _surface_groups(beads @ n_vec)
    colours = {0: "#1f77b4", 1: "#ff7f0e", -1: "#7f7f7f"}
    words = {0: "beads on one surface", 1: "beads on the other surface", -1: "beads inside"}
    for ax, hor, title in (
        (axes[0], across, "seen along the tilt axis"),
        (axes[1], along, "seen across the tilt axis"),
    ):
        for g in (0, 1, -1):
            s = groups == g
            if s.any():
                ax.plot(
                    (beads[s, hor] - centre[hor]) * px_nm,
                    (beads[s, depth] - centre[depth]) * px_nm,
                    "o",
                    ms=5,
                    color=colours[g],
                    label=f"{words[g]} ({int(s.sum())})",
                )
        xs = np.array([-size[hor] / 2, size[hor] / 2])
        ax.add_patch(
            _rect(
                xs[0] * px_nm,
                -size[depth] / 2 * px_nm,
                size[hor] * px_nm,
                size[depth] * px_nm,
                "#444444",
                0.8,
            )
        )
        if n_vec is not None and abs(n_vec[depth]) > 1e-6:
            third = [i for i in range(3) if i not in (hor, depth)][0]
            for lev, ls in zip(levels, ("-", "--")):
                # plane n·p = lev through the tomogram's middle along the third axis
                pts = centre[hor] + xs
                dz = (lev - n_vec[hor] * pts - n_vec[third] * centre[third]) / n_vec[depth]
                ax.plot(xs * px_nm, (dz - centre[depth]) * px_nm, ls, color="#2ca02c", lw=1.3)
            if len(levels) == 2:
                mid = (np.mean(levels) - n_vec @ centre) * px_nm
                L = 0.25 * size[depth] * px_nm
                base = np.array([0.0, 0.0]) + mid * np.array([n_vec[hor], n_vec[depth]])
                ax.annotate(
                    "",
                    xy=(base[0] + L * n_vec[hor], base[1] + L * n_vec[depth]),
                    xytext=(base[0], base[1]),
                    arrowprops={"arrowstyle": "-|>", "color": "#2ca02c", "lw": 1.5},
                )
        ax.set_xlabel(f"{names[hor]} (nm from the centre)")
        ax.set_ylabel(f"{names[depth]}, depth (nm)")
        ax.set_title(title)
        ax.set_aspect("equal", adjustable="datalim")
    lines = []
    if len(levels) == 2:
        lines.append(f"bead planes {abs(levels[1] - levels[0]) * px_nm:.1f} nm apart")
    tn = qc.ice.get("thickness_nm") if qc.ice else None
    if tn is not None:
        lines.append(f"ice thickness from the intensities {tn:.1f} nm")
    from matplotlib.lines import Line2D

    handles, labels = axes[0].get_legend_handles_labels()
    if levels:
        handles.append(Line2D([], [], color="#2ca02c", lw=1.3))
        labels.append("ice surfaces (⊥ fitted ice normal, arrow)")
    handles.append(_rect(0, 0, 1, 1, "#444444", 0.8))
    labels.append(f"tomogram box ({int(size[depth])} px deep)")
    fig.legend(handles, labels, loc="lower center", ncol=3, fontsize=9, bbox_to_anchor=(0.5, -0.02))
    fig.suptitle("; ".join(lines), fontsize=10, y=0.99)
    fig.subplots_adjust(bottom=0.27, top=0.86)
    return fig


def fig_ice(qc: TomogramQC, th: Thresholds) -> Any:
    ice = qc.ice or {}
    if qc.tomo is None or qc.status.get("ice") != "ok":
        why = "the ice step failed" if qc.status.get("ice") == "failed" else "ice did not run"
        raise NotAvailable(why)
    intensity = ice.get("intensity")
    if intensity is None or not np.isfinite(intensity).any():
        raise NotAvailable("no intensities in the ice side file")
    status = (ice.get("fit_status") or "").lower()
    x = path_factor(qc.tomo, ice.get("normal"))
    used = ice.get("used")
    used = np.ones(x.size, bool) if used is None else np.nan_to_num(used) > 0
    t: float | None = ice.get("thickness")
    lum: float | None = ice.get("luminance")
    plt = _plt()
    fig, (a1, a2) = plt.subplots(
        2,
        1,
        figsize=(6.6, 5.6),
        sharex=True,
        gridspec_kw={"height_ratios": (3, 1.3), "hspace": 0.08},
    )
    a1.plot(
        x[used], intensity[used], "o", ms=4.5, color=C_AFTER, label="measured (used in the fit)"
    )
    if (~used).any():
        a1.plot(
            x[~used], intensity[~used], "x", ms=6, color=C_THRESHOLD, label="measured (left out)"
        )
    fitted = t is not None and lum is not None and lum > 0 and not status.startswith("fallback")
    if fitted and t is not None and lum is not None:
        xs = np.linspace(min(1.0, float(x.min())), float(x.max()) * 1.02, 100)
        tnm = ice.get("thickness_nm")
        label = f"fit: L·exp(−t·path), t = {t:.3f}" + (f" ({tnm:.1f} nm)" if tnm else "")
        a1.plot(xs, lum * np.exp(-t * xs), "-", color="#ff7f0e", lw=1.4, label=label)
        resid = ice.get("log_residual")
        if resid is None:
            resid = np.log(intensity / (lum * np.exp(-t * x)))
        a2.plot(x[used], 100 * resid[used], "o", ms=3.5, color=C_AFTER)
        if (~used).any():
            a2.plot(x[~used], 100 * resid[~used], "x", ms=5, color=C_THRESHOLD)
        a2.axhline(0, color="#ff7f0e", lw=1)
        rms = ice.get("rms_residual")
        if rms is not None:
            a2.text(
                0.99,
                0.92,
                f"RMS {100 * rms:.2g} %",
                transform=a2.transAxes,
                ha="right",
                va="top",
                fontsize=8.5,
            )
    else:
        a2.text(0.5, 0.5, "no fit (fallback)", transform=a2.transAxes, ha="center")
    a1.set_yscale("log")
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    a1.yaxis.set_major_locator(LogLocator(subs=tuple(float(k) for k in range(1, 10))))
    a1.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    a1.yaxis.set_minor_formatter(NullFormatter())
    a1.set_ylabel("mean intensity / dose\n(counts per px per e⁻/Å²)")
    a2.set_ylabel("residual (%)")
    a2.set_xlabel("path length through the ice (× thickness: 1/|n·v|)")
    tnm = ice.get("thickness_nm")
    if fitted and tnm:
        sec = a1.secondary_xaxis("top", functions=(lambda p, s=tnm: p * s, lambda q, s=tnm: q / s))
        sec.set_xlabel("path length (nm)")
    a1.legend(loc="upper right", fontsize=8.5)
    return fig


def fig_scale(qc: TomogramQC, th: Thresholds, truth_scale: np.ndarray | None = None) -> Any:
    ice = qc.ice or {}
    if qc.tomo is None or qc.status.get("ice") != "ok" or ice.get("scale") is None:
        raise NotAvailable("no scale factors (the ice step did not finish)")
    angles = tilt_angles_deg(qc.tomo)
    scale = np.asarray(ice["scale"], dtype=float)
    order = np.argsort(angles, kind="stable")
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.6, 3.8))
    if truth_scale is not None and truth_scale.size == scale.size:
        err = 100 * np.max(np.abs(scale - truth_scale) / truth_scale)
        ax.plot(
            angles[order],
            truth_scale[order],
            "-",
            lw=1.3,
            color=C_TRUTH,
            label=f"simulator's truth (largest error {err:.2g} %)",
        )
    ax.plot(
        angles[order],
        scale[order],
        "o",
        ms=4.5,
        color=C_AFTER,
        label="rlnCtfScalefactor in the final set",
    )
    ax.set_xlabel("tilt angle (°)")
    ax.set_ylabel("scale factor (1 = zero tilt)")
    ax.set_title(f"range {np.nanmin(scale):.3f} – {np.nanmax(scale):.3f}")
    ax.legend(loc="lower center", fontsize=8.5)
    ax.margins(y=0.15)
    return fig


def fig_truth(qc: TomogramQC, th: Thresholds, cmp: Any) -> Any:
    if cmp is None:
        raise NotAvailable("no simulator truth for this tomogram")
    angles = _angles(qc)
    order = np.argsort(angles, kind="stable")
    plt = _plt()
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10.5, 3.9), gridspec_kw={"wspace": 0.25})
    for key, colour, label in (("imported", C_BEFORE, "imported"), ("refined", C_AFTER, "refined")):
        e = getattr(cmp, f"reproj_error_{key}_px")
        if e is not None:
            a1.plot(
                angles[order],
                e[order],
                "o-",
                ms=3.5,
                lw=0.8,
                color=colour,
                label=f"{label}: mean {cmp.scalars.get(f'reproj_error_{key}_mean_px', math.nan):.2f} px",
            )
        t = getattr(cmp, f"tilt_error_{key}_deg")
        if t is not None:
            a2.plot(
                angles[order],
                t[order],
                "o-",
                ms=3.5,
                lw=0.8,
                color=colour,
                label=f"{label}: RMS {cmp.scalars.get(f'tilt_error_{key}_rms_deg', math.nan):.3f}°",
            )
    a1.set_yscale("log")
    a1.set_ylim(*_log_limits(cmp.reproj_error_imported_px, cmp.reproj_error_refined_px))
    _plain_log_ticks(a1)
    a1.set_xlabel("tilt angle (°)")
    a1.set_ylabel("distance from the true bead (px)")
    a1.set_title("projected 3D beads vs true bead positions")
    a2.axhline(0, color="black", lw=0.6)
    a2.set_xlabel("tilt angle (°)")
    a2.set_ylabel("tilt angle − true (°), mean removed")
    a2.set_title("tilt angle error")
    a1.legend(fontsize=8.5)
    a2.legend(fontsize=8.5)
    return fig


# ---------------------------------------------------------------------------------------------
# all figures of one tomogram


def render_figures(
    qc: TomogramQC,
    out_dir: str | os.PathLike[str],
    thresholds: Thresholds | None = None,
    keys: Sequence[str] | None = None,
) -> dict[str, dict[str, Any]]:
    """Write ``out_dir/<key>.png`` for each figure; returns {key: {file, available, why}}.

    A figure whose data are missing is written as a short "not available: why" image, so the
    set of files is always the same (Snakemake outputs)."""
    th = thresholds or Thresholds()
    out_dir = Path(out_dir)
    keys = FIGURE_KEYS if keys is None else tuple(keys)
    cmp = None
    if "truth" in keys or "scale" in keys:
        from tiltflow.qc.truth import truth_arrays

        cmp = truth_arrays(qc) if qc.truth is not None else None
    makers: dict[str, Callable[[], Any]] = {
        "beads": lambda: fig_beads(qc, th),
        "gallery": lambda: fig_gallery(qc, th),
        "residuals": lambda: fig_residuals(qc, th),
        "quiver": lambda: fig_quiver(qc, th),
        "changes": lambda: fig_changes(qc, th),
        "coverage": lambda: fig_coverage(qc, th),
        "sideview": lambda: fig_sideview(qc, th),
        "ice": lambda: fig_ice(qc, th),
        "scale": lambda: fig_scale(qc, th, None if cmp is None else cmp.scale_true),
        "truth": lambda: fig_truth(qc, th, cmp),
    }
    titles = {f.key: f.title for f in FIGURES}
    plt = _plt()
    out: dict[str, dict[str, Any]] = {}
    for key in keys:
        path = out_dir / figure_filename(key)
        info: dict[str, Any] = {"file": path.name, "available": True, "why": ""}
        with plt.rc_context(STYLE):
            try:
                fig = makers[key]()
            except NotAvailable as exc:
                fig = None
                info.update(available=False, why=str(exc))
            if fig is not None:
                try:
                    if key in JPEG_FIGURES:
                        data = jpeg_bytes(fig)
                    else:
                        data = png_bytes(fig, PALETTE_COLOURS.get(key, 40))
                finally:
                    plt.close(fig)
            else:
                data = message_png(titles[key], info["why"])
        write_png(path, data)
        out[key] = info
    return out


def header_lines(qc: TomogramQC, th: Thresholds) -> list[str]:
    status = "ok" if qc.failed_step is None else f"FAILED at {qc.failed_step}"
    lines = [f"{qc.name} — {status}"]
    for code, why in flag_reasons(qc, th).items():
        if code in ("missing", "failed"):
            continue
        lines += textwrap.wrap(f"{code}: {why}", 110)
    return lines


def plot_tomogram(
    qc: TomogramQC,
    out_png: str | os.PathLike[str],
    thresholds: Thresholds | None = None,
    flags: list[str] | None = None,
    figures_dir: str | os.PathLike[str] | None = None,
) -> None:
    """Write the one-page overview of one tomogram: a title block (name, status, every flag with
    its reason, wrapped) above the figures of :func:`render_figures` (read from ``figures_dir``
    when given, else rendered here)."""
    import tempfile

    from PIL import Image, ImageDraw

    th = thresholds or Thresholds()
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(figures_dir) if figures_dir is not None else Path(tmp)
        if figures_dir is None:
            render_figures(qc, src, th)
        panels: list[Any] = []
        for key in FIGURE_KEYS:
            p = src / figure_filename(key)
            if p.is_file():
                with Image.open(p) as src_im:
                    panels.append(src_im.convert("RGB"))
    width = max([im.width for im in panels] + [900])
    lines = header_lines(qc, th)
    plt = _plt()
    with plt.rc_context(STYLE):
        fig = plt.figure(figsize=(width / DPI, 0.3 + 0.22 * len(lines)))
        colour = "black" if qc.failed_step is None and len(lines) == 1 else "#b00020"
        fig.text(
            0.01,
            1 - 0.18 / (0.3 + 0.22 * len(lines)),
            lines[0],
            fontsize=13,
            weight="bold",
            va="top",
            color=colour,
        )
        for i, line in enumerate(lines[1:], start=1):
            fig.text(
                0.01,
                1 - (0.2 + 0.22 * i) / (0.3 + 0.22 * len(lines)),
                line,
                fontsize=10,
                va="top",
                color="#b00020",
            )
        head: Any = Image.open(io.BytesIO(png_bytes(fig, colors=32))).convert("RGB")
        plt.close(fig)
    total = head.height + sum(im.height + 10 for im in panels)
    sheet = Image.new("RGB", (width, total), "white")
    sheet.paste(head, (0, 0))
    y = head.height
    draw = ImageDraw.Draw(sheet)
    for im in panels:
        draw.line([(0, y + 4), (width, y + 4)], fill=(220, 220, 220), width=1)
        sheet.paste(im, ((width - im.width) // 2, y + 10))
        y += im.height + 10
    buf = io.BytesIO()
    sheet.quantize(colors=256, method=Image.Quantize.FASTOCTREE, dither=Image.Dither.NONE).save(
        buf, format="PNG", compress_level=6
    )
    write_png(out_png, buf.getvalue())
    del flags  # the flags are recomputed with their reasons from qc and the thresholds
