"""File-level ice step: ``run_estimate_ice`` (CLI verb ``estimate-ice`` and workflow rule ``ice``).

Outputs in ``out_dir``:

- ``tomograms.star``: the selected tomograms with rlnCtfScalefactor per tilt and the global
  rlnTomoRelativeIceThickness, rlnTomoRelativeLuminance, rlnTomoIceNormalX/Y/Z (all other
  fields kept);
- ``ice_<name>.star``: blocks ``fit`` (one row) and ``tilts`` (one row per tilt), labels with
  the ``tf`` prefix (see :data:`FIT_LABELS`, :data:`TILT_LABELS`); NaN where not applicable is
  written as the text ``nan`` (side file only; RELION never reads it);
- ``ice_<name>.png`` (unless ``figure=False``): dose-normalised intensity / L against the beam
  angle, with the fit, drawn from ``ice_<name>.star`` (:func:`render_ice_figure`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from tiltflow.errors import InputError
from tiltflow.fiducials.io import set_fiducials
from tiltflow.ice.core import STATUS_FALLBACK, IceResult, estimate_ice
from tiltflow.ice.params import IceParams
from tiltflow.io.atomic import write_with_atomic
from tiltflow.io.guard import refuse_output_dir_over_inputs, tomogram_set_inputs
from tiltflow.io.mrc import read_stack
from tiltflow.io.staging import OutputTransaction
from tiltflow.io.star import float_column, write_star
from tiltflow.io.tomograms import read_tomogram_set, write_tomogram_set
from tiltflow.model import Tomogram, TomogramSet

if TYPE_CHECKING:
    import pandas as pd

#: global RELION labels written by this step
ICE_GLOBAL_LABELS: tuple[str, ...] = (
    "rlnTomoRelativeLuminance",
    "rlnTomoRelativeIceThickness",
    "rlnTomoIceNormalX",
    "rlnTomoIceNormalY",
    "rlnTomoIceNormalZ",
)


def _num(x: float) -> float | str:
    """A finite float, or the text ``nan`` (side files only)."""
    return float(x) if np.isfinite(x) else "nan"


def relion_luminance(res: IceResult) -> float:
    """rlnTomoRelativeLuminance in RELION's meaning (dimensionless).

    RELION (``relion_tomo_refine_ctf``) models ``rlnCtfScalefactor_f = rlnTomoRelativeLuminance ·
    exp(−rlnTomoRelativeIceThickness / |n · v_f|)``. Our scale factors are normalised to 1 along the
    ice normal, ``exp(−t / |n · v_f|) / exp(−t)``, so the luminance that makes RELION's formula give
    exactly our scale factors is ``exp(t)``. The fitted intensity per unit dose (counts per
    e/Å², the ``L`` of the fit) stays in the side file as ``tfLuminance``. A cos(tilt) fallback has
    t = 0 and luminance 1.
    """
    t = float(res.t)
    return float(np.exp(t)) if np.isfinite(t) else 1.0


def apply_result(tomo: Tomogram, res: IceResult) -> Tomogram:
    """The tomogram with the ice result's scale factors and global ice labels."""
    extra = {
        "rlnTomoRelativeLuminance": relion_luminance(res),
        "rlnTomoRelativeIceThickness": float(res.t),
        "rlnTomoIceNormalX": float(res.normal[0]),
        "rlnTomoIceNormalY": float(res.normal[1]),
        "rlnTomoIceNormalZ": float(res.normal[2]),
    }
    return tomo.replace(ctf_scale=np.asarray(res.scale, dtype=np.float64).copy(), extra=extra)


def ice_side_blocks(res: IceResult) -> dict[str, dict[str, list]]:
    """Blocks ``fit`` and ``tilts`` of ``ice_<name>.star``."""
    bp = res.bead_planes
    fit: dict[str, list] = {
        "tfTomoName": [res.name],
        "tfStatus": [res.status],
        "tfRelativeThickness": [_num(res.t)],
        "tfRelativeThicknessSd": [_num(res.t_sd)],
        "tfThicknessNm": [_num(res.thickness_nm)],
        "tfThicknessSdNm": [_num(res.thickness_sd_nm)],
        "tfMeanFreePathNm": [_num(res.mean_free_path_nm)],
        "tfLuminance": [_num(res.luminance)],
        "tfLuminanceSd": [_num(res.luminance_sd)],
        "tfIceNormalX": [float(res.normal[0])],
        "tfIceNormalY": [float(res.normal[1])],
        "tfIceNormalZ": [float(res.normal[2])],
        "tfIceNormalSdDeg": [_num(res.normal_sd_deg)],
        "tfIceNormalSource": [res.normal_source.replace(" ", "_")],
        "tfBeadPlaneRmsPx": [_num(bp.rms_px) if bp else "nan"],
        "tfBeadPlaneSeparationPx": [_num(bp.separation_px) if bp else "nan"],
        "tfRmsResidual": [_num(res.rms_residual)],
        "tfTiltsUsed": [int(res.n_used)],
        "tfTilts": [int(res.scale.size)],
    }
    tilts: dict[str, list] = {
        "tfTiltIndex": list(range(res.scale.size)),
        "tfBeamAngleDeg": [float(a) for a in res.tilt_angle_deg],
        "tfDose": [_num(v) for v in res.dose],
        "tfMeanIntensity": [_num(v) for v in res.mean_intensity],
        "tfDoseNormIntensity": [_num(v) for v in res.norm_intensity],
        "tfFitIntensity": [_num(v) for v in res.fit_intensity],
        "tfLogResidual": [_num(v) for v in res.residual],
        "tfScaleFactor": [float(v) for v in res.scale],
        "tfMaskedFraction": [
            _num(v) for v in (
                res.masked_fraction
                if res.masked_fraction is not None
                else np.full(res.scale.size, np.nan)
            )
        ],
        "tfUsedInFit": [bool(v) for v in res.used],
    }
    return {"fit": fit, "tilts": tilts}


