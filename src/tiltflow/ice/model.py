"""Beer–Lambert model of the tilt-image intensities and its least-squares fit (SPEC §5).

``I_f = L · exp(-t / |n · v_f|)`` with ``v_f`` the unit beam direction of tilt f (row 2 of P_f,
normalised), ``n`` the unit ice normal (world coordinates), ``t`` the relative thickness
(thickness / inelastic mean free path) and ``L`` the luminance (intensity per unit dose through
no ice).

Geometry of a tilt series. The beam directions of a single-axis tilt series lie on one great
circle: the *tilt plane*, spanned by ``v0`` (beam of the tilt closest to the mean beam, i.e. the
zero tilt) and ``u``; ``w`` is the tilt-plane normal (the tilt axis in world coordinates). Then
``|n · v_f| = R |cos(α_f − β)|`` with ``R`` the length of the projection of ``n`` on the tilt
plane, so the intensities only determine ``t / R`` and the in-plane angle ``β``: the component of
the ice normal along the tilt axis is invisible to any single-axis tilt series (RELION's own
Beer–Lambert fit in ``relion_tomo_refine_ctf`` therefore keeps ``n`` in the tilt plane too). We
parametrise ``n ∝ v0 + p·u + q·w``; ``q`` is fitted only when the beam directions leave the tilt
plane by more than ``MIN_OUT_OF_PLANE`` (RMS), otherwise it is fixed (0, or from the fiducials
when they lie on the ice surfaces, see :func:`bead_plane_normal`).

Sign convention: the reported normal has a positive component along ``v0``, the beam direction
of the zero tilt (``n · v0 > 0``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from tiltflow.errors import NoDataError
from tiltflow.lm import levenberg_marquardt

F64 = NDArray[np.float64]

#: RMS out-of-tilt-plane component of the beam directions above which q is fitted
MIN_OUT_OF_PLANE = 0.05


@dataclass(frozen=True)
class TiltFrame:
    """Orthonormal frame of a tilt series' beam directions (see module docstring)."""

    zero_index: int  #: tilt whose beam is closest to the mean beam direction
    v0: F64  #: (3,) beam direction of that tilt
    u: F64  #: (3,) second in-plane axis, ``u = w × v0``
    w: F64  #: (3,) tilt-plane normal (the tilt axis), largest |component| positive
    angles_deg: F64  #: (n,) signed angle of each beam to v0 about w
    out_of_plane_rms: float  #: RMS of ``v_f · w``


def tilt_frame(beams: ArrayLike) -> TiltFrame:
    """The tilt-plane frame of unit beam directions ``beams`` (n, 3)."""
    v = np.asarray(beams, dtype=np.float64).reshape(-1, 3)
    if v.shape[0] == 0:
        raise NoDataError("no tilts")
    mean = v.mean(axis=0)
    mean /= np.linalg.norm(mean)
    k0 = int(np.argmax(v @ mean))
    v0 = v[k0]
    if v.shape[0] >= 2:
        _, _, vt = np.linalg.svd(v, full_matrices=True)
        w = vt[2]
        if abs(w @ v0) > 0.99:  # degenerate (all beams equal): any axis ⟂ v0
            w = vt[1]
    else:
        w = np.eye(3)[int(np.argmin(np.abs(v0)))]
    w = w - (w @ v0) * v0
    w /= np.linalg.norm(w)
    if w[int(np.argmax(np.abs(w)))] < 0:
        w = -w
    u = np.cross(w, v0)
    angles = np.degrees(np.arctan2(v @ u, v @ v0))
    return TiltFrame(k0, v0.copy(), u, w, angles, float(np.sqrt(np.mean((v @ w) ** 2))))


def normal_from_pq(frame: TiltFrame, p: float, q: float) -> F64:
    """Unit normal ``(v0 + p u + q w) / |…|`` (positive along v0 by construction)."""
    n = frame.v0 + p * frame.u + q * frame.w
    return n / np.linalg.norm(n)


def pq_from_normal(frame: TiltFrame, n: ArrayLike) -> tuple[float, float]:
    """Inverse of :func:`normal_from_pq` (``n`` is sign-flipped to ``n · v0 > 0`` first)."""
    n = np.asarray(n, dtype=np.float64)
    c = float(n @ frame.v0)
    if c < 0:
        n, c = -n, -c
    if c < 1e-6:
        raise ValueError("normal perpendicular to the zero-tilt beam")
    return float(n @ frame.u) / c, float(n @ frame.w) / c


