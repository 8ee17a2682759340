"""RELION 4 projection matrices from an IMOD alignment (SPEC §3), and projection helpers.

World coordinates are bin-1 tilt-series pixels in RELION 4's convention (voxel index + 1).
``image = P @ (x, y, z, 1)``: rows 0 and 1 of ``P`` give pixel coordinates in the *raw* tilt
image (0 = centre of the first pixel), row 2 is depth, row 3 is ``(0, 0, 0, 1)``.

All matrices are float64 ``(4, 4)`` (or stacks ``(n, 4, 4)``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

F64 = NDArray[np.float64]


def translation(v: ArrayLike) -> F64:
    """4x4 translation by a 3-vector."""
    m = np.eye(4)
    m[:3, 3] = np.asarray(v, dtype=np.float64)
    return m


def xf_matrices(xf: ArrayLike) -> F64:
    """IMOD ``.xf`` lines ``A11 A12 A21 A22 DX DY`` (n, 6) -> affine 4x4 stack (n, 4, 4).

    The 4x4 maps raw-image coordinates relative to the raw centre to aligned-image coordinates
    relative to the aligned centre, acting in the x/y plane only.
    """
    xf = np.asarray(xf, dtype=np.float64).reshape(-1, 6)
    n = xf.shape[0]
    a = np.tile(np.eye(4), (n, 1, 1))
    a[:, 0, 0] = xf[:, 0]
    a[:, 0, 1] = xf[:, 1]
    a[:, 1, 0] = xf[:, 2]
    a[:, 1, 1] = xf[:, 3]
    a[:, 0, 3] = xf[:, 4]
    a[:, 1, 3] = xf[:, 5]
    return a


@dataclass(frozen=True)
class ImodGeometry:
    """Everything that fixes the RELION 4 matrices of one IMOD-aligned tilt series.

    ``raw_size`` is the raw stack (w_ts, h_ts); ``ali_size`` the aligned stack (w_ali, h_ali)
    from tilt.com FULLIMAGE (or newst.com size x BinByFactor with --ali_size); ``thickness``
    from tilt.com THICKNESS or --thick; ``shift`` is tilt.com SHIFT (x, z); ``offset`` the user
    offsets (offx, offy, offz).
    """

    raw_size: tuple[int, int]
    ali_size: tuple[int, int]
    thickness: float
    shift: tuple[float, float] = (0.0, 0.0)
    offset: tuple[float, float, float] = (0.0, 0.0, 0.0)
    flip_yz: bool = False
    flip_z: bool = False
    flip_ang: bool = False
    ali: bool = False

    @property
    def tomogram_size(self) -> tuple[int, int, int]:
        """RELION tomogram size (X, Y, Z): X = w_ali; Y/Z = thickness/h_ali (swapped by flipYZ)."""
        w_ali, h_ali = self.ali_size
        t = int(self.thickness)  # RELION 4 truncates toward zero
        if self.flip_yz:
            return (int(w_ali), int(h_ali), t)
        return (int(w_ali), t, int(h_ali))

    def flip_matrix(self) -> F64:
        """F of SPEC §3. As in RELION 4, ``--flipZ`` without ``--flipYZ`` has no effect."""
        if not self.flip_yz:
            return np.eye(4)
        f = np.array([[1, 0, 0, 0], [0, 0, 1, 0], [0, 1, 0, 0], [0, 0, 0, 1]], dtype=np.float64)
        if self.flip_z:
            f[1] = [0, 0, -1, self.thickness - 1]
        return f


def x_axis_tilt_matrices(x_tilt_deg: ArrayLike) -> F64:
    """IMOD's X-axis tilt in RELION 4's tilt frame (n, 4, 4), applied before the tilt.

    IMOD's ``tilt`` projects a point (x, y along the tilt axis, z depth) by first rotating about
    X by the X-axis tilt α (``y' = y cos α - z sin α``, ``z' = y sin α + z cos α``), then about Y
    by the tilt angle. RELION's tilt frame (after ``T(-c_ali.x, 0, -c_ali.y)``) holds
    ``(x, -z, y)``, so α is a right-handed rotation by α about its x axis.
    """
    a = np.deg2rad(np.asarray(x_tilt_deg, dtype=np.float64).reshape(-1))
    c, s = np.cos(a), np.sin(a)
    r = np.tile(np.eye(4), (a.size, 1, 1))
    r[:, 1, 1], r[:, 1, 2], r[:, 2, 1], r[:, 2, 2] = c, -s, s, c
    return r


def tilt_matrices(
    tilt_deg: ArrayLike,
    c_ali: tuple[float, float],
    flip_ang: bool = False,
    x_tilt_deg: ArrayLike | None = None,
) -> F64:
    """``Tilt · T(-c_ali.x, 0, -c_ali.y)`` of SPEC §3 for each angle (degrees) -> (n, 4, 4).

    ``x_tilt_deg`` (one value, or one per angle) inserts IMOD's X-axis tilt
    (:func:`x_axis_tilt_matrices`) between the centring and the tilt; RELION 4 has none.
    """
    a = np.deg2rad(np.asarray(tilt_deg, dtype=np.float64).reshape(-1))
    if flip_ang:
        a = -a
    n = a.size
    cx, cy = c_ali
    c, s = np.cos(a), np.sin(a)
    t = np.zeros((n, 4, 4))
    t[:, 0, 0] = c
    t[:, 0, 1] = -s
    t[:, 0, 3] = cx
    t[:, 1, 2] = 1.0
    t[:, 1, 3] = cy
    t[:, 2, 0] = -s
    t[:, 2, 1] = -c
    t[:, 3, 3] = 1.0
    if x_tilt_deg is not None:
        xt = np.broadcast_to(np.asarray(x_tilt_deg, dtype=np.float64).reshape(-1), (n,))
        t = t @ x_axis_tilt_matrices(xt)
    return t @ translation((-cx, 0.0, -cy))


def centre(size: tuple[float, float]) -> tuple[float, float]:
    """Centre of an image of (w, h) pixels with 0 = centre of the first pixel."""
    return ((size[0] - 1) / 2.0, (size[1] - 1) / 2.0)


def projection_matrices(
    geom: ImodGeometry, xf: ArrayLike, tilt_deg: ArrayLike, x_tilt_deg: ArrayLike | None = None
) -> F64:
    """RELION 4 projection matrices ``P_f = B · Tilt · O · Off · F`` (SPEC §3) -> (n, 4, 4).

    ``xf`` holds the ``.xf`` line of each tilt (n, 6), ``tilt_deg`` the ``.tlt`` angle of the
    same tilt (n,), both in the same order. ``x_tilt_deg`` (opt-in, not RELION 4) applies IMOD's
    X-axis tilt per tilt (tilt.com XAXISTILT plus a ``.xtilt`` file).
    """
    xf = np.asarray(xf, dtype=np.float64).reshape(-1, 6)
    tilt_deg = np.asarray(tilt_deg, dtype=np.float64).reshape(-1)
    if xf.shape[0] != tilt_deg.shape[0]:
        raise ValueError(f"{xf.shape[0]} .xf lines but {tilt_deg.shape[0]} tilt angles")
    c_raw = centre(geom.raw_size)
    c_ali = centre(geom.ali_size)
    if geom.ali:
        b = np.tile(np.eye(4), (xf.shape[0], 1, 1))
    else:
        b = (
            translation((c_raw[0], c_raw[1], 0.0))
            @ np.linalg.inv(xf_matrices(xf))
            @ translation((-c_ali[0], -c_ali[1], 0.0))
        )
    tilt = tilt_matrices(tilt_deg, c_ali, geom.flip_ang, x_tilt_deg)
    o = translation((-1.0, -geom.thickness / 2.0, -1.0))
    off = translation(
        (geom.offset[0] - geom.shift[0], geom.offset[1] - geom.shift[1], geom.offset[2])
    )
    return b @ tilt @ o @ off @ geom.flip_matrix()


def project(proj: ArrayLike, points: ArrayLike) -> F64:
    """Project world points (m, 3) with matrices (n, 4, 4) -> image positions (n, m, 2)."""
    p = np.asarray(proj, dtype=np.float64).reshape(-1, 4, 4)
    x = np.asarray(points, dtype=np.float64).reshape(-1, 3)
    xh = np.concatenate([x, np.ones((x.shape[0], 1))], axis=1)
    return np.einsum("nij,mj->nmi", p[:, :2, :], xh)


def beam_directions(proj: ArrayLike) -> F64:
    """Unit beam direction of each tilt in world coordinates: row 2 of P, normalised -> (n, 3)."""
    p = np.asarray(proj, dtype=np.float64).reshape(-1, 4, 4)
    v = p[:, 2, :3]
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def tomogram_centre(size: tuple[int, int, int]) -> F64:
    """World position of the tomogram centre (RELION 4: voxel index + 1 -> (size-1)/2 + 1)."""
    return (np.asarray(size, dtype=np.float64) - 1.0) / 2.0 + 1.0
