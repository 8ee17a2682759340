"""Fiducials STAR (RELION 4) and tracks side file (ours) — read and write.

``fiducials_<name>.star`` is what RELION 4's ``relion_tomo_find_fiducials`` writes
(``Fiducials::write``): one unnamed block (``data_``) holding a loop of
``_rlnOriginXAngst _rlnOriginYAngst _rlnOriginZAngst`` = absolute world position (bin-1 px,
RELION 4 convention) × pixel size. RELION's readers take the first block, so the file is also
readable when empty (labels, no rows).

``tracks_<name>.star`` (block ``tracks``): ``_tfBeadIndex`` (row of the fiducials file),
``_tfTiltIndex`` (row of the tomogram table = stack frame), ``_tfObsX _tfObsY`` (observed,
raw-image px), ``_tfFitX _tfFitY`` (projection of the 3D bead with the tomogram's matrices),
``_tfResidual`` (px), ``_tfScore`` (significance of the observation, noise sigma); block
``beads``: ``_tfBeadIndex``, ``_tfRadiusAngst`` (fitted radius, median over the views),
``_tfAnisotropy`` (0 = round; edges and lines ~0.3-0.6), ``_tfBeadScore``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from tiltflow.errors import InputError
from tiltflow.io.star import StarBlock, read_star_blocks, require_columns, write_star
from tiltflow.model import Tomogram

F64 = NDArray[np.float64]

#: block name RELION 4 writes (a MetaDataTable without a name -> ``data_``)
FIDUCIALS_BLOCK = ""
FIDUCIAL_LABELS: tuple[str, str, str] = ("rlnOriginXAngst", "rlnOriginYAngst", "rlnOriginZAngst")
TRACKS_BLOCK = "tracks"
TRACK_LABELS: tuple[str, ...] = (
    "tfBeadIndex",
    "tfTiltIndex",
    "tfObsX",
    "tfObsY",
    "tfFitX",
    "tfFitY",
    "tfResidual",
    "tfScore",
)
STAR_VERSION_LINE = "version 30001"


def fiducials_filename(name: str) -> str:
    """RELION's file name of a tomogram's fiducials: ``fiducials_<name>.star``."""
    return f"fiducials_{name}.star"


def tracks_path_for(fiducials_star_path: str | os.PathLike[str]) -> Path:
    """The tracks side file next to a fiducials STAR: ``fiducials_X.star`` -> ``tracks_X.star``."""
    p = Path(fiducials_star_path)
    stem = p.name
    if stem.startswith("fiducials_"):
        stem = stem[len("fiducials_") :]
    return p.with_name("tracks_" + stem)


def write_fiducials(path: str | os.PathLike[str], xyz_px: F64, pixel_size: float) -> None:
    """Write RELION's fiducials STAR: world positions (m, 3) px × pixel size (Å). Empty is valid."""
    xyz = np.asarray(xyz_px, dtype=np.float64).reshape(-1, 3) * float(pixel_size)
    cols = {lab: [float(v) for v in xyz[:, i]] for i, lab in enumerate(FIDUCIAL_LABELS)}
    write_star(path, {FIDUCIALS_BLOCK: cols}, header=(STAR_VERSION_LINE,))


def read_fiducials(path: str | os.PathLike[str], pixel_size: float) -> F64:
    """World positions (m, 3) in bin-1 px from a RELION fiducials STAR (first block, as RELION)."""
    blocks = read_star_blocks(path)
    if not blocks:
        raise InputError(path, "no data block: not a fiducials STAR file")
    name, df = next(iter(blocks.items()))
    if len(df.columns) == 0 or len(df) == 0:
        return np.zeros((0, 3))
    require_columns(df, FIDUCIAL_LABELS, path, name)
    try:
        xyz = np.stack([np.asarray(df[lab], dtype=np.float64) for lab in FIDUCIAL_LABELS], 1)
    except (TypeError, ValueError):
        raise InputError(path, "fiducial coordinates are not numbers") from None
    if not np.all(np.isfinite(xyz)):
        raise InputError(path, "fiducial coordinates are not finite")
    return xyz / float(pixel_size)


@dataclass(frozen=True)
class Tracks:
    """Flat 2D tracks: one row per (bead, tilt) observation."""

    bead: NDArray[np.int64]
    tilt: NDArray[np.int64]
    obs: F64  # (k, 2)
    fit: F64  # (k, 2)
    residual: F64  # (k,)
    score: F64  # (k,)

    def __len__(self) -> int:
        return int(self.bead.size)

    def dense(self, n_beads: int, n_tilts: int) -> F64:
        """Observations as a dense (beads, tilts, 2) array with NaN where missing."""
        out = np.full((n_beads, n_tilts, 2), np.nan)
        out[self.bead, self.tilt] = self.obs
        return out