def attenuation(t: float, normal: ArrayLike, beams: ArrayLike) -> F64:
    """``exp(-t / |n · v_f|)`` for each beam (n, 3)."""
    n = np.asarray(normal, dtype=np.float64)
    n = n / np.linalg.norm(n)
    c = np.abs(np.asarray(beams, dtype=np.float64).reshape(-1, 3) @ n)
    return np.exp(-t / c)


def scale_factors(t: float, normal: ArrayLike, beams: ArrayLike) -> F64:
    """rlnCtfScalefactor of SPEC §5: ``exp(-t / |n · v_f|) / exp(-t)`` (1 for a beam along n)."""
    return attenuation(t, normal, beams) / np.exp(-t)


@dataclass(frozen=True)
class BeerLambertFit:
    """Result of :func:`fit_beer_lambert`."""

    log_l: float
    log_l_sd: float
    t: float
    t_sd: float
    normal: F64  #: (3,) unit, ``n · v0 > 0``
    normal_sd_deg: float  #: RMS angular uncertainty of the normal (fitted directions only)
    p: float
    q: float
    q_fitted: bool
    used: NDArray[np.bool_]  #: (n,) tilts that entered the final fit
    residual: F64  #: (n,) log-intensity residual (observed − model), NaN where no data
    rms_residual: float  #: RMS of the residuals of the used tilts
    frame: TiltFrame
    notes: tuple[str, ...]


def _linear_at(s: F64, y: F64) -> tuple[float, float, float]:
    """Least squares ``y ≈ a − t s`` -> (a, t, sum of squares)."""
    a_mat = np.stack([np.ones_like(s), -s], axis=1)
    coef, *_ = np.linalg.lstsq(a_mat, y, rcond=None)
    r = y - a_mat @ coef
    return float(coef[0]), float(coef[1]), float(r @ r)


