"""Association of 2D detections into 3D beads, robust to an imported alignment that is off.

1. **Sweep** (like IMOD's beadtrack, but in 3D): seeds are the detections of a reference view;
   views are visited in order of increasing tilt away from it. For each view the beads' current
   3D estimates (depth pinned by a weak prior until it is determined) are projected; a per-view
   2D shift is found by voting over all bead/detection offsets, then a 2D affine correction is
   fitted to the matched beads; beads are assigned (Hungarian, gated by each bead's predicted
   uncertainty) and their normal equations updated.
2. **Refinement**: robust triangulation (outlier views rejected), per-view camera correction
   (full affine camera, ridge to the imported one), re-association of all views with a
   shrinking gate, and a targeted sub-pixel fit where a bead is inside the image but was not
   detected (fills tracks at high tilt and low dose).
3. **More seeds** from detections no bead explains (beads overlapping another in the reference
   view, or outside it), with the refined cameras: each pass sweeps from several reference views
   (those with the most unexplained strong detections), and a detection seeds at most once, so
   beads inside the field only at high tilt, on either side, are reached; then **duplicates**
   (3D centres closer than 1.5 radii) are merged and **ghosts** (observed in too few of the views
   where they are inside the image) dropped.
4. **Appearance**: a bead must look like one (round, dark, of the declared size, judged in the
   views where no other bead is near), and a weak one must be as dark for its size as gold.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import cast

import numpy as np
from numpy.typing import NDArray

from tiltflow.assignment import min_cost_assignment
from tiltflow.fiducials.detect import Detections, fit_beads
from tiltflow.fiducials.shape import RADIUS_RANGE, appearance
from tiltflow.fiducials.triangulate import (
    apply_affine_to_cam,
    cameras,
    fit_affine_2d,
    fit_cameras,
    fix_gauge,
    project_cams,
    robust_triangulate,
)
from tiltflow.geometry import beam_directions, tomogram_centre
from tiltflow.neighbours import close_pairs

F64 = NDArray[np.float64]


#: overlapping neighbours fitted jointly with a crowded bead (a touching triangle needs two)
N_JOINT_NEIGHBOURS = 2


@dataclass(frozen=True)
class AssociationParams:
    """Knobs of the association (defaults are the step defaults)."""

    #: largest expected error of the imported alignment between neighbouring views (px)
    search_px: float = 40.0
    #: minimum fraction of the in-image views in which a bead must be observed
    min_fraction: float = 0.5
    #: minimum number of observed views per bead (absolute)
    min_views: int = 5
    #: minimum significance (noise sigma) of a targeted fit that fills a missing view
    fill_significance: float = 3.0
    #: secondary seeding passes for detections no bead explains (one refinement each), each
    #: sweeping from up to ``sweeps_per_pass`` reference views; at most ``extra_passes ×
    #: sweeps_per_pass`` sweeps in all, and a detection seeds at most once
    extra_passes: int = 3
    sweeps_per_pass: int = 4
    #: a bead whose median anisotropy over its views exceeds this is not a bead (edge, line)
    max_anisotropy: float = 0.2
    #: a bead scoring below this fraction of the 75th-percentile score is dropped when it is also
    #: more anisotropic than ``strict_anisotropy`` or larger than declared by more than
    #: ``strict_radius_tolerance`` (relative): weak, not-quite-round specimen features
    weak_score_fraction: float = 0.25
    strict_anisotropy: float = 0.1
    strict_radius_tolerance: float = 0.1
    #: ... unless it is as dark *for its size* as gold: its contrast per fitted radius at least
    #: this fraction of the strong beads' (gold's contrast grows with the path through it, so a
    #: 5 nm bead has ~0.7-0.9 of a 10 nm bead's contrast per radius; ribosome clumps and vesicle
    #: rims of the same size ~0.1-0.2). Small weak beads measure ~0.1 anisotropy at the declared
    #: radius from noise alone, so without this they fell under the strict anisotropy.
    gold_darkness_fraction: float = 0.4
    #: threads of the targeted fits (:func:`~tiltflow.fiducials.detect.fit_beads`)
    threads: int = 1


@dataclass(frozen=True)
class Beads:
    """Association result for one tilt series (m beads, n views)."""

    xyz: F64  # (m, 3) world px
    obs: F64  # (m, n, 2) observed raw-image px, NaN where not observed (outliers removed)
    score_obs: F64  # (m, n) significance of each observation, NaN where none
    in_image: NDArray[np.bool_]  # (m, n) bead centre projects inside the image
    score: F64  # (m,) bead score
    cams: F64  # (n, 2, 4) cameras the positions were triangulated with
    #: (m,) median fitted radius (px) and anisotropy over the bead's observations
    radius_px: F64 = field(default_factory=lambda: np.zeros(0))
    anisotropy: F64 = field(default_factory=lambda: np.zeros(0))
    #: (m,) median contrast relative to the local background (< 0: dark)
    contrast: F64 = field(default_factory=lambda: np.zeros(0))

    @property
    def n_beads(self) -> int:
        return int(self.xyz.shape[0])


def view_order(proj: F64) -> tuple[F64, int]:
    """Signed tilt angle (rad) of each view from the beam directions, and the reference view.

    The reference is the view whose beam is closest to the mean beam direction (≈ 0° tilt).
    Works for any world convention (flip flags) since it uses only row 2 of P.
    """
    v = beam_directions(proj)
    mdir = v.mean(axis=0)
    mdir /= np.linalg.norm(mdir)
    perp = v - (v @ mdir)[:, None] * mdir[None]
    if np.allclose(perp, 0):
        e = np.zeros(3)
    else:
        e = np.linalg.svd(perp, full_matrices=False)[2][0]
    s = np.arctan2(v @ e, v @ mdir)
    ref = int(np.argmin(np.abs(s - np.median(s)) + 1e-9 * np.arange(s.size)))
    return s, ref


def _assign(q: F64, gate: F64, pts: F64) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """Unique gated assignment of predictions ``q`` (m, 2) to points ``pts`` (k, 2).

    Returns matched (row indices into q, column indices into pts), minimising total squared
    distance (Hungarian) among pairs closer than each prediction's ``gate``.
    """
    if q.shape[0] == 0 or pts.shape[0] == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    d2 = np.sum((q[:, None, :] - pts[None, :, :]) ** 2, axis=2)
    ok = np.isfinite(d2) & (d2 <= (gate[:, None] ** 2))
    rows = np.flatnonzero(ok.any(axis=1))
    cols = np.flatnonzero(ok.any(axis=0))
    if rows.size == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    okc = ok[np.ix_(rows, cols)]
    # a prediction whose gate holds one point that no other gate holds is matched to it in
    # every optimal assignment: pair those directly, solve the rest (usually nothing)
    single_r = okc.sum(axis=1) == 1
    single_c = okc.sum(axis=0) == 1
    only = np.argmax(okc, axis=1)
    direct = single_r & single_c[only]
    pr, pc = np.flatnonzero(direct), only[direct]
    rest_r = np.flatnonzero(~direct)
    rest_c = np.setdiff1d(np.arange(cols.size), pc)
    out_r, out_c = [pr], [pc]
    if rest_r.size and rest_c.size:
        big = 1e12
        sub = np.where(okc[np.ix_(rest_r, rest_c)], d2[np.ix_(rows[rest_r], cols[rest_c])], big)
        if sub.shape[0] <= sub.shape[1]:
            r, c = min_cost_assignment(sub)
        else:
            c, r = min_cost_assignment(sub.T)
        good = sub[r, c] < big
        out_r.append(rest_r[r[good]])
        out_c.append(rest_c[c[good]])
    rr, cc = np.concatenate(out_r), np.concatenate(out_c)
    order = np.argsort(rr, kind="stable")
    return rows[rr[order]], cols[cc[order]]


def _vote_shift(q: F64, pts: F64, search: float, tol: float) -> F64 | None:
    """Common 2D offset between predictions and points: the densest cluster of pair offsets."""
    if q.shape[0] == 0 or pts.shape[0] == 0:
        return None
    off = pts[None, :, :] - q[:, None, :]
    d = np.linalg.norm(off, axis=2)
    o = off[d <= search]
    if o.shape[0] == 0:
        return None
    if o.shape[0] > 4000:  # keep the pairwise count bounded (crowded views)
        o = o[np.argsort(np.linalg.norm(o, axis=1))[:4000]]
    dd = np.sum((o[:, None, :] - o[None, :, :]) ** 2, axis=2) <= tol * tol
    cnt = dd.sum(axis=1) - 0.001 * np.linalg.norm(o, axis=1) / max(search, 1e-9)
    best = int(np.argmax(cnt))
    return o[dd[best]].mean(axis=0)


class _Problem:
    """Shared state of one tilt series' association."""

    def __init__(
        self,
        det: Detections,
        proj: F64,
        image_shape: tuple[int, int],
        tomo_size: tuple[int, int, int],
        radius_px: float,
        params: AssociationParams,
    ):
        self.det = det
        self.proj = np.asarray(proj, dtype=np.float64)
        self.n = self.proj.shape[0]
        self.h, self.w = image_shape
        self.r = float(radius_px)
        self.p = params
        self.cams0 = cameras(self.proj)
        self.s, self.ref = view_order(self.proj)
        self.centre = tomogram_centre(tomo_size)
        self.pts = np.column_stack([det.x, det.y]) if len(det) else np.zeros((0, 2))
        self.by_view = [np.flatnonzero(det.frame == v) for v in range(self.n)]
        # depth prior: along the reference beam, centred on the tomogram centre
        u = self.proj[self.ref, 2, :3]
        self.u = u / np.linalg.norm(u)
        corners = (
            np.array(np.meshgrid(*[[0.0, float(s)] for s in tomo_size], indexing="ij"))
            .reshape(3, -1)
            .T
            + 1.0
        )
        depth = corners @ self.u
        self.depth_c = float(self.centre @ self.u)
        self.depth_sd = max(0.25 * float(depth.max() - depth.min()), 2.0 * self.r)

    # ------------------------------------------------------------------ helpers
    def inside(self, pred: F64, margin: float = 0.0) -> NDArray[np.bool_]:
        x, y = pred[..., 0], pred[..., 1]
        return (
            np.isfinite(x)
            & (x >= -margin)
            & (x <= self.w - 1 + margin)
            & (y >= -margin)
            & (y <= self.h - 1 + margin)
        )

    # ------------------------------------------------------------------ sweep
    def sweep(
        self, cams: F64, ref: int, avail: NDArray[np.bool_], fit_corr: bool
    ) -> tuple[F64, NDArray[np.int64], F64]:
        """Track the available detections of view ``ref`` through all views.

        Returns ``(obs (m, n, 2), det index (m, n) or -1, cameras (n, 2, 4))``.
        """
        n = self.n
        seeds = self.by_view[ref][avail[self.by_view[ref]]]
        m = seeds.size
        obs = np.full((m, n, 2), np.nan)
        idx = np.full((m, n), -1, np.int64)
        cams = cams.copy()
        if m == 0:
            return obs, idx, cams
        sigma0 = 1.0
        lam = (sigma0 / self.depth_sd) ** 2
        A = np.tile(lam * np.outer(self.u, self.u), (m, 1, 1))
        b = np.tile(lam * self.depth_c * self.u, (m, 1))

        def add(v: int, beads: NDArray[np.int64], p: F64) -> None:
            M = cams[v, :, :3]
            t = cams[v, :, 3]
            A[beads] += M.T @ M
            b[beads] += (p - t) @ M

        obs[np.arange(m), ref] = self.pts[seeds]
        idx[np.arange(m), ref] = seeds
        add(ref, np.arange(m), self.pts[seeds])
        used = ~avail.copy()
        used[seeds] = True
        G_of = {ref: np.array([[1.0, 0, 0], [0, 1.0, 0]])}
        rel = np.abs(self.s - self.s[ref])
        order = [int(v) for v in np.argsort(rel, kind="stable") if v != ref]
        done = [ref]
        g_fine = max(2.0, 0.4 * self.r)
        for v in order:
            X = cast(F64, np.linalg.solve(A, b[..., None])[..., 0])
            if fit_corr:
                nbr = done[int(np.argmin(np.abs(self.s[done] - self.s[v])))]
                cams[v] = apply_affine_to_cam(G_of[nbr], cams[v])
            M = cams[v, :, :3]
            q = project_cams(cams[v : v + 1], X)[:, 0]
            cov = np.linalg.inv(A) * sigma0**2
            covq = np.einsum("ai,mij,bj->mab", M, cov, M)
            sq = np.sqrt(np.maximum(np.einsum("maa->m", covq), 0.0))
            cand = self.by_view[v][~used[self.by_view[v]]]
            P = self.pts[cand]
            G = np.array([[1.0, 0, 0], [0, 1.0, 0]])
            if fit_corr and cand.size:
                shift = _vote_shift(q, P, self.p.search_px, max(2.0, 0.5 * self.r))
                if shift is not None:
                    G[:, 2] = shift
                    q1 = q + shift
                    r_i, c_i = _assign(
                        q1, np.minimum(max(2 * self.r, 6.0) + 3 * sq, self.p.search_px), P
                    )
                    if r_i.size:
                        G = fit_affine_2d(q[r_i], P[c_i])
                        res = np.linalg.norm((q[r_i] @ G[:, :2].T + G[:, 2]) - P[c_i], axis=1)
                        keep = res <= max(2.0, 3 * 1.4826 * np.median(res))
                        if keep.sum() >= 1:
                            G = fit_affine_2d(q[r_i][keep], P[c_i][keep])
                q = q @ G[:, :2].T + G[:, 2]
                cams[v] = apply_affine_to_cam(G, cams[v])
            G_of[v] = G if v not in G_of else G
            if fit_corr:
                G_of[v] = _compose(G, G_of[done[int(np.argmin(np.abs(self.s[done] - self.s[v])))]])
            r_i, c_i = _assign(q, g_fine + 3 * sq, P)
            if r_i.size:
                obs[r_i, v] = P[c_i]
                idx[r_i, v] = cand[c_i]
                used[cand[c_i]] = True
                add(v, r_i, P[c_i])
            done.append(v)
        return obs, idx, cams

    # ------------------------------------------------------------------ refinement
    def refine(
        self,
        stack: NDArray[np.floating],
        obs: F64,
        idx: NDArray[np.int64],
        cams: F64,
        gates: tuple[float, ...],
        fit_cams: bool = True,
    ) -> tuple[F64, NDArray[np.int64], F64, F64]:
        """Alternate robust triangulation, camera correction and gated re-association."""
        sig = np.full(idx.shape, np.nan)
        for gate in gates:
            xyz, inl, _ = robust_triangulate(cams, obs, min_views=3)
            ok = np.isfinite(xyz).all(axis=1) & ~_duplicates(xyz, inl.sum(axis=1), 1.5 * self.r)
            obs, idx, xyz, inl = obs[ok], idx[ok], xyz[ok], inl[ok]
            if fit_cams and xyz.shape[0]:
                cams, xyz = fix_gauge(cams, self.cams0, xyz)
                cams = fit_cameras(self.cams0, xyz, obs, inl, self.centre)
                xyz2, inl2, _ = robust_triangulate(cams, obs, min_views=3)
                cams, _ = fix_gauge(cams, self.cams0, xyz2)
            pred = project_cams(cams, xyz)
            obs, idx, sig = self.reassociate(stack, pred, gate)
        return obs, idx, cams, sig

    def reassociate(
        self, stack: NDArray[np.floating], pred: F64, gate: float
    ) -> tuple[F64, NDArray[np.int64], F64]:
        """Observations of every bead in every view: the gated detection, else a targeted fit."""
        m = pred.shape[0]
        obs = np.full((m, self.n, 2), np.nan)
        idx = np.full((m, self.n), -1, np.int64)
        sig = np.full((m, self.n), np.nan)
        inside = self.inside(pred)
        for v in range(self.n):
            cand = self.by_view[v]
            rows = np.flatnonzero(inside[:, v])
            if rows.size == 0 or cand.size == 0:
                continue
            r_i, c_i = _assign(pred[rows, v], np.full(rows.size, gate), self.pts[cand])
            obs[rows[r_i], v] = self.pts[cand[c_i]]
            idx[rows[r_i], v] = cand[c_i]
            sig[rows[r_i], v] = self.det.significance[cand[c_i]]
        # beads overlapping others in a view: measured by a joint fit with (up to) the two
        # nearest, not the detection (a touching triangle biased a bead fitted with one
        # neighbour by ~0.9 px)
        nq = min(N_JOINT_NEIGHBOURS, max(m - 1, 0))
        nbr = np.full((m, self.n, max(nq, 1)), -1, np.int64)
        if m > 1:
            pv = np.where(inside[..., None], pred, np.nan).transpose(1, 0, 2)  # (n, m, 2)
            d = np.linalg.norm(pv[:, :, None, :] - pv[:, None, :, :], axis=3)
            d[:, np.arange(m), np.arange(m)] = np.inf
            d = np.nan_to_num(d, nan=np.inf)
            j = np.argsort(d, axis=2, kind="stable")[..., :nq]  # (n, m, nq) nearest first
            dj = np.take_along_axis(d, j, axis=2)
            # closer than half a radius: a duplicate, not an overlap
            close = (dj < 2.5 * self.r) & (dj > 0.5 * self.r)
            nbr = np.where(close, j, -1).transpose(1, 0, 2)  # (m, n, nq)
        crowded = inside & (nbr[..., 0] >= 0)
        obs[crowded] = np.nan
        idx[crowded] = -1
        sig[crowded] = np.nan
        miss_b, miss_v = np.nonzero(inside & (idx < 0))
        if miss_b.size:
            nb = nbr[miss_b, miss_v]  # (k, nq)
            vv = miss_v[:, None]
            nbx = np.where(nb >= 0, pred[np.maximum(nb, 0), vv, 0], np.nan)
            nby = np.where(nb >= 0, pred[np.maximum(nb, 0), vv, 1], np.nan)
            fit = fit_beads(
                stack,
                miss_v,
                pred[miss_b, miss_v, 0],
                pred[miss_b, miss_v, 1],
                self.r,
                max_move=gate,
                nbr_x=nbx,
                nbr_y=nby,
                threads=self.p.threads,
            )
            good = fit.ok & (fit.significance >= self.p.fill_significance)
            obs[miss_b[good], miss_v[good], 0] = fit.x[good]
            obs[miss_b[good], miss_v[good], 1] = fit.y[good]
            sig[miss_b[good], miss_v[good]] = fit.significance[good]
        return obs, idx, sig


