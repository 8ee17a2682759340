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

#: optics of every simulated series (written to the tomogram set by the importer's defaults)
VOLTAGE_KV = 300.0
CS_MM = 2.7
AMPLITUDE_CONTRAST = 0.1


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

    # ------------------------------------------------------------------ realism (all off)
    # Every feature below is off by default, and the default output is byte-identical to that
    # of the simulator without them. ``tiltflow simulate --preset`` switches groups of them on
    # (see :data:`PRESETS`). Their random numbers come from streams of their own.
    #: image formation by band-wise Fresnel propagation of a phase + absorption exit wave (CTF
    #: with the view's defocus and astigmatism, Fresnel fringes around beads) instead of plain
    #: Beer–Lambert transmission
    phase_contrast: bool = False
    #: rlnTomoHand of the truth (+1 or -1): the defocus at a point is the view's defocus
    #: + hand · pixel_size · (depth(point) - depth(tomogram centre)), depth = row 2 of P
    #: (RELION's Tomogram::getCtf); only the phase-contrast images depend on it
    hand: float = -1.0
    #: depth bands of the propagation; 0 = automatic (a defocus error of at most 0.25 rad of
    #: phase at Nyquist within a band, at most 16 bands)
    phase_bands: int = 0
    #: mean inner potential of gold minus that of ice (V): bead phase = σ · V · path length
    bead_potential_V: float = 25.0
    #: RMS phase (rad per px, 0° view) of a random weak-phase specimen filling the ice (Thon
    #: rings in the power spectrum); 0 = none
    specimen_phase_rms: float = 0.0
    #: ribosome-like dense blobs per µm² of ice (two touching spheres, ``ribosome_diameter_nm``)
    ribosomes_per_um2: float = 0.0
    ribosome_diameter_nm: float = 25.0
    #: vesicles (hollow spheres of radius 20-60 nm with a ``bilayer_nm`` rim) per µm² of ice
    vesicles_per_um2: float = 0.0
    #: membranes (flat sheets ``bilayer_nm`` thick, 100-300 nm long, spanning 40-95 % of the
    #: ice, leaning up to 40° from edge-on) per µm² of ice
    membranes_per_um2: float = 0.0
    bilayer_nm: float = 4.0
    #: mean inner potential of protein / lipid minus that of ice (V)
    clutter_potential_V: float = 2.5
    #: inelastic attenuation per unit path of the clutter material relative to the vitreous
    #: ice it displaces (ice = 1; its attenuation length is ``mean_free_path_nm``): ribosomes
    #: (protein) and lipid (vesicle rims, membranes); a vesicle's lumen is ice. The clutter
    #: replaces ice, so its Beer–Lambert term is only the excess ``(ratio - 1) /
    #: mean_free_path_nm`` per unit path, and the slab's ice attenuation stays that of its full
    #: thickness (the truth's thickness is the slab's). Derivation of the defaults: the inelastic
    #: cross-section per atom grows about as Z^0.5 (Langmore & Smith, Ultramicroscopy 46, 1992),
    #: i.e. per gram H 1.00, C 0.204, N 0.189, O 0.177, P 0.125 (Z^0.5 / A). Per gram: water
    #: 0.268, protein (by mass C 53 %, H 7 %, N 16 %, O 22 %, S 1 %) 0.248, lipid (POPC,
    #: C42H82NO8P) 0.282. Per volume, × density (ice 0.93, protein 1.35, lipid 1.02 g/cm³) and
    #: relative to ice: protein 1.34, lipid 1.15 -- a protein mean free path of ~265 nm against
    #: ice's 350 nm at 300 kV, "only modestly shorter". (RNA alone gives ~1.6, but a ribosome's
    #: envelope is only ~40 % RNA and protein by volume, the rest water: 1.3 is on the dense side.)
    protein_absorption: float = 1.3
    lipid_absorption: float = 1.15
    #: RMS phase (rad, 0° view) of a 3D 1/f texture (blobs of 5-40 nm) in the ice; 0 = none
    texture_phase_rms: float = 0.0
    #: carbon film: thickness (nm; 0 = none) of a slab on one ice surface, bounded by a straight
    #: edge (a half-space); Beer–Lambert attenuation with ``carbon_mfp_nm`` and phase
    carbon_thickness_nm: float = 0.0
    #: signed distance (nm) of the carbon edge from the tomogram centre, in the ice plane
    carbon_edge_nm: float = 100.0
    #: direction (deg) of the carbon side's normal in the ice plane, from world x towards the
    #: tilt axis; the film covers ``m·(x - centre) >= carbon_edge_nm``
    carbon_edge_angle_deg: float = 30.0
    #: -1: the film is below the ice (along -normal), +1: above
    carbon_side: int = -1
    carbon_mfp_nm: float = 200.0
    carbon_potential_V: float = 10.0
    #: hot pixels: fixed detector pixels reading ``hot_pixel_gain`` × (0.5-2) × the view's
    #: empty-ice counts above their neighbours
    n_hot_pixels: int = 0
    hot_pixel_gain: float = 10.0
    #: X-ray spikes (1-3 px, ``xray_gain`` × (0.5-2) × the view's empty-ice counts) per view
    #: (Poisson mean)
    xrays_per_view: float = 0.0
    xray_gain: float = 50.0
    #: extra beads near the field edge (across the tilt axis), visible in only part of the series
    n_edge_beads: int = 0
    #: clusters of 2-3 beads in contact (sizes mixed with ``small_bead_radius_A``)
    n_bead_clusters: int = 0
    #: extra small beads (radius ``small_bead_radius_A``)
    n_small_beads: int = 0
    small_bead_radius_A: float = 25.0
    #: linear motion blur (length in px) of one view (``drift_view``, 1-based; 0 = a random one)
    drift_blur_px: float = 0.0
    drift_view: int = 0
    #: grid-bar shadow: fraction of the field the bar shadows in the highest tilt on the
    #: ``grid_bar_side`` (+1: most positive tilt, -1: most negative); 0 = no grid bar. The bar
    #: is a 3D opaque box ``grid_bar_depth_nm`` below the ice, parallel to the tilt axis
    grid_bar_cover: float = 0.0
    grid_bar_depth_nm: float = 2000.0
    grid_bar_side: int = 1
    #: tilt offset (deg): the .tlt (and the truth) = nominal + offset, where the nominal angles
    #: are those of the order list and the .mdoc
    tilt_offset_deg: float = 0.0

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
            "bead_potential_V",
            "specimen_phase_rms",
            "ribosomes_per_um2",
            "vesicles_per_um2",
            "membranes_per_um2",
            "clutter_potential_V",
            "protein_absorption",
            "lipid_absorption",
            "texture_phase_rms",
            "carbon_thickness_nm",
            "carbon_potential_V",
            "hot_pixel_gain",
            "xrays_per_view",
            "xray_gain",
            "drift_blur_px",
            "grid_bar_cover",
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
        for key in (
            "ribosome_diameter_nm",
            "bilayer_nm",
            "carbon_mfp_nm",
            "small_bead_radius_A",
            "grid_bar_depth_nm",
        ):
            v = getattr(self, key)
            if not (math.isfinite(v) and v > 0):
                fail(key, f"must be > 0, got {v!r}")
        for key in (
            "phase_bands",
            "n_hot_pixels",
            "n_edge_beads",
            "n_bead_clusters",
            "n_small_beads",
            "drift_view",
        ):
            if getattr(self, key) < 0:
                fail(key, "must be >= 0")
        for key in ("hand", "carbon_side", "grid_bar_side"):
            if getattr(self, key) not in (-1, 1):
                fail(key, f"must be +1 or -1, got {getattr(self, key)!r}")
        if self.grid_bar_cover >= 1.0:
            fail("grid_bar_cover", "must be < 1")
        if not (math.isfinite(self.tilt_offset_deg) and abs(self.tilt_offset_deg) < 10.0):
            fail("tilt_offset_deg", f"must be within ±10°, got {self.tilt_offset_deg!r}")
        if not math.isfinite(self.carbon_edge_nm) or not math.isfinite(self.carbon_edge_angle_deg):
            fail("carbon_edge_nm/carbon_edge_angle_deg", "must be finite")
        if self.defocus_um <= 0:
            fail("defocus_um", "must be > 0 (underfocus)")
        n = self.n_tilts
        bad = [v for v in self.excluded_views if not 1 <= v <= n]
        if bad:
            fail("excluded_views", f"views {bad} outside 1..{n} (1-based raw views)")
        if len(set(self.excluded_views)) >= n:
            fail("excluded_views", "every view is excluded")
        if self.drift_view > n:
            fail("drift_view", f"view {self.drift_view} outside 1..{n} (1-based raw views)")

    # ------------------------------------------------------------------ derived
    @property
    def n_tilts(self) -> int:
        """Number of raw views."""
        return int(math.floor((self.tilt_max - self.tilt_min) / self.tilt_step + 1e-9)) + 1

    @property
    def ali_size_eff(self) -> tuple[int, int]:
        """The aligned-stack size actually used (``ali_size`` or ``raw_size``)."""
        return tuple(int(v) for v in (self.ali_size or self.raw_size))  # type: ignore[return-value]

    @property
    def realistic_images(self) -> bool:
        """Whether any image feature of the realism section is on (else: the plain renderer)."""
        return bool(
            self.phase_contrast
            or self.specimen_phase_rms > 0
            or self.ribosomes_per_um2 > 0
            or self.vesicles_per_um2 > 0
            or self.membranes_per_um2 > 0
            or self.texture_phase_rms > 0
            or self.carbon_thickness_nm > 0
            or self.n_hot_pixels > 0
            or self.xrays_per_view > 0
            or self.drift_blur_px > 0
            or self.grid_bar_cover > 0
            or self.n_edge_beads > 0
            or self.n_bead_clusters > 0
            or self.n_small_beads > 0
        )

    def realism(self) -> dict[str, Any]:
        """The realism parameters (the fields from ``phase_contrast`` on) as a plain dict."""
        names = [f.name for f in dataclasses.fields(self)]
        return {k: getattr(self, k) for k in names[names.index("phase_contrast") :]}

    @classmethod
    def from_preset(cls, name: str, **changes: Any) -> SimulationParams:
        """The defaults with the preset ``name`` (:data:`PRESETS`) applied, then ``changes``."""
        return cls.from_dict({**preset_params(name), **changes})

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


