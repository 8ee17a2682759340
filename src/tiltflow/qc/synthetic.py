"""Synthetic step outputs for QC tests and the report benchmark.

:func:`write_synthetic_results` writes, for one tomogram, what the four steps would have left in
``results/<step>/<name>/`` (provenance, tomogram-set fragments, fiducials, tracks, align and ice
side files) plus a small tilt stack with dark beads, with a known imported misalignment, a
chosen residual after refinement and an optional failure, in the real formats (the real
writers), without running the steps. Cheap: ~0.1 s for 41 tilts of 256².
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tiltflow.provenance import PIPELINE_STEPS


@dataclass(frozen=True)
class SyntheticCase:
    name: str
    seed: int = 0
    n_tilts: int = 41
    image_px: int = 256
    depth_px: int = 100
    n_beads: int = 20
    pixel_size: float = 10.0
    bead_radius_a: float = 50.0
    tilt_error_deg: float = 1.0
    shift_error_px: float = 5.0
    residual_after_px: float = 0.1
    ice_thickness_nm: float = 100.0
    mean_free_path_nm: float = 350.0
    failed_at: str | None = None
    reason: str = "NoDataError: no beads found"
    with_truth: bool = False


def _matrices(
    angles_deg: np.ndarray,
    size: tuple[int, int, int],
    w: int,
    h: int,
    shifts: np.ndarray | None = None,
) -> np.ndarray:
    """RELION-4-like matrices tilting about world Z (depth = world Y), centred."""
    c = (np.asarray(size, dtype=float) - 1) / 2 + 1
    out = np.zeros((angles_deg.size, 4, 4))
    for i, a in enumerate(np.radians(angles_deg)):
        ca, sa = np.cos(a), np.sin(a)
        sx, sy = (0.0, 0.0) if shifts is None else shifts[i]
        out[i] = [
            [ca, -sa, 0, (w - 1) / 2 - (ca * c[0] - sa * c[1]) + sx],
            [0, 0, 1, (h - 1) / 2 - c[2] + sy],
            [-sa, -ca, 0, 0],
            [0, 0, 0, 1],
        ]
    return out


def _provenance(path: Path, step: str, name: str, status: str, reason: str) -> None:
    from tiltflow.io.atomic import write_json_atomic

    write_json_atomic(
        path,
        {
            "step": step,
            "tomogram": name,
            "status": status,
            "reason": reason,
            "params": {},
            "tiltflow_version": "synthetic",
        },
    )


def write_synthetic_results(
    root: str | os.PathLike[str], case: SyntheticCase
) -> tuple[dict[str, Path], dict[str, Path], Path | None]:
    """Write the synthetic step outputs of ``case`` under ``root/results``.

    Returns (provenance by step, fragment by step, truth.json or None). Paths in the STAR files
    are absolute, so the QC can be run from any directory with ``results=root/results``."""
    from tiltflow.fiducials.io import write_fiducials
    from tiltflow.io.mrc import write_stack
    from tiltflow.io.star import write_star
    from tiltflow.io.tomograms import write_tomogram_set
    from tiltflow.model import Tomogram, TomogramSet
    from tiltflow.provenance import write_failed_fragment

    rng = np.random.default_rng(case.seed)
    root = Path(root).resolve()
    res = root / "results"
    name, n, w = case.name, case.n_tilts, case.image_px
    h = w
    size = (w, case.depth_px, h)
    angles = np.linspace(-60, 60, n)
    order = np.argsort(np.abs(angles), kind="stable")  # dose-symmetric-ish: 0° first
    pre = np.empty(n)
    pre[order] = np.arange(n) * 3.0
    t_rel = case.ice_thickness_nm / case.mean_free_path_nm
    t_px = case.ice_thickness_nm * 10 / case.pixel_size

    # beads: on the two ice surfaces, a few inside
    m = case.n_beads
    c = (np.asarray(size, dtype=float) - 1) / 2 + 1
    beads = np.column_stack(
        [
            rng.uniform(0.12 * w, 0.88 * w, m),
            c[1] + t_px / 2 * rng.choice([-1.0, 1.0], m),
            rng.uniform(0.12 * h, 0.88 * h, m),
        ]
    )
    inside = rng.random(m) < 0.15
    beads[inside, 1] = c[1] + rng.uniform(-0.4, 0.4, int(inside.sum())) * t_px
    true_p = _matrices(angles, size, w, h)
    err_tilt = rng.uniform(-1, 1, n) * case.tilt_error_deg
    err_shift = rng.uniform(-1, 1, (n, 2)) * case.shift_error_px
    imp_p = _matrices(angles + err_tilt, size, w, h, err_shift)
    from tiltflow.geometry import project

    true2d = project(true_p, beads)  # (n, m, 2)
    imp2d = project(imp_p, beads)

    # stack: counts with Beer-Lambert attenuation and dark beads
    r_px = case.bead_radius_a / case.pixel_size
    yy, xx = np.mgrid[0:h, 0:w]
    att = np.exp(-t_rel / np.cos(np.radians(angles)))
    lum = case.pixel_size**2
    stack = np.empty((n, h, w), np.float32)
    for f in range(n):
        img = np.full((h, w), lum * 3.0 * att[f], np.float32)
        for x, y in true2d[f]:
            if -2 * r_px < x < w + 2 * r_px and -2 * r_px < y < h + 2 * r_px:
                x0, x1 = max(int(x - 3 * r_px), 0), min(int(x + 3 * r_px) + 1, w)
                y0, y1 = max(int(y - 3 * r_px), 0), min(int(y + 3 * r_px) + 1, h)
                d2 = (xx[y0:y1, x0:x1] - x) ** 2 + (yy[y0:y1, x0:x1] - y) ** 2
                img[y0:y1, x0:x1] *= 1 - 0.6 * np.exp(-d2 / (2 * (0.6 * r_px) ** 2))
        stack[f] = rng.poisson(np.clip(img, 0, None)).astype(np.float32)
    stack_path = root / "stacks" / f"{name}.mrc"
    stack_path.parent.mkdir(parents=True, exist_ok=True)
    write_stack(stack_path, stack, case.pixel_size)

    def tomo(proj: np.ndarray, scale: np.ndarray, extra: dict) -> Tomogram:
        return Tomogram(
            name=name,
            tilt_series=str(stack_path),
            frame_count=n,
            size=size,
            hand=-1.0,
            optics_group="optics1",
            pixel_size=case.pixel_size,
            voltage=300.0,
            cs=2.7,
            amplitude_contrast=0.1,
            fractional_dose=3.0,
            proj=proj,
            defocus_u=np.full(n, 3e4),
            defocus_v=np.full(n, 3e4),
            defocus_angle=np.zeros(n),
            ctf_scale=scale,
            pre_exposure=pre,
            extra=extra,
        )

    steps = PIPELINE_STEPS
    failed = steps.index(case.failed_at) if case.failed_at in steps else len(steps)
    prov, stars = {}, {}
    fid_star = res / "align" / name / f"fiducials_{name}.star"
    scale = att / np.exp(-t_rel)
    normal = np.array([0.0, -1.0, 0.0])
    for i, step in enumerate(steps):
        d = res / step / name
        d.mkdir(parents=True, exist_ok=True)
        prov[step], stars[step] = d / "provenance.json", d / "tomograms.star"
        if i >= failed:
            why = case.reason if i == failed else f"{case.failed_at} failed: {case.reason}"
            _provenance(prov[step], step, name, "failed", why)
            write_failed_fragment(stars[step], name, step, why)
            continue
        _provenance(prov[step], step, name, "ok", "")
        if step in ("import", "fiducials"):
            t = tomo(imp_p, np.ones(n), {})
        elif step == "align":
            t = tomo(true_p, np.ones(n), {"rlnTomoFiducialsStarFile": str(fid_star)})
        else:
            t = tomo(
                true_p,
                scale,
                {
                    "rlnTomoFiducialsStarFile": str(fid_star),
                    "rlnTomoRelativeLuminance": float(np.exp(t_rel)),
                    "rlnTomoRelativeIceThickness": t_rel,
                    "rlnTomoIceNormalX": 0.0,
                    "rlnTomoIceNormalY": -1.0,
                    "rlnTomoIceNormalZ": 0.0,
                },
            )
        write_tomogram_set(stars[step], TomogramSet((t,)))

    inside_img = (true2d[..., 0] > 2) & (true2d[..., 0] < w - 3)
    inside_img &= (true2d[..., 1] > 2) & (true2d[..., 1] < h - 3)
    f_idx, b_idx = np.nonzero(inside_img)
    if failed > steps.index("fiducials"):
        keep = rng.random(f_idx.size) > 0.03  # a few missed detections
        f_idx, b_idx = f_idx[keep], b_idx[keep]
        obs = true2d[f_idx, b_idx] + rng.normal(0, 0.7 * case.residual_after_px, (f_idx.size, 2))
        write_fiducials(res / "fiducials" / name / f"fiducials_{name}.star", beads, case.pixel_size)
        fit_b = imp2d[f_idx, b_idx]
        cols = {
            "tfBeadIndex": b_idx.tolist(),
            "tfTiltIndex": f_idx.tolist(),
            "tfObsX": obs[:, 0].tolist(),
            "tfObsY": obs[:, 1].tolist(),
            "tfFitX": fit_b[:, 0].tolist(),
            "tfFitY": fit_b[:, 1].tolist(),
            "tfResidual": np.linalg.norm(obs - fit_b, axis=1).tolist(),
            "tfScore": [20.0] * f_idx.size,
        }
        write_star(res / "fiducials" / name / f"tracks_{name}.star", {"tracks": cols})
    if failed > steps.index("align"):
        fit_a = true2d[f_idx, b_idx]
        resid = np.linalg.norm(obs - fit_a, axis=1)
        bead_col = b_idx.copy()
        outlier = rng.random(bead_col.size) < 0.01
        bead_col[outlier] = -1
        cols = dict(cols)
        cols.update(
            tfBeadIndex=bead_col.tolist(),
            tfFitX=fit_a[:, 0].tolist(),
            tfFitY=fit_a[:, 1].tolist(),
            tfResidual=resid.tolist(),
        )
        write_star(res / "align" / name / f"tracks_{name}.star", {"tracks": cols})
        write_fiducials(fid_star, beads, case.pixel_size)
        ok = bead_col >= 0
        per_tilt = [
            float(resid[ok & (f_idx == f)].mean()) if (ok & (f_idx == f)).any() else 0.0
            for f in range(n)
        ]
        per_bead = [
            float(resid[ok & (b_idx == b)].mean()) if (ok & (b_idx == b)).any() else 0.0
            for b in range(m)
        ]
        write_star(
            res / "align" / name / f"align_{name}.star",
            {
                "summary": {
                    "tfTomoName": [name],
                    "tfStatus": ["refined"],
                    "tfNTilts": [n],
                    "tfNTiltsRefined": [n],
                    "tfNTiltsFlagged": [0],
                    "tfNBeads": [m],
                    "tfMeanResidualPx": [float(resid[ok].mean())],
                    "tfMaxResidualPx": [float(resid[ok].max())],
                    "tfNOutliers": [int(outlier.sum())],
                },
                "tilts": {
                    "tfTiltIndex": list(range(n)),
                    "tfTiltAngleDeg": angles.tolist(),
                    "tfMeanResidualPx": per_tilt,
                    "tfDShiftXPx": (-err_shift[:, 0]).tolist(),
                    "tfDShiftYPx": (-err_shift[:, 1]).tolist(),
                    "tfDRotDeg": rng.normal(0, 0.2, n).tolist(),
                    "tfDTiltDeg": (-err_tilt).tolist(),
                    "tfDThirdDeg": [0.0] * n,
                    "tfDMag": rng.normal(0, 0.004, n).tolist(),
                    "tfFlagged": [0] * n,
                },
                "beads": {"tfBeadIndex": list(range(m)), "tfMeanResidualPx": per_bead},
            },
        )
    if failed > steps.index("ice"):
        dose = np.full(n, 3.0)
        x = 1 / np.cos(np.radians(angles))
        meas = lum * np.exp(-t_rel * x) * (1 + rng.normal(0, 5e-4, n))
        model = lum * np.exp(-t_rel * x)
        write_star(
            res / "ice" / name / f"ice_{name}.star",
            {
                "fit": {
                    "tfTomoName": [name],
                    "tfStatus": ["fitted"],
                    "tfRelativeThickness": [t_rel],
                    "tfRelativeThicknessSd": [2e-4],
                    "tfThicknessNm": [case.ice_thickness_nm],
                    "tfThicknessSdNm": [2e-4 * case.mean_free_path_nm],
                    "tfMeanFreePathNm": [case.mean_free_path_nm],
                    "tfLuminance": [lum],
                    "tfIceNormalX": [0.0],
                    "tfIceNormalY": [-1.0],
                    "tfIceNormalZ": [0.0],
                    "tfIceNormalSdDeg": [0.05],
                    "tfIceNormalSource": ["fiducials"],
                    "tfRmsResidual": [5e-4],
                    "tfTiltsUsed": [n],
                },
                "tilts": {
                    "tfTiltIndex": list(range(n)),
                    "tfBeamAngleDeg": angles.tolist(),
                    "tfDose": dose.tolist(),
                    "tfMeanIntensity": (meas * dose).tolist(),
                    "tfDoseNormIntensity": meas.tolist(),
                    "tfFitIntensity": model.tolist(),
                    "tfLogResidual": np.log(meas / model).tolist(),
                    "tfScaleFactor": scale.tolist(),
                    "tfUsedInFit": [1] * n,
                },
            },
        )

    truth_path = None
    if case.with_truth:
        from tiltflow.simulate.truth import Truth

        truth_path = root / "simulated" / name / "truth.json"
        truth_path.parent.mkdir(parents=True, exist_ok=True)
        Truth(
            proj=true_p,
            beads_3d=beads,
            beads_2d=true2d,
            visible=inside_img,
            tilt_true_deg=angles,
            xf_true=np.zeros((n, 6)),
            tilt_written_deg=angles + err_tilt,
            xf_written=np.zeros((n, 6)),
            ice_thickness_rel=t_rel,
            ice_normal=normal,
            scale_factor=scale,
            attenuation=att,
            dose=np.full(n, 3.0),
            pre_exposure=pre,
            chrono_index=np.argsort(np.argsort(pre)),
            defocus_u=np.full(n, 3e4),
            defocus_v=np.full(n, 3e4),
            defocus_angle=np.zeros(n),
            excluded_views=(),
            pixel_size=case.pixel_size,
            bead_radius_A=case.bead_radius_a,
            raw_size=(w, h),
            ali_size=(w, h),
            thickness=case.depth_px,
            luminance=lum,
            ice_thickness_nm=case.ice_thickness_nm,
            mean_free_path_nm=case.mean_free_path_nm,
            tilt_axis_deg=0.0,
            import_flags={},
        ).to_json(truth_path)
    return prov, stars, truth_path


def dataset_cases(n: int, seed: int = 0) -> list[SyntheticCase]:
    """``n`` varied cases: mostly good, some with a high residual, few beads or thick ice, some
    failed at a step (deterministic)."""
    rng = np.random.default_rng(seed)
    cases = []
    for i in range(n):
        kind = rng.random()
        kw: dict = {
            "seed": seed + i,
            "residual_after_px": float(rng.lognormal(np.log(0.15), 0.35)),
            "ice_thickness_nm": float(rng.uniform(60, 260)),
            "n_beads": int(rng.integers(12, 30)),
        }
        if kind < 0.05:
            kw["failed_at"] = "fiducials"
            kw["reason"] = "NoDataError: no gold beads found (detection threshold 4 sigma)"
        elif kind < 0.08:
            kw["failed_at"] = "ice"
            kw["reason"] = "FitError: ice fit did not converge"
        elif kind < 0.14:
            kw["residual_after_px"] = float(rng.uniform(1.2, 4.0))
        elif kind < 0.17:
            kw["n_beads"] = 3
        cases.append(SyntheticCase(name=f"TS_{i + 1:03d}", **kw))
    return cases
