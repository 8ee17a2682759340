"""Gold beads smaller than the declared size (5 nm next to declared 10 nm): a second pass.

The main pass detects with a matched filter of the declared radius ``r``. A bead of half that
radius gives a weak response there (a quarter of the area), and next to another bead none at all:
the filter's negative surround (high-pass at ``2 r``) of a neighbour within ~3 radii cancels it,
and touching beads merge into one peak. The fiducials file must list those beads too (RELION
erases every listed bead before reconstruction; missed gold leaves streaks), so a second pass
repeats detection and association at ``SMALL_SCALE × r``:

1. detections at the small scale whose fitted radius is that of a small bead
   (:data:`SMALL_RADIUS_RANGE`), round (anisotropy at most
   :data:`~tiltflow.fiducials.detect.DETECTION_MAX_ANISOTROPY`), dark, and not inside a bead the
   main pass found (within ``r`` of its position in that view);
2. association, 3D consistency and the appearance tests of :func:`associate`, at the small
   scale;
3. a bead passes only if it is **as dark for its size as gold**: its contrast per fitted radius
   at least :data:`SMALL_GOLD_DARKNESS` of the main pass's strong beads' (gold's contrast grows
   with the path through it; specimen of the same size — ribosomes, vesicle rims — absorbs ~5-10×
   less), and it is not a main-pass bead again (3D centres closer than ``r``). Its position is
   triangulated with the main pass's cameras, so both sets share one world.
"""

from __future__ import annotations

from types import ModuleType

import numpy as np
from numpy.typing import NDArray

from tiltflow.fiducials.associate import AssociationParams, Beads, associate, bead_appearance
from tiltflow.fiducials.detect import (
    DETECTION_MAX_ANISOTROPY,
    Detections,
    detect,
    detect_peaks,
)
from tiltflow.fiducials.shape import appearance
from tiltflow.fiducials.triangulate import project_cams, robust_triangulate

F64 = NDArray[np.float64]

#: radius of the second pass, in declared radii
SMALL_SCALE = 0.5
#: fitted radius of a small bead at the small scale, in small-scale radii (0.3-0.7 declared)
SMALL_RADIUS_RANGE = (0.6, 1.4)
#: a small-pass bead is gold when its contrast per fitted radius (both at the declared radius)
#: is at least this fraction of the main pass's strong beads'. Measured (512², seeds 1-2): 5 nm
#: gold 1.07-1.18 (absorption contrast), 1.6-2.4 (phase contrast, 5 µm); a 3D-consistent
#: specimen feature in the ``all`` preset 0.72; ribosome clumps, vesicle rims 0.12-0.16
SMALL_GOLD_DARKNESS = 0.85
#: below this radius (px) at the small scale the pass is skipped (too few pixels to tell a bead)
MIN_SMALL_RADIUS_PX = 1.5


def _empty(main: Beads) -> Beads:
    n = main.obs.shape[1]
    return Beads(
        xyz=np.zeros((0, 3)),
        obs=np.zeros((0, n, 2)),
        score_obs=np.zeros((0, n)),
        in_image=np.zeros((0, n), bool),
        score=np.zeros(0),
        cams=main.cams,
        radius_px=np.zeros(0),
        anisotropy=np.zeros(0),
        contrast=np.zeros(0),
    )