def fit_beer_lambert(
    beams: ArrayLike,
    log_intensity: ArrayLike,
    valid: ArrayLike | None = None,
    q_fixed: float = 0.0,
    fit_q: bool | None = None,
    outlier_sigma: float = 5.0,
    min_outlier_rel: float = 0.02,
) -> BeerLambertFit:
    """Fit ``log I_f = log L − t / |n · v_f|`` to the tilts marked ``valid``.

    Args:
        beams: (n, 3) unit beam directions.
        log_intensity: (n,) log of the dose-normalised mean intensities (NaN = no data).
        valid: (n,) tilts that may enter the fit (default: finite ``log_intensity``).
        q_fixed: the tilt-axis component of the normal (``n ∝ v0 + p u + q w``) when not fitted.
        fit_q: fit q as well; default: only when the beams leave the tilt plane (MIN_OUT_OF_PLANE).
        outlier_sigma: tilts with |residual| > outlier_sigma × 1.4826 MAD (and > min_outlier_rel)
            are dropped and the fit repeated (0 = off).

    Uncertainties: covariance ``s² (JᵀJ)⁻¹`` at the optimum with ``s²`` the residual variance.
    """
    v = np.asarray(beams, dtype=np.float64).reshape(-1, 3)
    y = np.asarray(log_intensity, dtype=np.float64).reshape(-1)
    ok = np.isfinite(y) if valid is None else (np.asarray(valid, dtype=bool) & np.isfinite(y))
    frame = tilt_frame(v)
    if fit_q is None:
        fit_q = frame.out_of_plane_rms > MIN_OUT_OF_PLANE
    k = 4 if fit_q else 3
    notes: list[str] = []
    if int(ok.sum()) < k + 1:
        raise NoDataError(
            f"only {int(ok.sum())} tilts with data; the ice fit needs at least {k + 1}"
        )

    def model(x: F64) -> F64:
        q = x[3] if fit_q else q_fixed
        n = normal_from_pq(frame, x[2], q)
        return x[0] - x[1] / np.abs(v @ n)

    used = ok.copy()
    x = None
    for _ in range(4):
        idx = np.flatnonzero(used)
        if x is None:
            # grid over the in-plane angle of the normal, linear in (log L, t) at each angle
            best = None
            for theta in np.radians(np.arange(-45.0, 45.01, 0.5)):
                p = float(np.tan(theta))
                s = 1.0 / np.abs(v[idx] @ normal_from_pq(frame, p, q_fixed))
                a, t, ssr = _linear_at(s, y[idx])
                if best is None or ssr < best[0]:
                    best = (ssr, a, t, p)
            assert best is not None
            x0 = [best[1], best[2], best[3]] + ([q_fixed] if fit_q else [])
        else:
            x0 = list(x)
        def resid(xx: F64, ii: NDArray[np.int64] = idx) -> F64:
            return model(xx)[ii] - y[ii]

        sol = levenberg_marquardt(
            resid,
            np.asarray(x0, dtype=np.float64),
            xtol=1e-12,
            ftol=1e-12,
            gtol=1e-12,
            max_nfev=2000,
        )
        x = sol.x
        res = y - model(x)
        if outlier_sigma <= 0:
            break
        r_used = res[used]
        sigma = 1.4826 * float(np.median(np.abs(r_used - np.median(r_used))))
        bad = ok & (np.abs(res) > max(outlier_sigma * sigma, min_outlier_rel))
        new_used = ok & ~bad
        if np.array_equal(new_used, used) or int(new_used.sum()) < k + 1:
            break
        used = new_used
    assert x is not None
    idx = np.flatnonzero(used)
    res = np.where(np.isfinite(y), y - model(x), np.nan)
    n_dropped = int(ok.sum() - used.sum())
    if n_dropped:
        notes.append(f"{n_dropped} outlier tilt(s) left out of the fit")

    # covariance from the Jacobian at the optimum
    jac = np.asarray(sol.jac, dtype=np.float64)
    dof = max(idx.size - k, 1)
    s2 = float(res[idx] @ res[idx]) / dof
    try:
        cov = s2 * np.linalg.inv(jac.T @ jac)
    except np.linalg.LinAlgError:
        cov = np.full((k, k), np.inf)
    q = float(x[3]) if fit_q else float(q_fixed)
    normal = normal_from_pq(frame, float(x[2]), q)
    # angular uncertainty of n: d n / d(p[, q]) projected, propagated
    eps = 1e-6
    cols = [
        (normal_from_pq(frame, x[2] + eps, q) - normal_from_pq(frame, x[2] - eps, q)) / (2 * eps)
    ]
    if fit_q:
        cols.append(
            (normal_from_pq(frame, x[2], q + eps) - normal_from_pq(frame, x[2], q - eps))
            / (2 * eps)
        )
    jn = np.stack(cols, axis=1)
    cov_n = jn @ cov[2:, 2:] @ jn.T
    normal_sd = float(np.degrees(np.sqrt(max(np.trace(cov_n), 0.0))))
    if not fit_q:
        notes.append(
            "ice-normal component along the tilt axis is not observable from a single-axis tilt "
            f"series; fixed (q = {q:.4g})"
        )
    return BeerLambertFit(
        log_l=float(x[0]),
        log_l_sd=float(np.sqrt(cov[0, 0])),
        t=float(x[1]),
        t_sd=float(np.sqrt(cov[1, 1])),
        normal=normal,
        normal_sd_deg=normal_sd,
        p=float(x[2]),
        q=q,
        q_fitted=bool(fit_q),
        used=used,
        residual=res,
        rms_residual=float(np.sqrt(np.mean(res[idx] ** 2))),
        frame=frame,
        notes=tuple(notes),
    )


@dataclass(frozen=True)
class BeadPlanes:
    """Ice normal from fiducials lying on the two ice surfaces (:func:`bead_plane_normal`)."""

    normal: F64  #: (3,) unit
    rms_px: float  #: RMS distance of the beads to their plane
    separation_px: float  #: distance between the two planes (0 with one plane)
    n_beads: int
    tilt_axis_extent_px: float  #: standard deviation of the beads along the tilt axis
    q: float  #: normal's tilt-axis component in the fit parametrisation
    q_sd: float


