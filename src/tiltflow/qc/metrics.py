"""Per-tomogram QC numbers and the data behind the QC figures, read from the step outputs."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tiltflow.errors import TiltflowError
from tiltflow.geometry import beam_directions, project
from tiltflow.provenance import OPTIONAL_STEPS, PIPELINE_STEPS, is_ok, read_provenance
from tiltflow.qc.sidefiles import SideFiles

STEPS: tuple[str, ...] = PIPELINE_STEPS

#: bead radius (Å) assumed when the fiducials step's parameters do not say (FiducialParams default)
DEFAULT_BEAD_RADIUS_A = 50.0


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

    def sentences(self) -> list[str]:
        """The flag rules in words (what the report shows as 'thresholds')."""
        return [
            f"mean bead residual after alignment above {self.max_residual_px:g} px",
            f"fewer than {self.min_beads} beads in 3D",
            f"beads seen on fewer than {100 * self.min_tilts_fraction:.0f} % of the tilts",
        ]


@dataclass
class Tracks2D:
    """2D bead observations (one row per bead × tilt) with the projections of the 3D beads."""

    bead: np.ndarray  # (k,) int, -1 = not assigned / rejected
    tilt: np.ndarray  # (k,) int
    obs: np.ndarray  # (k, 2) px
    fit: np.ndarray | None = None  # (k, 2) px
    residual: np.ndarray | None = None  # (k,) px

    def __len__(self) -> int:
        return int(self.bead.size)


@dataclass
class TomogramQC:
    """Everything QC knows about one tomogram (arrays are None when not available)."""

    name: str
    status: dict[str, str]
    reason: str = ""
    tomo: Any = None  # tiltflow.model.Tomogram of the latest successful step
    tomo_imported: Any = None  # ... of the import step (imported matrices)
    tomo_refined: Any = None  # ... of the align step (refined matrices)
    n_beads: int | None = None
    beads_imported: np.ndarray | None = None  # (m, 3) world px, triangulated by fiducials
    beads_refined: np.ndarray | None = None  # (m, 3) world px, refined by align
    tracks: dict[str, np.ndarray] | None = None  # fiducials tracks as columns (kept for callers)
    tracks_before: Tracks2D | None = None  # fits from the imported matrices
    tracks_after: Tracks2D | None = None  # fits from the refined matrices
    tilt_residual_before: np.ndarray | None = None  # (n,) mean px per tilt
    tilt_residual_after: np.ndarray | None = None
    bead_residual_before: np.ndarray | None = None  # (m,) mean px per bead
    bead_residual_after: np.ndarray | None = None
    residual_before: float | None = None
    residual_after: float | None = None
    align: dict[str, Any] = field(default_factory=dict)  # summary scalars
    align_tilts: dict[str, np.ndarray] = field(default_factory=dict)  # per tilt, by tilt index
    deltas: dict[str, np.ndarray] = field(default_factory=dict)  # label -> (n,) by tilt index
    ice: dict[str, Any] = field(default_factory=dict)
    bead_radius_px: float | None = None
    truth: Any = None  # tiltflow.simulate.Truth of the example, when given
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

    @property
    def n_tilts(self) -> int | None:
        return None if self.tomo is None else int(self.tomo.n_tilts)

    @property
    def pixel_size(self) -> float | None:
        return None if self.tomo is None else float(self.tomo.pixel_size)


def _nan_to_none(x: float | None) -> float | None:
    return None if x is None or not math.isfinite(x) else float(x)


def _read_status(
    provenance: Mapping[str, str | os.PathLike[str]],
) -> tuple[dict[str, str], str, dict[str, dict[str, Any]]]:
    status, reason, records = {}, "", {}
    for step in STEPS:
        path = provenance.get(step)
        if path is None or not Path(path).is_file():
            status[step] = "not run"
            continue
        rec = read_provenance(path)
        records[step] = dict(rec)
        status[step] = "ok" if is_ok(rec) else "failed"
        if status[step] == "failed" and not reason:
            reason = str(rec.get("reason", ""))
    return status, reason, records


def by_index(values: np.ndarray | None, index: np.ndarray | None, n: int) -> np.ndarray | None:
    """Values of a side-file block placed at their 0-based row ``index`` (NaN elsewhere)."""
    if values is None:
        return None
    out = np.full(n, np.nan)
    if index is None:
        if len(values) != n:
            return None
        return np.asarray(values, dtype=float)
    idx = np.asarray(index, dtype=float)
    ok = np.isfinite(idx) & (idx >= 0) & (idx < n)
    out[idx[ok].astype(int)] = np.asarray(values, dtype=float)[ok]
    return out


def group_mean(keys: np.ndarray, values: np.ndarray, n: int) -> np.ndarray:
    """Mean of ``values`` per integer key 0..n-1 (NaN where a key has no finite value)."""
    k = np.asarray(keys, dtype=int)
    v = np.asarray(values, dtype=float)
    ok = (k >= 0) & (k < n) & np.isfinite(v)
    sums = np.bincount(k[ok], weights=v[ok], minlength=n)[:n]
    counts = np.bincount(k[ok], minlength=n)[:n]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)


def _tracks(side: SideFiles, path: Path, where: str) -> Tracks2D | None:
    tr = side.block(path, "tracks")
    if tr is None:
        return None
    cols = {
        q: side.column(tr, f"track_{q}", where)
        for q in ("bead", "tilt", "obs_x", "obs_y", "fit_x", "fit_y", "residual")
    }
    bead, tilt, ox, oy = cols["bead"], cols["tilt"], cols["obs_x"], cols["obs_y"]
    if bead is None or tilt is None or ox is None or oy is None:
        return None
    fx, fy = cols["fit_x"], cols["fit_y"]
    fit = None if fx is None or fy is None else np.column_stack([fx, fy])
    return Tracks2D(
        bead=np.nan_to_num(bead, nan=-1).astype(int),
        tilt=np.nan_to_num(tilt, nan=-1).astype(int),
        obs=np.column_stack([ox, oy]),
        fit=fit,
        residual=cols["residual"],
    )


def _beads(side: SideFiles, path: Path, pixel_size: float | None) -> np.ndarray | None:
    if pixel_size is None or not path.is_file():
        return None
    from tiltflow.fiducials.io import read_fiducials

    try:
        return read_fiducials(path, pixel_size)
    except TiltflowError as exc:
        side.problems.append(str(exc))
        return None


def _read_tomo(side: SideFiles, path: str | os.PathLike[str] | None, name: str) -> Any:
    if path is None or not Path(path).is_file():
        return None
    from tiltflow.io.tomograms import read_tomogram_set

    try:
        return read_tomogram_set(path)[name]
    except (TiltflowError, KeyError) as exc:
        side.problems.append(f"{path}: {exc}")
        return None


def collect(
    name: str,
    provenance: Mapping[str, str | os.PathLike[str]],
    stars: Mapping[str, str | os.PathLike[str]],
    results: str | os.PathLike[str] = "results",
    truth: str | os.PathLike[str] | None = None,
) -> TomogramQC:
    """Gather QC data of one tomogram from the provenance files, fragments and side files.

    ``truth``: the simulator's ``truth.json`` of this tomogram (the bundled example), if any.
    """
    status, reason, records = _read_status(provenance)
    side = SideFiles.for_tomogram(name, results)
    qc = TomogramQC(name=name, status=status, reason=reason, side=side)
    for step in reversed(STEPS):
        if status.get(step) == "ok" and step in stars:
            qc.tomo = _read_tomo(side, stars[step], name)
            if qc.tomo is not None:
                break
    if status.get("import") == "ok":
        qc.tomo_imported = _read_tomo(side, stars.get("import"), name)
    if status.get("align") == "ok":
        qc.tomo_refined = _read_tomo(side, stars.get("align"), name)
    n = qc.n_tilts or 0
    px = qc.pixel_size

    radius_a = DEFAULT_BEAD_RADIUS_A
    fid_params = (records.get("fiducials") or {}).get("params") or {}
    if isinstance(fid_params, Mapping) and fid_params.get("radius_A") is not None:
        radius_a = float(fid_params["radius_A"])
    if px:
        qc.bead_radius_px = radius_a / px

    # fiducials: 3D beads and 2D tracks (fits from the imported matrices)
    fid = side.block(side.fiducials, "")
    if fid is not None:
        qc.n_beads = int(len(fid))
    qc.beads_imported = _beads(side, side.fiducials, px)
    qc.tracks_before = _tracks(side, side.tracks, "tracks")
    tb = qc.tracks_before
    if tb is not None:
        qc.tracks = {"bead": tb.bead, "tilt": tb.tilt, "obs_x": tb.obs[:, 0], "obs_y": tb.obs[:, 1]}
        if tb.fit is not None:
            qc.tracks.update(fit_x=tb.fit[:, 0], fit_y=tb.fit[:, 1])
        if tb.residual is not None:
            qc.tracks["residual"] = tb.residual
        if qc.n_beads is None and len(tb):
            qc.n_beads = int(len(np.unique(tb.bead[tb.bead >= 0])))
        if tb.residual is not None and tb.residual.size and np.isfinite(tb.residual).any():
            sel = tb.bead >= 0
            qc.residual_before = _nan_to_none(float(np.nanmean(tb.residual[sel])))
            if n:
                qc.tilt_residual_before = group_mean(tb.tilt[sel], tb.residual[sel], n)
            m = qc.n_beads or (int(tb.bead.max()) + 1 if len(tb) else 0)
            if m:
                qc.bead_residual_before = group_mean(tb.bead[sel], tb.residual[sel], m)

    # align: refined beads and tracks, summary, per-tilt and per-bead residuals, changes
    if status.get("align") == "ok":
        qc.beads_refined = _beads(side, side.fiducials_refined, px)
        qc.tracks_after = _tracks(side, side.tracks_refined, "align/tracks")
    summ = side.block(side.align, "summary")
    before = side.scalar(summ, "align_residual_before", "align/summary")
    if before is not None:
        qc.residual_before = before
    qc.residual_after = side.scalar(summ, "align_residual_after", "align/summary")
    for key in (
        "align_n_tilts",
        "align_n_tilts_refined",
        "align_n_tilts_flagged",
        "align_n_outliers",
        "align_max_residual",
    ):
        value = side.scalar(summ, key, "align/summary")
        if value is not None:
            qc.align[key[len("align_") :]] = value
    astatus = side.text(summ, "align_status", "align/summary")
    if astatus is not None:
        qc.align["status"] = astatus
    tilts = side.block(side.align, "tilts")
    tidx = side.column(tilts, "align_tilt", "align/tilts")
    if n:
        res = by_index(side.column(tilts, "align_tilt_residual", "align/tilts"), tidx, n)
        qc.tilt_residual_after = res
        for key in ("align_tilt_angle", "align_tilt_nobs", "align_tilt_flagged"):
            arr = by_index(side.column(tilts, key, "align/tilts"), tidx, n)
            if arr is not None:
                qc.align_tilts[key[len("align_tilt_") :]] = arr
        for label, values in side.delta_columns(tilts, "align/tilts").items():
            arr = by_index(values, tidx, n)
            if arr is not None:
                qc.deltas[label] = arr
    beads = side.block(side.align, "beads")
    bres = side.column(beads, "align_bead_residual", "align/beads")
    bidx = side.column(beads, "align_bead", "align/beads")
    if bres is not None:
        m = max(qc.n_beads or 0, len(bres))
        qc.bead_residual_after = by_index(bres, bidx, m) if bidx is not None else bres
    if (
        qc.residual_after is None
        and qc.bead_residual_after is not None
        and np.isfinite(qc.bead_residual_after).any()
    ):
        qc.residual_after = _nan_to_none(float(np.nanmean(qc.bead_residual_after)))

    # ice: fit block, per-tilt block, RELION labels of the final set
    fit = side.block(side.ice, "fit")
    itilts = side.block(side.ice, "tilts")
    ice: dict[str, Any] = {
        "thickness": side.scalar(fit, "ice_thickness", "ice/fit"),
        "thickness_sd": side.scalar(fit, "ice_thickness_sd", "ice/fit"),
        "thickness_nm": side.scalar(fit, "ice_thickness_nm", "ice/fit"),
        "thickness_sd_nm": side.scalar(fit, "ice_thickness_sd_nm", "ice/fit"),
        "luminance": side.scalar(fit, "ice_luminance", "ice/fit"),
        "luminance_sd": side.scalar(fit, "ice_luminance_sd", "ice/fit"),
        "mean_free_path_nm": side.scalar(fit, "ice_mean_free_path_nm", "ice/fit"),
        "normal_sd_deg": side.scalar(fit, "ice_normal_sd_deg", "ice/fit"),
        "normal_source": side.text(fit, "ice_normal_source", "ice/fit"),
        "plane_rms_px": side.scalar(fit, "ice_plane_rms_px", "ice/fit"),
        "plane_separation_px": side.scalar(fit, "ice_plane_separation_px", "ice/fit"),
        "rms_residual": side.scalar(fit, "ice_rms_residual", "ice/fit"),
        "tilts_used": side.scalar(fit, "ice_tilts_used", "ice/fit"),
        "fit_status": side.text(fit, "ice_status", "ice/fit"),
    }
    normal = [side.scalar(fit, f"ice_normal_{c}", "ice/fit") for c in "xyz"]
    if all(v is not None for v in normal):
        ice["normal"] = np.array(normal, dtype=float)
    iidx = side.column(itilts, "ice_tilt", "ice/tilts")
    if n:
        for key in (
            "intensity",
            "model",
            "used",
            "beam_angle",
            "dose",
            "log_residual",
            "scale",
        ):
            arr = by_index(side.column(itilts, f"ice_{key}", "ice/tilts"), iidx, n)
            ice[key] = arr
    ice["tilt"] = iidx
    if qc.tomo is not None and status.get("ice") == "ok":
        extra = qc.tomo.extra
        if ice["thickness"] is None and "rlnTomoRelativeIceThickness" in extra:
            ice["thickness"] = float(extra["rlnTomoRelativeIceThickness"])
            side.used["ice_thickness"] = "tomograms.star:_rlnTomoRelativeIceThickness"
        if ice["luminance"] is None and "rlnTomoRelativeLuminance" in extra:
            ice["luminance"] = float(extra["rlnTomoRelativeLuminance"])
            side.used["ice_luminance"] = "tomograms.star:_rlnTomoRelativeLuminance"
        rln_normal = [extra.get(f"rlnTomoIceNormal{c}") for c in "XYZ"]
        if "normal" not in ice and all(v is not None for v in rln_normal):
            ice["normal"] = np.array(rln_normal, dtype=float)
        # the final set's scale factors are the step's output (the side file's are a copy)
        ice["scale"] = np.asarray(qc.tomo.ctf_scale, dtype=float)
    qc.ice = ice

    if truth is not None and Path(truth).is_file():
        from tiltflow.simulate.truth import Truth

        try:
            qc.truth = Truth.from_json(truth)
        except TiltflowError as exc:
            side.problems.append(str(exc))
    return qc


# ---------------------------------------------------------------------------------------------
# derived quantities


def path_factor(tomo: Any, normal: np.ndarray | None) -> np.ndarray:
    """1/|n·v_f| per tilt (v_f = unit beam direction, row 2 of P_f; SPEC §5)."""
    v = beam_directions(tomo.proj)
    if normal is None:  # the tomogram's depth axis (Y without --flipYZ, Z with it)
        n = np.zeros(3)
        n[depth_axis(tomo)] = 1.0
    else:
        n = np.asarray(normal, dtype=float) / np.linalg.norm(normal)
    return 1.0 / np.clip(np.abs(v @ n), 1e-6, None)


def depth_axis(tomo: Any) -> int:
    """World axis along the beam near zero tilt: 1 (Y) without --flipYZ, 2 (Z) with it."""
    if not len(tomo.proj):
        return 1
    v = beam_directions(tomo.proj)
    return 1 + int(np.argmax(np.abs(v[:, 1:]).sum(axis=0)))


def tilt_angles_deg(tomo: Any) -> np.ndarray:
    """Tilt angle of each view from its beam direction (row 2 of P, SPEC §3): v = (-sin a, -cos a, 0)
    without flips, (-sin a, 0, ∓cos a) with --flipYZ; the depth axis is found from the data."""
    if not len(tomo.proj):
        return np.zeros(0)
    v = beam_directions(tomo.proj)
    depth = depth_axis(tomo)
    return np.degrees(np.arctan2(-v[:, 0], np.abs(v[:, depth])))


def zero_tilt_index(tomo: Any) -> int:
    return int(np.argmin(np.abs(tilt_angles_deg(tomo)))) if len(tomo.proj) else 0


def lowest_dose_frame(tomo: Any) -> int:
    """Index of the tilt acquired first (smallest pre-exposure)."""
    return int(np.argmin(np.asarray(tomo.pre_exposure, dtype=float)))


def ice_normal_tilt_deg(qc: TomogramQC) -> float | None:
    """Angle (deg) between the ice normal and the beam of the view nearest 0° tilt."""
    normal = qc.ice.get("normal") if qc.ice else None
    tomo = qc.tomo_refined if qc.tomo_refined is not None else qc.tomo
    if normal is None or tomo is None or not len(tomo.proj):
        return None
    n = np.asarray(normal, dtype=float)
    if not np.all(np.isfinite(n)) or np.linalg.norm(n) == 0:
        return None
    v0 = beam_directions(tomo.proj)[zero_tilt_index(tomo)]
    c = abs(float(n @ v0)) / float(np.linalg.norm(n))
    return float(np.degrees(np.arccos(min(1.0, c))))


def projections(tomo: Any, beads: np.ndarray | None) -> np.ndarray | None:
    """(n_tilts, m, 2) image positions of 3D beads with the tomogram's matrices."""
    if tomo is None or beads is None or not len(tomo.proj):
        return None
    return project(tomo.proj, beads)


