"""Residual report of the alignment refinement: tables, STAR blocks and the plot."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray

from tiltflow.align.frames import Frames, Updates, tilt_angles_deg
from tiltflow.geometry import project
from tiltflow.io.star import StarBlock, float_column
from tiltflow.model import Tomogram

if TYPE_CHECKING:
    import pandas as pd

F64 = NDArray[np.float64]

#: observation status values in :attr:`AlignResult.observations`
STATUS_USED = "used"  # assigned to a bead and used in the fit
STATUS_EXCLUDED = "excluded"  # assigned, but its tilt or bead was left out of the fit
STATUS_OUTLIER = "outlier"  # dropped: residual above the outlier threshold
STATUS_UNASSIGNED = "unassigned"  # a detection belonging to no bead

#: per-tilt flag values in the report (anything but "ok" means: matrix kept as imported,
#: except "tilt_angle_kept", where the other parameters were refined)
FLAG_OK = "ok"
FLAG_TOO_FEW = "too_few_beads"
FLAG_NOT_REFINED = "not_refined"
FLAG_TILT_KEPT = "tilt_angle_kept"


@dataclass(frozen=True)
class AlignResult:
    """Outcome of :func:`tiltflow.align.align_tomogram`.

    ``tomogram``: refined (flagged tilts keep the imported matrix). ``beads`` (m,3): refined 3D
    positions (beads left out of the fit keep their input position). ``observations``: one
    row per input detection with ``bead`` (final assignment, -1 = none), ``tilt, x, y, score,
    fit_x, fit_y, residual`` (px, to the bead's projection under the refined matrix; for rows
    dropped as outliers: to the bead they were dropped from; other unassigned rows: fit = the
    detection, residual 0), ``status``, ``input_bead``, ``outlier_of``, ``picked_up``.
    ``tilts`` / ``beads_table``: the report tables (one row per tilt / bead);
    ``summary``: key/value report; ``messages``: what was degenerate, in words.
    ``updates``: the fitted per-tilt parameter changes.
    """

    tomogram: Tomogram
    beads: F64
    observations: StarBlock
    tilts: StarBlock
    beads_table: StarBlock
    summary: dict[str, object]
    messages: list[str] = field(default_factory=list)
    updates: Updates | None = None


def _group_stats(
    index: NDArray[np.int64], values: F64, n: int
) -> tuple[NDArray[np.int64], F64, F64]:
    """Count, mean and max of ``values`` per group index in [0, n) (mean/max 0 when empty)."""
    cnt = np.bincount(index, minlength=n)
    tot = np.bincount(index, weights=values, minlength=n)
    mean = np.divide(tot, cnt, out=np.zeros(n), where=cnt > 0)
    mx = np.zeros(n)
    if index.size:
        np.maximum.at(mx, index, values)
    return cnt, mean, mx


def build_report(
    *,
    tomo: Tomogram,
    fr: Frames,
    proj: F64,
    upd: Updates,
    beads: F64,
    ob: object,
    cur: NDArray[np.int64],
    outlier_of: NDArray[np.int64],
    picked: NDArray[np.bool_],
    act_t: NDArray[np.bool_],
    act_b: NDArray[np.bool_],
    refined: bool,
    messages: list[str],
    extra_summary: dict[str, object],
) -> AlignResult:
    """Assemble the :class:`AlignResult` (tables computed from the final matrices and beads)."""
    n, m = proj.shape[0], beads.shape[0]
    nm_per_px = tomo.pixel_size / 10.0
    tilt = ob.tilt  # type: ignore[attr-defined]
    xy = ob.xy  # type: ignore[attr-defined]
    pred = project(proj, np.nan_to_num(beads))  # (n,m,2)
    assigned = cur >= 0
    dropped = (~assigned) & (outlier_of >= 0)
    fit = xy.copy()
    fit[assigned] = pred[tilt[assigned], cur[assigned]]
    fit[dropped] = pred[tilt[dropped], outlier_of[dropped]]
    resid = np.linalg.norm(xy - fit, axis=1)
    used = assigned & refined
    used[assigned] &= act_t[tilt[assigned]] & act_b[cur[assigned]]
    status = np.full(tilt.size, STATUS_UNASSIGNED, dtype=object)
    status[dropped] = STATUS_OUTLIER
    status[assigned] = STATUS_EXCLUDED
    status[used] = STATUS_USED
    observations = StarBlock(
        "observations",
        {
            "bead": cur,
            "tilt": tilt,
            "x": xy[:, 0],
            "y": xy[:, 1],
            "score": ob.score,  # type: ignore[attr-defined]
            "fit_x": fit[:, 0],
            "fit_y": fit[:, 1],
            "residual": resid,
            "status": status.astype(str),
            "input_bead": ob.bead,  # type: ignore[attr-defined]
            "outlier_of": outlier_of,
            "picked_up": picked & assigned,
        },
    )

    # ---- per tilt (statistics over the assigned observations, i.e. the tracks file rows)
    cnt_t, mean_t, max_t = _group_stats(tilt[assigned], resid[assigned], n)
    n_out_t = np.bincount(tilt[dropped], minlength=n)
    ang0 = fr.angles_deg
    ang1 = tilt_angles_deg(proj, fr.u) if fr.u is not None else ang0
    d_tilt = (ang1 - ang0 + 180.0) % 360.0 - 180.0
    tilt_kept = not bool(extra_summary.get("tilt_refined", True))
    flag = np.full(n, FLAG_OK, dtype=object)
    if not refined:
        flag[:] = FLAG_NOT_REFINED
    else:
        flag[~act_t] = FLAG_TOO_FEW
        if tilt_kept:
            flag[act_t] = FLAG_TILT_KEPT
    flagged = ~act_t | (not refined)
    for f in np.flatnonzero(flagged & refined):
        messages.append(
            f"tilt {f} ({ang0[f]:.1f} deg): {int(cnt_t[f])} bead(s) < min_beads_per_tilt; matrix kept as imported"
        )
    tilts = StarBlock(
        "tilts",
        {
            "tilt_index": np.arange(n),
            "tilt_angle_deg": ang1,
            "n_obs": cnt_t,
            "mean_residual_px": mean_t,
            "max_residual_px": max_t,
            "mean_residual_nm": mean_t * nm_per_px,
            "max_residual_nm": max_t * nm_per_px,
            "n_outliers": n_out_t,
            "d_shift_x_px": upd.shift[:, 0],
            "d_shift_y_px": upd.shift[:, 1],
            "d_rot_deg": np.rad2deg(upd.rot),
            "d_tilt_deg": d_tilt,
            "d_third_deg": np.rad2deg(upd.third),
            "d_mag": upd.mag,
            "flagged": flagged,
            "flag": flag.astype(str),
        },
    )

    # ---- per bead
    cnt_b, mean_b, max_b = _group_stats(cur[assigned], resid[assigned], m)
    n_out_b = np.bincount(outlier_of[dropped], minlength=m)
    n_pick_b = np.bincount(cur[assigned & picked], minlength=m)
    beads_table = StarBlock(
        "beads",
        {
            "bead_index": np.arange(m),
            "x_px": beads[:, 0],
            "y_px": beads[:, 1],
            "z_px": beads[:, 2],
            "n_obs": cnt_b,
            "mean_residual_px": mean_b,
            "max_residual_px": max_b,
            "mean_residual_nm": mean_b * nm_per_px,
            "max_residual_nm": max_b * nm_per_px,
            "n_outliers": n_out_b,
            "n_picked_up": n_pick_b,
            "refined": act_b & refined,
        },
    )

    r_a = resid[assigned]
    mean_all = float(r_a.mean()) if r_a.size else 0.0
    r_u = resid[used]
    drift = np.linalg.norm(upd.shift, axis=1)
    summary: dict[str, object] = {
        "tomo_name": tomo.name,
        "status": "refined" if refined else "as_imported",
        "n_tilts": n,
        "n_tilts_refined": int((act_t & refined).sum()),
        "n_tilts_flagged": int(flagged.sum()),
        "n_beads": m,
        "n_beads_refined": int((act_b & refined).sum()),
        "n_obs": int(assigned.sum()),
        "n_obs_used": int(used.sum()),
        "n_outliers": int(dropped.sum()),
        "mean_residual_px": mean_all,
        "max_residual_px": float(r_a.max()) if r_a.size else 0.0,
        "rms_residual_px": float(np.sqrt(np.mean(r_a**2))) if r_a.size else 0.0,
        "mean_residual_nm": mean_all * nm_per_px,
        "mean_residual_used_px": float(r_u.mean()) if r_u.size else 0.0,
        "pixel_size_A": float(tomo.pixel_size),
        "max_centre_shift_px": float(drift.max()) if drift.size else 0.0,
        "mean_d_tilt_deg": float(d_tilt[act_t].mean()) if np.any(act_t) else 0.0,
    }
    for k, v in extra_summary.items():
        summary[k] = v
    summary["n_messages"] = len(messages)
    refined_tomo = tomo.replace(proj=np.ascontiguousarray(proj, dtype=np.float64))
    return AlignResult(
        tomogram=refined_tomo,
        beads=beads,
        observations=observations,
        tilts=tilts,
        beads_table=beads_table,
        summary=summary,
        messages=list(messages),
        updates=upd,
    )


# --------------------------------------------------------------------------- STAR + plot


def tf_label(name: str) -> str:
    """``mean_residual_px`` -> ``tfMeanResidualPx`` (side-file label, SPEC §4)."""
    return "tf" + "".join(p[:1].upper() + p[1:] for p in re.split(r"_+", name) if p)


def _star_value(v: object) -> object:
    if isinstance(v, (bool, np.bool_)):
        return int(bool(v))
    if isinstance(v, (float, np.floating)):
        return float(v) if np.isfinite(v) else -1.0
    if isinstance(v, str):
        return v if v and not any(c.isspace() for c in v) else "_".join(v.split()) or "none"
    return v


def report_blocks(result: AlignResult) -> dict[str, dict[str, list]]:
    """STAR blocks ``summary`` (one row), ``tilts`` and ``beads`` with ``tf`` labels.

    Non-finite summary values (e.g. no depth spread when nothing was refined) are written -1.
    """
    summary = {tf_label(k): [_star_value(v)] for k, v in result.summary.items()}
    tilts = {
        tf_label(c): [_star_value(v) for v in result.tilts[c].tolist()]
        for c in result.tilts.columns
    }
    beads = {
        tf_label(c): [_star_value(v) for v in result.beads_table[c].tolist()]
        for c in result.beads_table.columns
    }
    return {"summary": summary, "tilts": tilts, "beads": beads}



def plot_align(tables: Mapping[str, pd.DataFrame], path: str | os.PathLike[str]) -> None:
    """Write the residual plot (PNG, matplotlib Agg) from the blocks of ``align_<name>.star``
    as :func:`tiltflow.io.star.read_star` gives them (``summary``, ``tilts``, ``beads``, ``tf``
    labels of :func:`report_blocks`): per tilt, per bead, parameter changes. The step and the
    workflow's figure job both draw through this function, from the side file."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from tiltflow.io.atomic import atomic_path

    t = tables["tilts"]
    b = tables["beads"]
    s = tables["summary"].iloc[0]
    fig, ax = plt.subplots(2, 2, figsize=(11, 7.5), constrained_layout=True)
    ang = float_column(t, "tfTiltAngleDeg")
    order = np.argsort(ang)
    a = ax[0, 0]
    has = float_column(t, "tfNObs") > 0
    mean_t = np.where(has, float_column(t, "tfMeanResidualPx"), np.nan)
    max_t = np.where(has, float_column(t, "tfMaxResidualPx"), np.nan)
    a.plot(ang[order], mean_t[order], "o-", ms=3, label="mean")
    a.plot(ang[order], max_t[order], "s:", ms=3, label="max")
    fl = float_column(t, "tfFlagged") != 0
    if np.any(fl):
        a.plot(ang[fl], np.zeros(fl.sum()), "rx", ms=8, label="flagged (as imported)")
    a.set_xlabel("tilt angle (deg)")
    a.set_ylabel("residual (px)")
    a.set_title("residual per tilt")
    a.legend(fontsize=8)
    a = ax[0, 1]
    bead = float_column(b, "tfBeadIndex")
    a.bar(bead, float_column(b, "tfMeanResidualPx"), color="C0", label="mean")
    a.plot(bead, float_column(b, "tfMaxResidualPx"), "k_", ms=8, label="max")
    a.set_xlabel("bead")
    a.set_ylabel("residual (px)")
    a.set_title("residual per bead")
    a.legend(fontsize=8)
    a = ax[1, 0]
    a.plot(ang[order], float_column(t, "tfDShiftXPx")[order], "o-", ms=3, label="d shift x")
    a.plot(ang[order], float_column(t, "tfDShiftYPx")[order], "o-", ms=3, label="d shift y")
    a.set_xlabel("tilt angle (deg)")
    a.set_ylabel("px")
    a.set_title("shift change (at tomogram centre)")
    a.legend(fontsize=8)
    a = ax[1, 1]
    a.plot(ang[order], float_column(t, "tfDRotDeg")[order], "o-", ms=3, label="d rotation (deg)")
    a.plot(ang[order], float_column(t, "tfDTiltDeg")[order], "o-", ms=3, label="d tilt (deg)")
    a.plot(ang[order], 100 * float_column(t, "tfDMag")[order], "o-", ms=3, label="d magnification (%)")
    third = float_column(t, "tfDThirdDeg")
    if np.any(third != 0):
        a.plot(ang[order], third[order], "o-", ms=3, label="d third angle (deg)")
    a.set_xlabel("tilt angle (deg)")
    a.set_title("angle / magnification change")
    a.legend(fontsize=8)
    fig.suptitle(
        f"{s['tfTomoName']}: {s['tfStatus']}, mean residual {float(s['tfMeanResidualPx']):.3f} px "
        f"({float(s['tfMeanResidualNm']):.3f} nm), {int(s['tfNOutliers'])} outliers"
    )
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png", dpi=90)
    finally:
        plt.close(fig)


def render_align_figure(
    side_star: str | os.PathLike[str], png: str | os.PathLike[str]
) -> None:
    """``align_<name>.png`` from ``align_<name>.star`` alone (:func:`plot_align`)."""
    from tiltflow.io.star import read_star

    plot_align(read_star(side_star), png)