#: ``tiltflow simulate --preset NAME``: groups of realism parameters (applied over the defaults,
#: under --config and the individual flags). Densities are per µm² of ice.
PRESETS: dict[str, dict[str, Any]] = {
    "clean": {},
    "phase": {"phase_contrast": True, "specimen_phase_rms": 0.05},
    "hot": {"n_hot_pixels": 30, "xrays_per_view": 2.0},
    "drift_grid": {"drift_blur_px": 12.0, "grid_bar_cover": 0.3},
    "clutter": {
        "ribosomes_per_um2": 400.0,
        "vesicles_per_um2": 12.0,
        "membranes_per_um2": 6.0,
        "texture_phase_rms": 0.05,
    },
    "carbon": {"carbon_thickness_nm": 15.0},
    "beads_hard": {
        "n_edge_beads": 6,
        "n_bead_clusters": 3,
        "n_small_beads": 8,
        "surface_fraction": 0.5,
    },
}
PRESETS["all"] = {
    k: v
    for name in ("phase", "hot", "drift_grid", "clutter", "carbon", "beads_hard")
    for k, v in PRESETS[name].items()
} | {"tilt_offset_deg": 0.8}

#: one line per preset (``--help`` and the README)
PRESET_HELP: dict[str, str] = {
    "clean": "the defaults: Beer–Lambert beads in ice, Poisson noise",
    "phase": "phase-contrast image formation (CTF, Thon rings from a weak random specimen, "
    "Fresnel fringes around the beads; hand-dependent defocus gradient)",
    "hot": "hot pixels and X-ray spikes",
    "drift_grid": "one drift-blurred view and a grid-bar shadow at the highest tilts",
    "clutter": "ribosome-like blobs, vesicles, membranes and a 1/f texture in the ice",
    "carbon": "a 15 nm carbon film with a straight edge across part of the field",
    "beads_hard": "beads near the field edge, touching clusters, small beads, more beads inside "
    "the ice",
    "all": "all of the above, with a 0.8° tilt offset between the .tlt and the nominal angles",
}


def preset_params(name: str) -> dict[str, Any]:
    """The parameter changes of preset ``name`` (a copy)."""
    if name not in PRESETS:
        raise ConfigError(f"unknown simulation preset {name!r}; known: {', '.join(PRESETS)}")
    return dict(PRESETS[name])
