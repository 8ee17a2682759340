"""Pure core of the ice step: one tomogram + its stack -> :class:`IceResult` (no file I/O)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from tiltflow.dose import per_tilt_dose
from tiltflow.errors import InputError, NoDataError
from tiltflow.geometry import beam_directions
from tiltflow.ice.intensity import TiltIntensities, check_counts, measure_intensities
from tiltflow.ice.model import (
    BeadPlanes,
    bead_plane_normal,
    fit_beer_lambert,
    scale_factors,
    tilt_frame,
)
from tiltflow.ice.params import IceParams, mean_free_path_nm
from tiltflow.model import Tomogram

F64 = NDArray[np.float64]

STATUS_FITTED = "fitted"
STATUS_FALLBACK = "fallback_cos"


@dataclass(frozen=True)
class IceResult:
    """Everything the ice step found for one tomogram (per-tilt arrays in stack order).

    In fallback mode (``status == "fallback_cos"``) the scale factors are ``|v_f · v0|`` (cosine
    of each beam to the zero-tilt beam), ``normal`` is ``v0``, ``t = 0`` and ``luminance = 0``
    (a value no fit can give: it marks "not fitted" in the RELION global table, which must hold
    numbers), and every uncertainty/thickness is NaN in the side file.
    """

    name: str
    status: str
    t: float
    t_sd: float
    luminance: float
    luminance_sd: float
    normal: F64  #: (3,) unit, world; n · v0 > 0
    normal_sd_deg: float
    normal_source: str  #: "tilt plane" (tilt-axis component 0), "fitted" or "fiducials"
    mean_free_path_nm: float
    thickness_nm: float
    thickness_sd_nm: float
    rms_residual: float
    tilt_angle_deg: F64  #: signed angle of each beam to the zero-tilt beam
    dose: F64  #: e/Å² (NaN unknown)
    mean_intensity: F64  #: robust mean counts/px of the bead-free field
    norm_intensity: F64  #: mean_intensity / dose (counts/px per e/Å²); NaN where dose unknown
    fit_intensity: F64  #: L · exp(-t/|n·v_f|) in the same units
    residual: F64  #: log(norm / fit); NaN where no data
    scale: F64  #: rlnCtfScalefactor (SPEC §5)
    used: NDArray[np.bool_]
    messages: tuple[str, ...]
    bead_planes: BeadPlanes | None = None
    #: fraction of each tilt's measured field left out (beads, carbon, grid bar, dark regions)
    masked_fraction: F64 | None = None

    @property
    def n_used(self) -> int:
        return int(self.used.sum())


def _doses(tomo: Tomogram) -> tuple[F64, list[str]]:
    dose = per_tilt_dose(tomo.pre_exposure, tomo.fractional_dose)
    notes: list[str] = []
    known = np.isfinite(dose) & (dose > 0)
    if not known.any():
        notes.append("per-tilt doses unknown (no pre-exposure/dose): assumed equal")
        return np.ones(tomo.n_tilts), notes
    dose = np.where(known, dose, np.nan)
    if (~known).any():
        notes.append(f"{int((~known).sum())} tilt(s) with unknown dose left out of the fit")
    return dose, notes


def _fallback(
    tomo: Tomogram, dose: F64, meas: TiltIntensities | None, reason: str, mfp: float
) -> IceResult:
    beams = beam_directions(tomo.proj)
    frame = tilt_frame(beams)
    scale = np.abs(beams @ frame.v0)
    n = tomo.n_tilts
    mean = meas.mean if meas is not None else np.full(n, np.nan)
    return IceResult(
        name=tomo.name,
        status=STATUS_FALLBACK,
        t=0.0,
        t_sd=float("nan"),
        luminance=0.0,
        luminance_sd=float("nan"),
        normal=frame.v0.copy(),
        normal_sd_deg=float("nan"),
        normal_source="zero-tilt beam (fallback)",
        mean_free_path_nm=mfp,
        thickness_nm=float("nan"),
        thickness_sd_nm=float("nan"),
        rms_residual=float("nan"),
        tilt_angle_deg=frame.angles_deg,
        dose=dose,
        mean_intensity=mean,
        norm_intensity=mean / dose,
        fit_intensity=np.full(n, np.nan),
        residual=np.full(n, np.nan),
        scale=scale,
        used=np.zeros(n, dtype=bool),
        messages=(f"FALLBACK cos(tilt) scale factors: {reason}",),
    )


def estimate_ice(
    tomo: Tomogram,
    stack: NDArray,
    # IceParams is a frozen dataclass: one shared default instance is safe
    params: IceParams = IceParams(),  # noqa: B008
    beads_world: ArrayLike | None = None,
    stack_name: str | None = None,
) -> IceResult:
    """Fit the Beer–Lambert ice model of SPEC §5 to one tomogram's tilt images.

    Args:
        tomo: the tomogram (row i of its tables <-> frame i of ``stack``).
        stack: (n, h, w) tilt images in counts (any constant gain).
        params: settings.
        beads_world: (m, 3) fiducial positions in world px, or None.
        stack_name: name used in error messages (default ``tomo.tilt_series``).

    Raises:
        InputError: the images are not in counts and ``params.fallback == "none"``.
        ConfigError: no mean free path for the voltage.
    """
    name = stack_name or tomo.tilt_series
    stack = np.asarray(stack)
    if stack.ndim != 3 or stack.shape[0] != tomo.n_tilts:
        raise InputError(
            name,
            f"stack has shape {stack.shape}, expected ({tomo.n_tilts}, h, w) for tomogram {tomo.name}",
        )
    mfp = mean_free_path_nm(tomo.voltage, params.mean_free_path_nm)
    dose, notes = _doses(tomo)
    bead_r_px = params.bead_radius_A / tomo.pixel_size
    beads = (
        None if beads_world is None else np.asarray(beads_world, dtype=np.float64).reshape(-1, 3)
    )

    # counts check on the raw stack first (the flat field would hide a zero mean)
    meas = measure_intensities(
        stack,
        tomo.proj,
        tomo.size,
        bead_r_px,
        params.central_fraction,
        params.clip_sigma,
        params.bead_mask_factor,
        params.dark_mask_sigma,
        beads,
        source=name,
        dense_mask_sigma=params.dense_mask_sigma,
        threads=params.threads,
    )
    try:
        check_counts(meas, name)
    except InputError as exc:
        if params.fallback == "cos":
            return _fallback(tomo, dose, meas, str(exc), mfp)
        raise

    beams = beam_directions(tomo.proj)
    frame = tilt_frame(beams)
    norm = meas.mean / dose
    valid = np.isfinite(norm) & (norm > 0)
    log_i = np.where(valid, np.log(np.where(valid, norm, 1.0)), np.nan)
    tilt_range = float(np.ptp(frame.angles_deg[valid])) if valid.any() else 0.0
    fm = meas.frame_mean
    if fm.size >= 3 and np.all(fm > 0) and float(np.std(np.log(fm))) < 1e-5:
        reason = (
            f"every tilt image has the same mean ({np.mean(fm):.6g}, relative spread "
            f"{np.std(np.log(fm)):.1g}): the stack looks normalised per tilt, not in counts"
        )
        if params.fallback == "cos":
            return _fallback(tomo, dose, meas, reason, mfp)
        raise InputError(
            name, reason + "; use the unnormalised stack or set ice fallback 'cos' (--fallback cos)"
        )

    try:
        fit = fit_beer_lambert(
            beams, log_i, valid, q_fixed=0.0, outlier_sigma=params.outlier_sigma
        )
    except NoDataError as exc:
        raise NoDataError(
            f"tomogram {tomo.name} ({tomo.n_tilts} tilts, {int(valid.sum())} with a usable "
            f"intensity in {name}): {exc} (were most views excluded at import?)"
        ) from None
    source = "fitted" if fit.q_fitted else "tilt plane"
    planes = None
    if not fit.q_fitted and beads is not None and params.normal_from_beads == "auto":
        planes = bead_plane_normal(beads, frame, fit.normal, max_rms_px=max(2.0, bead_r_px))
        if planes is not None:
            fit = fit_beer_lambert(
                beams,
                log_i,
                valid,
                q_fixed=planes.q,
                fit_q=False,
                outlier_sigma=params.outlier_sigma,
            )
            source = "fiducials"
            q_deg = float(np.degrees(np.arctan(planes.q_sd)))
            fit = dataclasses.replace(fit, normal_sd_deg=float(np.hypot(fit.normal_sd_deg, q_deg)))
            notes.append(
                f"tilt-axis component of the ice normal from {planes.n_beads} fiducials on the ice surfaces "
                f"(plane RMS {planes.rms_px:.2g} px, q = {planes.q:.4f} ± {planes.q_sd:.4f})"
            )
    notes.extend(
        m for m in fit.notes if not (source == "fiducials" and m.startswith("ice-normal component"))
    )
    if source == "tilt plane":
        notes.append(
            "t is the thickness seen in the tilt plane: t / cos(normal tilt about the tilt-axis perpendicular)"
        )
    if tilt_range < params.min_tilt_range_deg:
        notes.append(
            f"DEGENERATE: tilt range {tilt_range:.0f}° < {params.min_tilt_range_deg:.0f}°: thickness and "
            "luminance are poorly separated (see t_sd)"
        )
    if not (np.isfinite(fit.t) and fit.t > 0):
        # a fit that is not physical is a failure of this tomogram, never a result (issue #11.6)
        reason = (
            f"the fitted relative ice thickness is {fit.t:.3g} (not physical: it must be > 0). The "
            "intensity does not fall with the path length through the ice: inverted contrast, "
            f"images not in counts, or too small a tilt range ({tilt_range:.0f}°)"
        )
        if params.fallback == "cos":
            return _fallback(tomo, dose, meas, reason, mfp)
        raise InputError(
            name,
            f"tomogram {tomo.name}: {reason}; no scale factors written. Set ice fallback 'cos' "
            "(--fallback cos) to write cos(tilt) scale factors instead",
        )
    lum = float(np.exp(fit.log_l))
    att = np.exp(-fit.t / np.abs(beams @ fit.normal))
    return IceResult(
        name=tomo.name,
        status=STATUS_FITTED,
        t=fit.t,
        t_sd=fit.t_sd,
        luminance=lum,
        luminance_sd=lum * fit.log_l_sd,
        normal=fit.normal,
        normal_sd_deg=fit.normal_sd_deg,
        normal_source=source,
        mean_free_path_nm=mfp,
        thickness_nm=fit.t * mfp,
        thickness_sd_nm=fit.t_sd * mfp,
        rms_residual=fit.rms_residual,
        tilt_angle_deg=frame.angles_deg,
        dose=dose,
        mean_intensity=meas.mean,
        norm_intensity=np.where(valid, norm, np.nan),
        fit_intensity=lum * att,
        residual=fit.residual,
        scale=scale_factors(fit.t, fit.normal, beams),
        used=fit.used,
        messages=tuple(notes),
        bead_planes=planes,
        masked_fraction=meas.masked_fraction,
    )