def bead_plane_normal(
    beads_world: ArrayLike, frame: TiltFrame, guess: ArrayLike, max_rms_px: float
) -> BeadPlanes | None:
    """Common normal of the planes through fiducials on the ice surfaces, or None.

    Beads usually sit on the two ice surfaces (some may float inside the ice). The intensities
    fix the normal's in-plane direction; its tilt-axis component ``q`` is scanned (±30°) for the
    one that collapses the bead heights ``x · n`` into the sharpest peaks (kernel density with
    width ``max_rms_px``). The beads within ``3·max_rms_px`` of the two densest heights are the
    surface beads; the normal minimising their squared distances to their own plane (smallest
    eigenvector of the pooled within-plane scatter) is refined twice. Accepted when at least 6
    beads lie on the planes within ``max_rms_px`` RMS and they spread along the tilt axis enough
    to fix ``q`` to ~1°.
    """
    x = np.asarray(beads_world, dtype=np.float64).reshape(-1, 3)
    m = x.shape[0]
    if m < 6:
        return None
    tol = float(max_rms_px)
    p0, _ = pq_from_normal(frame, guess)
    best = None
    for q in np.tan(np.radians(np.arange(-30.0, 30.01, 0.25))):
        h = x @ normal_from_pq(frame, p0, q)
        sharp = float(np.exp(-((h[:, None] - h[None, :]) ** 2) / (2 * tol * tol)).sum())
        if best is None or sharp > best[0]:
            best = (sharp, q)
    assert best is not None
    n = normal_from_pq(frame, p0, best[1])
    groups = np.full(m, -1)
    band = 3.0 * tol  # half-width of a surface band, shrunk to 3 robust σ of the plane residuals
    for _ in range(6):
        h = x @ n
        dens = np.exp(-((h[:, None] - h[None, :]) ** 2) / (2 * tol * tol)).sum(axis=1)
        i1 = int(np.argmax(dens))
        groups[:] = -1
        groups[np.abs(h - h[i1]) <= band] = 0
        far = np.abs(h - h[i1]) > 2 * band
        if far.any():
            i2 = int(np.flatnonzero(far)[np.argmax(dens[far])])
            g1 = (np.abs(h - h[i2]) <= band) & (groups < 0)
            if g1.sum() >= 3:
                groups[g1] = 1
        # drop beads off their group's plane (interior beads close to a surface)
        for gi in (0, 1):
            sel = np.flatnonzero(groups == gi)
            if sel.size >= 3:
                d = h[sel] - np.median(h[sel])
                sig = 1.4826 * float(np.median(np.abs(d - np.median(d))))
                groups[sel[np.abs(d) > max(3.0 * sig, 0.5)]] = -1
        centred = np.zeros((0, 3))
        for gi in (0, 1):
            sel = groups == gi
            if sel.sum():
                centred = np.vstack([centred, x[sel] - x[sel].mean(axis=0)])
        if centred.shape[0] < 6:
            return None
        evals, evecs = np.linalg.eigh(centred.T @ centred)
        n = evecs[:, 0] if evecs[:, 0] @ frame.v0 > 0 else -evecs[:, 0]
        resid = np.sqrt(max(evals[0], 0.0) / centred.shape[0])
        band = max(3.0 * resid, 1.0)
    n_in = int((groups >= 0).sum())
    n_groups = int(groups.max()) + 1
    rms = float(np.sqrt(max(evals[0], 0.0) / max(n_in - 2 - n_groups, 1)))
    sep = 0.0
    if n_groups == 2:
        sep = float(abs(x[groups == 1].mean(axis=0) @ n - x[groups == 0].mean(axis=0) @ n))
    extent = float(np.std(centred @ frame.w))
    c = float(n @ frame.v0)
    if rms > max_rms_px or extent <= 0 or c < 0.5 or n_in < max(6, m // 3):
        return None
    # the intensities fix the in-plane direction; fiducials that disagree with it are not on
    # the ice surfaces (or lie on the tomogram box faces)
    g = np.asarray(guess, dtype=np.float64)
    g_in = g - (g @ frame.w) * frame.w
    n_in_plane = n - (n @ frame.w) * frame.w
    cosang = float((g_in @ n_in_plane) / (np.linalg.norm(g_in) * np.linalg.norm(n_in_plane)))
    if np.degrees(np.arccos(min(1.0, abs(cosang)))) > 3.0:
        return None
    q = float(n @ frame.w) / c
    q_sd = rms / (extent * np.sqrt(n_in))
    if q_sd > np.tan(np.radians(1.0)):
        return None
    return BeadPlanes(n, rms, sep, n_in, extent, q, float(q_sd))
