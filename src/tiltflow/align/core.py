"""Bundle adjustment of one tilt series from its fiducial tracks (pure: no I/O).

Unknowns: the 3D bead positions and, per tilt, the update of the imported matrix described in
:mod:`tiltflow.align.frames`. Solved with ``scipy.optimize.least_squares`` (trf, robust loss,
analytic sparse Jacobian).

Gauge. Bead cloud and per-tilt updates together are invariant under a 3D similarity of the
world (7 dof). It is fixed by soft constraints (rows of the residual vector) that only act
along those directions, so they are met exactly at the optimum and do not bias the fit:

* translation: ``Σ_f A_fᵀ d_f = 0`` — the shift updates contain no net 3D translation, i.e. the
  least-squares 3D motion of the tomogram centre is zero;
* rotation about the tilt axis: ``Σ_f θ_f = 0`` (mean tilt-angle change zero);
* scale: ``Σ μ = 0`` over the magnification parameters (mean magnification kept);
* with the third angle and per-tilt rotations, the two rotations perpendicular to the tilt
  axis: ``Σ_f e·ω_f = 0`` with ``ω_f`` the world rotation vector of tilt f's update.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp
from numpy.typing import NDArray
from scipy.optimize import least_squares

from tiltflow.align.frames import (
    Frames,
    Updates,
    frames,
    predict,
    rot2,
    rotation_matrices,
    triangulate,
    updated_matrices,
)
from tiltflow.align.params import AlignParams
from tiltflow.align.report import AlignResult, build_report
from tiltflow.errors import InputError
from tiltflow.model import Tomogram
from tiltflow.neighbours import nearest_within

F64 = NDArray[np.float64]
I64 = NDArray[np.int64]

#: weight of the gauge rows (they vanish at the optimum; the weight only sets how fast)
GAUGE_WEIGHT = 10.0


@dataclass(frozen=True)
class Observations:
    """Detections of one tilt series: bead index (-1 = unassigned), tilt index, x, y, score."""

    bead: I64
    tilt: I64
    xy: F64
    score: F64

    @property
    def n(self) -> int:
        return int(self.bead.size)


def _index_column(values: object, label: str) -> I64:
    """An index column as int64; a value that is not an integer (``0.5``, NaN, text) is an
    InputError naming the row (1-based) and the label, never silently truncated."""
    raw = np.asarray(values).reshape(-1)
    try:
        num = raw.astype(np.float64)
    except (TypeError, ValueError):
        num = None
    if num is None or not np.all(np.isfinite(num) & (num == np.round(num))):
        if num is None:
            k = next(i for i, v in enumerate(raw.tolist()) if not _is_number(v))
        else:
            k = int(np.flatnonzero(~(np.isfinite(num) & (num == np.round(num))))[0])
        name = f"_{label}" if label.startswith("tf") else label
        raise InputError(None, f"row {k + 1}: {name} is {raw[k]}, expected an integer index")
    return num.astype(np.int64)


def _is_number(v: object) -> bool:
    try:
        float(v)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return False
    return True


def as_observations(obs: object, n_tilts: int, n_beads: int) -> Observations:
    """Normalise observations given as a table -- a tracks file's
    :class:`~tiltflow.io.star.StarBlock` or a DataFrame -- (``bead, tilt, x, y[, score]`` or the tracks
    labels ``tfBeadIndex, tfTiltIndex, tfObsX, tfObsY[, tfScore]``) or a tuple
    ``(bead, tilt, x, y)`` of arrays; indices are checked against the tilt/bead counts."""
    columns = getattr(obs, "columns", None)  # a StarBlock (tracks file) or a pandas DataFrame
    if columns is not None:
        tab: Any = obs
        names = (
            ("bead", "tilt", "x", "y", "score")
            if "bead" in columns
            else ("tfBeadIndex", "tfTiltIndex", "tfObsX", "tfObsY", "tfScore")
        )
        missing = [c for c in names[:4] if c not in columns]
        if missing:
            raise ValueError(f"observations lack column(s) {missing}")
        bead, tilt, x, y = (np.asarray(tab[c]) for c in names[:4])
        score = (
            np.asarray(tab[names[4]], dtype=np.float64)
            if names[4] in columns
            else np.ones(len(tab))
        )
    else:
        bead, tilt, x, y = obs  # type: ignore[misc]
        score = np.ones(np.size(bead))
    label = (
        ("tfBeadIndex", "tfTiltIndex")
        if columns is not None and "tfBeadIndex" in columns
        else ("bead", "tilt")
    )
    bead = _index_column(bead, label[0])
    tilt = _index_column(tilt, label[1])
    xy = np.stack(
        [np.asarray(x, dtype=np.float64).reshape(-1), np.asarray(y, dtype=np.float64).reshape(-1)],
        1,
    )
    score = np.asarray(score, dtype=np.float64).reshape(-1)
    if not (bead.size == tilt.size == xy.shape[0] == score.size):
        raise ValueError("observation arrays differ in length")
    if np.any((tilt < 0) | (tilt >= n_tilts)):
        bad = int(tilt[(tilt < 0) | (tilt >= n_tilts)][0])
        raise InputError(
            None,
            f"observation refers to tilt {bad}, but the tomogram has {n_tilts} tilts (0-based)",
        )
    if np.any(bead >= n_beads) or np.any(bead < -1):
        bad = int(bead[(bead >= n_beads) | (bead < -1)][0])
        raise InputError(
            None,
            f"observation refers to bead {bad}, but there are {n_beads} beads (0-based, -1 = none)",
        )
    if not np.all(np.isfinite(xy)):
        raise InputError(None, "observation positions must be finite")
    return Observations(bead, tilt, xy, score)


# --------------------------------------------------------------------------- parameter layout


#: the neighbour prior of grouping "auto" starts below this fraction of the median count
PRIOR_ONSET = 0.75


def neighbour_prior_weights(n_obs: F64) -> F64:
    """Relative weight of the neighbour prior of each tilt (grouping ``auto``).

    ``sqrt(max(0, PRIOR_ONSET · median / n - 1))``: none for tilts with at least
    :data:`PRIOR_ONSET` of the median number of observations (their parameters are fitted
    freely, so independent per-tilt errors are recovered without bias), growing as a tilt's
    observations get fewer (0.7 at half the median, 1.4 at a quarter), so a tilt with few beads
    is tied to its neighbours instead of being fitted wildly to them.
    """
    n = np.asarray(n_obs, dtype=np.float64)
    med = float(np.median(n[n > 0])) if np.any(n > 0) else 1.0
    return np.sqrt(np.maximum(0.0, PRIOR_ONSET * med / np.maximum(n, 1.0) - 1.0))


def _group_ids(active: NDArray[np.bool_], order: I64, grouping: str, size: int) -> tuple[I64, int]:
    """Parameter group of every tilt (-1 = inactive) for a grouping mode."""
    gid = np.full(active.size, -1, dtype=np.int64)
    act_sorted = order[active[order]]
    if act_sorted.size == 0:
        return gid, 0
    if grouping == "single":
        gid[act_sorted] = 0
        return gid, 1
    if grouping == "grouped":
        gid[act_sorted] = np.arange(act_sorted.size) // size
        return gid, int(gid[act_sorted].max()) + 1
    gid[act_sorted] = np.arange(act_sorted.size)
    return gid, int(act_sorted.size)


@dataclass
class _Layout:
    """Where each unknown lives in the parameter vector (-1: not a parameter, value 0)."""

    idx_dx: I64
    idx_dy: I64
    idx_rot: I64
    idx_mag: I64
    idx_tilt: I64
    idx_third: I64
    bead_col: I64  # (m,) first of 3 columns, -1 = bead not refined
    n_params: int
    smooth_rot: I64  # parameter columns in angle order for the smoothing penalty (or empty)
    smooth_mag: I64
    #: tilt of each smoothing column, when the penalty weight follows its observations ("auto")
    auto_rot: I64 | None = None
    auto_mag: I64 | None = None

    def unpack(self, x: F64, beads0: F64) -> tuple[Updates, F64]:
        xe = np.append(x, 0.0)
        upd = Updates(
            shift=np.stack([xe[self.idx_dx], xe[self.idx_dy]], 1),
            rot=xe[self.idx_rot],
            mag=xe[self.idx_mag],
            tilt=xe[self.idx_tilt],
            third=xe[self.idx_third],
        )
        beads = beads0.copy()
        on = self.bead_col >= 0
        beads[on] = x[self.bead_col[on][:, None] + np.arange(3)]
        return upd, beads

    def pack(self, upd: Updates, beads: F64) -> F64:
        x = np.zeros(self.n_params)
        for idx, val in (
            (self.idx_dx, upd.shift[:, 0]),
            (self.idx_dy, upd.shift[:, 1]),
            (self.idx_rot, upd.rot),
            (self.idx_mag, upd.mag),
            (self.idx_tilt, upd.tilt),
            (self.idx_third, upd.third),
        ):
            on = idx >= 0
            if np.any(on):
                tot = np.bincount(idx[on], weights=val[on], minlength=self.n_params)
                cnt = np.bincount(idx[on], minlength=self.n_params)
                used = cnt > 0
                x[used] = tot[used] / cnt[used]
        on = self.bead_col >= 0
        x[self.bead_col[on][:, None] + np.arange(3)] = beads[on]
        return x


def _layout(
    fr: Frames,
    active_t: NDArray[np.bool_],
    active_b: NDArray[np.bool_],
    prm: AlignParams,
    refine_tilt: bool,
) -> _Layout:
    n = fr.n
    order = np.argsort(fr.angles_deg, kind="stable")
    nxt = 0

    def per_tilt(on: bool) -> I64:
        nonlocal nxt
        idx = np.full(n, -1, dtype=np.int64)
        if on:
            k = int(active_t.sum())
            idx[order[active_t[order]]] = nxt + np.arange(k)
            nxt += k
        return idx

    def grouped(on: bool, grouping: str) -> tuple[I64, I64, I64 | None]:
        nonlocal nxt
        idx = np.full(n, -1, dtype=np.int64)
        smooth = np.zeros(0, dtype=np.int64)
        tilts: I64 | None = None
        if on:
            gid, ng = _group_ids(active_t, order, grouping, prm.group_size)
            idx[gid >= 0] = gid[gid >= 0] + nxt
            if grouping in ("smooth", "auto") and ng >= 3:
                smooth = nxt + np.arange(ng)
                if grouping == "auto":
                    tilts = order[active_t[order]]
            nxt += ng
        return idx, smooth, tilts

    idx_dx = per_tilt(prm.refine_shifts)
    idx_dy = per_tilt(prm.refine_shifts)
    idx_rot, smooth_rot, auto_rot = grouped(prm.refine_rotation, prm.rotation_grouping)
    mag_on = prm.refine_magnification and prm.magnification_grouping != "single"
    idx_mag, smooth_mag, auto_mag = grouped(mag_on, prm.magnification_grouping)
    idx_tilt = per_tilt(refine_tilt)
    idx_third = per_tilt(refine_tilt and prm.refine_third_angle)
    bead_col = np.full(active_b.size, -1, dtype=np.int64)
    nb = int(active_b.sum())
    bead_col[active_b] = nxt + 3 * np.arange(nb)
    nxt += 3 * nb
    return _Layout(
        idx_dx,
        idx_dy,
        idx_rot,
        idx_mag,
        idx_tilt,
        idx_third,
        bead_col,
        nxt,
        smooth_rot,
        smooth_mag,
        auto_rot,
        auto_mag,
    )


# --------------------------------------------------------------------------- residuals / Jacobian


class _Problem:
    """Residuals and sparse Jacobian of the bundle adjustment for a fixed set of observations."""

    def __init__(
        self,
        fr: Frames,
        lay: _Layout,
        beads0: F64,
        bead: I64,
        tilt: I64,
        xy: F64,
        prm: AlignParams,
        radius: float,
    ) -> None:
        self.fr, self.lay, self.beads0 = fr, lay, beads0
        self.bead, self.tilt, self.xy = bead, tilt, xy
        self.k = bead.size
        self.radius = radius
        n_act = max(int(np.sum(lay.idx_tilt >= 0)), int(np.sum(lay.idx_dx >= 0)), 1)
        self.gauge_rows: list[tuple[I64, F64]] = []  # (columns, coefficients) per gauge row
        if np.any(lay.idx_dx >= 0):
            act = lay.idx_dx >= 0
            for j in range(3):
                cols = np.concatenate([lay.idx_dx[act], lay.idx_dy[act]])
                coef = np.concatenate([fr.A[act, 0, j], fr.A[act, 1, j]]) / n_act
                self.gauge_rows.append((cols, GAUGE_WEIGHT * coef))
        if np.any(lay.idx_tilt >= 0):
            cols = lay.idx_tilt[lay.idx_tilt >= 0]
            self.gauge_rows.append((cols, np.full(cols.size, GAUGE_WEIGHT * radius / cols.size)))
        mag_cols = np.unique(lay.idx_mag[lay.idx_mag >= 0])
        if mag_cols.size >= 2:
            self.gauge_rows.append(
                (mag_cols, np.full(mag_cols.size, GAUGE_WEIGHT * radius / mag_cols.size))
            )
        if (
            np.any(lay.idx_third >= 0)
            and prm.rotation_grouping in ("auto", "per-tilt", "smooth")
            and np.any(lay.idx_rot >= 0)
            and fr.u is not None
        ):
            act = (lay.idx_third >= 0) & (lay.idx_rot >= 0)
            e1 = np.cross(fr.u, np.eye(3)[int(np.argmin(np.abs(fr.u)))])
            e1 /= np.linalg.norm(e1)
            e2 = np.cross(fr.u, e1)
            for e in (e1, e2):
                cols = np.concatenate([lay.idx_third[act], lay.idx_rot[act]])
                coef = np.concatenate([fr.w[act] @ e, -fr.sigma[act] * (fr.v[act] @ e)])
                self.gauge_rows.append(
                    (cols, GAUGE_WEIGHT * radius * coef / max(int(act.sum()), 1))
                )
        self.smooth_w_rot = prm.smoothing_weight * 180.0 / np.pi  # px per rad of 2nd difference
        self.smooth_w_mag = prm.smoothing_weight * 100.0  # px per unit (=100 %) of 2nd difference
        # "auto": the penalty on each tilt grows as its observations get fewer (none at or above
        # the median count; like "smooth" at half of it)
        n_obs = np.bincount(tilt, minlength=fr.n).astype(np.float64)
        self.smooth_rows: list[tuple[I64, I64, I64, F64, I64, I64, F64]] = []
        for cols_s, w, tilts in (
            (lay.smooth_rot, self.smooth_w_rot, lay.auto_rot),
            (lay.smooth_mag, self.smooth_w_mag, lay.auto_mag),
        ):
            if cols_s.size < 3:
                continue
            a, c0, c1 = cols_s[:-2], cols_s[1:-1], cols_s[2:]
            if tilts is None:
                wts = np.full(a.size, w)
                ends_a = ends_b = np.zeros(0, np.int64)
                wend = np.zeros(0)
            else:
                wt = w * neighbour_prior_weights(n_obs[tilts])
                wts = wt[1:-1]
                # the first and last tilts (often the sparse high tilts): tied to their neighbour
                ends_a = np.array([cols_s[0], cols_s[-1]])
                ends_b = np.array([cols_s[1], cols_s[-2]])
                wend = np.array([wt[0], wt[-1]])
            self.smooth_rows.append((a, c0, c1, wts, ends_a, ends_b, wend))
        self._cache_x: F64 | None = None
        self._cache: tuple[F64, sp.csr_matrix] | None = None

    # the smoothing penalty rows: weight * (x[a] - 2 x[b] + x[c])
    @staticmethod
    def _second_diff(cols: I64) -> tuple[I64, I64]:
        return cols[:-2], cols[1:-1]

    def _evaluate(self, x: F64) -> tuple[F64, sp.csr_matrix]:
        if self._cache_x is not None and np.array_equal(x, self._cache_x):
            assert self._cache is not None
            return self._cache
        fr, lay = self.fr, self.lay
        upd, beads = lay.unpack(x, self.beads0)
        t, b = self.tilt, self.bead
        s = 1.0 + upd.mag
        rot = rot2(upd.rot)
        if fr.u is not None:
            ru = rotation_matrices(fr.u, upd.tilt)
            rw = rotation_matrices(fr.w, upd.third)
        else:
            ru = rw = np.tile(np.eye(3), (fr.n, 1, 1))
        sra = s[:, None, None] * (rot @ fr.A)  # (n,2,3)
        m_full = sra @ rw @ ru  # (n,2,3)
        y = beads[b] - fr.c  # (k,3)
        q = np.einsum("kij,kj->ki", m_full[t], y)  # s Rot A R Y
        pred = fr.p[t] + upd.shift[t] + q
        res_obs = (pred - self.xy).reshape(-1)

        rows_list: list[I64] = []
        cols_list: list[I64] = []
        vals_list: list[F64] = []
        r0 = 2 * np.arange(self.k)

        def add(col: I64, val: F64) -> None:  # val (k,2): d(x,y)/d(param col)
            on = col >= 0
            if not np.any(on):
                return
            rows_list.extend([r0[on], r0[on] + 1])
            cols_list.extend([col[on], col[on]])
            vals_list.extend([val[on, 0], val[on, 1]])

        ones, zeros = np.ones(self.k), np.zeros(self.k)
        add(lay.idx_dx[t], np.stack([ones, zeros], 1))
        add(lay.idx_dy[t], np.stack([zeros, ones], 1))
        add(lay.idx_rot[t], np.stack([-q[:, 1], q[:, 0]], 1))
        add(lay.idx_mag[t], q / s[t][:, None])
        if fr.u is not None:
            ruy = np.einsum("kij,kj->ki", ru[t], y)
            d_tilt = np.einsum("kij,kj->ki", (sra @ rw)[t], np.cross(fr.u[None, :], ruy))
            add(lay.idx_tilt[t], d_tilt)
            z = np.einsum("kij,kj->ki", (rw @ ru)[t], y)
            d_third = np.einsum("kij,kj->ki", sra[t], np.cross(fr.w[t], z))
            add(lay.idx_third[t], d_third)
        bc = lay.bead_col[b]
        on = bc >= 0
        if np.any(on):
            mk = m_full[t][on]  # (k',2,3)
            rr = r0[on]
            for j in range(3):
                rows_list.extend([rr, rr + 1])
                cols_list.extend([bc[on] + j, bc[on] + j])
                vals_list.extend([mk[:, 0, j], mk[:, 1, j]])

        extra_res: list[float] = []
        row = 2 * self.k
        for a, c0, c1, w, ea, eb, we in self.smooth_rows:
            vals = w * (x[a] - 2 * x[c0] + x[c1])
            rr = row + np.arange(a.size)
            rows_list.extend([rr, rr, rr])
            cols_list.extend([a, c0, c1])
            vals_list.extend([w, -2 * w, w])
            extra_res.extend(vals.tolist())
            row += a.size
            if ea.size:
                rr = row + np.arange(ea.size)
                rows_list.extend([rr, rr])
                cols_list.extend([ea, eb])
                vals_list.extend([we, -we])
                extra_res.extend((we * (x[ea] - x[eb])).tolist())
                row += ea.size
        for cols_g, coef in self.gauge_rows:
            extra_res.append(float(coef @ x[cols_g]))
            rows_list.append(np.full(cols_g.size, row))
            cols_list.append(cols_g)
            vals_list.append(coef)
            row += 1
        res = np.concatenate([res_obs, np.asarray(extra_res, dtype=np.float64)])
        jac = sp.coo_matrix(
            (np.concatenate(vals_list), (np.concatenate(rows_list), np.concatenate(cols_list))),
            shape=(row, lay.n_params),
        ).tocsr()
        self._cache_x = x.copy()
        self._cache = (res, jac)
        return res, jac

    def fun(self, x: F64) -> F64:
        return self._evaluate(x)[0]

    def jac(self, x: F64) -> sp.csr_matrix:
        return self._evaluate(x)[1]


def _solve(
    fr: Frames,
    lay: _Layout,
    upd: Updates,
    beads: F64,
    bead: I64,
    tilt: I64,
    xy: F64,
    prm: AlignParams,
    radius: float,
) -> tuple[Updates, F64, int]:
    prob = _Problem(fr, lay, beads, bead, tilt, xy, prm, radius)
    x0 = lay.pack(upd, beads)
    sol = least_squares(
        prob.fun,
        x0,
        jac=prob.jac,
        method="trf",
        loss=prm.loss,
        f_scale=prm.f_scale_px,
        x_scale="jac",
        tr_solver="lsmr",
        tr_options={"atol": 1e-12, "btol": 1e-12},
        ftol=1e-12,
        xtol=1e-12,
        gtol=1e-10,
        max_nfev=prm.max_iterations,
    )
    new_upd, new_beads = lay.unpack(sol.x, beads)
    return new_upd, new_beads, int(sol.nfev)


# --------------------------------------------------------------------------- driver


def _robust_sigma(res_xy: F64) -> float:
    """1.4826 · MAD of the residual components (x and y pooled)."""
    comp = res_xy.reshape(-1)
    if comp.size == 0:
        return 0.0
    return float(1.4826 * np.median(np.abs(comp - np.median(comp))))


def _active_sets(
    bead: I64, tilt: I64, n: int, beads_ok: NDArray[np.bool_], prm: AlignParams
) -> tuple[NDArray[np.bool_], NDArray[np.bool_]]:
    """Tilts with ≥ min_beads_per_tilt beads and beads in ≥ min_tilts_per_bead such tilts."""
    m = beads_ok.size
    act_t = np.ones(n, dtype=bool)
    act_b = beads_ok.copy()
    assigned = bead >= 0
    for _ in range(100):
        use = assigned.copy()
        use[assigned] = act_b[bead[assigned]] & act_t[tilt[assigned]]
        nt = np.bincount(tilt[use], minlength=n)
        new_t = nt >= prm.min_beads_per_tilt
        use[assigned] &= new_t[tilt[assigned]]
        nb = np.bincount(bead[use], minlength=m)
        new_b = act_b & (nb >= prm.min_tilts_per_bead)
        if np.array_equal(new_t, act_t) and np.array_equal(new_b, act_b):
            break
        act_t, act_b = new_t, new_b
    return act_t, act_b


def _depth_spread(beads: F64) -> float:
    """Standard deviation of the bead cloud along its thinnest principal direction (px)."""
    if beads.shape[0] < 4:
        return 0.0
    x = beads - beads.mean(axis=0)
    s = np.linalg.svd(x, compute_uv=False)
    return float(s[-1] / np.sqrt(beads.shape[0]))


def _reassociate(
    fr: Frames,
    upd: Updates,
    beads: F64,
    cur: I64,
    obs: Observations,
    usable_b: NDArray[np.bool_],
    act_t: NDArray[np.bool_],
    used: NDArray[np.bool_],
    prm: AlignParams,
    outlier_of: I64,
    picked: NDArray[np.bool_],
) -> tuple[I64, int, int, float]:
    """Drop outliers, pick up detections near predicted bead positions. Returns the new bead
    assignment and the numbers dropped / picked up, and the outlier threshold (px)."""
    pred = predict(fr, upd, np.nan_to_num(beads))  # (n,m,2)
    cur = cur.copy()
    res = np.zeros((obs.n, 2))
    a = cur >= 0
    res[a] = obs.xy[a] - pred[obs.tilt[a], cur[a]]
    sigma = _robust_sigma(res[used])
    thr = max(prm.outlier_mad * sigma, prm.outlier_min_px) if prm.outlier_mad > 0 else np.inf
    n_drop = 0
    if prm.outlier_mad > 0:
        bad = used & (np.linalg.norm(res, axis=1) > thr)
        outlier_of[bad] = cur[bad]
        cur[bad] = -1
        picked[bad] = False
        n_drop = int(bad.sum())
    n_pick = 0
    if prm.reassociate:
        radius = min(prm.reassociation_radius_px, thr)
        cand = np.flatnonzero((cur < 0) & act_t[obs.tilt])
        if cand.size:
            have = np.zeros((fr.n, beads.shape[0]), dtype=bool)
            have[obs.tilt[cur >= 0], cur[cur >= 0]] = True
            miss_t, miss_b = np.nonzero(~have & act_t[:, None] & usable_b[None, :])
            if miss_t.size:
                dist, j = nearest_within(
                    obs.xy[cand], pred[miss_t, miss_b], radius,
                    point_groups=obs.tilt[cand], query_groups=miss_t,
                )
                ok = np.isfinite(dist)
                # also reject a detection previously dropped as an outlier of this very bead
                order = np.flatnonzero(ok)[np.argsort(dist[ok], kind="stable")]
                taken: set[int] = set()
                for q in order:  # greedy nearest-first; small loop (missing pairs with a hit)
                    c = int(cand[j[q]])
                    if c in taken or outlier_of[c] == miss_b[q]:
                        continue
                    taken.add(c)
                    cur[c] = miss_b[q]
                    picked[c] = True
                    n_pick += 1
    return cur, n_drop, n_pick, float(thr)


def align_tomogram(
    tomo: Tomogram,
    beads_3d: object,
    obs: object,
    params: AlignParams | None = None,
) -> AlignResult:
    """Refine every tilt's matrix of ``tomo`` and the 3D beads from 2D bead observations.

    Args:
        tomo: the imported tomogram (matrices to refine).
        beads_3d: (m,3) initial world positions (px); NaN rows are triangulated from the
            observations with the imported matrices.
        obs: detections (see :func:`as_observations`); bead -1 marks unassigned detections,
            which re-association may pick up.
        params: settings (defaults: :class:`AlignParams`).

    Degenerate input never raises: tilts with too few beads keep their imported matrix
    (flag ``too_few_beads``), too few beads overall or no tilt axis leaves the whole series as
    imported, beads in one plane keep the tilt angles; each case is explained in ``messages``.
    """
    prm = params or AlignParams()
    fr = frames(tomo.proj, tomo.size)
    b0 = np.asarray(beads_3d, dtype=np.float64).reshape(-1, 3)
    m = b0.shape[0]
    ob = as_observations(obs, fr.n, m)
    messages: list[str] = []
    beads = b0.copy()
    nan_rows = ~np.all(np.isfinite(beads), axis=1)
    if np.any(nan_rows):
        a = ob.bead >= 0
        tri = triangulate(fr.proj, ob.bead[a], ob.tilt[a], ob.xy[a], m)
        beads[nan_rows] = tri[nan_rows]
    usable_b = np.all(np.isfinite(beads), axis=1)

    cur = ob.bead.copy()
    outlier_of = np.full(ob.n, -1, dtype=np.int64)
    picked = np.zeros(ob.n, dtype=bool)
    upd = Updates.zeros(fr.n)
    refine_tilt = prm.refine_tilt
    if refine_tilt and fr.u is None:
        refine_tilt = False
        messages.append(f"tilt angles kept as imported: {fr.axis_reason}")
    spread = float("nan")
    refined = False
    thr = float("nan")
    nfev_total = 0
    n_drop_total = n_pick_total = 0
    act_t = np.zeros(fr.n, dtype=bool)
    act_b = np.zeros(m, dtype=bool)
    rounds_done = 0
    for rnd in range(prm.rounds + 1):
        act_t, act_b = _active_sets(cur, ob.tilt, fr.n, usable_b, prm)
        n_beads = int(act_b.sum())
        if n_beads < prm.min_beads_per_tilt or int(act_t.sum()) < 2:
            n_seen = int(np.unique(cur[(cur >= 0)]).size)
            messages.append(
                f"alignment kept as imported: {n_seen} bead(s) observed, {n_beads} of them usable "
                f"(seen in >= {prm.min_tilts_per_bead} tilts that have >= {prm.min_beads_per_tilt} beads), "
                f"{int(act_t.sum())} tilt(s) with >= {prm.min_beads_per_tilt} beads; need at least "
                f"{prm.min_beads_per_tilt} beads and 2 tilts"
            )
            act_t[:] = False
            act_b[:] = False
            upd = Updates.zeros(fr.n)
            beads = np.where(usable_b[:, None], beads, b0)
            refined = False
            break
        spread = _depth_spread(beads[act_b])
        rt = refine_tilt
        if rt and spread < prm.min_depth_spread_px:
            rt = False
            msg = (
                f"beads lie in a single plane (spread {spread:.2f} px along its normal < "
                f"min_depth_spread_px {prm.min_depth_spread_px:g}): tilt angles kept as imported"
            )
            if msg not in messages:
                messages.append(msg)
        lay = _layout(fr, act_t, act_b, prm, rt)
        used = (cur >= 0) & act_t[ob.tilt]
        used[used] &= act_b[cur[used]]
        radius = max(float(np.sqrt(np.mean(np.sum((beads[act_b] - fr.c) ** 2, axis=1)))), 1.0)
        upd, beads, nfev = _solve(
            fr, lay, upd, beads, cur[used], ob.tilt[used], ob.xy[used], prm, radius
        )
        nfev_total += nfev
        refined = True
        rounds_done = rnd + 1
        if rnd == prm.rounds or (prm.outlier_mad <= 0 and not prm.reassociate):
            break
        cur, n_drop, n_pick, thr = _reassociate(
            fr, upd, beads, cur, ob, usable_b, act_t, used, prm, outlier_of, picked
        )
        n_drop_total += n_drop
        n_pick_total += n_pick
        if n_drop == 0 and n_pick == 0:
            break

    if refined:
        proj = fr.proj.copy()
        proj[act_t] = updated_matrices(fr, upd)[act_t]
    else:
        proj = fr.proj.copy()
    return build_report(
        tomo=tomo,
        fr=fr,
        proj=proj,
        upd=upd,
        beads=beads,
        ob=ob,
        cur=cur,
        outlier_of=outlier_of,
        picked=picked,
        act_t=act_t,
        act_b=act_b,
        refined=refined,
        messages=messages,
        extra_summary={
            "depth_spread_px": spread,
            "outlier_threshold_px": thr,
            "rounds": rounds_done,
            "n_function_evaluations": nfev_total,
            "n_dropped": n_drop_total,
            "n_picked_up": n_pick_total,
            "tilt_refined": bool(
                refined and refine_tilt and not any("single plane" in s for s in messages)
            ),
        },
    )