def tilts_seen(qc: TomogramQC) -> int | None:
    tr = qc.tracks_after or qc.tracks_before
    if tr is None:
        return None
    return int(len(np.unique(tr.tilt[(tr.bead >= 0) & (tr.tilt >= 0)])))


def scale_range(qc: TomogramQC) -> tuple[float, float] | None:
    s = qc.ice.get("scale") if qc.ice else None
    if s is None or qc.status.get("ice") != "ok":
        return None
    s = np.asarray(s, dtype=float)
    s = s[np.isfinite(s)]
    return (float(s.min()), float(s.max())) if s.size else None


# ---------------------------------------------------------------------------------------------
# flags and the summary row


def flag_reasons(qc: TomogramQC, th: Thresholds) -> dict[str, str]:
    """Problems worth a user's look: short code -> the reason in words (empty = fine)."""
    out: dict[str, str] = {}
    failed = qc.failed_step
    if failed is not None:
        why = " ".join(qc.reason.split()) or "no reason recorded"
        if qc.status.get(failed) == "not run":
            why = f"the {failed} step has not run"
        if qc.status.get("ice") != "ok":
            out["missing"] = "not in the final tomogram set"
        else:
            out["failed"] = "a step failed"
        out[f"failed_{failed}"] = why
    if qc.status.get("fiducials") == "ok":
        if qc.n_beads is not None and qc.n_beads < th.min_beads:
            out["few_beads"] = f"{qc.n_beads} beads in 3D, fewer than {th.min_beads}"
        seen = tilts_seen(qc)
        n = qc.n_tilts
        if seen is not None and n:
            if seen / n < th.min_tilts_fraction:
                out["sparse_tracks"] = (
                    f"beads seen on {seen} of {n} tilts ({100 * seen / n:.0f} %), "
                    f"fewer than {100 * th.min_tilts_fraction:.0f} %"
                )
    res = qc.residual_after if qc.residual_after is not None else qc.residual_before
    if res is not None and res > th.max_residual_px:
        which = "after alignment" if qc.residual_after is not None else "before alignment"
        out["high_residual"] = (
            f"mean bead residual {which} {res:.2f} px, above {th.max_residual_px:g} px"
        )
    if qc.status.get("ice") == "ok":
        t = qc.ice.get("thickness")
        status = (qc.ice.get("fit_status") or "ok").lower()
        if status.startswith("fallback"):
            out["ice_fallback"] = (
                "no Beer–Lambert fit: the configured fallback (cosine) scale factors were written"
            )
        elif (
            t is None
            or not math.isfinite(t)
            or t <= 0
            or status not in ("ok", "fitted", "1", "true")
        ):
            out["ice_fit_failed"] = f"no usable ice fit (status {status}, thickness {t})"
    return out


