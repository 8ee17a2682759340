"""One-to-one matching of a tilt series' angles (``.tlt``) to an acquisition record's angles.

Order lists and mdoc files give the *nominal* angles in acquisition order; the ``.tlt`` gives
the angles IMOD refined, possibly with a constant tilt offset (a degree is common). RELION 4
matches each tilt to the entry with the nearest angle, independently: with an offset near half
the tilt step, or a record that lists fewer views, several tilts get the same entry and hence
the same pre-exposure, silently. Here:

1. the record must have at least as many entries as there are tilts;
2. a constant offset is estimated (sorted pairing when the counts agree, else the offset that
   brings most tilts within tolerance) and removed, if it is within ``MAX_OFFSET_DEG``;
3. the assignment is one-to-one (Hungarian algorithm on the angle differences; ties go to the
   earlier entry, as in RELION);
4. every matched pair must agree within :data:`STEP_TOL` (3/4) of the record's tilt step: the
   .tlt holds IMOD's refined angles, which scatter about the nominal ones by up to a degree or
   so (at a 2° step, half a step refused valid series); a one-to-one assignment stays ordered
   while the scatter is below the step, and a duplicated or missing angle is a whole step off.

Any failure is one :class:`~tiltflow.errors.InputError` naming the file. Without an offset and
with one entry per tilt the result equals RELION 4's nearest-angle matching.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from tiltflow.assignment import min_cost_assignment
from tiltflow.errors import InputError

log = logging.getLogger("tiltflow")

#: a constant offset between the .tlt and the record larger than this is a wrong file
MAX_OFFSET_DEG = 5.0
#: a matched pair may differ by this fraction of the record's tilt step (after the offset)
STEP_TOL = 0.75
#: tilts needed before an offset is estimated (fewer: offset 0, plain RELION matching)
MIN_TILTS_FOR_OFFSET = 5


@dataclass(frozen=True)
class AngleMatch:
    """Result of :func:`match_angles`."""

    entry: NDArray[np.int64]  #: (n,) record row matched to each tilt
    offset_deg: float  #: constant offset removed (tilt angle − record angle)
    max_residual_deg: float  #: largest |tilt − offset − record| over the matched pairs
    tolerance_deg: float  #: half the record's tilt step


def _step(angles: NDArray[np.float64]) -> float:
    u = np.unique(np.round(angles, 6))
    d = np.diff(u)
    d = d[d > 1e-6]
    return float(np.median(d)) if d.size else float("inf")


def _estimate_offset(t: NDArray[np.float64], r: NDArray[np.float64], tol: float) -> float:
    if t.size < MIN_TILTS_FOR_OFFSET:
        return 0.0
    if t.size == r.size:
        return float(np.median(np.sort(t) - np.sort(r)))
    cand = (t[:, None] - r[None, :]).ravel()
    cand = np.unique(np.round(cand[np.abs(cand) <= MAX_OFFSET_DEG], 4))
    cand = np.union1d(cand, [0.0])
    cap = tol if np.isfinite(tol) else 1.0
    # cost of each candidate: sum over tilts of the (capped) distance to the nearest entry
    d = np.abs(t[None, :, None] - cand[:, None, None] - r[None, None, :]).min(axis=2)
    cost = np.minimum(d, cap).sum(axis=1)
    best = cost.min()
    # among the (near-)best candidates the smallest offset wins; 0 keeps RELION's matching
    near = np.flatnonzero(cost <= best + 1e-9)
    c = cand[near[np.argmin(np.abs(cand[near]))]]
    # refine: median residual of the nearest pairs under that offset
    j = np.argmin(np.abs(t[:, None] - c - r[None, :]), axis=1)
    return float(np.median(t - r[j]))


def match_angles(
    tilt_angles_deg: ArrayLike,
    record_angles_deg: ArrayLike,
    path: str | os.PathLike[str],
    what: str = "entries",
) -> AngleMatch:
    """Match every tilt to a distinct record entry; see the module docstring.

    Args:
        tilt_angles_deg: (n,) angles of the kept tilts (from the .tlt), stack order.
        record_angles_deg: (m,) angles of the record (order list, mdoc sections).
        path: the record's file, named in errors.
        what: what the record's rows are called in messages ("entries", "sections").
    """
    one = {"entries": "entry", "sections": "section"}.get(what, what.rstrip("s"))
    t = np.asarray(tilt_angles_deg, dtype=np.float64).reshape(-1)
    r = np.asarray(record_angles_deg, dtype=np.float64).reshape(-1)
    if r.size < t.size:
        raise InputError(
            path,
            f"{r.size} {what} for {t.size} tilts: every tilt of the .tlt needs its own {one} "
            "(angles and acquisition order)",
        )
    step = _step(r)
    tol = STEP_TOL * step if np.isfinite(step) else float("inf")
    # the offset search caps each tilt's distance at half a step (a whole step off is the
    # neighbouring entry, not a worse match of this one)
    off = _estimate_offset(t, r, 0.5 * step if np.isfinite(step) else float("inf"))
    if abs(off) > MAX_OFFSET_DEG:
        raise InputError(
            path,
            f"the tilt angles differ from the {what}' angles by a constant {off:+.2f}° (more than "
            f"{MAX_OFFSET_DEG:g}°): is this the file of this tilt series?",
        )
    cost = np.abs(t[:, None] - off - r[None, :])
    tie = 1e-9 * np.arange(r.size)[None, :]  # ties go to the earlier row, as in RELION
    rows, cols = min_cost_assignment(cost + tie)
    entry = np.empty(t.size, dtype=np.int64)
    entry[rows] = cols
    resid = np.abs(t - off - r[entry])
    worst = int(np.argmax(resid)) if resid.size else 0
    if resid.size and resid[worst] > tol + 1e-9:
        raise InputError(
            path,
            f"tilt {worst + 1} ({t[worst]:.2f}°) matches no {one}: the nearest free one is "
            f"{r[entry[worst]]:.2f}° ({resid[worst]:.2f}° away after removing a constant offset of "
            f"{off:+.2f}°; tolerance {tol:.2f}° = 3/4 of the tilt step). Check that the .tlt and "
            f"this file describe the same tilt series (duplicated or missing angles?)",
        )
    if abs(off) >= 0.05:
        log.warning(
            "%s: the .tlt angles are offset by %+.2f° from the %s' nominal angles; matched after "
            "removing the offset",
            os.fspath(path),
            off,
            what,
        )
    return AngleMatch(entry, off, float(resid.max()) if resid.size else 0.0, tol)


__all__ = ["AngleMatch", "match_angles", "MAX_OFFSET_DEG"]
