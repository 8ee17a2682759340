"""File-level hand step: ``run_find_hand`` (CLI verb ``find-hand`` and workflow rule ``hand``).

Outputs in ``out_dir``:

- ``tomograms.star``: the selected tomograms; rlnTomoHand is the measured hand when it was
  determined (or forced), else the input hand; with ``correct_defocus`` the flagged tilts'
  rlnDefocusU/V are replaced by the measured defocus (all other fields kept);
- ``hand_<name>.star``: blocks ``fit`` (one row), ``tilts`` (one row per tilt) and ``strips``
  (one row per fitted strip), labels with the ``tf`` prefix; NaN is written as ``nan``;
- ``hand_<name>.png`` (unless ``figure=False``): defocus offset against predicted depth for
  every measured tilt with the fit and the two hands' predictions, and the per-tilt slopes,
  drawn from ``hand_<name>.star`` alone (:func:`render_hand_figure`).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from tiltflow.errors import InputError
from tiltflow.fiducials.io import set_fiducials
from tiltflow.hand.core import STATUS_DETERMINED, HandResult, apply_result, find_hand
from tiltflow.hand.params import HandParams
from tiltflow.io.atomic import write_with_atomic
from tiltflow.io.guard import refuse_output_dir_over_inputs, tomogram_set_inputs
from tiltflow.io.mrc import open_stack
from tiltflow.io.star import float_column, write_star
from tiltflow.io.tomograms import read_tomogram_set, write_tomogram_set
from tiltflow.model import Tomogram, TomogramSet

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)


def _num(x: float) -> float | str:
    """A finite float, or the text ``nan`` (side files only)."""
    return float(x) if np.isfinite(x) else "nan"


def _text(s: str) -> str:
    """One STAR token: words joined by underscores ('-' when empty)."""
    return "_".join(str(s).split()) or "-"


def hand_side_blocks(res: HandResult) -> dict[str, dict[str, list]]:
    """Blocks ``fit``, ``tilts`` and ``strips`` of ``hand_<name>.star``."""
    px = res.pixel_size
    fit: dict[str, list] = {
        "tfTomoName": [res.name],
        "tfStatus": [res.status],
        "tfHandMeasured": [float(res.hand_measured)],
        "tfHandIn": [float(res.hand_in)],
        "tfHandOut": [float(res.hand_out)],
        "tfSlope": [_num(res.slope)],
        "tfSlopeSe": [_num(res.slope_se)],
        "tfSlopeZ": [_num(res.z)],
        "tfTiltAgreement": [_num(res.agreement)],
        "tfTiltsMeasured": [res.n_tilts_measured],
        "tfTiltsSelected": [int(np.count_nonzero(res.selected))],
        "tfStripsUsed": [res.n_strips_used],
        "tfFitScale": [_num(res.fit_scale)],
        "tfPlaneSource": [res.plane.source],
        "tfPlaneNormalX": [float(res.plane.normal[0])],
        "tfPlaneNormalY": [float(res.plane.normal[1])],
        "tfPlaneNormalZ": [float(res.plane.normal[2])],
        "tfPixelSizeA": [float(px)],
        "tfReason": [_text("; ".join(res.reasons))],
    }
    n = res.angle_deg.size
    tilts: dict[str, list] = {
        "tfTiltIndex": list(range(n)),
        "tfTiltAngleDeg": [float(a) for a in res.angle_deg],
        "tfSelected": [bool(v) for v in res.selected],
        "tfMeasured": [bool(v) for v in res.measured],
        "tfThonRings": [_num(v) for v in res.rings],
        "tfResHighA": [_num(v) for v in res.res_high_A],
        "tfSearchA": [_num(v) for v in res.search_A],
        "tfDefocusImportedA": [float(v) for v in res.defocus_A],
        "tfSlope": [_num(v) for v in res.tilt_slope],
        "tfSlopeSe": [_num(v) for v in res.tilt_slope_se],
        "tfDefocusOffsetA": [_num(v) for v in res.intercept_A],
        "tfDefocusOffsetSeA": [_num(v) for v in res.intercept_se_A],
        "tfDefocusCorrectionA": [_num(v) for v in res.correction_A],
        "tfDefocusCorrectionSeA": [_num(v) for v in res.correction_se_A],
        "tfDefocusOff": [bool(v) for v in res.corrected],
        "tfNote": [_text(s) for s in res.tilt_notes],
    }
    st = res.strips
    m = len(st["tilt"])
    strips: dict[str, list] = {
        "tfTiltIndex": [int(v) for v in st["tilt"]],
        "tfStripIndex": [int(v) for v in st["strip"]],
        "tfCentreX": [float(v) for v in st["centre_x"]],
        "tfCentreY": [float(v) for v in st["centre_y"]],
        "tfTiles": [int(v) for v in st["tiles"]],
        "tfDepthPx": [float(v) for v in st["depth_px"]],
        "tfDeltaDefocusA": [_num(v) for v in st["delta_A"]],
        "tfDeltaDefocusSeA": [_num(v) for v in st["se_A"]],
        "tfDeltaDefocusPx": [_num(v / px) for v in st["delta_A"]],
        "tfRingZ": [_num(v) for v in st["z"]],
        "tfAtSearchEdge": [bool(v) for v in st["at_edge"]],
        "tfUsed": [bool(v) for v in res.strip_used],
        "tfWeight": [float(v) for v in res.strip_weight],
        "tfResidualPx": [_num(v) for v in res.strip_residual_px],
    }
    assert all(len(v) == m for v in strips.values())
    return {"fit": fit, "tilts": tilts, "strips": strips}


def write_hand_star(path: str | os.PathLike[str], res: HandResult) -> None:
    """``hand_<name>.star``: header comments (model, verdict, messages) + blocks fit, tilts, strips."""
    header = [
        "tiltflow hand: Δdefocus/px = slope · depth + offset_tilt over strips parallel to the tilt axis;",
        "RELION 4 adds hand·px·(depth − depth(centre)) to the defocus, so slope = hand (±1)",
        "depth: row 2 of P at the specimen-plane point seen at the strip centre, minus that of the tomogram centre (px)",
        "tfDefocusOffsetA: measured − imported defocus at the tomogram-centre depth (free slope);"
        " tfDefocusCorrectionA: the same with the slope fixed at the hand",
        f"verdict: {res.status}"
        + (f" (hand {res.hand_measured:+g})" if res.status == STATUS_DETERMINED else "")
        + (": " + "; ".join(res.reasons) if res.reasons else ""),
    ]
    header += [" ".join(m.split()) for m in res.messages]
    write_star(path, hand_side_blocks(res), header=header)



def plot_hand(tables: Mapping[str, pd.DataFrame], path: str | os.PathLike[str]) -> None:
    """``hand_<name>.png`` from the blocks of ``hand_<name>.star`` as
    :func:`tiltflow.io.star.read_star` gives them (``fit``, ``tilts``, ``strips`` of
    :func:`hand_side_blocks`): Δdefocus (minus each tilt's offset) against depth; per-tilt
    slopes. The step and the workflow's figure job both draw through this function."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    f = tables["fit"].iloc[0]
    tl = tables["tilts"]
    st = tables["strips"]
    px = float(f["tfPixelSizeA"])
    slope, slope_se = float(f["tfSlope"]), float(f["tfSlopeSe"])
    angle = float_column(tl, "tfTiltAngleDeg")
    intercept = float_column(tl, "tfDefocusOffsetA")
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(11.0, 4.4), dpi=100)
    if len(st):
        tilt = float_column(st, "tfTiltIndex").astype(int)
        depth_a = float_column(st, "tfDepthPx") * px
        off = np.where(np.isfinite(intercept[tilt]), intercept[tilt], 0.0)
        y = float_column(st, "tfDeltaDefocusA") - off
        cmap = plt.get_cmap("coolwarm")
        amax = max(float(np.nanmax(np.abs(angle))), 1.0)
        colours = cmap(0.5 + 0.5 * angle[tilt] / amax)
        used = float_column(st, "tfUsed") != 0
        if used.any():
            ax.scatter(
                depth_a[used],
                y[used],
                c=colours[used],
                s=22,
                edgecolors="k",
                linewidths=0.3,
                label="strips (used)",
                zorder=3,
            )
        if (~used).any():
            fin = ~used & np.isfinite(y)
            ax.scatter(
                depth_a[fin],
                y[fin],
                c=colours[fin],
                marker="x",
                s=22,
                label="strips (left out)",
                zorder=3,
            )
        span = float(np.nanmax(np.abs(depth_a))) if depth_a.size else 1.0
        xs = np.array([-span, span])
        ax.plot(xs, xs, "--", color="0.55", lw=1, label="hand +1")
        ax.plot(xs, -xs, ":", color="0.55", lw=1, label="hand −1")
        if np.isfinite(slope):
            ax.plot(
                xs,
                slope * xs,
                "-",
                color="C2",
                lw=1.5,
                label=f"fit: slope {slope:+.3f} ± {slope_se:.3f}",
            )
        sm = plt.cm.ScalarMappable(cmap=cmap, norm=plt.Normalize(-amax, amax))
        fig.colorbar(sm, ax=ax, label="tilt angle (deg)", fraction=0.046, pad=0.02)
    else:
        ax.text(0.5, 0.5, "no strip was fitted", ha="center", va="center", transform=ax.transAxes)
    ax.set_xlabel("predicted depth × pixel size (Å)")
    ax.set_ylabel("Δdefocus − tilt offset (Å)")
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="upper left", fontsize=7)
    t_slope, t_se = float_column(tl, "tfSlope"), float_column(tl, "tfSlopeSe")
    meas = (float_column(tl, "tfMeasured") != 0) & np.isfinite(t_slope)
    if meas.any():
        bx.errorbar(
            angle[meas],
            t_slope[meas],
            yerr=t_se[meas],
            fmt="o",
            ms=4,
            color="C0",
            capsize=2,
            label="tilt slope",
        )
    for v in (1.0, -1.0):
        bx.axhline(v, color="0.6", lw=0.8, ls="--")
    if np.isfinite(slope):
        bx.axhline(slope, color="C2", lw=1.2, label="global slope")
    bx.axhline(0.0, color="0.8", lw=0.6)
    bx.set_ylim(-2.0, 2.0)
    if not meas.any():
        bx.text(0.5, 0.6, "no tilt was measured", ha="center", va="center", transform=bx.transAxes)
    finite = angle[np.isfinite(angle)]
    if finite.size:  # the series' tilts, measured or not
        bx.set_xlim(float(finite.min()) - 3.0, float(finite.max()) + 3.0)
    bx.set_xlabel("tilt angle to the specimen normal (deg)")
    bx.set_ylabel("slope (px / px)")
    bx.grid(alpha=0.3)
    if meas.any() or np.isfinite(slope):
        bx.legend(loc="lower right", fontsize=7)
    if str(f["tfStatus"]) == STATUS_DETERMINED:
        verdict = (
            f"hand {float(f['tfHandMeasured']):+g} (slope {slope:+.3f} ± {slope_se:.3f}, "
            f"{float(f['tfTiltAgreement']):.0%} of {int(f['tfTiltsMeasured'])} tilts agree)"
        )
    else:
        # tfReason: the reasons joined by "; ", words by "_" (one STAR token)
        reason = str(f["tfReason"])
        verdict = "undetermined: " + ("" if reason == "-" else reason.replace("_", " "))
    fig.suptitle(f"{f['tfTomoName']}: {verdict}", fontsize=9, wrap=True)
    fig.tight_layout()

    def _save(tmp: Path) -> None:
        fig.savefig(tmp, format="png", metadata={"Software": None})

    try:
        write_with_atomic(path, _save)
    finally:
        plt.close(fig)


