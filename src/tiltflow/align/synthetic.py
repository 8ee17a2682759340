"""Synthetic fiducial cases for tests and benchmarks of the alignment (no images needed).

A true IMOD alignment (``xf`` a rotation of ~85° plus small shifts, a tilt scheme) gives the
true RELION 4 matrices; random beads in the tomogram volume give true 2D positions; observed
positions are true + Gaussian noise with a few gross outliers, missing observations (beads
leaving the image) and some observations withheld as unassigned detections (what a tracker
misses and re-association should pick up). The imported alignment is a perturbed ``xf``/``tlt``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from tiltflow.align.frames import triangulate
from tiltflow.geometry import ImodGeometry, project, projection_matrices
from tiltflow.model import Tomogram

F64 = NDArray[np.float64]


@dataclass(frozen=True)
class SyntheticCase:
    """``true``/``imported``: tomograms with the true / perturbed matrices; ``beads_true`` (m,3);
    ``beads_init`` (m,3) triangulated with the imported matrices; ``obs``: DataFrame
    ``bead, tilt, x, y, score`` (bead -1 = unassigned detection); ``true_2d`` (n,m,2);
    ``visible`` (n,m); ``outlier_rows``: indices into ``obs`` of the gross outliers;
    ``withheld_rows``: true observations given as unassigned detections;
    ``obs_true_bead``: the bead each row of ``obs`` really belongs to (-1 = spurious)."""

    true: Tomogram
    imported: Tomogram
    beads_true: F64
    beads_init: F64
    obs: pd.DataFrame
    true_2d: F64
    visible: NDArray[np.bool_]
    outlier_rows: NDArray[np.int64]
    withheld_rows: NDArray[np.int64]
    obs_true_bead: NDArray[np.int64]  # the bead each obs row really is (-1: spurious detection)


def _xf_lines(rot_deg: F64, mag: F64, shift: F64) -> F64:
    a = np.deg2rad(rot_deg)
    c, s = np.cos(a) * mag, np.sin(a) * mag
    return np.column_stack([c, -s, s, c, shift[:, 0], shift[:, 1]])


def _tomogram(name: str, proj: F64, size: tuple[int, int, int], pixel_size: float) -> Tomogram:
    n = proj.shape[0]
    return Tomogram(
        name=name,
        tilt_series=f"{name}.mrc",
        frame_count=n,
        size=size,
        hand=-1.0,
        optics_group="optics1",
        pixel_size=pixel_size,
        voltage=300.0,
        cs=2.7,
        amplitude_contrast=0.1,
        fractional_dose=3.0,
        proj=proj,
        defocus_u=np.full(n, 30000.0),
        defocus_v=np.full(n, 29000.0),
        defocus_angle=np.full(n, 45.0),
        ctf_scale=np.ones(n),
        pre_exposure=np.arange(n) * 3.0,
    )


def synthetic_case(
    seed: int,
    n_tilts: int = 41,
    n_beads: int = 30,
    flip_yz: bool = False,
    noise_px: float = 0.4,
    tilt_err_deg: float = 1.0,
    rot_err_deg: float = 0.5,
    shift_err_px: float = 10.0,
    mag_err: float = 0.01,
    n_outliers: int = 5,
    missing_fraction: float = 0.03,
    withheld_fraction: float = 0.03,
    n_spurious: int = 20,
    max_tilt_deg: float = 60.0,
    image_size: int = 1024,
    thickness: float = 300.0,
    pixel_size: float = 2.0,
    name: str = "TS_01",
) -> SyntheticCase:
    """Build a :class:`SyntheticCase` (deterministic for a seed).

    Perturbations are uniform in ±``*_err`` per tilt (tilt angle, in-plane rotation,
    magnification, shifts).
    """
    rng = np.random.default_rng(seed)
    geom = ImodGeometry(
        raw_size=(image_size, image_size),
        ali_size=(image_size, image_size),
        thickness=thickness,
        flip_yz=flip_yz,
    )
    tilts = np.linspace(-max_tilt_deg, max_tilt_deg, n_tilts)
    rot_true = 85.0 + rng.uniform(-0.3, 0.3, n_tilts)
    shift_true = rng.uniform(-5.0, 5.0, (n_tilts, 2))
    p_true = projection_matrices(geom, _xf_lines(rot_true, np.ones(n_tilts), shift_true), tilts)
    d_rot = rng.uniform(-rot_err_deg, rot_err_deg, n_tilts)
    d_mag = 1.0 + rng.uniform(-mag_err, mag_err, n_tilts)
    d_shift = rng.uniform(-shift_err_px, shift_err_px, (n_tilts, 2))
    d_tilt = rng.uniform(-tilt_err_deg, tilt_err_deg, n_tilts)
    # perturb the xf: new = (mag·Rot(d_rot)) ∘ old + d_shift
    xf_t = _xf_lines(rot_true, np.ones(n_tilts), shift_true)
    a_old = xf_t[:, :4].reshape(-1, 2, 2)
    r = np.deg2rad(d_rot)
    dm = d_mag[:, None, None] * np.stack(
        [np.stack([np.cos(r), -np.sin(r)], -1), np.stack([np.sin(r), np.cos(r)], -1)], -2
    )
    a_new = dm @ a_old
    sh_new = np.einsum("nij,nj->ni", dm, shift_true) + d_shift
    xf_p = np.column_stack([a_new.reshape(-1, 4), sh_new])
    p_imp = projection_matrices(geom, xf_p, tilts + d_tilt)

    size = geom.tomogram_size
    lo = np.array([80.0, 80.0, 80.0])
    hi = np.asarray(size, dtype=np.float64) - 80.0
    depth_axis = 2 if flip_yz else 1
    lo[depth_axis] = 20.0
    hi[depth_axis] = size[depth_axis] - 20.0
    beads = rng.uniform(lo, hi, (n_beads, 3))
    true_2d = project(p_true, beads)
    visible = np.all((true_2d >= 5.0) & (true_2d <= image_size - 6.0), axis=2)
    keep = visible & (rng.random(visible.shape) >= missing_fraction)
    t_idx, b_idx = np.nonzero(keep)
    xy = true_2d[t_idx, b_idx] + rng.normal(0.0, noise_px, (t_idx.size, 2))
    bead_col = b_idx.astype(np.int64)
    k = t_idx.size
    outl = rng.choice(k, size=min(n_outliers, k), replace=False)
    ang = rng.uniform(0, 2 * np.pi, outl.size)
    mag = rng.uniform(8.0, 25.0, outl.size)
    xy[outl] += np.column_stack([np.cos(ang), np.sin(ang)]) * mag[:, None]
    rest = np.setdiff1d(np.arange(k), outl)
    withheld = rng.choice(rest, size=int(round(withheld_fraction * k)), replace=False)
    bead_col[withheld] = -1
    sp_t = rng.integers(0, n_tilts, n_spurious)
    sp_xy = rng.uniform(20.0, image_size - 20.0, (n_spurious, 2))
    obs = pd.DataFrame(
        {
            "bead": np.concatenate([bead_col, np.full(n_spurious, -1)]),
            "tilt": np.concatenate([t_idx, sp_t]).astype(np.int64),
            "x": np.concatenate([xy[:, 0], sp_xy[:, 0]]),
            "y": np.concatenate([xy[:, 1], sp_xy[:, 1]]),
            "score": np.ones(k + n_spurious),
        }
    )
    a = obs["bead"].to_numpy() >= 0
    init = triangulate(
        p_imp,
        obs["bead"].to_numpy()[a],
        obs["tilt"].to_numpy()[a],
        obs[["x", "y"]].to_numpy()[a],
        n_beads,
    )
    return SyntheticCase(
        true=_tomogram(name, p_true, size, pixel_size),
        imported=_tomogram(name, p_imp, size, pixel_size),
        beads_true=beads,
        beads_init=init,
        obs=obs,
        true_2d=true_2d,
        visible=visible,
        outlier_rows=outl.astype(np.int64),
        withheld_rows=withheld.astype(np.int64),
        obs_true_bead=np.concatenate([b_idx, np.full(n_spurious, -1)]).astype(np.int64),
    )


def reprojection_error(
    proj: F64, beads: F64, true_2d: F64, mask: NDArray[np.bool_] | None = None
) -> F64:
    """Distances (px) between ``beads`` projected by ``proj`` and the true 2D positions
    (flattened over the masked tilt/bead pairs; all pairs without a mask)."""
    d = np.linalg.norm(project(proj, beads) - true_2d, axis=2)
    return d[mask] if mask is not None else d.reshape(-1)
