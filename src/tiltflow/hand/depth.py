"""Predicted depth of the specimen plane at every image position, from the projection matrices.

RELION 4 (``Tomogram::getCtf``) adds ``hand · pixelSize · (depth(x) − depth(centre))`` to the
defocus of a world point ``x``, with ``depth = row 2 of P`` applied to the point and ``centre``
the tomogram centre. A tilted image of a flat specimen therefore has a defocus that changes
linearly across the image. For an image position ``(u, v)`` the specimen point seen there is the
point of the specimen plane that projects to ``(u, v)``: rows 0 and 1 of ``P`` and the plane
equation give three linear equations, so its depth is an affine function of ``(u, v)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from tiltflow.errors import InputError
from tiltflow.geometry import beam_directions, tomogram_centre
from tiltflow.ice.model import tilt_frame
from tiltflow.model import Tomogram

F64 = NDArray[np.float64]

ICE_NORMAL_LABELS = ("rlnTomoIceNormalX", "rlnTomoIceNormalY", "rlnTomoIceNormalZ")

#: fewest fiducials whose fitted plane is used as the specimen plane
MIN_PLANE_BEADS = 6


@dataclass(frozen=True)
class SpecimenPlane:
    """A plane in world coordinates (bin-1 px): unit ``normal`` and a ``point`` on it."""

    normal: F64
    point: F64
    source: str  #: "beam", "ice" or "fiducials"


@dataclass(frozen=True)
class DepthMaps:
    """Per tilt: ``depth_rel(u, v) = grad[f] · (u, v) + offset[f]`` (px, relative to the tomogram centre).

    ``angle_deg`` is the signed angle between the ray of each tilt and the plane normal (sign
    from the tilt frame: the side of the zero tilt's beam towards which the beam turns).
    """

    grad: F64  # (n, 2)
    offset: F64  # (n,)
    angle_deg: F64  # (n,)

    def depth(self, f: int, uv: ArrayLike) -> F64:
        """Depth (px, relative to the tomogram centre) of the plane at image positions ``uv`` (m, 2) of tilt ``f``."""
        p = np.asarray(uv, dtype=np.float64).reshape(-1, 2)
        return np.asarray(p @ self.grad[f] + self.offset[f], dtype=np.float64)


def rays(proj: ArrayLike) -> F64:
    """Unit ray direction of each tilt (n, 3): the world direction that rows 0 and 1 of P do not see,
    signed so that depth (row 2) grows along it."""
    p = np.asarray(proj, dtype=np.float64).reshape(-1, 4, 4)
    r = np.cross(p[:, 0, :3], p[:, 1, :3])
    r /= np.linalg.norm(r, axis=1, keepdims=True)
    sign = np.sign(np.einsum("ni,ni->n", r, p[:, 2, :3]))
    sign[sign == 0] = 1.0
    return np.asarray(r * sign[:, None], dtype=np.float64)


def fit_plane(points: ArrayLike, guess: ArrayLike | None = None) -> tuple[F64, F64, float]:
    """Mid-plane of 3D points on one or two parallel surfaces: (unit normal, point, RMS distance).

    Fiducials usually sit on the two ice surfaces, so a single least-squares plane tilts towards
    any chance correlation between a bead's surface and its lateral position. The heights along
    the current normal are split in two (largest gap, kept when it exceeds 4 × the RMS within the
    groups); the normal is the smallest eigenvector of the pooled within-group scatter (iterated),
    the point the mean of the group centroids (the mid-plane), the RMS that of the beads to their
    own plane.
    """
    x = np.asarray(points, dtype=np.float64).reshape(-1, 3)
    if x.shape[0] < 3:
        return np.array([0.0, 0.0, 1.0]), x.mean(axis=0) if x.size else np.zeros(3), float("nan")
    if guess is None:
        _, _, vt = np.linalg.svd(x - x.mean(axis=0), full_matrices=False)
        n = vt[-1].copy()
    else:
        n = np.asarray(guess, dtype=np.float64) / np.linalg.norm(guess)
    groups = np.zeros(x.shape[0], dtype=np.int64)
    rms = float("nan")
    for _ in range(8):
        h = x @ n
        order = np.argsort(h)
        gaps = np.diff(h[order])
        groups[:] = 0
        if gaps.size >= 5:
            k = int(np.argmax(gaps[2:-2])) + 2  # at least 3 beads on either side
            trial = np.zeros_like(groups)
            trial[order[k + 1 :]] = 1
            spread = float(np.sqrt(np.mean([np.var(h[trial == g]) for g in (0, 1)])))
            if gaps[k] > 4.0 * max(spread, 1e-6):
                groups = trial
        centred = np.vstack(
            [x[groups == g] - x[groups == g].mean(axis=0) for g in np.unique(groups)]
        )
        evals, evecs = np.linalg.eigh(centred.T @ centred)
        new = evecs[:, 0] if evecs[:, 0] @ n >= 0 else -evecs[:, 0]
        rms = float(np.sqrt(max(evals[0], 0.0) / x.shape[0]))
        done = float(new @ n) > 1.0 - 1e-12
        n = new
        if done:
            break
    point = np.mean([x[groups == g].mean(axis=0) for g in np.unique(groups)], axis=0)
    return n, point, rms


def specimen_plane(
    tomo: Tomogram, mode: str = "auto", beads: ArrayLike | None = None
) -> tuple[SpecimenPlane, list[str]]:
    """The specimen plane of ``tomo`` and messages saying which one was taken and why.

    ``beam``: through the tomogram centre, normal = the beam of the tilt closest to the mean beam
    (the zero tilt). ``ice``: through the tomogram centre, normal = rlnTomoIceNormalX/Y/Z.
    ``fiducials``: mid-plane of the 3D fiducials (:func:`fit_plane`: beads on one or both ice
    surfaces). ``auto``: fiducials when there are at least :data:`MIN_PLANE_BEADS`, spread in the
    plane over more than 1.5 × their RMS distance to it, with a normal within 30° of the
    zero-tilt beam; else ice when the set has a normal; else beam.
    """
    centre = tomogram_centre(tomo.size)
    v0 = tilt_frame(beam_directions(tomo.proj)).v0
    msgs: list[str] = []

    def beam() -> SpecimenPlane:
        return SpecimenPlane(v0.copy(), centre, "beam")

    def ice() -> SpecimenPlane | None:
        if not all(k in tomo.extra for k in ICE_NORMAL_LABELS):
            return None
        n = np.array([float(tomo.extra[k]) for k in ICE_NORMAL_LABELS])
        if not np.all(np.isfinite(n)) or np.linalg.norm(n) == 0:
            return None
        n /= np.linalg.norm(n)
        return SpecimenPlane(n if n @ v0 >= 0 else -n, centre, "ice")

    def fiducials() -> SpecimenPlane | None:
        if beads is None:
            return None
        b = np.asarray(beads, dtype=np.float64).reshape(-1, 3)
        if b.shape[0] < MIN_PLANE_BEADS:
            msgs.append(f"{b.shape[0]} fiducials: too few for a specimen plane")
            return None
        n, c, rms = fit_plane(b, guess=v0)
        if n @ v0 < 0:
            n = -n
        inplane = (b - b.mean(axis=0)) - np.outer((b - b.mean(axis=0)) @ n, n)
        lateral = np.linalg.svd(inplane, compute_uv=False)[:2] / np.sqrt(b.shape[0])
        angle = float(np.degrees(np.arccos(min(1.0, abs(float(n @ v0))))))
        if angle > 30.0 or lateral.min() < 1.5 * max(rms, 1.0):
            msgs.append(
                f"fiducial plane not used (normal {angle:.1f}° from the zero-tilt beam, "
                f"lateral spread {lateral.min():.0f} px vs RMS {rms:.0f} px)"
            )
            return None
        msgs.append(
            f"specimen plane from {b.shape[0]} fiducials (normal {angle:.1f}° from the zero-tilt "
            f"beam, RMS {rms:.1f} px)"
        )
        return SpecimenPlane(n, c, "fiducials")

    if mode == "beam":
        return beam(), msgs
    if mode == "ice":
        p = ice()
        if p is None:
            raise InputError(
                None, f"tomogram {tomo.name}: plane 'ice' needs rlnTomoIceNormalX/Y/Z in the set"
            )
        return p, msgs
    if mode == "fiducials":
        p = fiducials()
        if p is None:
            raise InputError(
                None,
                f"tomogram {tomo.name}: plane 'fiducials' needs usable 3D fiducials "
                f"({'; '.join(msgs) or 'the set links none'})",
            )
        return p, msgs
    for pick in (fiducials, ice):
        got = pick()
        if got is not None:
            return got, msgs
    return beam(), msgs


def depth_maps(proj: ArrayLike, size: tuple[int, int, int], plane: SpecimenPlane) -> DepthMaps:
    """The affine depth map of the specimen plane in every tilt image (see :class:`DepthMaps`)."""
    p = np.asarray(proj, dtype=np.float64).reshape(-1, 4, 4)
    n = p.shape[0]
    normal = np.asarray(plane.normal, dtype=np.float64)
    m = np.empty((n, 3, 3))
    m[:, 0] = p[:, 0, :3]
    m[:, 1] = p[:, 1, :3]
    m[:, 2] = normal
    q = np.linalg.solve(np.transpose(m, (0, 2, 1)), p[:, 2, :3, None])[..., 0]  # P2 · M^-1
    c = tomogram_centre(size)
    d_centre = p[:, 2, :3] @ c + p[:, 2, 3]
    rhs_const = float(normal @ np.asarray(plane.point, dtype=np.float64))
    offset = -q[:, 0] * p[:, 0, 3] - q[:, 1] * p[:, 1, 3] + q[:, 2] * rhs_const + p[:, 2, 3]
    r = rays(p)
    cosang = np.clip(np.abs(r @ normal), 0.0, 1.0)
    sign = np.sign(tilt_frame(beam_directions(p)).angles_deg)
    sign[sign == 0] = 1.0
    angle = np.degrees(np.arccos(cosang)) * sign
    return DepthMaps(
        grad=np.ascontiguousarray(q[:, :2]),
        offset=np.asarray(offset - d_centre, dtype=np.float64),
        angle_deg=np.asarray(angle, dtype=np.float64),
    )
