"""Parameters of the synthetic tilt-series simulator.

Conventions (see also :mod:`tiltflow.simulate.core`):

* ``tilt_axis_deg`` is the IMOD / SerialEM tilt-axis rotation: the counter-clockwise angle of
  the tilt axis in the *raw* image, measured from the raw image's +Y axis. The ``.xf`` that
  makes the axis vertical rotates by ``-tilt_axis_deg``, i.e. ``A = [[cos, sin], [-sin, cos]]``
  of the angle, so ``tilt_axis_deg == degrees(atan2(-A21, A11))``.
* Perturbations (``perturb_*``) are maximum absolute errors; each tilt gets an independent
  uniform error in ``[-max, +max]`` applied to the *written* ``.xf`` / ``.tlt`` relative to the
  truth used for rendering.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from tiltflow.errors import ConfigError
from tiltflow.params import params_from_dict

SCHEMES: tuple[str, ...] = ("dose-symmetric", "bidirectional", "unidirectional")
DOSE_PROFILES: tuple[str, ...] = ("equal", "cosine")


@dataclass(frozen=True)
class SimulationParams:
    """Everything that defines one synthetic tilt series (defaults: a small, fast example)."""

    #: (w, h) of the raw tilt stack in pixels
    raw_size: tuple[int, int] = (512, 512)
    #: (w, h) of the aligned stack (tilt.com FULLIMAGE, newst.com SizeToOutputInXandY); None = raw_size
    ali_size: tuple[int, int] | None = None
    #: pixel size in Å
    pixel_size: float = 10.0
    tilt_min: float = -60.0
    tilt_max: float = 60.0
    tilt_step: float = 3.0
    #: acquisition scheme giving the chronological order: dose-symmetric (Hagen, starting at the
    #: tilt nearest 0°), bidirectional (0° -> max, then -step -> min) or unidirectional (min -> max)
    scheme: str = "dose-symmetric"
    #: tilts per side in each group of the dose-symmetric scheme
    dose_symmetric_group: int = 2
    #: mean dose per tilt in e/Å²
    dose_per_tilt: float = 3.0
    #: "equal" or "cosine" (dose ∝ 1/cos(tilt), normalised so that the mean is dose_per_tilt)
    dose_profile: str = "equal"
    n_beads: int = 30
    bead_radius_A: float = 50.0
    #: attenuation per Å of gold path (centre of a 50 Å bead transmits exp(-0.5) ≈ 61%)
    bead_contrast: float = 0.005
    #: fraction of the beads sitting on the two ice surfaces; the others are spread through the ice
    surface_fraction: float = 0.8
    #: tilt.com THICKNESS (reconstruction thickness, px)
    thickness_px: int = 200
    ice_thickness_nm: float = 100.0
    #: inelastic mean free path; relative thickness t = ice_thickness_nm / mean_free_path_nm
    mean_free_path_nm: float = 350.0
    #: rotation (deg) of the ice normal about world x, then about the tilt axis
    ice_pretilt_deg: tuple[float, float] = (0.0, 0.0)
    #: relative amplitude of a smooth illumination pattern (fixed in detector coordinates, zero
    #: mean over the image, identical for all tilts), multiplying the background
    background_variation: float = 0.03
    tilt_axis_deg: float = 85.0
    #: standard deviation of the true per-tilt .xf shifts (px)
    shift_sd_px: float = 5.0
    defocus_um: float = 3.0
    astigmatism_nm: float = 50.0
    #: standard deviation of the per-tilt defocus scatter (nm)
    defocus_sd_nm: float = 50.0
    perturb_tilt_deg: float = 0.0
    perturb_rotation_deg: float = 0.0
    perturb_shift_px: float = 0.0
    perturb_mag: float = 0.0
    #: 1-based raw views written to tilt.com EXCLUDELIST
    excluded_views: tuple[int, ...] = ()
    #: import flags the truth is expressed in (flip_z needs flip_yz)
    flip_yz: bool = False
    flip_z: bool = False
    #: Poisson noise on the counts (False: the exact expected counts, for tests)
    noise: bool = True
    seed: int = 0

    # ------------------------------------------------------------------ validation
    def __post_init__(self) -> None:
        def fail(key: str, msg: str) -> None:
            raise ConfigError(f"simulation parameter {key}: {msg}")

        for key in ("raw_size", "ali_size"):
            v = getattr(self, key)
            if v is None and key == "ali_size":
                continue
            if len(v) != 2 or any(int(x) != x or int(x) < 16 for x in v):
                fail(key, f"expected two integers >= 16, got {v!r}")
        for key in ("pixel_size", "tilt_step", "bead_radius_A", "mean_free_path_nm"):
            v = getattr(self, key)
            if not (math.isfinite(v) and v > 0):
                fail(key, f"must be > 0, got {v!r}")
        for key in (
            "dose_per_tilt",
            "bead_contrast",
            "ice_thickness_nm",
            "shift_sd_px",
            "astigmatism_nm",
            "defocus_sd_nm",
            "perturb_tilt_deg",
            "perturb_rotation_deg",
            "perturb_shift_px",
            "perturb_mag",
            "background_variation",
        ):
            v = getattr(self, key)
            if not (math.isfinite(v) and v >= 0):
                fail(key, f"must be >= 0, got {v!r}")
        if not (-89.0 <= self.tilt_min <= self.tilt_max <= 89.0):
            fail(
                "tilt_min/tilt_max",
                f"need -89 <= tilt_min <= tilt_max <= 89, got {self.tilt_min}, {self.tilt_max}",
            )
        if self.scheme not in SCHEMES:
            fail("scheme", f"{self.scheme!r} is not one of {', '.join(SCHEMES)}")
        if self.dose_profile not in DOSE_PROFILES:
            fail("dose_profile", f"{self.dose_profile!r} is not one of {', '.join(DOSE_PROFILES)}")
        if self.dose_symmetric_group < 1:
            fail("dose_symmetric_group", "must be >= 1")
        if self.n_beads < 0:
            fail("n_beads", "must be >= 0")
        if not 0.0 <= self.surface_fraction <= 1.0:
            fail("surface_fraction", "must be in [0, 1]")
        if self.thickness_px < 1:
            fail("thickness_px", "must be >= 1")
        if self.background_variation >= 0.5:
            fail("background_variation", "must be < 0.5")
        if self.perturb_mag >= 0.5:
            fail("perturb_mag", "must be < 0.5")
        if len(self.ice_pretilt_deg) != 2:
            fail("ice_pretilt_deg", "expected two angles (about x, about the tilt axis)")
        if self.flip_z and not self.flip_yz:
            fail("flip_z", "only defined together with flip_yz")
        if self.defocus_um <= 0:
            fail("defocus_um", "must be > 0 (underfocus)")
        n = self.n_tilts
        bad = [v for v in self.excluded_views if not 1 <= v <= n]
        if bad:
            fail("excluded_views", f"views {bad} outside 1..{n} (1-based raw views)")
        if len(set(self.excluded_views)) >= n:
            fail("excluded_views", "every view is excluded")

    # ------------------------------------------------------------------ derived
    @property
    def n_tilts(self) -> int:
        """Number of raw views."""
        return int(math.floor((self.tilt_max - self.tilt_min) / self.tilt_step + 1e-9)) + 1

    @property
    def ali_size_eff(self) -> tuple[int, int]:
        """The aligned-stack size actually used (``ali_size`` or ``raw_size``)."""
        return tuple(int(v) for v in (self.ali_size or self.raw_size))  # type: ignore[return-value]

    def replace(self, **changes: Any) -> SimulationParams:
        """A copy with some parameters changed (validated)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (tuples as lists) that :meth:`from_dict` accepts."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            out[f.name] = list(v) if isinstance(v, tuple) else v
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | None) -> SimulationParams:
        """Build from a config mapping; unknown keys or wrong kinds of value raise ConfigError."""
        return params_from_dict(cls, d, "simulate")
