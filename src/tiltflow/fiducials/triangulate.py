"""Linear geometry of bead tracks: triangulation and per-view camera corrections.

The projection ``p = P[:2] · (x, y, z, 1)`` is affine in world coordinates, so a bead's 3D
position given its 2D observations is a linear least-squares problem (3 unknowns), and a view's
camera given the 3D beads is one too (8 unknowns). Everything here works on *dense* track
arrays: ``obs`` (beads, views, 2) with NaN where a bead was not observed. All batched, float64.
"""

from __future__ import annotations

import warnings
from typing import cast

import numpy as np
from numpy.typing import NDArray

F64 = NDArray[np.float64]
Bool = NDArray[np.bool_]


def cameras(proj: F64) -> F64:
    """The image rows of the projection matrices: (n, 4, 4) -> (n, 2, 4)."""
    return np.asarray(proj, dtype=np.float64)[:, :2, :].copy()


def project_cams(cams: F64, xyz: F64) -> F64:
    """Project points (m, 3) with cameras (n, 2, 4) -> (m, n, 2) (bead-major, like ``obs``)."""
    xh = np.concatenate([xyz, np.ones((xyz.shape[0], 1))], axis=1)
    return np.einsum("nij,mj->mni", cams, xh)


def triangulate(
    cams: F64,
    obs: F64,
    weights: F64 | None = None,
    prior: tuple[F64, F64, float] | None = None,
) -> tuple[F64, F64]:
    """Weighted least-squares 3D positions of beads from their 2D observations.

    ``cams`` (n, 2, 4); ``obs`` (m, n, 2) with NaN = not observed; ``weights`` (m, n) (default 1
    where observed). ``prior = (direction (3,), value (m,) or scalar, weight)`` adds the
    pseudo-observation ``direction · X = value`` with that weight (used to pin the depth of
    beads seen in few, nearly parallel views). Returns ``(xyz (m, 3), normal matrices (m, 3, 3))``;
    beads with too few observations get NaN.
    """
    m, n, _ = obs.shape
    have = cast(Bool, np.isfinite(obs).all(axis=2))
    w = have.astype(np.float64) if weights is None else np.where(have, weights, 0.0)
    M = cams[:, :, :3]  # (n, 2, 3)
    t = cams[:, :, 3]  # (n, 2)
    rhs_obs = np.where(have[..., None], obs - t[None], 0.0)  # (m, n, 2)
    MtM = np.einsum("nai,naj->nij", M, M)  # (n, 3, 3)
    A = np.einsum("mn,nij->mij", w, MtM)
    b = np.einsum("mn,nai,mna->mi", w, M, rhs_obs)
    if prior is not None:
        u, val, lam = prior
        u = np.asarray(u, dtype=np.float64)
        A = A + lam * np.outer(u, u)[None]
        b = b + lam * np.asarray(val, dtype=np.float64).reshape(-1, 1) * u[None]
    det = np.linalg.det(A)
    scale = np.einsum("mii->m", A) ** 3 + 1e-300
    good = np.abs(det) > 1e-10 * scale
    xyz = np.full((m, 3), np.nan)
    if good.any():
        xyz[good] = np.linalg.solve(A[good], b[good][..., None])[..., 0]
    return xyz, A


def residuals(cams: F64, xyz: F64, obs: F64) -> F64:
    """Reprojection error lengths (m, n) in px (NaN where not observed or bead undefined)."""
    return np.linalg.norm(obs - project_cams(cams, xyz), axis=2)


def robust_triangulate(
    cams: F64,
    obs: F64,
    n_iter: int = 4,
    k: float = 4.0,
    floor: float = 0.75,
    min_views: int = 3,
) -> tuple[F64, NDArray[np.bool_], F64]:
    """Triangulation with outlier views rejected (per-bead MAD scale, hard cut at ``k`` sigma).

    Returns ``(xyz (m, 3), inlier mask (m, n), residual lengths (m, n))``. The cut is never
    below ``floor`` px so good observations are not trimmed on noise alone.
    """
    have = cast(Bool, np.isfinite(obs).all(axis=2))
    inl = have.copy()
    xyz, _ = triangulate(cams, obs, inl.astype(np.float64))
    res = residuals(cams, xyz, obs)
    for _ in range(n_iter):
        r = np.where(inl, res, np.nan)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # beads with no observation: NaN
            med = np.nanmedian(r, axis=1)
            s = 1.4826 * np.nanmedian(np.abs(r - med[:, None]), axis=1)
        cut = np.maximum(med + k * np.nan_to_num(s, nan=0.0), floor)
        new = have & (np.nan_to_num(res, nan=np.inf) <= cut[:, None])
        few = new.sum(axis=1) < min_views
        new[few] = inl[few]
        if np.array_equal(new, inl):
            break
        inl = new
        xyz, _ = triangulate(cams, obs, inl.astype(np.float64))
        res = residuals(cams, xyz, obs)
    xyz[inl.sum(axis=1) < min_views] = np.nan
    return xyz, inl, res


