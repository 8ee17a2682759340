"""Measure rlnTomoHand of one tomogram from its tilt images (pure: tomogram + stack -> result).

RELION 4 adds ``hand · px · (depth(x) − depth(centre))`` to the defocus of every world point
(``Tomogram::getCtf``). On a tilted image of a flat specimen the defocus therefore changes
across the image, perpendicular to the tilt axis, by the depth of the specimen plane there. With
the geometry known (the projection matrices), the measured local defocus against the predicted
depth has slope +1 or −1 in units of the pixel size; its sign is the hand.

For every tilt at least ``min_tilt_deg`` from the specimen normal (read from the stack one at a
time; other tilts are not read) the image is cut into tiles, the tiles into strips parallel to
the tilt axis (:mod:`tiltflow.hand.spectra`), and each strip's defocus offset from the tilt's
imported defocus is fitted by a symmetric 1D search (:func:`tiltflow.hand.fit.fit_strips`). The
robust regression of all strips' offsets on their predicted depths, with one intercept per tilt,
gives the slope (:func:`tiltflow.hand.fit.fit_slope`). The hand is reported only when the slope
is significant, near ±1 and shared by most tilts; otherwise the result is "undetermined" with
the reasons (too few Thon rings at this pixel size and defocus, too few tilts, a slope far from
±1, tilts that disagree), never a guess.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from numpy.typing import ArrayLike, NDArray

from tiltflow.errors import InputError
from tiltflow.hand.depth import DepthMaps, SpecimenPlane, depth_maps, specimen_plane
from tiltflow.hand.fit import fit_slope, fit_strips, fixed_slope_intercepts, search_grid
from tiltflow.hand.params import HandParams
from tiltflow.hand.spectra import (
    BINS_PER_RING,
    FrequencyGrid,
    PhaseBins,
    amplitude_phase,
    ctf_x,
    ring_modulation,
    strip_spectra,
    strips_of_tiles,
    tile_origins,
    wavelength_A,
)
from tiltflow.io.mrc import require_finite
from tiltflow.model import Tomogram

F64 = NDArray[np.float64]

STATUS_DETERMINED = "determined"
STATUS_UNDETERMINED = "undetermined"

#: largest phase half-spread (rad) of the defocus within a strip at the band's top frequency
MAX_SMEAR_PHASE = 1.0
#: fewest spectrum pixels per Thon ring period in a tile
MIN_PX_PER_RING = 3.0
#: margin of the automatic search range (Å) beyond 1.25 × the largest predicted offset
SEARCH_MARGIN_A = 2000.0


@dataclass
class StripTable:
    """One row per fitted strip (lists, then arrays)."""

    tilt: list[int] = field(default_factory=list)
    strip: list[int] = field(default_factory=list)
    centre_x: list[float] = field(default_factory=list)
    centre_y: list[float] = field(default_factory=list)
    depth_px: list[float] = field(default_factory=list)
    delta_A: list[float] = field(default_factory=list)
    se_A: list[float] = field(default_factory=list)
    z: list[float] = field(default_factory=list)
    tiles: list[int] = field(default_factory=list)
    at_edge: list[bool] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.tilt)

    def arrays(self) -> dict[str, np.ndarray]:
        return {k: np.asarray(v) for k, v in self.__dict__.items()}


@dataclass(frozen=True)
class HandResult:
    """Everything the hand step measured for one tomogram (per-tilt arrays have one entry per tilt)."""

    name: str
    status: str
    hand_measured: float  #: sign of the slope when determined, else 0
    hand_in: float
    hand_out: float
    slope: float
    slope_se: float
    agreement: float  #: fraction of the measured tilts whose own slope has the global sign
    reasons: tuple[str, ...]  #: why undetermined (empty when determined)
    messages: tuple[str, ...]
    plane: SpecimenPlane
    pixel_size: float
    # per tilt
    angle_deg: F64
    selected: NDArray[np.bool_]
    measured: NDArray[np.bool_]
    rings: F64
    res_high_A: F64
    search_A: F64
    defocus_A: F64  #: imported mean defocus
    tilt_slope: F64
    tilt_slope_se: F64
    intercept_A: F64  #: measured defocus offset at the tomogram-centre depth (free slope)
    intercept_se_A: F64
    correction_A: F64  #: offset with the slope fixed at the hand (NaN without a hand)
    correction_se_A: F64
    corrected: NDArray[np.bool_]  #: tilts whose defocus is off by more than its uncertainty
    tilt_notes: tuple[str, ...]
    # per strip
    strips: dict[str, np.ndarray]
    strip_used: NDArray[np.bool_]
    strip_weight: F64
    strip_residual_px: F64
    fit_scale: float = float("nan")

    @property
    def z(self) -> float:
        return float(self.slope / self.slope_se) if self.slope_se > 0 else float("nan")

    @property
    def n_tilts_measured(self) -> int:
        return int(np.count_nonzero(self.measured))

    @property
    def n_strips_used(self) -> int:
        return int(np.count_nonzero(self.strip_used))

    @property
    def determined(self) -> bool:
        return self.status == STATUS_DETERMINED


@dataclass(frozen=True)
class TiltPlan:
    """What will be measured on one tilt (decided before its image is read)."""

    k_lo: float
    k_hi: float
    rings: float
    search_A: float
    note: str


def plan_tilt(tomo: Tomogram, f: int, maps: DepthMaps, depths: F64, params: HandParams) -> TiltPlan:
    """Frequency band, number of Thon rings and search range of tilt ``f`` (``depths``: of its tiles)."""
    px = float(tomo.pixel_size)
    lam = wavelength_A(tomo.voltage)
    d0 = 0.5 * float(tomo.defocus_u[f] + tomo.defocus_v[f])
    half = 0.5 * abs(float(tomo.defocus_u[f] - tomo.defocus_v[f]))
    gnorm = float(np.linalg.norm(maps.grad[f]))
    max_off = px * float(np.max(np.abs(depths))) if depths.size else 0.0
    search = params.search_A if params.search_A is not None else 1.25 * max_off + SEARCH_MARGIN_A
    search = min(search, 0.8 * max(d0 - half, 0.0))
    k_lo = 1.0 / params.res_low_A
    k_hi = min(1.0 / params.res_high_A, 0.95 * 0.5 / px)
    notes = []
    d_max = d0 + half + search
    if d_max > 0:
        k_sampling = params.tile_px * px / (2.0 * MIN_PX_PER_RING * lam * d_max)
        if k_sampling < k_hi:
            k_hi, notes = k_sampling, ["band limited by ring sampling (tile_px)"]
    spread = (0.25 * params.tile_px + 0.5 * params.strip_px) * gnorm * px
    if spread > 0:
        k_smear = float(np.sqrt(MAX_SMEAR_PHASE / (np.pi * lam * spread)))
        if k_smear < k_hi:
            k_hi, notes = k_smear, ["band limited by the defocus spread in a strip"]
    if d0 <= 0 or k_hi <= k_lo:
        return TiltPlan(k_lo, k_hi, 0.0, search, "no frequency band")
    x_lo = float(ctf_x(k_lo * k_lo, d0, lam, tomo.cs))
    x_hi = float(ctf_x(k_hi * k_hi, d0, lam, tomo.cs))
    rings = max(x_hi - x_lo, 0.0)
    return TiltPlan(k_lo, k_hi, rings, search, "; ".join(notes))


def find_hand(
    tomo: Tomogram,
    stack: np.ndarray,
    params: HandParams = HandParams(),  # noqa: B008 (frozen)
    beads: ArrayLike | None = None,
    stack_name: str = "",
) -> HandResult:
    """Measure the hand of ``tomo`` from ``stack`` (``(n, h, w)``, frame i = row i; may be a
    memory map: only the selected tilts are read, one at a time)."""
    shape = np.shape(stack)
    if len(shape) != 3 or shape[0] != tomo.n_tilts:
        raise InputError(
            stack_name or None,
            f"stack of shape {shape} does not hold the {tomo.n_tilts} tilts of {tomo.name}",
        )
    n, h, w = (int(v) for v in shape)
    px = float(tomo.pixel_size)
    lam = wavelength_A(tomo.voltage)
    phi = amplitude_phase(tomo.amplitude_contrast)
    messages: list[str] = []
    plane, plane_msgs = specimen_plane(tomo, params.plane, beads)
    messages += plane_msgs
    maps = depth_maps(tomo.proj, tomo.size, plane)
    selected = np.abs(maps.angle_deg) >= params.min_tilt_deg - 1e-9
    tile = int(params.tile_px)
    if min(h, w) < tile:
        messages.append(f"images ({w} x {h}) are smaller than one tile ({tile} px)")
    origins = tile_origins((h, w), tile, params.tile_step_px)
    centres = origins.astype(np.float64) + 0.5 * (tile - 1)
    img_centre = np.array([(w - 1) / 2.0, (h - 1) / 2.0])
    grid = FrequencyGrid.make(tile, px) if origins.shape[0] else None

    nan = np.full(n, np.nan)
    rings, res_high, search_a = nan.copy(), nan.copy(), nan.copy()
    notes = [""] * n
    strips = StripTable()
    for f in np.flatnonzero(selected):
        if grid is None:
            notes[f] = "image smaller than a tile"
            continue
        depths = maps.depth(int(f), centres)
        plan = plan_tilt(tomo, int(f), maps, depths, params)
        rings[f], search_a[f] = plan.rings, plan.search_A
        res_high[f] = 1.0 / plan.k_hi if plan.k_hi > 0 else np.nan
        if plan.rings < params.min_rings:
            notes[f] = f"{plan.rings:.1f} Thon rings in the band (< {params.min_rings:g})"
            continue
        notes[f] = plan.note
        sidx, n_strips, _ = strips_of_tiles(centres, maps.grad[f], img_centre, params.strip_px)
        image = np.asarray(stack[int(f)], dtype=np.float32)  # the only read of this tilt
        require_finite(
            stack_name or None, np.array([image.sum(dtype=np.float64)]), image[None], int(f), shape[0]
        )
        spectra, counts = strip_spectra(image, origins, sidx, n_strips, tile, params.threads)
        have = np.flatnonzero(counts > 0)
        if have.size == 0:
            notes[f] = "no usable tiles"
            continue
        bins = PhaseBins.make(
            grid,
            float(tomo.defocus_u[f]),
            float(tomo.defocus_v[f]),
            float(tomo.defocus_angle[f]),
            lam,
            tomo.cs,
            plan.k_lo,
            plan.k_hi,
            per_ring=BINS_PER_RING,
        )
        r = ring_modulation(bins.profiles(spectra[have]), bins.per_ring)[:, bins.fit]
        deltas = search_grid(plan.search_A, plan.k_hi, lam)
        fits = fit_strips(r, bins.x[bins.fit], bins.k2[bins.fit], deltas, lam, phi)
        tiles_per = np.bincount(sidx, minlength=n_strips).astype(np.float64)
        dsum = np.bincount(sidx, weights=depths, minlength=n_strips)
        cx = np.bincount(sidx, weights=centres[:, 0], minlength=n_strips)
        cy = np.bincount(sidx, weights=centres[:, 1], minlength=n_strips)
        for j, s in enumerate(have):
            strips.tilt.append(int(f))
            strips.strip.append(int(s))
            strips.centre_x.append(float(cx[s] / tiles_per[s]))
            strips.centre_y.append(float(cy[s] / tiles_per[s]))
            strips.depth_px.append(float(dsum[s] / tiles_per[s]))
            strips.delta_A.append(float(fits.delta_A[j]))
            strips.se_A.append(float(fits.se_A[j]))
            strips.z.append(float(fits.z[j]))
            strips.tiles.append(int(counts[s]))
            strips.at_edge.append(bool(fits.at_edge[j]))
    return _conclude(
        tomo, params, plane, maps, selected, rings, res_high, search_a, notes, strips, messages
    )


def _conclude(
    tomo: Tomogram,
    params: HandParams,
    plane: SpecimenPlane,
    maps: DepthMaps,
    selected: NDArray[np.bool_],
    rings: F64,
    res_high: F64,
    search_a: F64,
    notes: list[str],
    strips: StripTable,
    messages: list[str],
) -> HandResult:
    n = tomo.n_tilts
    px = float(tomo.pixel_size)
    st = strips.arrays()
    m = len(strips)
    if m:
        used = (
            np.isfinite(st["delta_A"])
            & np.isfinite(st["se_A"])
            & (st["se_A"] > 0)
            & ~st["at_edge"].astype(bool)
            & (st["z"] >= params.min_strip_z)
        )
    else:
        used = np.zeros(0, dtype=bool)
    # a tilt is measured when at least two strips at different depths were used
    tilt_idx = st["tilt"].astype(np.int64) if m else np.zeros(0, dtype=np.int64)
    measured = np.zeros(n, dtype=bool)
    for f in np.unique(tilt_idx[used]) if m else []:
        d = st["depth_px"][used & (tilt_idx == f)]
        if d.size >= 2 and np.ptp(d) > 0:
            measured[f] = True
    for f in np.flatnonzero(selected & ~measured):
        if not notes[f] or notes[f].startswith("band limited"):
            k = int(np.count_nonzero(used & (tilt_idx == f))) if m else 0
            notes[f] = f"{k} strip(s) with significant rings (need 2)"
    keep = used & measured[tilt_idx] if m else used
    nan = np.full(n, np.nan)
    weights = np.zeros(m)
    resid = np.full(m, np.nan)
    slope, slope_se, scale = np.nan, np.nan, np.nan
    t_slope, t_se, icpt, icpt_se = nan.copy(), nan.copy(), nan.copy(), nan.copy()
    if keep.sum() >= 3:
        fit = fit_slope(
            st["delta_A"][keep] / px,
            st["se_A"][keep] / px,
            st["depth_px"][keep],
            tilt_idx[keep],
            n,
        )
        slope, slope_se, scale = fit.slope, fit.slope_se, fit.scale
        weights[keep] = fit.weights
        resid[keep] = fit.residuals
        t_slope, t_se = fit.group_slopes, fit.group_slope_se
        icpt, icpt_se = fit.intercepts * px, fit.intercept_se * px
        t_slope[~measured] = np.nan
        t_se[~measured] = np.nan
    # verdict
    reasons: list[str] = []
    n_meas = int(measured.sum())
    if n_meas < params.min_tilts:
        why = f"{n_meas} tilt(s) measured (need {params.min_tilts})"
        few = selected & np.isfinite(rings) & (rings < params.min_rings)
        if few.any():
            why += (
                f"; {int(few.sum())} of {int(selected.sum())} tilts have too few Thon rings "
                f"(at most {np.nanmax(rings[selected]):.1f} < {params.min_rings:g}) at "
                f"{px:g} Å/px and {np.nanmean(0.5 * (tomo.defocus_u + tomo.defocus_v)[selected]) / 1e4:.2f} µm defocus"
            )
        if not selected.any():
            why += f"; no tilt is {params.min_tilt_deg:g}° or more from the specimen normal"
        elif m and not used.any():
            zmax = float(np.nanmax(st["z"])) if np.isfinite(st["z"]).any() else float("nan")
            why += (
                f"; no strip has significant Thon rings with an optimum inside the search "
                f"range (best ring amplitude {zmax:.2f} noise sigma, need {params.min_strip_z:g})"
            )
        reasons.append(why)
    agreement = np.nan
    finite_t = np.isfinite(t_slope)
    if np.isfinite(slope) and finite_t.any():
        agreement = float(np.mean(np.sign(t_slope[finite_t]) == np.sign(slope)))
    if not reasons:
        z = abs(slope / slope_se) if slope_se > 0 else 0.0
        if not np.isfinite(slope):
            reasons.append("no slope could be fitted")
        else:
            if not z >= params.min_z:
                reasons.append(f"|slope / se| = {z:.1f} < {params.min_z:g}")
            if not abs(abs(slope) - 1.0) <= params.slope_tolerance:
                reasons.append(
                    f"slope {slope:+.2f} is not within {params.slope_tolerance:g} of ±1 "
                    "(pixel size, geometry or defocus inconsistent)"
                )
            if not agreement >= params.min_agreement:
                reasons.append(
                    f"only {agreement:.0%} of the tilts agree on the sign (need {params.min_agreement:.0%})"
                )
    status = STATUS_UNDETERMINED if reasons else STATUS_DETERMINED
    hand_measured = float(np.sign(slope)) if status == STATUS_DETERMINED else 0.0
    hand_out = float(tomo.hand)
    if status == STATUS_DETERMINED:
        hand_out = hand_measured
    elif params.force and np.isfinite(slope) and slope != 0:
        hand_out = float(np.sign(slope))
        messages.append(f"hand forced to {hand_out:+g} from an undetermined slope {slope:+.3f}")
    if hand_out != float(tomo.hand):
        messages.append(f"rlnTomoHand {float(tomo.hand):+g} -> {hand_out:+g}")
    # per-tilt defocus at the tomogram-centre depth with the slope fixed at the hand
    corr, corr_se = nan.copy(), nan.copy()
    corrected = np.zeros(n, dtype=bool)
    if keep.sum() >= 3 and hand_out != 0 and (status == STATUS_DETERMINED or params.force):
        b, bse = fixed_slope_intercepts(
            st["delta_A"][keep] / px,
            weights[keep],
            st["depth_px"][keep],
            tilt_idx[keep],
            n,
            hand_out,
            scale,
        )
        corr, corr_se = b * px, bse * px
        corr[~measured], corr_se[~measured] = np.nan, np.nan
        with np.errstate(invalid="ignore"):
            corrected = (
                np.isfinite(corr)
                & (np.abs(corr) > params.defocus_tolerance_A)
                & (np.abs(corr) > params.defocus_sigma * corr_se)
            )
        if corrected.any():
            verb = "corrected" if params.correct_defocus else "not corrected (correct_defocus off)"
            messages.append(
                f"{int(corrected.sum())} tilt(s) whose imported defocus is off by more than "
                f"max({params.defocus_tolerance_A:g} Å, {params.defocus_sigma:g} se): {verb}"
            )
    return HandResult(
        name=tomo.name,
        status=status,
        hand_measured=hand_measured,
        hand_in=float(tomo.hand),
        hand_out=hand_out,
        slope=float(slope),
        slope_se=float(slope_se),
        agreement=float(agreement),
        reasons=tuple(reasons),
        messages=tuple(messages),
        plane=plane,
        pixel_size=px,
        angle_deg=maps.angle_deg.copy(),
        selected=selected,
        measured=measured,
        rings=rings,
        res_high_A=res_high,
        search_A=search_a,
        defocus_A=0.5 * (tomo.defocus_u + tomo.defocus_v),
        tilt_slope=np.asarray(t_slope, dtype=np.float64),
        tilt_slope_se=np.asarray(t_se, dtype=np.float64),
        intercept_A=np.asarray(icpt, dtype=np.float64),
        intercept_se_A=np.asarray(icpt_se, dtype=np.float64),
        correction_A=np.asarray(corr, dtype=np.float64),
        correction_se_A=np.asarray(corr_se, dtype=np.float64),
        corrected=corrected,
        tilt_notes=tuple(notes),
        strips=st,
        strip_used=np.asarray(keep, dtype=bool),
        strip_weight=weights,
        strip_residual_px=resid,
        fit_scale=float(scale),
    )


def apply_result(tomo: Tomogram, res: HandResult, correct_defocus: bool = False) -> Tomogram:
    """The tomogram with the hand written (``res.hand_out``) and, when asked, the flagged tilts'
    defocus replaced by the measured one (U and V shifted alike, astigmatism kept)."""
    changes: dict[str, object] = {"hand": float(res.hand_out)}
    if correct_defocus and res.corrected.any():
        shift = np.where(res.corrected, res.correction_A, 0.0)
        changes["defocus_u"] = np.asarray(tomo.defocus_u + shift, dtype=np.float64)
        changes["defocus_v"] = np.asarray(tomo.defocus_v + shift, dtype=np.float64)
    return tomo.replace(**changes)
