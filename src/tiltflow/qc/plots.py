"""QC figure of one tomogram (matplotlib Agg, deterministic PNG)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from tiltflow.qc.metrics import Thresholds, TomogramQC, path_factor, tilt_angles_deg

#: largest image side drawn (bigger frames are subsampled for the figure)
MAX_DISPLAY_PX = 1024


def _not_available(ax: Any, title: str, why: str) -> None:
    ax.set_title(title, fontsize=9)
    ax.text(
        0.5,
        0.5,
        f"not available\n{why}",
        ha="center",
        va="center",
        fontsize=8,
        transform=ax.transAxes,
        wrap=True,
    )
    ax.set_xticks([])
    ax.set_yticks([])


def lowest_dose_frame(tomo: Any) -> int:
    """Index of the tilt acquired first (smallest pre-exposure)."""
    return int(np.argmin(np.asarray(tomo.pre_exposure, dtype=float)))


def read_frame(path: str | os.PathLike[str], index: int) -> np.ndarray:
    import mrcfile

    with mrcfile.mmap(str(path), mode="r", permissive=True) as mrc:
        data = mrc.data
        frame = data[index] if data.ndim == 3 else data
        return np.asarray(frame, dtype=np.float32)


def _panel_beads(ax: Any, qc: TomogramQC) -> None:
    title = "beads on the lowest-dose tilt"
    if qc.tomo is None:
        return _not_available(ax, title, "no tomogram")
    f = lowest_dose_frame(qc.tomo)
    try:
        img = read_frame(qc.tomo.tilt_series, f)
    except Exception as exc:  # noqa: BLE001 - a QC figure must not fail on an unreadable stack
        return _not_available(ax, title, f"stack not readable: {type(exc).__name__}")
    step = max(1, int(np.ceil(max(img.shape) / MAX_DISPLAY_PX)))
    show = img[::step, ::step]
    lo, hi = np.percentile(show, [1, 99]) if show.size else (0, 1)
    h, w = img.shape
    ax.imshow(
        show,
        cmap="gray",
        vmin=lo,
        vmax=hi,
        origin="lower",
        extent=(-0.5, w - 0.5, -0.5, h - 0.5),
        interpolation="nearest",
    )
    tr = qc.tracks or {}
    if "tilt" in tr and "obs_x" in tr and "obs_y" in tr:
        sel = tr["tilt"] == f
        ax.plot(
            tr["obs_x"][sel], tr["obs_y"][sel], "+", color="tab:red", ms=6, mew=1, label="observed"
        )
        if "fit_x" in tr and "fit_y" in tr:
            ax.plot(
                tr["fit_x"][sel],
                tr["fit_y"][sel],
                "o",
                mfc="none",
                color="tab:cyan",
                ms=8,
                mew=0.8,
                label="3D bead projected",
            )
        ax.legend(loc="upper right", fontsize=6, framealpha=0.6)
        title += f" (frame {f}, {int(sel.sum())} beads)"
    else:
        title += f" (frame {f}; no tracks)"
    ax.set_title(title, fontsize=9)
    ax.set_xlim(-0.5, w - 0.5)
    ax.set_ylim(-0.5, h - 0.5)
    ax.tick_params(labelsize=7)


def _panel_tilt_residuals(ax: Any, qc: TomogramQC, th: Thresholds) -> None:
    title = "mean residual per tilt"
    if qc.tomo is None:
        return _not_available(ax, title, "no tomogram")
    angles = tilt_angles_deg(qc.tomo)
    drew = False
    tr = qc.tracks or {}
    if "tilt" in tr and "residual" in tr and tr["tilt"].size:
        idx = tr["tilt"].astype(int)
        ok = (idx >= 0) & (idx < len(angles))
        sums = np.bincount(
            idx[ok], weights=np.nan_to_num(tr["residual"][ok]), minlength=len(angles)
        )
        counts = np.bincount(idx[ok], minlength=len(angles))
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = sums / counts
        ax.plot(angles, mean, ".", color="tab:gray", label="fiducials (before)")
        drew = True
    if qc.tilt_residual_after is not None and len(qc.tilt_residual_after) == len(angles):
        ax.plot(angles, qc.tilt_residual_after, ".-", color="tab:blue", lw=0.8, label="after align")
        drew = True
    if not drew:
        return _not_available(ax, title, "no residuals in tracks/align side files")
    ax.axhline(th.max_residual_px, color="tab:red", lw=0.8, ls="--", label="threshold")
    ax.set_xlabel("tilt (deg)", fontsize=8)
    ax.set_ylabel("residual (px)", fontsize=8)
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=6)
    ax.tick_params(labelsize=7)


def _panel_bead_residuals(ax: Any, qc: TomogramQC, th: Thresholds) -> None:
    title = "mean residual per bead"
    values = qc.bead_residual_after
    label = "after align"
    tr = qc.tracks or {}
    if values is None and "bead" in tr and "residual" in tr and tr["bead"].size:
        idx = tr["bead"].astype(int)
        idx = idx - idx.min()
        with np.errstate(invalid="ignore", divide="ignore"):
            values = np.bincount(idx, weights=np.nan_to_num(tr["residual"])) / np.bincount(idx)
        label = "fiducials (before)"
    if values is None or not len(values):
        return _not_available(ax, title, "no per-bead residuals")
    ax.bar(np.arange(len(values)), values, color="tab:blue", width=0.8, label=label)
    ax.axhline(th.max_residual_px, color="tab:red", lw=0.8, ls="--")
    ax.set_xlabel("bead", fontsize=8)
    ax.set_ylabel("residual (px)", fontsize=8)
    ax.set_title(f"{title} ({label})", fontsize=9)
    ax.tick_params(labelsize=7)


def _panel_deltas(ax: Any, qc: TomogramQC) -> None:
    title = "refined parameter change per tilt"
    if not qc.deltas or qc.tomo is None:
        return _not_available(ax, title, "no tfD*/tfDelta* columns in the align tilts block")
    angles = tilt_angles_deg(qc.tomo)
    for label, values in sorted(qc.deltas.items()):
        if len(values) == len(angles):
            ax.plot(angles, values, ".-", lw=0.7, ms=3, label=label[2:])
    ax.axhline(0, color="k", lw=0.5)
    ax.set_xlabel("tilt (deg)", fontsize=8)
    ax.set_ylabel("change (deg / px)", fontsize=8)
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=6, ncol=2)
    ax.tick_params(labelsize=7)


def _panel_ice(ax: Any, qc: TomogramQC) -> None:
    title = "ice fit (Beer–Lambert)"
    ice = qc.ice or {}
    if qc.tomo is None or qc.status.get("ice") != "ok":
        return _not_available(
            ax, title, "ice step did not run" if qc.status.get("ice") != "failed" else "ice failed"
        )
    x = path_factor(qc.tomo, ice.get("normal"))
    t = ice.get("thickness")
    lum = ice.get("luminance")
    intensity = ice.get("intensity")
    if intensity is not None and len(intensity) == len(x):
        ax.plot(x, intensity, ".", color="tab:blue", label="measured / dose")
        if t is not None and lum is not None:
            xs = np.linspace(x.min(), x.max(), 50)
            ax.plot(
                xs,
                lum * np.exp(-t * xs),
                "-",
                color="tab:red",
                lw=1,
                label=f"L·exp(-t/|n·v|), t={t:.3g}",
            )
        elif ice.get("model") is not None and len(ice["model"]) == len(x):
            order = np.argsort(x)
            ax.plot(x[order], ice["model"][order], "-", color="tab:red", lw=1, label="model")
        ax.set_ylabel("intensity per dose", fontsize=8)
    elif ice.get("scale") is not None:
        ax.plot(x, ice["scale"], ".", color="tab:blue", label="rlnCtfScalefactor")
        if t is not None:
            xs = np.linspace(x.min(), x.max(), 50)
            ax.plot(
                xs,
                np.exp(-t * (xs - 1.0)),
                "-",
                color="tab:red",
                lw=1,
                label=f"exp(-t(1/|n·v|-1)), t={t:.3g}",
            )
        ax.set_ylabel("scale factor", fontsize=8)
    else:
        return _not_available(ax, title, "no intensities or scale factors")
    ax.set_xlabel("1 / |n · v|  (relative path length)", fontsize=8)
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=6)
    ax.tick_params(labelsize=7)


def plot_tomogram(
    qc: TomogramQC,
    out_png: str | os.PathLike[str],
    thresholds: Thresholds | None = None,
    flags: list[str] | None = None,
) -> None:
    """Write the five-panel QC figure of one tomogram to ``out_png`` (atomically)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from tiltflow.io.atomic import atomic_path

    th = thresholds or Thresholds()
    fig = plt.figure(figsize=(13, 7.5), dpi=100)
    gs = fig.add_gridspec(2, 3)
    _panel_beads(fig.add_subplot(gs[:, 0]), qc)
    _panel_tilt_residuals(fig.add_subplot(gs[0, 1]), qc, th)
    _panel_bead_residuals(fig.add_subplot(gs[0, 2]), qc, th)
    _panel_deltas(fig.add_subplot(gs[1, 1]), qc)
    _panel_ice(fig.add_subplot(gs[1, 2]), qc)
    status = "ok" if qc.failed_step is None else f"FAILED at {qc.failed_step}: {qc.reason}"
    head = f"{qc.name} — {status}"
    if flags:
        head += f" — flags: {', '.join(flags)}"
    fig.suptitle(head[:160], fontsize=11, color="black" if not flags else "tab:red")
    fig.tight_layout(rect=(0, 0, 1, 0.95))
    out_png = Path(out_png)
    with atomic_path(out_png) as tmp:
        fig.savefig(tmp, format="png", metadata={"Software": None})
    plt.close(fig)