def fit_cameras(
    cams0: F64,
    xyz: F64,
    obs: F64,
    mask: NDArray[np.bool_],
    centre: F64,
    ridge: float = 1e-3,
    min_full: int = 8,
    min_affine: int = 3,
) -> F64:
    """Per-view camera update from beads with known 3D positions (linear, ridge to ``cams0``).

    With >= ``min_full`` beads in a view the full affine camera (2x4) is refitted; with fewer
    (>= ``min_affine``) only a 2D affine on top of ``cams0``; with fewer still, a 2D shift; a
    view with no beads keeps its camera. Coordinates are centred on ``centre`` and scaled for
    conditioning; the ridge pulls each camera toward ``cams0`` (keeps the world frame).
    """
    n = cams0.shape[0]
    out = cams0.copy()
    ok_b = np.isfinite(xyz).all(axis=1)
    span = np.nanstd(xyz[ok_b] - centre, axis=0) if ok_b.any() else np.ones(3)
    span = np.maximum(np.nan_to_num(span, nan=1.0), 1.0)
    for v in range(n):
        use = mask[:, v] & ok_b & np.isfinite(obs[:, v]).all(axis=1)
        c = int(use.sum())
        if c == 0:
            continue
        X = (xyz[use] - centre) / span  # (c, 3) normalised
        p = obs[use, v]  # (c, 2)
        pred = project_cams(cams0[v : v + 1], xyz[use])[:, 0]  # (c, 2)
        if c >= min_full:
            # p = Q @ (Xn, 1); Q relates to the camera by the normalisation
            D = np.column_stack([X, np.ones(c)])  # (c, 4)
            S = np.diag(np.r_[1.0 / span, 1.0])
            T = np.eye(4)
            T[:3, 3] = -centre
            N = S @ T  # world homog -> normalised homog
            Q0 = cams0[v] @ np.linalg.inv(N)  # (2, 4) prior in normalised coords
            lam = ridge * c
            lhs = D.T @ D + lam * np.eye(4)
            rhs = D.T @ p + lam * Q0.T
            Q = np.linalg.solve(lhs, rhs).T
            out[v] = Q @ N
        elif c >= min_affine:
            # p = G (pred, 1): 2D affine correction
            D = np.column_stack([pred, np.ones(c)])
            lhs = D.T @ D + 1e-6 * np.eye(3)
            G = np.linalg.solve(lhs, D.T @ p).T  # (2, 3)
            out[v] = G[:, :2] @ cams0[v]
            out[v][:, 3] += G[:, 2]
        else:
            out[v][:, 3] += np.mean(p - pred, axis=0)
    return out


def fit_affine_2d(q: F64, p: F64) -> F64:
    """Least-squares 2D affine ``G`` (2, 3) with ``p ≈ G · (q, 1)``; shift only below 3 points."""
    c = q.shape[0]
    G = np.zeros((2, 3))
    G[:, :2] = np.eye(2)
    if c == 0:
        return G
    if c < 3:
        G[:, 2] = np.mean(p - q, axis=0)
        return G
    qc = q.mean(axis=0)
    D = np.column_stack([q - qc, np.ones(c)])
    sol = np.linalg.lstsq(D, p, rcond=None)[0].T  # (2, 3)
    A = sol[:, :2]
    # guard against wild fits from few, nearly collinear points
    if c < 6 or np.linalg.cond(D[:, :2]) > 1e3 or np.abs(A - np.eye(2)).max() > 0.1:
        G[:, 2] = np.mean(p - q, axis=0)
        return G
    G[:, :2] = A
    G[:, 2] = sol[:, 2] - A @ qc
    return G


def apply_affine_to_cam(G: F64, cam: F64) -> F64:
    """Camera (2, 4) followed by the 2D affine ``G`` (2, 3)."""
    out = G[:, :2] @ cam
    out[:, 3] += G[:, 2]
    return out


def fix_gauge(cams: F64, cams0: F64, xyz: F64) -> tuple[F64, F64]:
    """Remove the 3D affine gauge freedom: the frame closest to the imported cameras.

    Cameras ``C_v`` and points ``X`` are equivalent to ``C_v S`` and ``S^-1 X`` for any 3D affine
    ``S``. The ``S`` chosen minimises ``Σ_v Σ_k |C_v S Y_k - C0_v Y_k|²`` over the bead positions
    ``Y_k`` (the reprojections under the refined and the imported cameras agree on average), so
    refined positions stay in the imported world frame. Returns ``(cams S, S^-1 xyz)``.
    """
    ok = np.isfinite(xyz).all(axis=1)
    if ok.sum() < 4:
        return cams, xyz
    Y = np.column_stack([xyz[ok], np.ones(int(ok.sum()))])  # (k, 4)
    M = cams[:, :, :3]  # (n, 2, 3)
    t = cams[:, :, 3]  # (n, 2)
    YY = Y.T @ Y  # (4, 4)
    MM = np.einsum("nai,naj->ij", M, M)  # (3, 3)
    target = np.einsum("naj,kj->nka", cams0, Y) - t[:, None, :]  # (n, k, 2)
    R = np.einsum("nai,nka,kj->ij", M, target, Y)  # (3, 4) = Σ M^T target Y^T
    # vec(S3) with column-major vec: (YY ⊗ MM) vec(S3) = vec(R)
    K = np.kron(YY, MM)
    if np.linalg.cond(K) > 1e14:
        return cams, xyz
    s3 = np.linalg.solve(K, R.reshape(-1, order="F")).reshape(3, 4, order="F")
    S = np.eye(4)
    S[:3, :] = s3
    new_cams = cams @ S
    xh = np.column_stack([xyz, np.ones(xyz.shape[0])])
    new_xyz = cast(F64, np.linalg.solve(S, xh.T).T[:, :3])
    return new_cams, new_xyz