def _compose(G2: F64, G1: F64) -> F64:
    """Affine ``G2 ∘ G1`` (both (2, 3))."""
    out = np.zeros((2, 3))
    out[:, :2] = G2[:, :2] @ G1[:, :2]
    out[:, 2] = G2[:, :2] @ G1[:, 2] + G2[:, 2]
    return out


def associate(
    det: Detections,
    stack: NDArray[np.floating],
    proj: F64,
    tomo_size: tuple[int, int, int],
    radius_px: float,
    params: AssociationParams = AssociationParams(),
) -> Beads:
    """Group 2D detections into 3D beads; see the module docstring for the method."""
    n, h, w = stack.shape
    pr = _Problem(det, proj, (h, w), tomo_size, radius_px, params)
    empty = Beads(
        xyz=np.zeros((0, 3)),
        obs=np.zeros((0, n, 2)),
        score_obs=np.zeros((0, n)),
        in_image=np.zeros((0, n), bool),
        score=np.zeros(0),
        cams=pr.cams0.copy(),
    )
    if len(det) == 0:
        return empty
    avail = np.ones(len(det), bool)
    obs, idx, cams = pr.sweep(pr.cams0, pr.ref, avail, fit_corr=True)
    keep = np.isfinite(obs[..., 0]).sum(axis=1) >= params.min_views
    obs, idx = obs[keep], idx[keep]
    if obs.shape[0] == 0:
        return empty
    g = max(1.5, 0.5 * radius_px)
    obs, idx, cams, sig = pr.refine(stack, obs, idx, cams, gates=(3 * g, 2 * g, g))
    # secondary seeds: detections that no bead explains, from several reference views per pass.
    # A detection seeds at most once: the leftovers of a view that formed no track (pieces of
    # clutter, beads a neighbour hides) used to win the "most leftovers" choice again in every
    # pass, so views at the other end of the tilt range were never tried and beads outside the
    # field at 0° (inside it only at high tilt, on one side or both) were never tracked.
    tried = np.zeros(len(det), bool)
    sweeps_left = params.extra_passes * params.sweeps_per_pass
    refines_left = params.extra_passes
    while sweeps_left > 0 and refines_left > 0:
        avail = np.ones(len(det), bool)
        avail[idx[idx >= 0]] = False
        # only strong, isolated leftovers seed (weak ones are mostly noise)
        avail &= (det.significance >= 2 * params.fill_significance) & ~tried
        # ... and not on a bead already tracked (the detections of touching beads are replaced
        # by joint fits, so they are "unused" without being unexplained)
        avail &= ~_on_tracks(pr, obs, avail)
        new_obs: list[F64] = []
        new_idx: list[NDArray[np.int64]] = []
        n_sweeps = 0
        while n_sweeps < params.sweeps_per_pass and sweeps_left > 0:
            counts = np.array([avail[pr.by_view[v]].sum() for v in range(n)])
            if counts.max(initial=0) < 1:
                break
            # ties go to the views farthest in tilt from the first reference: the first sweep
            # seeded everything detected there, so the beads it missed are mostly those outside
            # the field at 0°, inside it only at high tilt
            ref = int(np.argmax(counts + 0.01 * np.abs(pr.s - pr.s[pr.ref])))
            o2, i2, _ = pr.sweep(cams, ref, avail, fit_corr=False)
            n_sweeps += 1
            sweeps_left -= 1
            seeds = pr.by_view[ref][avail[pr.by_view[ref]]]
            tried[seeds] = True
            avail[seeds] = False
            good = np.isfinite(o2[..., 0]).sum(axis=1) >= params.min_views
            if good.any():
                new_obs.append(o2[good])
                new_idx.append(i2[good])
                taken = i2[good]
                avail[taken[taken >= 0]] = False  # explained by a new track: seeds no other
        if n_sweeps == 0:
            break  # no unexplained strong detection left
        if not new_obs:
            continue  # the next pass sweeps from other views (the seeds tried stay tried)
        refines_left -= 1
        obs = np.concatenate([obs, *new_obs])
        idx = np.concatenate([idx, *new_idx])
        obs, idx, cams, sig = pr.refine(stack, obs, idx, cams, gates=(2 * g, g), fit_cams=False)
        obs, idx, sig = _merge_duplicates(pr, cams, obs, idx, sig)
    obs, idx, cams, sig = pr.refine(stack, obs, idx, cams, gates=(g,))
    obs, idx, sig = _merge_duplicates(pr, cams, obs, idx, sig)
    # final positions: imported cameras when they explain the tracks, else the refined ones
    xyz, inl, res = robust_triangulate(cams, obs, min_views=3)
    cams, xyz = fix_gauge(cams, pr.cams0, xyz)
    xyz0, inl0, res0 = robust_triangulate(pr.cams0, obs, min_views=3)
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        med_c = float(np.nanmedian(np.where(inl, res, np.nan))) if inl.any() else np.inf
        med_0 = float(np.nanmedian(np.where(inl0, res0, np.nan))) if inl0.any() else np.inf
    if med_0 <= 1.5 * med_c + 0.1 and inl0.sum() >= 0.95 * inl.sum():
        cams, xyz, inl = pr.cams0.copy(), xyz0, inl0
    obs = np.where(inl[..., None], obs, np.nan)
    sig = np.where(inl, sig, np.nan)
    pred = project_cams(cams, np.nan_to_num(xyz))
    in_img = pr.inside(pred) & cast(NDArray[np.bool_], np.isfinite(xyz).all(axis=1))[:, None]
    n_obs = inl.sum(axis=1)
    n_in = np.maximum(in_img.sum(axis=1), 1)
    frac = n_obs / n_in
    keep = (
        np.isfinite(xyz).all(axis=1) & (n_obs >= params.min_views) & (frac >= params.min_fraction)
    )
    xyz, obs, sig, in_img, frac = xyz[keep], obs[keep], sig[keep], in_img[keep], frac[keep]
    # appearance test: a bead looks like a bead (round, dark, of the declared size) in its views
    pos = np.where(in_img[..., None], project_cams(cams, np.nan_to_num(xyz)), np.nan)
    radius, aniso, contrast = bead_appearance(stack, obs, radius_px, pos)
    looks = (
        np.isfinite(radius)
        & (radius >= RADIUS_RANGE[0] * radius_px)
        & (radius <= RADIUS_RANGE[1] * radius_px)
        & (aniso <= params.max_anisotropy)
    )
    xyz, obs, sig, in_img, frac = xyz[looks], obs[looks], sig[looks], in_img[looks], frac[looks]
    radius, aniso, contrast = radius[looks], aniso[looks], contrast[looks]
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        mean_sig = np.nanmean(sig, axis=1) if sig.shape[0] else np.zeros(0)
    score = np.nan_to_num(mean_sig) * np.minimum(frac, 1.0)
    # weak and not gold: dense specimen (ribosome clumps, vesicle rims) that the matched filter
    # and the 3D test let through. Gold is as dark for its size as the strong beads whatever
    # its shape measures; specimen is not (0.1-0.3 of gold's contrast per radius)
    if score.size >= 4:
        ref_score = float(np.percentile(score, 75))
        weak = score < params.weak_score_fraction * ref_score
        # larger than declared or not round (specimen); smaller round ones are small gold beads,
        # which the fiducials file must list too (they are erased before reconstruction)
        off_shape = (aniso > params.strict_anisotropy) | (
            radius / radius_px - 1.0 > params.strict_radius_tolerance
        )
        # a weak bead no larger than declared and as dark for its size as the strong (gold)
        # ones is gold: 5 nm beads are weak (a quarter of the area, half the contrast) and,
        # measured at the declared radius, ~0.1 anisotropic from noise alone
        darkness = -contrast / np.maximum(radius, 1e-9)
        strong = score >= ref_score
        ref_dark = float(np.nanmedian(darkness[strong])) if strong.any() else np.nan
        if np.isfinite(ref_dark) and ref_dark > 0:
            gold_dark = (
                (radius / radius_px - 1.0 <= params.strict_radius_tolerance)
                & np.isfinite(darkness)
                & (darkness >= params.gold_darkness_fraction * ref_dark)
            )
            # a weak bead must be gold-dark, round or not: the shape test alone let a pair of
            # weak, faint specimen blobs through (each within 2.5 radii of the other in every
            # view, so neither's anisotropy was measured; 1024², ``all`` preset, seed 2:
            # darkness 0.17 and 0.29 of gold)
            keep2 = ~(weak & ~gold_dark)
        else:
            keep2 = ~(weak & off_shape)
        xyz, obs, sig, in_img, score = xyz[keep2], obs[keep2], sig[keep2], in_img[keep2], score[keep2]
        radius, aniso, contrast = radius[keep2], aniso[keep2], contrast[keep2]
    order = np.argsort(-score, kind="stable")
    return Beads(
        xyz=xyz[order],
        obs=obs[order],
        score_obs=sig[order],
        in_image=in_img[order],
        score=score[order],
        cams=cams,
        radius_px=radius[order],
        anisotropy=aniso[order],
        contrast=contrast[order],
    )


