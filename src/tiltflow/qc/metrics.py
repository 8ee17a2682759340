"""Per-tomogram QC numbers and the data behind the QC figure, read from the step outputs."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tiltflow.errors import TiltflowError
from tiltflow.geometry import beam_directions
from tiltflow.provenance import OPTIONAL_STEPS, PIPELINE_STEPS, is_ok, read_provenance
from tiltflow.qc.sidefiles import SideFiles

STEPS: tuple[str, ...] = PIPELINE_STEPS


@dataclass(frozen=True)
class Thresholds:
    max_residual_px: float = 1.0
    min_beads: int = 4
    min_tilts_fraction: float = 0.5

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Thresholds:
        return cls(
            max_residual_px=float(d.get("max_residual_px", cls.max_residual_px)),
            min_beads=int(d.get("min_beads", cls.min_beads)),
            min_tilts_fraction=float(d.get("min_tilts_fraction", cls.min_tilts_fraction)),
        )


@dataclass
class TomogramQC:
    """Everything QC knows about one tomogram (arrays are None when not available)."""

    name: str
    status: dict[str, str]
    reason: str = ""
    tomo: Any = None  # tiltflow.model.Tomogram of the latest successful step
    n_beads: int | None = None
    tracks: dict[str, np.ndarray] | None = None
    tilt_residual_after: np.ndarray | None = None
    bead_residual_after: np.ndarray | None = None
    residual_before: float | None = None
    residual_after: float | None = None
    deltas: dict[str, np.ndarray] = field(default_factory=dict)
    ice: dict[str, Any] = field(default_factory=dict)
    side: SideFiles | None = None

    @property
    def failed_step(self) -> str | None:
        for step in STEPS:
            status = self.status.get(step)
            if step in OPTIONAL_STEPS and status == "not run":
                continue  # an optional step the workflow did not run
            if status != "ok":
                return step
        return None


def _nan_to_none(x: float | None) -> float | None:
    return None if x is None or not math.isfinite(x) else float(x)


def _read_status(provenance: Mapping[str, str | os.PathLike[str]]) -> tuple[dict[str, str], str]:
    status, reason = {}, ""
    for step in STEPS:
        path = provenance.get(step)
        if path is None or not Path(path).is_file():
            status[step] = "not run"
            continue
        rec = read_provenance(path)
        status[step] = "ok" if is_ok(rec) else "failed"
        if status[step] == "failed" and not reason:
            reason = str(rec.get("reason", ""))
    return status, reason


def collect(
    name: str,
    provenance: Mapping[str, str | os.PathLike[str]],
    stars: Mapping[str, str | os.PathLike[str]],
    results: str | os.PathLike[str] = "results",
) -> TomogramQC:
    """Gather QC data of one tomogram from the provenance files, fragments and side files."""
    from tiltflow.io.tomograms import read_tomogram_set

    status, reason = _read_status(provenance)
    side = SideFiles.for_tomogram(name, results)
    qc = TomogramQC(name=name, status=status, reason=reason, side=side)
    for step in reversed(STEPS):
        if status.get(step) == "ok" and step in stars:
            try:
                qc.tomo = read_tomogram_set(stars[step])[name]
            except (TiltflowError, KeyError) as exc:
                side.problems.append(f"{stars[step]}: {exc}")
                continue
            break

    # fiducials: 3D beads and 2D tracks
    fid = side.block(side.fiducials, "")
    if fid is not None:
        qc.n_beads = int(len(fid))
    tr = side.block(side.tracks, "tracks")
    if tr is not None:
        cols = {
            q: side.column(tr, f"track_{q}", "tracks")
            for q in ("bead", "tilt", "obs_x", "obs_y", "fit_x", "fit_y", "residual")
        }
        qc.tracks = {k: v for k, v in cols.items() if v is not None}
        if qc.n_beads is None and "bead" in qc.tracks:
            qc.n_beads = int(len(np.unique(qc.tracks["bead"])))
        if "residual" in qc.tracks and qc.tracks["residual"].size:
            qc.residual_before = _nan_to_none(float(np.nanmean(qc.tracks["residual"])))

    # align: summary, per-tilt and per-bead residuals, parameter changes
    summ = side.block(side.align, "summary")
    before = side.scalar(summ, "align_residual_before", "align/summary")
    if before is not None:
        qc.residual_before = before
    qc.residual_after = side.scalar(summ, "align_residual_after", "align/summary")
    tilts = side.block(side.align, "tilts")
    qc.tilt_residual_after = side.column(tilts, "align_tilt_residual", "align/tilts")
    beads = side.block(side.align, "beads")
    qc.bead_residual_after = side.column(beads, "align_bead_residual", "align/beads")
    if (
        qc.residual_after is None
        and qc.bead_residual_after is not None
        and qc.bead_residual_after.size
    ):
        qc.residual_after = _nan_to_none(float(np.nanmean(qc.bead_residual_after)))
    qc.deltas = side.delta_columns(tilts, "align/tilts")

    # ice: fit block, per-tilt block, RELION labels of the final set
    fit = side.block(side.ice, "fit")
    itilts = side.block(side.ice, "tilts")
    ice: dict[str, Any] = {
        "thickness": side.scalar(fit, "ice_thickness", "ice/fit"),
        "thickness_nm": side.scalar(fit, "ice_thickness_nm", "ice/fit"),
        "luminance": side.scalar(fit, "ice_luminance", "ice/fit"),
        "fit_status": side.text(fit, "ice_status", "ice/fit"),
        "tilt": side.column(itilts, "ice_tilt", "ice/tilts"),
        "intensity": side.column(itilts, "ice_intensity", "ice/tilts"),
        "model": side.column(itilts, "ice_model", "ice/tilts"),
        "used": side.column(itilts, "ice_used", "ice/tilts"),
    }
    if qc.tomo is not None and status.get("ice") == "ok":
        extra = qc.tomo.extra
        if ice["thickness"] is None and "rlnTomoRelativeIceThickness" in extra:
            ice["thickness"] = float(extra["rlnTomoRelativeIceThickness"])
            side.used["ice_thickness"] = "tomograms.star:_rlnTomoRelativeIceThickness"
        if ice["luminance"] is None and "rlnTomoRelativeLuminance" in extra:
            ice["luminance"] = float(extra["rlnTomoRelativeLuminance"])
            side.used["ice_luminance"] = "tomograms.star:_rlnTomoRelativeLuminance"
        normal = [extra.get(f"rlnTomoIceNormal{c}") for c in "XYZ"]
        if all(v is not None for v in normal):
            ice["normal"] = np.array(normal, dtype=float)
        ice["scale"] = np.asarray(qc.tomo.ctf_scale, dtype=float)
    qc.ice = ice
    return qc


def path_factor(tomo: Any, normal: np.ndarray | None) -> np.ndarray:
    """1/|n·v_f| per tilt (v_f = unit beam direction, row 2 of P_f; SPEC §5)."""
    v = beam_directions(tomo.proj)
    if normal is None:  # the tomogram's depth axis (Y without --flipYZ, Z with it)
        n = np.zeros(3)
        n[1 + int(np.argmax(np.abs(v[:, 1:]).sum(axis=0)))] = 1.0
    else:
        n = np.asarray(normal, dtype=float) / np.linalg.norm(normal)
    return 1.0 / np.clip(np.abs(v @ n), 1e-6, None)


def tilt_angles_deg(tomo: Any) -> np.ndarray:
    """Tilt angle of each view from its beam direction (row 2 of P, SPEC §3): v = (-sin a, -cos a, 0)
    without flips, (-sin a, 0, ∓cos a) with --flipYZ; the depth axis is found from the data."""
    if not len(tomo.proj):
        return np.zeros(0)
    v = beam_directions(tomo.proj)
    depth = 1 + int(np.argmax(np.abs(v[:, 1:]).sum(axis=0)))
    return np.degrees(np.arctan2(-v[:, 0], np.abs(v[:, depth])))


def flags_for(qc: TomogramQC, th: Thresholds) -> list[str]:
    """Problems worth a user's look, as short words (empty = fine)."""
    flags: list[str] = []
    failed = qc.failed_step
    if failed is not None:
        flags.append("missing" if qc.status.get("ice") != "ok" else "failed")
        flags.append(f"failed_{failed}")
    if qc.status.get("fiducials") == "ok":
        if qc.n_beads is not None and qc.n_beads < th.min_beads:
            flags.append("few_beads")
        if qc.tracks and "tilt" in qc.tracks and qc.tomo is not None and qc.tomo.n_tilts:
            seen = len(np.unique(qc.tracks["tilt"])) / qc.tomo.n_tilts
            if seen < th.min_tilts_fraction:
                flags.append("sparse_tracks")
    res = qc.residual_after if qc.residual_after is not None else qc.residual_before
    if res is not None and res > th.max_residual_px:
        flags.append("high_residual")
    if qc.status.get("ice") == "ok":
        t = qc.ice.get("thickness")
        status = (qc.ice.get("fit_status") or "ok").lower()
        if status.startswith("fallback"):
            flags.append("ice_fallback")
        elif (
            t is None
            or not math.isfinite(t)
            or t <= 0
            or status not in ("ok", "fitted", "1", "true")
        ):
            flags.append("ice_fit_failed")
    elif qc.status.get("ice") == "failed" and qc.status.get("align") == "ok":
        flags.append("ice_fit_failed")
    return flags


