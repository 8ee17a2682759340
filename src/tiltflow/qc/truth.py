"""The recovered values against the simulator's truth (``truth.json`` of the bundled example).

Everything compared is independent of the alignment's gauge (the overall position, rotation and
scale a bundle adjustment cannot see): each model's own 3D beads projected with its own matrices
are compared with the true 2D bead positions; tilt angles are compared after removing their mean
offset; ice thickness, normal and scale factors directly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tiltflow.qc.metrics import TomogramQC, ice_normal_tilt_deg, projections, tilt_angles_deg


@dataclass
class TruthComparison:
    """Per-tilt arrays (kept views, stack order) and scalars; arrays are None when unknown."""

    tilt_true_deg: np.ndarray | None = None
    tilt_error_imported_deg: np.ndarray | None = None  # imported − true (mean offset removed)
    tilt_error_refined_deg: np.ndarray | None = None
    reproj_error_imported_px: np.ndarray | None = None  # mean over beads, per tilt
    reproj_error_refined_px: np.ndarray | None = None
    scale_true: np.ndarray | None = None
    scalars: dict[str, Any] = field(default_factory=dict)


def _kept(qc: TomogramQC) -> np.ndarray | None:
    t = qc.truth
    if t is None or qc.tomo is None:
        return None
    kept = np.asarray(t.kept)
    return kept if kept.size == qc.tomo.n_tilts else None


def _reprojection(pred: np.ndarray, true2d: np.ndarray, visible: np.ndarray, match: np.ndarray):
    """Per-tilt mean and all distances between matched predicted and true 2D bead positions."""
    rec = np.flatnonzero(match >= 0)
    d = np.linalg.norm(pred[:, rec, :] - true2d[:, match[rec], :], axis=2)
    d = np.where(visible[:, match[rec]], d, np.nan)
    with np.errstate(invalid="ignore"):
        per_tilt = np.nanmean(d, axis=1) if rec.size else np.full(pred.shape[0], np.nan)
    return per_tilt, d


def _match(pred: np.ndarray, true2d: np.ndarray, visible: np.ndarray, max_px: float) -> np.ndarray:
    """Recovered bead -> true bead (-1 = none), by the mean 2D distance over the tilts."""
    from scipy.optimize import linear_sum_assignment

    d = np.linalg.norm(pred[:, :, None, :] - true2d[:, None, :, :], axis=3)  # (n, m, M)
    d = np.where(visible[:, None, :], d, np.nan)
    with np.errstate(invalid="ignore"):
        cost = np.nanmean(d, axis=0)
    cost = np.where(np.isfinite(cost), cost, 1e9)
    rows, cols = linear_sum_assignment(cost)
    out = np.full(pred.shape[1], -1)
    ok = cost[rows, cols] <= max_px
    out[rows[ok]] = cols[ok]
    return out


def truth_arrays(qc: TomogramQC) -> TruthComparison | None:
    """Compare what the steps recovered with the simulator's truth, or None without truth."""
    t = qc.truth
    kept = _kept(qc)
    if t is None or kept is None:
        return None
    out = TruthComparison()
    s = out.scalars
    true_proj = np.asarray(t.proj)[kept]

    class _P:  # the minimal Tomogram-like object tilt_angles_deg needs
        proj = true_proj

    out.tilt_true_deg = tilt_angles_deg(_P)
    for key, tomo in (("imported", qc.tomo_imported), ("refined", qc.tomo_refined)):
        if tomo is not None and tomo.n_tilts == len(kept):
            err = tilt_angles_deg(tomo) - out.tilt_true_deg
            s[f"tilt_offset_{key}_deg"] = float(np.mean(err))
            err = err - np.mean(err)
            setattr(out, f"tilt_error_{key}_deg", err)
            s[f"tilt_error_{key}_rms_deg"] = float(np.sqrt(np.mean(err**2)))

    true2d = np.asarray(t.beads_2d)[kept]
    visible = np.asarray(t.visible)[kept]
    s["n_beads_true"] = int(true2d.shape[1])
    radius = qc.bead_radius_px or 5.0
    pred_ref = projections(qc.tomo_refined, qc.beads_refined)
    pred_imp = projections(qc.tomo_imported, qc.beads_imported)
    match = None
    if pred_ref is not None and pred_ref.shape[1]:
        match = _match(pred_ref, true2d, visible, 3 * radius)
    elif pred_imp is not None and pred_imp.shape[1]:
        match = _match(pred_imp, true2d, visible, 6 * radius)
    if match is not None:
        s["n_beads_matched"] = int((match >= 0).sum())
        for key, pred in (("imported", pred_imp), ("refined", pred_ref)):
            if pred is None or pred.shape[1] != match.size:
                continue
            per_tilt, d = _reprojection(pred, true2d, visible, match)
            setattr(out, f"reproj_error_{key}_px", per_tilt)
            if np.isfinite(d).any():
                s[f"reproj_error_{key}_mean_px"] = float(np.nanmean(d))
                s[f"reproj_error_{key}_max_px"] = float(np.nanmax(d))

    s["ice_thickness_true_nm"] = float(t.ice_thickness_nm)
    s["ice_thickness_true_rel"] = float(t.ice_thickness_rel)
    tn = qc.ice.get("thickness_nm") if qc.ice else None
    if tn is not None and t.ice_thickness_nm:
        s["ice_thickness_error_pct"] = 100.0 * (tn - t.ice_thickness_nm) / t.ice_thickness_nm
    normal = qc.ice.get("normal") if qc.ice else None
    tnorm = np.asarray(t.ice_normal, dtype=float)
    if normal is not None and np.all(np.isfinite(normal)):
        n = np.asarray(normal, dtype=float)
        c = abs(float(n @ tnorm)) / float(np.linalg.norm(n) * np.linalg.norm(tnorm))
        s["ice_normal_error_deg"] = float(np.degrees(np.arccos(min(1.0, c))))
    if qc.tomo_refined is not None or qc.tomo is not None:
        # the true normal's tilt from the beam near 0° (same definition as the recovered one)
        saved = qc.ice.get("normal")
        qc.ice["normal"] = tnorm
        s["ice_normal_tilt_true_deg"] = ice_normal_tilt_deg(qc)
        qc.ice["normal"] = saved
        if saved is None:
            del qc.ice["normal"]
    out.scale_true = np.asarray(t.scale_factor, dtype=float)[kept]
    scale = qc.ice.get("scale") if qc.ice else None
    if scale is not None and qc.status.get("ice") == "ok" and len(scale) == len(kept):
        rel = 100.0 * (np.asarray(scale, dtype=float) - out.scale_true) / out.scale_true
        s["scale_factor_max_error_pct"] = float(np.nanmax(np.abs(rel)))
    return out


def compare_with_truth(qc: TomogramQC) -> dict[str, Any]:
    """The scalars of :func:`truth_arrays` (JSON-able; {} without truth)."""
    cmp = truth_arrays(qc)
    if cmp is None:
        return {}
    return {
        k: (None if isinstance(v, float) and not math.isfinite(v) else v)
        for k, v in sorted(cmp.scalars.items())
    }