def bead_appearance(
    stack: NDArray[np.floating], obs: F64, radius_px: float, pos: F64 | None = None
) -> tuple[F64, F64, F64]:
    """Median fitted radius (px), anisotropy and contrast (relative, < 0 dark) of each bead over
    its observations.

    ``pos`` (m, n, 2): where each bead is in every view (its observation, else its projection;
    NaN outside the image), for the crowding test; default ``obs``. A neighbour that has no
    observation in a view (outlier, not filled) is still there and still skews the moments."""
    m = obs.shape[0]
    if m == 0:
        return np.zeros(0), np.zeros(0), np.zeros(0)
    b, v = np.nonzero(np.isfinite(obs[..., 0]))
    app = appearance(stack, v, obs[b, v, 0], obs[b, v, 1], radius_px)
    # a touching neighbour makes any bead look anisotropic: only views where no other bead is
    # within 2.5 radii count for the anisotropy (a bead crowded in every view keeps 0: a cluster
    # of gold is still gold). The neighbour's position comes from ``pos``, not only from its
    # observations: the two beads of a touching pair are each missing in a view or two, and a
    # bead whose partner was missing in a single view used to be judged on that view alone
    # (median of one crowded measurement, 0.20-0.26: rejected as not round).
    crowded = np.zeros(b.size, bool)
    if m > 1:
        pv = (obs if pos is None else np.where(np.isfinite(obs), obs, pos)).transpose(1, 0, 2)
        dd = np.linalg.norm(pv[:, :, None, :] - pv[:, None, :, :], axis=3)
        dd[:, np.arange(m), np.arange(m)] = np.inf
        near = np.nan_to_num(dd, nan=np.inf).min(axis=2)  # (n, m)
        crowded = near[v, b] < 2.5 * radius_px
    an_used = np.where(crowded, np.nan, app.anisotropy)
    radius = np.full(m, np.nan)
    aniso = np.full(m, np.inf)
    contrast = np.full(m, np.nan)
    order = np.argsort(b, kind="stable")
    bs = b[order]
    starts = np.searchsorted(bs, np.arange(m))
    ends = np.searchsorted(bs, np.arange(m), side="right")
    rad_s, an_s, con_s = app.radius[order], an_used[order], app.contrast[order]
    for i in range(m):  # one median per bead (m is small)
        if ends[i] > starts[i]:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                radius[i] = np.nanmedian(rad_s[starts[i] : ends[i]])
                contrast[i] = np.nanmedian(con_s[starts[i] : ends[i]])
                a = an_s[starts[i] : ends[i]]
                aniso[i] = float(np.nanmedian(a)) if np.isfinite(a).any() else 0.0
    return radius, aniso, contrast