def summary_row(qc: TomogramQC, th: Thresholds) -> dict[str, Any]:
    """One row of the QC summary (JSON-able, deterministic)."""
    ice = qc.ice or {}
    return {
        "name": qc.name,
        "status": "ok" if qc.failed_step is None else "failed",
        "failed_step": qc.failed_step or "",
        "n_tilts": None if qc.tomo is None else int(qc.tomo.n_tilts),
        "n_beads": qc.n_beads,
        "residual_before_px": _nan_to_none(qc.residual_before),
        "residual_after_px": _nan_to_none(qc.residual_after),
        "ice_thickness_rel": _nan_to_none(ice.get("thickness")),
        "ice_thickness_nm": _nan_to_none(ice.get("thickness_nm")),
        "ice_luminance": _nan_to_none(ice.get("luminance")),
        "flags": flags_for(qc, th),
        "reason": " ".join(qc.reason.split()),
        "steps": dict(qc.status),
        "columns_used": dict(sorted((qc.side.used if qc.side else {}).items())),
        "problems": list(qc.side.problems if qc.side else []),
    }


SUMMARY_COLUMNS: tuple[str, ...] = (
    "name",
    "status",
    "failed_step",
    "n_tilts",
    "n_beads",
    "residual_before_px",
    "residual_after_px",
    "ice_thickness_rel",
    "ice_thickness_nm",
    "ice_luminance",
    "flags",
    "reason",
)


def _cell(v: Any) -> str:
    if v is None:
        return "NA"
    if isinstance(v, float):
        return format(v, ".4g")
    if isinstance(v, (list, tuple)):
        return ",".join(str(x) for x in v) if v else "-"
    return " ".join(str(v).split()) or "-"


def summary_tsv(rows: Sequence[Mapping[str, Any]]) -> str:
    lines = ["\t".join(SUMMARY_COLUMNS)]
    for r in rows:
        lines.append("\t".join(_cell(r.get(c)) for c in SUMMARY_COLUMNS))
    return "\n".join(lines) + "\n"