def write_ice_star(path: str | os.PathLike[str], res: IceResult) -> None:
    """``ice_<name>.star``: header comments (model, conventions, messages) + blocks fit, tilts."""
    header = [
        "tiltflow ice fit: I_f/dose_f = L exp(-t/|n.v_f|); rlnCtfScalefactor_f = exp(-t/|n.v_f|)/exp(-t)",
        "n: ice normal in RELION 4 world coordinates, sign n.v0 > 0 (v0 = beam of the zero tilt)",
        "tfBeamAngleDeg: signed angle of each beam to v0 about the tilt axis; tfLogResidual = log(observed/fit)",
    ]
    if res.status == STATUS_FALLBACK:
        header.append(
            "FALLBACK: no fit; scale = cos(beam angle to v0); global labels t=0, L=0 (not fitted), normal=v0"
        )
    header += [" ".join(m.split()) for m in res.messages]
    write_star(path, ice_side_blocks(res), header=header)



def plot_ice(tables: Mapping[str, pd.DataFrame], path: str | os.PathLike[str]) -> None:
    """``ice_<name>.png`` from the blocks of ``ice_<name>.star`` as
    :func:`tiltflow.io.star.read_star` gives them (``fit``, ``tilts`` of
    :func:`ice_side_blocks`): transmitted fraction I/(dose L) per tilt and the fitted model. The
    step and the workflow's figure job both draw through this function, from the side file."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fit = tables["fit"].iloc[0]
    tilts = tables["tilts"]
    name = str(fit["tfTomoName"])
    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=100)
    a = float_column(tilts, "tfBeamAngleDeg")
    order = np.argsort(a)
    if str(fit["tfStatus"]) == STATUS_FALLBACK:
        ax.plot(a[order], float_column(tilts, "tfScaleFactor")[order], "-", color="C1",
                label="fallback: cos(angle)")
        ax.set_ylabel("scale factor")
        ax.set_title(f"{name}: not fitted (fallback cos)")
    else:
        lum = float(fit["tfLuminance"])
        t, t_sd, nm = (float(fit[k]) for k in (
            "tfRelativeThickness", "tfRelativeThicknessSd", "tfThicknessNm"))
        used = float_column(tilts, "tfUsedInFit") != 0
        obs = float_column(tilts, "tfDoseNormIntensity") / lum
        ax.plot(a[used], obs[used], "o", ms=4, color="C0", label="measured (used)")
        if (~used).any():
            ax.plot(a[~used], obs[~used], "x", ms=6, color="C3", label="measured (left out)")
        ax.plot(
            a[order],
            (float_column(tilts, "tfFitIntensity") / lum)[order],
            "-",
            color="C1",
            label=f"fit: t = {t:.3f} ± {t_sd:.3f}",
        )
        ax.set_ylabel("I / (dose · L)")
        thick = f", {nm:.0f} nm" if np.isfinite(nm) else ""
        ax.set_title(f"{name}: relative ice thickness {t:.3f}{thick}")
    ax.set_xlabel("beam angle to zero tilt (deg)")
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    fig.tight_layout()

    def _save(tmp: Path) -> None:
        fig.savefig(tmp, format="png", metadata={"Software": None})

    try:
        write_with_atomic(path, _save)
    finally:
        plt.close(fig)


def render_ice_figure(side_star: str | os.PathLike[str], png: str | os.PathLike[str]) -> None:
    """``ice_<name>.png`` from ``ice_<name>.star`` alone (:func:`plot_ice`)."""
    from tiltflow.io.star import read_star

    plot_ice(read_star(side_star), png)


def run_estimate_ice(
    tomo_star: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    # IceParams is a frozen dataclass: one shared default instance is safe
    params: IceParams = IceParams(),  # noqa: B008
    names: Sequence[str] | None = None,
    *,
    figure: bool = True,
) -> TomogramSet:
    """Estimate the ice of the selected tomograms (``names=None``: all); write the outputs.

    Stacks are read from each tomogram's ``rlnTomoTiltSeriesName`` and fiducials from
    ``rlnTomoFiducialsStarFile`` (when present), both relative to the current directory.
    ``figure``: also draw ``ice_<name>.png`` from the side file (:func:`render_ice_figure`);
    the workflow's step job passes ``False`` and renders it in a separate job.
    """
    tomo_set = read_tomogram_set(tomo_star)
    refuse_output_dir_over_inputs(out_dir, tomo_star, tomogram_set_inputs(tomo_set))
    selected = list(tomo_set.names) if names is None else list(names)
    missing = [n for n in selected if n not in tomo_set.names]
    if missing:
        raise InputError(tomo_star, f"tomogram(s) {missing} not in the set (have {tomo_set.names})")
    out_dir = Path(out_dir)
    out: list[Tomogram] = []
    with OutputTransaction(out_dir) as txn:  # all outputs or none (issue #11 items 2, 8, 14)
        for name in selected:
            tomo = tomo_set[name]
            stack = read_stack(tomo.tilt_series, check_finite=False)  # checked as measured
            res = estimate_ice(tomo, stack, params, set_fiducials(tomo), stack_name=tomo.tilt_series)
            side = txn.stage(out_dir / f"ice_{name}.star")
            write_ice_star(side, res)
            if figure:
                render_ice_figure(side, txn.stage(out_dir / f"ice_{name}.png"))
            out.append(apply_result(tomo, res))
        result = TomogramSet(tuple(out))
        write_tomogram_set(txn.stage(out_dir / "tomograms.star", last=True), result)
    return result
