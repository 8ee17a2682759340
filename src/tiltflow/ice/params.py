"""Parameters of the ice-thickness step (``tiltflow estimate-ice`` / workflow rule ``ice``)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from tiltflow.errors import ConfigError
from tiltflow.params import params_from_dict

#: inelastic mean free path of vitreous ice (nm) at the voltages SPEC §5 gives defaults for
DEFAULT_MFP_NM: dict[float, float] = {200.0: 300.0, 300.0: 350.0}

FALLBACKS: tuple[str, ...] = ("none", "cos")
NORMAL_FROM_BEADS: tuple[str, ...] = ("auto", "never")


@dataclass(frozen=True)
class IceParams:
    """Settings of the Beer–Lambert ice fit. The defaults are the CLI defaults.

    Attributes:
        central_fraction: side of the measured field as a fraction of the image width and
            height, centred on the projection of the tomogram centre (0.5 = central half of
            each side, a quarter of the area), so every tilt samples the same part of the slab.
        clip_sigma: pixels further than this many robust standard deviations (1.4826·MAD) from
            the median of the bead-free field are dropped before averaging (outlier trimming,
            symmetric around the median; wide enough that Poisson skew does not bias the mean).
        bead_radius_A: gold bead radius (Å) used for the bead mask.
        bead_mask_factor: beads are masked with discs of ``bead_mask_factor × bead radius``.
        dark_mask_sigma: without known bead positions (and in addition to them), smoothed
            pixels darker than median − ``dark_mask_sigma``·MAD-σ are masked (then dilated).
        dense_mask_sigma: compact regions whose local mean (at 1-8× the bead radius) lies more
            than this many noise σ (estimated from the bright side) from the ice level are
            masked, dark and bright alike so that noise leaves the mean unbiased: specimen
            structure denser than the ice it displaces (0 = off).
        outlier_sigma: tilts whose log-intensity residual exceeds this many robust σ of all
            residuals (and 2 % in intensity) are left out of the fit (0 = keep all).
        mean_free_path_nm: inelastic mean free path for the absolute thickness; ``None`` =
            default by voltage (300 nm at 200 kV, 350 nm at 300 kV, linear in between).
        fallback: ``"none"`` raises when the stack is not in counts; ``"cos"`` then writes
            scale factors ``cos`` (beam angle to the zero-tilt beam) and marks the fit as fallback.
        normal_from_beads: ``"auto"``: when the fiducials lie on the ice surfaces (two parallel
            planes), take the ice-normal component along the tilt axis from them (the tilt
            images cannot see it); ``"never"``: keep the normal in the tilt plane.
        min_tilt_range_deg: below this tilt range the fit is flagged as degenerate.
        threads: threads of the intensity measurement (frames in parallel; the result does
            not depend on it).
    """

    central_fraction: float = 0.5
    clip_sigma: float = 5.0
    bead_radius_A: float = 50.0
    bead_mask_factor: float = 2.0
    dark_mask_sigma: float = 5.0
    dense_mask_sigma: float = 3.0
    outlier_sigma: float = 5.0
    mean_free_path_nm: float | None = None
    fallback: str = "none"
    normal_from_beads: str = "auto"
    min_tilt_range_deg: float = 30.0
    threads: int = 1

    def __post_init__(self) -> None:
        if not (0.0 < self.central_fraction <= 1.0):
            raise ConfigError(
                f"ice.central_fraction must be in (0, 1], got {self.central_fraction}"
            )
        for key in ("clip_sigma", "bead_radius_A", "bead_mask_factor", "dark_mask_sigma"):
            v = getattr(self, key)
            if not (math.isfinite(v) and v > 0):
                raise ConfigError(f"ice.{key} must be a positive number, got {v}")
        if not (math.isfinite(self.dense_mask_sigma) and self.dense_mask_sigma >= 0):
            raise ConfigError(
                f"ice.dense_mask_sigma must be >= 0 (0 = off), got {self.dense_mask_sigma}"
            )
        if not (math.isfinite(self.outlier_sigma) and self.outlier_sigma >= 0):
            raise ConfigError(f"ice.outlier_sigma must be >= 0 (0 = off), got {self.outlier_sigma}")
        if self.mean_free_path_nm is not None and not (
            math.isfinite(self.mean_free_path_nm) and self.mean_free_path_nm > 0
        ):
            raise ConfigError(
                f"ice.mean_free_path_nm must be positive or null, got {self.mean_free_path_nm}"
            )
        if self.fallback not in FALLBACKS:
            raise ConfigError(
                f"ice.fallback must be one of {list(FALLBACKS)}, got {self.fallback!r}"
            )
        if self.normal_from_beads not in NORMAL_FROM_BEADS:
            raise ConfigError(
                f"ice.normal_from_beads must be one of {list(NORMAL_FROM_BEADS)}, got {self.normal_from_beads!r}"
            )
        if self.threads < 1:
            raise ConfigError(f"ice.threads must be >= 1, got {self.threads}")
        if not (0.0 <= self.min_tilt_range_deg < 180.0):
            raise ConfigError(
                f"ice.min_tilt_range_deg must be in [0, 180), got {self.min_tilt_range_deg}"
            )

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | None) -> IceParams:
        """Build from a config mapping; unknown keys or wrong kinds of value raise ConfigError."""
        return params_from_dict(cls, d, "ice")


def mean_free_path_nm(voltage_kv: float, configured: float | None = None) -> float:
    """Inelastic mean free path (nm): ``configured`` if given, else the default by voltage.

    Defaults (SPEC §5): 300 nm at 200 kV, 350 nm at 300 kV, linear in between; other voltages
    raise :class:`ConfigError` asking for ``mean_free_path_nm``.
    """
    if configured is not None:
        return float(configured)
    v = float(voltage_kv)
    lo, hi = 200.0, 300.0
    if not (lo - 0.5 <= v <= hi + 0.5):
        raise ConfigError(
            f"no default inelastic mean free path at {v:g} kV (defaults exist for 200-300 kV); "
            "set ice.mean_free_path_nm (CLI --mfp)"
        )
    v = min(max(v, lo), hi)
    return DEFAULT_MFP_NM[lo] + (DEFAULT_MFP_NM[hi] - DEFAULT_MFP_NM[lo]) * (v - lo) / (hi - lo)