def flags_for(qc: TomogramQC, th: Thresholds) -> list[str]:
    """Problems worth a user's look, as short words (empty = fine)."""
    return list(flag_reasons(qc, th))


def _finite_list(a: np.ndarray | None, digits: int = 6) -> list[float | None] | None:
    if a is None:
        return None
    return [None if not math.isfinite(float(v)) else round(float(v), digits) for v in a]


def summary_row(qc: TomogramQC, th: Thresholds) -> dict[str, Any]:
    """One row of the QC summary (JSON-able, deterministic)."""
    ice = qc.ice or {}
    reasons = flag_reasons(qc, th)
    sr = scale_range(qc)
    used = ice.get("used")
    ice_used = ice.get("tilts_used")
    if ice_used is None and used is not None:
        ice_used = float(np.nansum(used))
    tilts_refined = qc.align.get("n_tilts_refined")
    row: dict[str, Any] = {
        "name": qc.name,
        "status": "ok" if qc.failed_step is None else "failed",
        "failed_step": qc.failed_step or "",
        "n_tilts": qc.n_tilts,
        "tilts_refined": None if tilts_refined is None else int(tilts_refined),
        "tilts_seen": tilts_seen(qc),
        "ice_tilts_used": None if ice_used is None else int(ice_used),
        "n_beads": qc.n_beads,
        "residual_before_px": _nan_to_none(qc.residual_before),
        "residual_after_px": _nan_to_none(qc.residual_after),
        "residual_max_after_px": _nan_to_none(qc.align.get("max_residual")),
        "pixel_size_A": qc.pixel_size,
        "ice_thickness_rel": _nan_to_none(ice.get("thickness")),
        "ice_thickness_sd_rel": _nan_to_none(ice.get("thickness_sd")),
        "ice_thickness_nm": _nan_to_none(ice.get("thickness_nm")),
        "ice_thickness_sd_nm": _nan_to_none(ice.get("thickness_sd_nm")),
        "ice_luminance": _nan_to_none(ice.get("luminance")),
        "ice_normal_tilt_deg": _nan_to_none(ice_normal_tilt_deg(qc)),
        "ice_normal_sd_deg": _nan_to_none(ice.get("normal_sd_deg")),
        "ice_normal_source": ice.get("normal_source"),
        "ice_fit_status": ice.get("fit_status"),
        "scale_factor_min": None if sr is None else sr[0],
        "scale_factor_max": None if sr is None else sr[1],
        "flags": list(reasons),
        "flag_reasons": reasons,
        "reason": " ".join(qc.reason.split()),
        "steps": dict(qc.status),
        "columns_used": dict(sorted((qc.side.used if qc.side else {}).items())),
        "problems": list(qc.side.problems if qc.side else []),
        # per-tilt residuals for the dataset views (sparkline), rounded
        "tilt_residual_after_px": _finite_list(qc.tilt_residual_after, 4),
    }
    if qc.truth is not None:
        from tiltflow.qc.truth import compare_with_truth

        row["truth"] = compare_with_truth(qc)
    return row


SUMMARY_COLUMNS: tuple[str, ...] = (
    "name",
    "status",
    "failed_step",
    "n_tilts",
    "tilts_refined",
    "n_beads",
    "residual_before_px",
    "residual_after_px",
    "ice_thickness_nm",
    "ice_thickness_sd_nm",
    "scale_factor_min",
    "scale_factor_max",
    "ice_normal_tilt_deg",
    "ice_thickness_rel",
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
