"""File-level alignment step: ``run_align(tomo_star, out_dir, params, names)`` (CONTRACTS.md)."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path

from tiltflow.align.core import align_tomogram
from tiltflow.align.params import AlignParams
from tiltflow.align.report import AlignResult, render_align_figure, report_blocks
from tiltflow.errors import InputError
from tiltflow.fiducials import io as fidio
from tiltflow.io.guard import refuse_output_dir_over_inputs, tomogram_set_inputs
from tiltflow.io.staging import OutputTransaction
from tiltflow.io.star import StarBlock, refuse_whitespace, star_path, write_star
from tiltflow.io.tomograms import read_tomogram_set, write_tomogram_set
from tiltflow.model import Tomogram, TomogramSet

log = logging.getLogger(__name__)


def tracks_table(result: AlignResult) -> StarBlock:
    """The updated tracks table: every input detection, bead -1 when unassigned (outliers too)."""
    o = result.observations
    return StarBlock(
        fidio.TRACKS_BLOCK,
        {
            "tfBeadIndex": o["bead"],
            "tfTiltIndex": o["tilt"],
            "tfObsX": o["x"],
            "tfObsY": o["y"],
            "tfFitX": o["fit_x"],
            "tfFitY": o["fit_y"],
            "tfResidual": o["residual"],
            "tfScore": o["score"],
        },
    )


def align_one(
    tomo: Tomogram,
    params: AlignParams,
    out_dir: Path,
    txn: OutputTransaction | None = None,
    *,
    figure: bool = True,
) -> tuple[Tomogram, AlignResult]:
    """Read the fiducials/tracks linked from ``tomo``, refine, write the side files.

    With ``txn`` the side files are staged in that transaction (committed with the step's
    tomogram set); without, they are written straight into ``out_dir``. ``figure``: also draw
    ``align_<name>.png`` from the side file just written (the workflow leaves it to its
    figure job).
    """

    def dest(p: Path) -> Path:
        return p if txn is None else txn.stage(p)

    fid = tomo.extra.get("rlnTomoFiducialsStarFile")
    if fid is None:
        raise InputError(
            None,
            f"tomogram {tomo.name}: no rlnTomoFiducialsStarFile in the tomogram set; run "
            "`tiltflow find-fiducials` first",
        )
    fid_path = Path(str(fid))
    beads = fidio.read_fiducials(fid_path, tomo.pixel_size)
    tracks = fidio.read_tracks(fidio.tracks_path_for(fid_path))
    try:
        result = align_tomogram(tomo, beads, tracks, params)
    except InputError as exc:
        raise InputError(fidio.tracks_path_for(fid_path), f"tomogram {tomo.name}: {exc}") from None
    for msg in result.messages:
        log.warning("%s: %s", tomo.name, msg)
    out_fid = out_dir / f"fiducials_{tomo.name}.star"
    fidio.write_fiducials(dest(out_fid), result.beads, tomo.pixel_size)
    fidio.write_tracks(dest(fidio.tracks_path_for(out_fid)), tracks_table(result))
    header = [f"tiltflow align report for {tomo.name}"] + [
        f"note: {' '.join(m.split())}" for m in result.messages
    ]
    side = dest(out_dir / f"align_{tomo.name}.star")
    write_star(side, report_blocks(result), header=header)
    if figure:
        render_align_figure(side, dest(out_dir / f"align_{tomo.name}.png"))
    refined = result.tomogram.replace(extra={"rlnTomoFiducialsStarFile": star_path(out_fid)})
    return refined, result


def run_align(
    tomo_star: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    params: AlignParams | None = None,
    names: Sequence[str] | None = None,
    *,
    on_result: Callable[[AlignResult], None] | None = None,
    figure: bool = True,
) -> TomogramSet:
    """Refine the selected tomograms of ``tomo_star`` from their fiducials.

    Writes ``out_dir/tomograms.star`` (the selected tomograms, refined rlnTomoProj*, everything
    else kept, rlnTomoFiducialsStarFile -> the updated ``out_dir/fiducials_<name>.star``),
    ``out_dir/tracks_<name>.star``, ``out_dir/align_<name>.star`` (blocks summary, tilts,
    beads) and, with ``figure`` (default), ``out_dir/align_<name>.png``, drawn from that side
    file (:func:`tiltflow.align.report.render_align_figure`; the workflow's step job passes
    ``figure=False`` and renders it in a separate job). Returns the written set. ``on_result``
    (optional) is called with each tomogram's :class:`AlignResult` (the CLI prints a line from
    it).
    """
    params = params or AlignParams()
    out = Path(out_dir)
    tset = read_tomogram_set(tomo_star)
    refuse_output_dir_over_inputs(out_dir, tomo_star, tomogram_set_inputs(tset))
    # the set names out_dir/fiducials_<name>.star: refuse whitespace before any work
    refuse_whitespace(star_path(out), "align: output directory")
    if names:
        missing = [n for n in names if n not in tset.names]
        if missing:
            raise InputError(tomo_star, f"tomogram(s) {missing} not in the set (have {tset.names})")
        selected = [tset[n] for n in names]
    else:
        selected = list(tset)
    refined = []
    with OutputTransaction(out) as txn:  # all outputs or none (issue #11 items 2, 8, 14)
        for t in selected:
            tomo, res = align_one(t, params, out, txn, figure=figure)
            refined.append(tomo)
            if on_result is not None:
                on_result(res)
        result = TomogramSet(tuple(refined))
        write_tomogram_set(
            txn.stage(out / "tomograms.star", last=True), result, comments=("tiltflow align",)
        )
    return result


def summary_line(result: AlignResult) -> str:
    """One line for the CLI: status, residual, flagged tilts."""
    s = result.summary
    return (
        f"{s['tomo_name']}: {s['status']}, mean residual {float(s['mean_residual_px']):.3f} px "  # type: ignore[arg-type]
        f"({float(s['mean_residual_nm']):.3f} nm), {s['n_outliers']} outliers, "  # type: ignore[arg-type]
        f"{s['n_picked_up']} picked up, {s['n_tilts_flagged']} tilt(s) flagged"
    )


__all__ = ["align_one", "run_align", "summary_line", "tracks_table"]