def render_hand_figure(side_star: str | os.PathLike[str], png: str | os.PathLike[str]) -> None:
    """``hand_<name>.png`` from ``hand_<name>.star`` alone (:func:`plot_hand`)."""
    from tiltflow.io.star import read_star

    plot_hand(read_star(side_star), png)


def run_find_hand(
    tomo_star: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    params: HandParams = HandParams(),  # noqa: B008 (frozen)
    names: Sequence[str] | None = None,
    *,
    figure: bool = True,
) -> tuple[TomogramSet, dict[str, HandResult]]:
    """Measure the hand of the selected tomograms (``names=None``: all); write the outputs.

    Stacks are memory-mapped from each tomogram's ``rlnTomoTiltSeriesName`` and fiducials read
    from ``rlnTomoFiducialsStarFile`` (when present), both relative to the current directory.
    ``figure``: also draw ``hand_<name>.png`` from the side file (:func:`render_hand_figure`);
    the workflow's step job passes ``False`` and renders it in a separate job. Returns the
    written set and the result of every tomogram.
    """
    tomo_set = read_tomogram_set(tomo_star)
    refuse_output_dir_over_inputs(out_dir, tomo_star, tomogram_set_inputs(tomo_set))
    selected = list(tomo_set.names) if names is None else list(names)
    missing = [n for n in selected if n not in tomo_set.names]
    if missing:
        raise InputError(tomo_star, f"tomogram(s) {missing} not in the set (have {tomo_set.names})")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tomos: list[Tomogram] = []
    results: dict[str, HandResult] = {}
    for name in selected:
        tomo = tomo_set[name]
        stack = open_stack(tomo.tilt_series)
        res = find_hand(tomo, stack, params, set_fiducials(tomo), stack_name=tomo.tilt_series)
        write_hand_star(out / f"hand_{name}.star", res)
        if figure:
            render_hand_figure(out / f"hand_{name}.star", out / f"hand_{name}.png")
        for msg in res.messages:
            log.info("%s: %s", name, msg)
        tomos.append(apply_result(tomo, res, correct_defocus=params.correct_defocus))
        results[name] = res
    result = TomogramSet(tuple(tomos))
    write_tomogram_set(out / "tomograms.star", result)
    return result, results