def _on_tracks(pr: _Problem, obs: F64, sel: NDArray[np.bool_]) -> NDArray[np.bool_]:
    """Mask of the detections in ``sel`` lying within one radius of a bead's observation."""
    out = np.zeros(sel.size, bool)
    for v in range(pr.n):
        cand = pr.by_view[v][sel[pr.by_view[v]]]
        o = obs[:, v]
        o = o[np.isfinite(o[:, 0])]
        if cand.size == 0 or o.shape[0] == 0:
            continue
        d2 = np.sum((pr.pts[cand][:, None, :] - o[None, :, :]) ** 2, axis=2)
        out[cand] = d2.min(axis=1) <= pr.r**2
    return out


def _duplicates(xyz: F64, n_obs: NDArray[np.integer], dist: float) -> NDArray[np.bool_]:
    """Mask of beads within ``dist`` (3D) of a bead with more observations (NaN beads: False)."""
    drop = np.zeros(xyz.shape[0], bool)
    ok = cast(NDArray[np.bool_], np.isfinite(xyz).all(axis=1))
    if ok.sum() < 2:
        return drop
    pairs = close_pairs(np.where(ok[:, None], xyz, np.nan), dist)
    if pairs.size == 0:
        return drop
    strength = np.maximum(n_obs[pairs[:, 0]], n_obs[pairs[:, 1]])
    for a, c in pairs[np.argsort(-strength, kind="stable")]:
        if drop[a] or drop[c]:
            continue
        drop[c if n_obs[a] >= n_obs[c] else a] = True
    return drop


def _merge_duplicates(
    pr: _Problem, cams: F64, obs: F64, idx: NDArray[np.int64], sig: F64
) -> tuple[F64, NDArray[np.int64], F64]:
    """Drop undefined beads and beads within 1.5 radii of a bead with more observations."""
    xyz, inl, _ = robust_triangulate(cams, obs, min_views=3)
    ok = np.isfinite(xyz).all(axis=1)
    keep = ok & ~_duplicates(xyz, inl.sum(axis=1), 1.5 * pr.r)
    return obs[keep], idx[keep], sig[keep]