def _tracks_from_table(df: StarBlock, path: str | os.PathLike[str]) -> Tracks:
    def col(label: str, dtype: type) -> np.ndarray:
        return np.asarray(df[label], dtype=dtype)

    try:
        return Tracks(
            bead=col("tfBeadIndex", np.int64),
            tilt=col("tfTiltIndex", np.int64),
            obs=np.stack([col("tfObsX", np.float64), col("tfObsY", np.float64)], 1),
            fit=np.stack([col("tfFitX", np.float64), col("tfFitY", np.float64)], 1),
            residual=col("tfResidual", np.float64),
            score=col("tfScore", np.float64),
        )
    except (TypeError, ValueError, KeyError):
        raise InputError(path, "tracks columns are missing or not numbers") from None


def tracks_table(tracks: Tracks) -> StarBlock:
    """The tracks as a table with columns :data:`TRACK_LABELS` (sorted by bead, tilt)."""
    order = np.lexsort((tracks.tilt, tracks.bead))
    return StarBlock(
        TRACKS_BLOCK,
        {
            "tfBeadIndex": tracks.bead[order].astype(np.int64),
            "tfTiltIndex": tracks.tilt[order].astype(np.int64),
            "tfObsX": tracks.obs[order, 0],
            "tfObsY": tracks.obs[order, 1],
            "tfFitX": tracks.fit[order, 0],
            "tfFitY": tracks.fit[order, 1],
            "tfResidual": tracks.residual[order],
            "tfScore": tracks.score[order],
        }
    )


BEADS_BLOCK = "beads"
BEAD_LABELS: tuple[str, ...] = ("tfBeadIndex", "tfRadiusAngst", "tfAnisotropy", "tfBeadScore")


def bead_table(
    radius_px: F64 | None, anisotropy: F64 | None, score: F64, pixel_size: float
) -> dict[str, list] | None:
    """The ``beads`` block of the tracks side file (None when the beads were not measured): per
    bead (row of the fiducials file) the fitted radius in Å, the anisotropy and the score."""
    if radius_px is None or anisotropy is None:
        return None
    return {
        "tfBeadIndex": list(range(len(radius_px))),
        "tfRadiusAngst": [float(r) * float(pixel_size) for r in radius_px],
        "tfAnisotropy": [float(a) for a in anisotropy],
        "tfBeadScore": [float(v) for v in score],
    }


def read_beads(path: str | os.PathLike[str]) -> StarBlock | None:
    """The ``beads`` block of a tracks side file (fitted radius, anisotropy), or None."""
    blocks = read_star_blocks(path)
    return blocks.get(BEADS_BLOCK)


def write_tracks(
    path: str | os.PathLike[str],
    tracks: Tracks | StarBlock,
    beads: dict[str, list] | None = None,
) -> None:
    """Write the tracks side file (a :class:`Tracks`, or a table with :data:`TRACK_LABELS`:
    a :class:`~tiltflow.io.star.StarBlock` or a DataFrame), plus a ``beads`` block
    (:func:`bead_table`) when given."""
    df = tracks_table(tracks) if isinstance(tracks, Tracks) else tracks
    missing = [lab for lab in TRACK_LABELS if lab not in df.columns]
    if missing:
        raise ValueError(f"tracks table lacks columns {missing}")
    cols: dict[str, list] = {}
    for lab in TRACK_LABELS:
        v = np.asarray(df[lab])
        cols[lab] = (
            [int(x) for x in v] if lab in ("tfBeadIndex", "tfTiltIndex") else [float(x) for x in v]
        )
    blocks: dict[str, dict[str, list]] = {TRACKS_BLOCK: cols}
    if beads is not None:
        blocks[BEADS_BLOCK] = beads
    write_star(path, blocks, header=(STAR_VERSION_LINE,))


def read_tracks(path: str | os.PathLike[str]) -> StarBlock:
    """The tracks table (columns :data:`TRACK_LABELS`; no rows when empty)."""
    blocks = read_star_blocks(path)
    if TRACKS_BLOCK not in blocks:
        raise InputError(path, f"no data_{TRACKS_BLOCK} block: not a tiltflow tracks file")
    df = blocks[TRACKS_BLOCK]
    if len(df) == 0:
        return StarBlock(
            TRACKS_BLOCK,
            {
                lab: np.zeros(0, np.int64 if lab in ("tfBeadIndex", "tfTiltIndex") else np.float64)
                for lab in TRACK_LABELS
            },
        )
    require_columns(df, TRACK_LABELS, path, TRACKS_BLOCK)
    return df


def read_tracks_arrays(path: str | os.PathLike[str]) -> Tracks:
    """The tracks side file as a :class:`Tracks` (numpy arrays)."""
    return _tracks_from_table(read_tracks(path), path)


def set_fiducials(tomo: Tomogram) -> F64 | None:
    """The world positions (m, 3) px of the fiducials file a tomogram of a set names
    (``rlnTomoFiducialsStarFile``), or None when it names none or the file holds no bead."""
    ref = tomo.extra.get("rlnTomoFiducialsStarFile")
    if not ref:
        return None
    beads = read_fiducials(str(ref), tomo.pixel_size)
    return beads if beads.shape[0] else None
