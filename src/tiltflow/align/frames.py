"""Geometry of the per-tilt alignment update ``P'_f = S_f · P_f · R_f`` (pure numpy, float64).

* ``R_f = T(c) · R_w(φ_f) · R_u(θ_f) · T(-c)`` rotates the world about the tomogram centre
  ``c``: ``θ_f`` about the tilt axis ``u`` (tilt-angle change), ``φ_f`` about ``w_f = u × v_f``
  (the in-image axis perpendicular to the tilt axis; "third angle").
* ``S_f = T(p_f + d_f) · diag(s_f·Rot(ρ_f), s_f, 1) · T(-p_f)`` is a similarity of image space
  (depth row scaled with it) about ``p_f = P_f · c``, the projection of the tomogram centre:
  shifts ``d_f``, in-plane rotation ``ρ_f`` (counter-clockwise, x towards y), magnification
  ``s_f = 1 + μ_f``.

Because both act about the tomogram centre, ``d_f`` is exactly how far tilt ``f`` moves the
tomogram centre in the image.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from tiltflow.geometry import beam_directions, tomogram_centre, translation

F64 = NDArray[np.float64]


def rotation_matrices(axis: ArrayLike, angle: ArrayLike) -> F64:
    """Right-handed rotations by ``angle`` (rad, (n,)) about unit ``axis`` ((3,) or (n,3)) -> (n,3,3)."""
    a = np.asarray(angle, dtype=np.float64).reshape(-1)
    k = np.broadcast_to(np.asarray(axis, dtype=np.float64), (a.size, 3))
    c, s = np.cos(a), np.sin(a)
    kx = np.zeros((a.size, 3, 3))
    kx[:, 0, 1], kx[:, 0, 2] = -k[:, 2], k[:, 1]
    kx[:, 1, 0], kx[:, 1, 2] = k[:, 2], -k[:, 0]
    kx[:, 2, 0], kx[:, 2, 1] = -k[:, 1], k[:, 0]
    kk = np.einsum("ni,nj->nij", k, k)
    eye = np.eye(3)[None]
    return c[:, None, None] * eye + s[:, None, None] * kx + (1.0 - c)[:, None, None] * kk


def rot2(angle: ArrayLike) -> F64:
    """2D counter-clockwise rotations (n,2,2) by ``angle`` (rad)."""
    a = np.asarray(angle, dtype=np.float64).reshape(-1)
    c, s = np.cos(a), np.sin(a)
    return np.stack([np.stack([c, -s], -1), np.stack([s, c], -1)], -2)


def tilt_axis(proj: ArrayLike) -> tuple[F64 | None, str]:
    """World direction of the tilt axis: orthogonal to every beam direction (row 2 of P).

    Returns ``(u, "")`` with a unit vector (sign: largest component positive), or
    ``(None, reason)`` when the beam directions do not span a plane (a single tilt, or every
    tilt with the same beam direction), so no tilt axis can be derived.
    """
    v = beam_directions(proj)
    if v.shape[0] < 2:
        return None, "only one tilt: no tilt axis"
    _, s, vt = np.linalg.svd(v, full_matrices=False)
    if s.size < 2 or s[1] < 1e-3 * s[0]:
        return None, "every tilt has the same beam direction: no tilt axis"
    u = vt[-1] / np.linalg.norm(vt[-1])
    if u[np.argmax(np.abs(u))] < 0:
        u = -u
    return u, ""


def tilt_angles_deg(proj: ArrayLike, u: F64 | None = None) -> F64:
    """Tilt angle of every tilt (degrees) from its beam direction, turning about the tilt axis.

    Zero is the world axis perpendicular to the tilt axis closest to the mean beam direction
    (for RELION 4 IMOD imports: -Y without flipYZ, -Z / +Z with flipYZ / flipYZ+flipZ), and
    the sign follows IMOD's ``.tlt`` (``--flipAng`` negates). For these imports the values
    equal the ``.tlt`` angles. Without a tilt axis every angle is 0.
    """
    p = np.asarray(proj, dtype=np.float64).reshape(-1, 4, 4)
    if u is None:
        u, _ = tilt_axis(p)
        if u is None:
            return np.zeros(p.shape[0])
    v = beam_directions(p)
    vm = v.mean(axis=0)
    vm = vm - (vm @ u) * u
    if np.linalg.norm(vm) < 1e-9:
        vm = v[0] - (v[0] @ u) * u
    k = int(np.argmax(np.abs(vm)))
    ref = np.zeros(3)
    ref[k] = np.sign(vm[k])
    if abs(ref @ u) > 1e-6:  # not an axis-aligned tilt scheme: use the mean direction itself
        ref = vm / np.linalg.norm(vm)
    ex = np.array([-1.0, 0.0, 0.0])
    e = ex if (abs(ex @ u) < 1e-6 and abs(ex @ ref) < 1e-6) else np.cross(u, ref)
    return np.rad2deg(np.arctan2(v @ e, v @ ref))


@dataclass(frozen=True)
class Frames:
    """Imported geometry of a tilt series in the form the update model needs.

    ``A`` (n,2,3) linear part of rows 0-1 of P; ``p`` (n,2) projection of the tomogram centre
    ``c`` (3,); ``u`` tilt axis (3,) or None; ``v`` (n,3) beam directions; ``w`` (n,3)
    third-angle axes; ``sigma`` (n,) +1/-1 relating image rotation to world rotation about v
    (image rotation ρ equals world rotation -σρ about v); ``angles_deg`` (n,) tilt angles.
    """

    proj: F64
    A: F64
    p: F64
    c: F64
    u: F64 | None
    axis_reason: str
    v: F64
    w: F64
    sigma: F64
    angles_deg: F64

    @property
    def n(self) -> int:
        return int(self.proj.shape[0])


def frames(proj: ArrayLike, size: tuple[int, int, int]) -> Frames:
    """Build :class:`Frames` from imported matrices (n,4,4) and the tomogram size."""
    p4 = np.asarray(proj, dtype=np.float64).reshape(-1, 4, 4)
    c = tomogram_centre(size)
    u, reason = tilt_axis(p4)
    v = beam_directions(p4)
    A = p4[:, :2, :3].copy()
    pc = p4[:, :2, :3] @ c + p4[:, :2, 3]
    if u is not None:
        w = np.cross(u[None, :], v)
        w /= np.linalg.norm(w, axis=1, keepdims=True)
    else:
        w = np.zeros_like(v)
    sigma = np.sign(np.linalg.det(np.concatenate([A, v[:, None, :]], axis=1)))
    sigma[sigma == 0] = 1.0
    return Frames(
        proj=p4,
        A=A,
        p=pc,
        c=c,
        u=u,
        axis_reason=reason,
        v=v,
        w=w,
        sigma=sigma,
        angles_deg=tilt_angles_deg(p4, u),
    )


@dataclass(frozen=True)
class Updates:
    """Per-tilt update parameters (all (n,) or (n,2), float64; zeros = imported matrix)."""

    shift: F64  # (n,2) px, d_f
    rot: F64  # (n,) rad, in-plane ρ_f
    mag: F64  # (n,) μ_f, s_f = 1 + μ_f
    tilt: F64  # (n,) rad, θ_f about u
    third: F64  # (n,) rad, φ_f about w_f

    @staticmethod
    def zeros(n: int) -> Updates:
        return Updates(np.zeros((n, 2)), np.zeros(n), np.zeros(n), np.zeros(n), np.zeros(n))


def world_rotations(fr: Frames, upd: Updates) -> F64:
    """``R_w(φ) · R_u(θ)`` per tilt (n,3,3) (identity without a tilt axis)."""
    if fr.u is None:
        return np.tile(np.eye(3), (fr.n, 1, 1))
    return rotation_matrices(fr.w, upd.third) @ rotation_matrices(fr.u, upd.tilt)


def linear_maps(fr: Frames, upd: Updates) -> F64:
    """``M_f = s_f · Rot(ρ_f) · A_f · R_f`` (n,2,3): image = p_f + d_f + M_f (X - c)."""
    s = 1.0 + upd.mag
    return s[:, None, None] * (rot2(upd.rot) @ fr.A @ world_rotations(fr, upd))


def predict(fr: Frames, upd: Updates, beads: ArrayLike) -> F64:
    """Image positions (n,m,2) of world points (m,3) under the updated matrices."""
    x = np.asarray(beads, dtype=np.float64).reshape(-1, 3) - fr.c
    return (
        fr.p[:, None, :] + upd.shift[:, None, :] + np.einsum("nij,mj->nmi", linear_maps(fr, upd), x)
    )


def updated_matrices(fr: Frames, upd: Updates) -> F64:
    """The refined RELION 4 matrices ``S_f · P_f · R_f`` (n,4,4)."""
    n = fr.n
    r4 = np.tile(np.eye(4), (n, 1, 1))
    r4[:, :3, :3] = world_rotations(fr, upd)
    r4 = translation(fr.c)[None] @ r4 @ translation(-fr.c)[None]
    s = 1.0 + upd.mag
    pc3 = np.einsum("nij,j->ni", fr.proj[:, :3, :], np.append(fr.c, 1.0))
    lin = np.tile(np.eye(4), (n, 1, 1))
    lin[:, :2, :2] = s[:, None, None] * rot2(upd.rot)
    lin[:, 2, 2] = s
    shift3 = pc3.copy()
    shift3[:, :2] += upd.shift
    t_plus = np.tile(np.eye(4), (n, 1, 1))
    t_plus[:, :3, 3] = shift3
    t_minus = np.tile(np.eye(4), (n, 1, 1))
    t_minus[:, :3, 3] = -pc3
    return t_plus @ lin @ t_minus @ fr.proj @ r4


def triangulate(
    proj: ArrayLike, bead: ArrayLike, tilt: ArrayLike, xy: ArrayLike, n_beads: int
) -> F64:
    """Least-squares 3D position of each bead from its 2D observations -> (n_beads, 3).

    Solves ``P_f[:2,:3] X = xy - P_f[:2,3]`` over the bead's observations; beads whose
    observations do not determine a point (fewer than two distinct beam directions) are NaN.
    """
    p = np.asarray(proj, dtype=np.float64).reshape(-1, 4, 4)
    b = np.asarray(bead, dtype=np.int64).reshape(-1)
    t = np.asarray(tilt, dtype=np.int64).reshape(-1)
    xy = np.asarray(xy, dtype=np.float64).reshape(-1, 2)
    a = p[t, :2, :3]  # (k,2,3)
    rhs = xy - p[t, :2, 3]
    n_mat = np.zeros((n_beads, 3, 3))
    r_vec = np.zeros((n_beads, 3))
    np.add.at(n_mat, b, np.einsum("kji,kjl->kil", a, a))
    np.add.at(r_vec, b, np.einsum("kji,kj->ki", a, rhs))
    out = np.full((n_beads, 3), np.nan)
    ev = np.linalg.eigvalsh(n_mat)
    ok = ev[:, 0] > 1e-6 * np.maximum(ev[:, -1], 1e-300)
    if np.any(ok):
        out[ok] = np.linalg.solve(n_mat[ok], r_vec[ok][..., None])[..., 0]
    return out
