"""Parameters of the alignment-refinement step (``tiltflow align`` / workflow rule ``align``)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from tiltflow.errors import ConfigError
from tiltflow.params import params_from_dict

#: how per-tilt in-plane rotation / magnification updates are tied together across tilts
GROUPINGS: tuple[str, ...] = ("auto", "per-tilt", "smooth", "grouped", "single")
#: robust losses of scipy.optimize.least_squares that tiltflow offers
LOSSES: tuple[str, ...] = ("soft_l1", "huber", "cauchy", "linear")


@dataclass(frozen=True)
class AlignParams:
    """Settings of the fiducial bundle adjustment. The defaults are the CLI defaults.

    Each tilt's refined matrix is ``P'_f = S_f · P_f · R_f`` (see :mod:`tiltflow.align`): ``R_f``
    rotates the world about the tomogram centre (tilt-angle change about the tilt axis, optional
    third angle about the in-image axis perpendicular to it), ``S_f`` is a 2D similarity about
    the projected tomogram centre (two shifts, in-plane rotation, magnification).

    Attributes:
        refine_shifts: refine the two image shifts of every tilt.
        refine_tilt: refine the tilt angle of every tilt.
        refine_rotation: refine the in-plane rotation.
        refine_magnification: refine the magnification.
        refine_third_angle: refine a per-tilt rotation about the in-image axis perpendicular to
            the tilt axis (IMOD's "beam tilt"-like freedom; off by default).
        rotation_grouping: ``auto`` (per tilt, tied to the neighbouring tilts by a
            penalty on second differences in tilt-angle order whose weight grows as the tilt's
            observations get fewer — ``smoothing_weight · sqrt(0.75 · median / n - 1)``, none
            above 75 % of the median count — so a tilt with few beads is not fitted wildly while
            well-observed tilts are fitted freely; it helps where the errors vary smoothly with
            the tilt, and hurts where they are independent per tilt, as in a perturbed import:
            measured, sparse tilts of 4 beads were off by 2.7-10 px with it, 2.0-8.0 px without),
            ``per-tilt`` (independent; the default), ``smooth``
            (independent plus a constant-weight penalty on second differences), ``grouped`` (one value per block of
            ``group_size`` consecutive tilts in angle order, IMOD's RotOption 3 analogue) or
            ``single`` (one value for the whole series).
        magnification_grouping: as ``rotation_grouping``. A single magnification for every tilt
            is the scale gauge of the bead cloud (not observable), so ``single`` keeps it at 1.
        group_size: tilts per group for ``grouped``.
        smoothing_weight: weight of the ``smooth`` penalty, px of cost per degree (rotation) or
            per percent (magnification) of second difference.
        loss: robust loss of ``scipy.optimize.least_squares``.
        f_scale_px: residual scale (px) where the robust loss departs from least squares.
        reassociate: after the first solve, pick up unassigned detections lying where a bead is
            predicted in a tilt that has no observation of it.
        reassociation_radius_px: largest distance (px) of a picked-up detection from the
            predicted bead position (never more than the outlier threshold).
        outlier_mad: observations whose residual exceeds ``outlier_mad`` robust standard
            deviations (1.4826·MAD of the residual components) are dropped (0 = keep all).
        outlier_min_px: the outlier threshold is never below this (px).
        rounds: at most this many re-association / outlier rounds after the first solve.
        min_beads_per_tilt: a tilt with fewer beads is left as imported and flagged.
        min_tilts_per_bead: a bead seen in fewer (refined) tilts is left out of the fit.
        min_depth_spread_px: when the beads' spread (standard deviation) along their thinnest
            direction is below this, they lie in one plane: tilt (and third) angles are then
            not determined and are kept as imported (flagged in the report).
        max_iterations: function-evaluation limit of each solve.
    """

    refine_shifts: bool = True
    refine_tilt: bool = True
    refine_rotation: bool = True
    refine_magnification: bool = True
    refine_third_angle: bool = False
    rotation_grouping: str = "per-tilt"
    magnification_grouping: str = "per-tilt"
    group_size: int = 5
    smoothing_weight: float = 1.0
    loss: str = "soft_l1"
    f_scale_px: float = 1.0
    reassociate: bool = True
    reassociation_radius_px: float = 4.0
    outlier_mad: float = 5.0
    outlier_min_px: float = 0.75
    rounds: int = 2
    min_beads_per_tilt: int = 3
    min_tilts_per_bead: int = 3
    min_depth_spread_px: float = 5.0
    max_iterations: int = 200

    def __post_init__(self) -> None:
        for key in ("rotation_grouping", "magnification_grouping"):
            if getattr(self, key) not in GROUPINGS:
                raise ConfigError(
                    f"align.{key} must be one of {list(GROUPINGS)}, got {getattr(self, key)!r}"
                )
        if self.loss not in LOSSES:
            raise ConfigError(f"align.loss must be one of {list(LOSSES)}, got {self.loss!r}")
        for key in ("f_scale_px", "reassociation_radius_px"):
            v = getattr(self, key)
            if not (math.isfinite(v) and v > 0):
                raise ConfigError(f"align.{key} must be a positive number, got {v}")
        for key in ("smoothing_weight", "outlier_mad", "outlier_min_px", "min_depth_spread_px"):
            v = getattr(self, key)
            if not (math.isfinite(v) and v >= 0):
                raise ConfigError(f"align.{key} must be a number >= 0, got {v}")
        if self.group_size < 1:
            raise ConfigError(f"align.group_size must be >= 1, got {self.group_size}")
        if self.rounds < 0:
            raise ConfigError(f"align.rounds must be >= 0, got {self.rounds}")
        if self.min_beads_per_tilt < 2:
            raise ConfigError(
                f"align.min_beads_per_tilt must be >= 2, got {self.min_beads_per_tilt}"
            )
        if self.min_tilts_per_bead < 2:
            raise ConfigError(
                f"align.min_tilts_per_bead must be >= 2, got {self.min_tilts_per_bead}"
            )
        if self.max_iterations < 1:
            raise ConfigError(f"align.max_iterations must be >= 1, got {self.max_iterations}")

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | None) -> AlignParams:
        """Build from a config mapping; unknown keys or wrong kinds of value raise ConfigError."""
        return params_from_dict(cls, d, "align")
