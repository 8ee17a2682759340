"""Defensive readers of the step side files, by their ``tf``-prefixed labels.

The side-file columns are defined by the step modules; QC reads them by name and tolerates
absent files, blocks and columns (the panel then says "not available"). Every column that QC
actually used is recorded, so the summary can say what it assumed. The candidate names tried,
in order, are listed in :data:`ASSUMED` (also in README, "QC report").
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from tiltflow.errors import TiltflowError
from tiltflow.io.star import float_column

#: quantity -> candidate (file kind, block, column) names tried in order; the first present wins
ASSUMED: dict[str, tuple[str, ...]] = {
    # tracks_<name>.star, block tracks (CONTRACTS.md)
    "track_bead": ("tfBeadIndex",),
    "track_tilt": ("tfTiltIndex",),
    "track_obs_x": ("tfObsX",),
    "track_obs_y": ("tfObsY",),
    "track_fit_x": ("tfFitX",),
    "track_fit_y": ("tfFitY",),
    "track_residual": ("tfResidual", "tfResidualPx"),
    # align_<name>.star, block tilts
    "align_tilt": ("tfTiltIndex",),
    "align_tilt_residual": ("tfMeanResidualPx", "tfResidualPx", "tfResidualMeanPx", "tfResidual"),
    # align_<name>.star, block beads
    "align_bead": ("tfBeadIndex",),
    "align_bead_residual": ("tfMeanResidualPx", "tfResidualPx", "tfResidualMeanPx", "tfResidual"),
    # align_<name>.star, block summary
    "align_residual_before": (
        "tfResidualBeforePx",
        "tfMeanResidualBeforePx",
        "tfInitialResidualPx",
    ),
    "align_residual_after": (
        "tfMeanResidualPx",
        "tfResidualAfterPx",
        "tfMeanResidualAfterPx",
        "tfResidualMeanPx",
        "tfFinalResidualPx",
        "tfResidualPx",
    ),
    # ice_<name>.star, block fit
    "ice_thickness": (
        "tfRelativeThickness",
        "tfRelativeIceThickness",
        "tfIceThicknessRel",
        "tfThicknessRel",
    ),
    "ice_thickness_nm": ("tfIceThicknessNm", "tfThicknessNm", "tfAbsoluteThicknessNm"),
    "ice_luminance": ("tfLuminance", "tfRelativeLuminance"),
    "ice_status": ("tfStatus", "tfFitStatus"),
    # ice_<name>.star, block tilts
    "ice_tilt": ("tfTiltIndex",),
    "ice_intensity": (
        "tfDoseNormIntensity",
        "tfIntensityPerDose",
        "tfNormalisedIntensity",
        "tfNormIntensity",
        "tfIntensity",
        "tfMeanIntensity",
    ),
    "ice_model": ("tfFitIntensity", "tfModelIntensity", "tfModel", "tfPredictedIntensity"),
    "ice_used": ("tfUsedInFit", "tfUsed", "tfInlier", "tfIncluded"),
    "ice_beam_angle": ("tfBeamAngleDeg",),
    "ice_dose": ("tfDose",),
    "ice_log_residual": ("tfLogResidual",),
    "ice_scale": ("tfScaleFactor",),
    # ice_<name>.star, block fit (uncertainties, normal, bead planes)
    "ice_thickness_sd": ("tfRelativeThicknessSd",),
    "ice_thickness_sd_nm": ("tfThicknessSdNm",),
    "ice_luminance_sd": ("tfLuminanceSd",),
    "ice_mean_free_path_nm": ("tfMeanFreePathNm",),
    "ice_normal_x": ("tfIceNormalX",),
    "ice_normal_y": ("tfIceNormalY",),
    "ice_normal_z": ("tfIceNormalZ",),
    "ice_normal_sd_deg": ("tfIceNormalSdDeg",),
    "ice_normal_source": ("tfIceNormalSource",),
    "ice_plane_rms_px": ("tfBeadPlaneRmsPx",),
    "ice_plane_separation_px": ("tfBeadPlaneSeparationPx",),
    "ice_rms_residual": ("tfRmsResidual",),
    "ice_tilts_used": ("tfTiltsUsed",),
    # align_<name>.star, more of the summary / tilts / beads blocks
    "align_status": ("tfStatus",),
    "align_n_tilts": ("tfNTilts",),
    "align_n_tilts_refined": ("tfNTiltsRefined",),
    "align_n_tilts_flagged": ("tfNTiltsFlagged",),
    "align_n_outliers": ("tfNOutliers",),
    "align_max_residual": ("tfMaxResidualPx",),
    "align_tilt_angle": ("tfTiltAngleDeg",),
    "align_tilt_nobs": ("tfNObs",),
    "align_tilt_flagged": ("tfFlagged",),
    "align_tilt_flag": ("tfFlag",),
    "align_bead_nobs": ("tfNObs",),
    "align_bead_outliers": ("tfNOutliers",),
}

#: align tilts-block columns holding a refined parameter change (matched by pattern)
DELTA_PATTERN = re.compile(r"^tf(Delta|Change|D)[A-Z]")


@dataclass
class SideFiles:
    """Paths of one tomogram's side files and the columns QC used from them."""

    name: str
    fiducials_dir: Path
    align_dir: Path
    ice_dir: Path
    used: dict[str, str] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    _cache: dict[Path, dict[str, pd.DataFrame]] = field(default_factory=dict, repr=False)

    @classmethod
    def for_tomogram(cls, name: str, results: str | os.PathLike[str] = "results") -> SideFiles:
        r = Path(results)
        return cls(name, r / "fiducials" / name, r / "align" / name, r / "ice" / name)

    @property
    def tracks(self) -> Path:
        return self.fiducials_dir / f"tracks_{self.name}.star"

    @property
    def fiducials(self) -> Path:
        return self.fiducials_dir / f"fiducials_{self.name}.star"

    @property
    def tracks_refined(self) -> Path:
        """The align step's copy of the tracks (fits from the refined matrices)."""
        return self.align_dir / f"tracks_{self.name}.star"

    @property
    def fiducials_refined(self) -> Path:
        """The 3D beads of the refined model (referenced by the final set)."""
        return self.align_dir / f"fiducials_{self.name}.star"

    @property
    def align(self) -> Path:
        return self.align_dir / f"align_{self.name}.star"

    @property
    def ice(self) -> Path:
        return self.ice_dir / f"ice_{self.name}.star"

    # ------------------------------------------------------------------ reading
    def blocks(self, path: Path) -> dict[str, pd.DataFrame]:
        """All blocks of a side file (read once), {} when absent or unreadable."""
        if path in self._cache:
            return self._cache[path]
        out: dict[str, pd.DataFrame] = {}
        if path.is_file():
            from tiltflow.io.star import read_star

            try:
                out = read_star(path)
            except TiltflowError as exc:
                self.problems.append(str(exc))
        self._cache[path] = out
        return out

    def block(self, path: Path, block: str) -> pd.DataFrame | None:
        blocks = self.blocks(path)
        if block in blocks:
            return blocks[block]
        if block == "" and len(blocks) == 1:
            return next(iter(blocks.values()))
        return None

    def column(self, df: pd.DataFrame | None, quantity: str, where: str) -> np.ndarray | None:
        """The first candidate column of ``quantity`` present in ``df`` (as float), or None."""
        if df is None:
            return None
        for label in ASSUMED[quantity]:
            if label in df.columns:
                try:
                    values = float_column(df, label)
                except (TypeError, ValueError):
                    continue
                self.used[quantity] = f"{where}:_{label}"
                return values
        return None

    def scalar(self, df: pd.DataFrame | None, quantity: str, where: str) -> float | None:
        values = self.column(df, quantity, where)
        if values is None or values.size == 0 or not np.isfinite(values[0]):
            return None
        return float(values[0])

    def text(self, df: pd.DataFrame | None, quantity: str, where: str) -> str | None:
        if df is None:
            return None
        for label in ASSUMED[quantity]:
            if label in df.columns and len(df):
                self.used[quantity] = f"{where}:_{label}"
                return str(df[label].iloc[0])
        return None

    def texts(self, df: pd.DataFrame | None, quantity: str, where: str) -> list[str] | None:
        """The first candidate column of ``quantity`` as text, one entry per row, or None."""
        if df is None:
            return None
        for label in ASSUMED[quantity]:
            if label in df.columns:
                self.used[quantity] = f"{where}:_{label}"
                return [str(v) for v in df[label]]
        return None

    def delta_columns(self, df: pd.DataFrame | None, where: str) -> dict[str, np.ndarray]:
        """Refined parameter changes per tilt: every ``tfD*``/``tfDelta*``/``tfChange*`` column (e.g. tfDTiltDeg)."""
        out: dict[str, np.ndarray] = {}
        if df is None:
            return out
        for label in df.columns:
            if DELTA_PATTERN.match(str(label)):
                values = float_column(df, label)
                out[str(label)] = values
                self.used[f"delta:{label}"] = f"{where}:_{label}"
        return out
