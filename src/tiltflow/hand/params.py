"""Parameters of the hand step (``tiltflow find-hand`` / workflow rule ``hand``)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from tiltflow.errors import ConfigError
from tiltflow.params import params_from_dict

PLANES: tuple[str, ...] = ("auto", "beam", "ice", "fiducials")


@dataclass(frozen=True)
class HandParams:
    """Settings of the hand measurement. The defaults are the CLI defaults.

    Attributes:
        min_tilt_deg: only tilts whose beam makes at least this angle with the specimen normal
            are read and measured (the defocus gradient across an image grows with tan(tilt)).
        tile_px: side of the square tiles whose power spectra are averaged (bin-1 px). Rings
            must be resolved in a tile's spectrum (at least 3 spectral px per ring), so large
            defoci need large tiles.
        tile_overlap: fraction by which neighbouring tiles overlap (Welch averaging).
        strip_px: width (image px, across the tilt axis) of the strips: tiles whose centres fall
            into the same strip are averaged and fitted together.
        res_low_A: low-frequency end of the fitted band (Å; spacing, not frequency).
        res_high_A: high-frequency end of the fitted band (Å); the band is further limited by
            Nyquist, by ring sampling in a tile and by the defocus spread within a tile.
        search_A: half-width of the 1D defocus search around the imported defocus (Å);
            ``None`` = 1.25 × the largest depth-predicted offset + 2000 Å (symmetric, so
            neither hand is favoured).
        min_rings: a tilt is measured only when at least this many Thon rings fall in its
            band; with fewer (large pixels, small defocus) the result is "undetermined".
        min_strip_z: a strip counts only when its ring amplitude is this many noise sigma.
        min_z: the hand is determined only when |slope / standard error| reaches this.
        slope_tolerance: ... and |slope| is within this of 1 (units of the pixel size) ...
        min_agreement: ... and at least this fraction of the measured tilts has the sign of
            the global slope ...
        min_tilts: ... and at least this many tilts were measured.
        plane: the specimen plane whose depth is predicted: ``beam`` (plane through the
            tomogram centre, perpendicular to the zero-tilt beam), ``ice`` (normal
            rlnTomoIceNormalX/Y/Z of the set), ``fiducials`` (plane fitted to the 3D
            fiducials), ``auto`` = fiducials when the set has enough, else ice, else beam.
        force: write sign(slope) into rlnTomoHand even when the result is undetermined.
        correct_defocus: also replace the imported per-tilt defocus where the measured one
            (at the tomogram-centre depth) differs by more than ``defocus_tolerance_A`` and
            ``defocus_sigma`` standard errors (only with a determined or forced hand).
        defocus_tolerance_A: see ``correct_defocus``.
        defocus_sigma: see ``correct_defocus``.
        threads: FFT workers.
    """

    min_tilt_deg: float = 30.0
    tile_px: int = 512
    tile_overlap: float = 0.5
    strip_px: int = 256
    res_low_A: float = 30.0
    res_high_A: float = 5.0
    search_A: float | None = None
    min_rings: float = 4.0
    min_strip_z: float = 5.0
    min_z: float = 5.0
    slope_tolerance: float = 0.5
    min_agreement: float = 0.75
    min_tilts: int = 3
    plane: str = "auto"
    force: bool = False
    correct_defocus: bool = False
    defocus_tolerance_A: float = 100.0
    defocus_sigma: float = 3.0
    threads: int = 1

    def __post_init__(self) -> None:
        if not (0.0 <= self.min_tilt_deg < 90.0):
            raise ConfigError(f"hand.min_tilt_deg must be in [0, 90), got {self.min_tilt_deg}")
        if self.tile_px < 32 or self.tile_px % 2:
            raise ConfigError(f"hand.tile_px must be an even number >= 32, got {self.tile_px}")
        if not (0.0 <= self.tile_overlap < 1.0):
            raise ConfigError(f"hand.tile_overlap must be in [0, 1), got {self.tile_overlap}")
        if self.strip_px < 1:
            raise ConfigError(f"hand.strip_px must be >= 1, got {self.strip_px}")
        for key in (
            "res_low_A",
            "res_high_A",
            "min_rings",
            "min_strip_z",
            "min_z",
            "slope_tolerance",
            "defocus_tolerance_A",
            "defocus_sigma",
        ):
            v = getattr(self, key)
            if not (math.isfinite(v) and v > 0):
                raise ConfigError(f"hand.{key} must be a positive number, got {v}")
        if self.res_high_A >= self.res_low_A:
            raise ConfigError(
                f"hand.res_high_A ({self.res_high_A}) must be smaller than res_low_A ({self.res_low_A})"
            )
        if self.search_A is not None and not (math.isfinite(self.search_A) and self.search_A > 0):
            raise ConfigError(f"hand.search_A must be positive or null, got {self.search_A}")
        if not (0.0 < self.min_agreement <= 1.0):
            raise ConfigError(f"hand.min_agreement must be in (0, 1], got {self.min_agreement}")
        if self.min_tilts < 1:
            raise ConfigError(f"hand.min_tilts must be >= 1, got {self.min_tilts}")
        if self.plane not in PLANES:
            raise ConfigError(f"hand.plane must be one of {list(PLANES)}, got {self.plane!r}")
        if self.threads < 1:
            raise ConfigError(f"hand.threads must be >= 1, got {self.threads}")

    @property
    def tile_step_px(self) -> int:
        """Distance between neighbouring tile origins (px)."""
        return max(1, int(round(self.tile_px * (1.0 - self.tile_overlap))))

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | None) -> HandParams:
        """Build from a config mapping; unknown keys or wrong kinds of value raise ConfigError."""
        return params_from_dict(cls, d, "hand")