def small_binning(r2: float) -> int:
    """Detection binning of the small pass: the small radius at 1.5-3 binned px (>= 1)."""
    return max(1, int(r2 // 1.5))


def gold_darkness(beads: Beads) -> F64:
    """Contrast per fitted radius (1/px, > 0 for dark beads) of each bead."""
    return -beads.contrast / np.maximum(beads.radius_px, 1e-9)


def _farther_than(pos: F64, det: Detections, dist: float) -> NDArray[np.bool_]:
    """Detections further than ``dist`` from every position ``pos`` (m, n, 2) in their view."""
    far = np.ones(len(det), bool)
    for v in np.unique(det.frame):
        sel = np.flatnonzero(det.frame == v)
        d = np.linalg.norm(
            pos[:, v][None, :, :] - np.column_stack([det.x[sel], det.y[sel]])[:, None, :], axis=2
        )
        far[sel] = np.nan_to_num(d, nan=np.inf).min(axis=1) > dist
    return far


def find_small_beads(
    stack: NDArray[np.floating],
    proj: F64,
    tomo_size: tuple[int, int, int],
    radius_px: float,
    main: Beads,
    threshold: float,
    params: AssociationParams | None = None,
    xp: ModuleType = np,
    threads: int = 1,
    peaks: Detections | None = None,
) -> Beads:
    """Beads of about half the declared radius that the main pass (``main``) did not find.

    ``peaks``: this pass's coarse peaks when the caller found them with the main pass's
    (:func:`~tiltflow.fiducials.detect.detect_peaks_scales`, at :func:`small_binning`)."""
    params = AssociationParams() if params is None else params
    r2 = SMALL_SCALE * radius_px
    if r2 < MIN_SMALL_RADIUS_PX or main.n_beads < 4 or main.contrast.size != main.n_beads:
        return _empty(main)
    # reference: the main pass's strong beads (gold of the declared size)
    strong = main.score >= np.percentile(main.score, 75)
    dark_main = gold_darkness(main)[strong]
    dark_main = dark_main[np.isfinite(dark_main)]
    if dark_main.size == 0 or not float(np.median(dark_main)) > 0:
        return _empty(main)
    ref_dark = float(np.median(dark_main))
    # binned to 1.5-3 px of the small radius (the main pass bins to 3-6 px of the declared
    # one): the peaks only seed fits on the unbinned image, and the pass costs about what the
    # main one does instead of 4x (61 x 1024² at 8 Å/px, 50 Å beads: 3.7 s unbinned)
    if peaks is None:
        peaks = detect_peaks(stack, r2, threshold, small_binning(r2), xp=xp, threads=threads)
    # where the main pass's beads are in each view (their observation, else their projection)
    pos = np.where(np.isfinite(main.obs), main.obs, project_cams(main.cams, main.xyz))
    # most peaks at the small radius are the main beads themselves: those within half a
    # declared radius of one are not fitted. A fit moves at most its radius (half the declared
    # one), so they could not pass the test on the fitted centres below (further than one
    # declared radius) anyway. Issue #10's 4k case: 70 of 1294 peaks are fitted.
    peaks = peaks.subset(_farther_than(pos, peaks, 0.5 * radius_px))
    det = detect(
        stack, r2, threshold, binning=small_binning(r2), xp=xp, threads=threads,
        shape_filter=False, peaks=peaks,
    )
    if len(det) == 0:
        return _empty(main)
    app = appearance(stack, det.frame, det.x, det.y, r2)
    rel = app.radius / r2
    ok = (
        np.isfinite(rel)
        & (rel >= SMALL_RADIUS_RANGE[0])
        & (rel <= SMALL_RADIUS_RANGE[1])
        & (app.anisotropy <= DETECTION_MAX_ANISOTROPY)
        & (app.contrast < 0)
    )
    # not part of a bead already found (its position in that view)
    far = _farther_than(pos, det, radius_px)
    det = Detections(
        det.frame, det.x, det.y, det.peak, det.amplitude, det.significance,
        radius=app.radius, anisotropy=app.anisotropy,
    ).subset(ok & far)
    if len(det) == 0:
        return _empty(main)
    small = associate(det, stack, proj, tomo_size, r2, params)
    if small.n_beads == 0:
        return _empty(main)
    xyz, inl, _ = robust_triangulate(main.cams, small.obs, min_views=3)
    d3 = np.linalg.norm(xyz[:, None, :] - main.xyz[None, :, :], axis=2)
    # darkness measured like the main beads' (at the declared radius; views where any bead of
    # either pass is within 2.5 radii do not count for the anisotropy)
    _rad, _an, con = bead_appearance(
        stack, np.concatenate([main.obs, small.obs]), radius_px
    )
    dark = -con[main.n_beads :] / np.maximum(_rad[main.n_beads :], 1e-9)
    keep = (
        np.isfinite(xyz).all(axis=1)
        & (inl.sum(axis=1) >= params.min_views)
        & (np.nan_to_num(d3, nan=np.inf).min(axis=1) >= radius_px)
        & np.isfinite(dark)
        & (dark >= SMALL_GOLD_DARKNESS * ref_dark)
    )
    obs = np.where(inl[..., None], small.obs, np.nan)
    return Beads(
        xyz=xyz[keep],
        obs=obs[keep],
        score_obs=np.where(inl, small.score_obs, np.nan)[keep],
        in_image=small.in_image[keep],
        score=small.score[keep],
        cams=main.cams,
        radius_px=small.radius_px[keep],
        anisotropy=small.anisotropy[keep],
        contrast=small.contrast[keep],
    )


def merge(main: Beads, small: Beads) -> Beads:
    """The main pass's beads followed by the small ones (one world: ``main.cams``)."""
    if small.n_beads == 0:
        return main
    return Beads(
        xyz=np.concatenate([main.xyz, small.xyz]),
        obs=np.concatenate([main.obs, small.obs]),
        score_obs=np.concatenate([main.score_obs, small.score_obs]),
        in_image=np.concatenate([main.in_image, small.in_image]),
        score=np.concatenate([main.score, small.score]),
        cams=main.cams,
        radius_px=np.concatenate([main.radius_px, small.radius_px]),
        anisotropy=np.concatenate([main.anisotropy, small.anisotropy]),
        contrast=np.concatenate([main.contrast, small.contrast]),
    )
