"""Ground truth of a simulated tilt series and its deterministic JSON form (``truth.json``)."""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tiltflow.errors import InputError
from tiltflow.io.atomic import write_text_atomic

#: fields stored as float64 arrays
_FLOAT_ARRAYS: tuple[str, ...] = (
    "proj",
    "beads_3d",
    "beads_2d",
    "tilt_true_deg",
    "xf_true",
    "tilt_written_deg",
    "xf_written",
    "ice_normal",
    "scale_factor",
    "attenuation",
    "dose",
    "pre_exposure",
    "defocus_u",
    "defocus_v",
    "defocus_angle",
    "nominal_tilt_deg",
    "bead_radii_A",
    "hot_pixel_gain",
)
#: fields stored as integer arrays, with their row length (0 = 1D)
_INT_ARRAYS: dict[str, int] = {
    "chrono_index": 0,
    "bead_cluster": 0,
    "hot_pixels": 2,
    "xray_spikes": 3,
}
#: fields stored as plain dicts
_DICTS: tuple[str, ...] = ("import_flags", "drift", "carbon", "grid_bar", "clutter", "realism")


def _empty_int(cols: int) -> np.ndarray:
    return np.zeros((0, cols) if cols else 0, dtype=np.int64)


@dataclass(frozen=True)
class Truth:
    """What the simulator rendered, per RAW view (stack order = sorted by tilt angle).

    Geometry is in world coordinates (bin-1 px, RELION 4 convention) for the import flags in
    ``import_flags``; ``proj`` are the RELION 4 matrices of the TRUE alignment for every raw view.
    """

    proj: np.ndarray  # (n_raw, 4, 4)
    beads_3d: np.ndarray  # (m, 3) world px
    beads_2d: np.ndarray  # (n_raw, m, 2) raw-image px
    visible: np.ndarray  # (n_raw, m) bool: bead centre inside the raw image
    tilt_true_deg: np.ndarray  # (n_raw,)
    xf_true: np.ndarray  # (n_raw, 6)
    tilt_written_deg: np.ndarray  # (n_raw,)
    xf_written: np.ndarray  # (n_raw, 6)
    ice_thickness_rel: float  # t = ice thickness / mean free path
    ice_normal: np.ndarray  # (3,) unit, world
    scale_factor: np.ndarray  # (n_raw,) exp(-t/|n.v|) / exp(-t)
    attenuation: np.ndarray  # (n_raw,) exp(-t/|n.v|)
    dose: np.ndarray  # (n_raw,) e/Å² of each view
    pre_exposure: np.ndarray  # (n_raw,) e/Å² received before each view
    chrono_index: np.ndarray  # (n_raw,) int, 0-based acquisition order of each view
    defocus_u: np.ndarray  # (n_raw,) Å as written (rounded like the .defocus file)
    defocus_v: np.ndarray  # (n_raw,) Å
    defocus_angle: np.ndarray  # (n_raw,) deg
    excluded_views: tuple[int, ...]  # 1-based raw views
    pixel_size: float
    bead_radius_A: float
    raw_size: tuple[int, int]
    ali_size: tuple[int, int]
    thickness: int
    luminance: float  # L of SPEC §5: background counts per unit dose without ice = pixel_size²
    ice_thickness_nm: float
    mean_free_path_nm: float
    tilt_axis_deg: float
    import_flags: dict[str, Any] = field(default_factory=dict)
    # --- realism (issue #9 / #15); defaults = what an older truth.json means
    hand: float = -1.0  # rlnTomoHand the phase-contrast images were rendered with
    #: (n_raw,) nominal tilt angles (order list, .mdoc) = tilt_true_deg - tilt_offset_deg;
    #: empty in the constructor = tilt_true_deg
    nominal_tilt_deg: np.ndarray = field(default_factory=lambda: np.zeros(0))
    tilt_offset_deg: float = 0.0
    #: (m,) radius of each bead (Å); empty = bead_radius_A for all
    bead_radii_A: np.ndarray = field(default_factory=lambda: np.zeros(0))
    #: per bead: "field" (regular), "small", "cluster" or "edge"; empty = all "field"
    bead_kind: tuple[str, ...] = ()
    #: (m,) cluster id of each bead (-1 = none); empty = -1 for all
    bead_cluster: np.ndarray = field(default_factory=lambda: _empty_int(0))
    #: (k, 2) hot pixels (x, y) of the raw images, the same in every view, and their gains
    #: (counts added = gain × the view's empty-ice counts)
    hot_pixels: np.ndarray = field(default_factory=lambda: _empty_int(2))
    hot_pixel_gain: np.ndarray = field(default_factory=lambda: np.zeros(0))
    #: (k, 3) X-ray hit pixels (raw view, x, y)
    xray_spikes: np.ndarray = field(default_factory=lambda: _empty_int(3))
    #: drift-blurred view: {"view" (0-based raw), "length_px", "angle_deg"}; {} = none
    drift: dict[str, Any] = field(default_factory=dict)
    #: carbon film as a convex body {"planes", "lo", "hi"} (lo <= planes·x <= hi, world px;
    #: row 0 the slab, row 1 the edge half-space) + thickness_px, side, mfp_nm; {} = none
    carbon: dict[str, Any] = field(default_factory=dict)
    #: grid bar as a convex body {"planes", "lo", "hi", "mfp_nm"}; {} = none
    grid_bar: dict[str, Any] = field(default_factory=dict)
    #: counts and geometry of the clutter (vesicles, membranes) and the specimen
    clutter: dict[str, Any] = field(default_factory=dict)
    #: the realism parameters the series was simulated with
    realism: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        m = int(np.asarray(self.beads_3d).reshape(-1, 3).shape[0])
        if np.asarray(self.nominal_tilt_deg).size == 0:
            object.__setattr__(self, "nominal_tilt_deg", np.array(self.tilt_true_deg, dtype=float))
        if np.asarray(self.bead_radii_A).size == 0 and m:
            object.__setattr__(self, "bead_radii_A", np.full(m, float(self.bead_radius_A)))
        if not self.bead_kind and m:
            object.__setattr__(self, "bead_kind", ("field",) * m)
        if np.asarray(self.bead_cluster).size == 0 and m:
            object.__setattr__(self, "bead_cluster", np.full(m, -1, dtype=np.int64))

    @property
    def n_raw(self) -> int:
        return int(self.proj.shape[0])

    @property
    def kept(self) -> np.ndarray:
        """0-based indices of the kept raw views (stack order)."""
        excl = {v - 1 for v in self.excluded_views}
        return np.array([i for i in range(self.n_raw) if i not in excl], dtype=np.int64)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict (lists of floats / ints / bools)."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if isinstance(v, np.ndarray):
                if v.dtype == bool:
                    v = v.tolist()
                elif np.issubdtype(v.dtype, np.integer):
                    v = [int(x) for x in v.ravel()] if v.ndim == 1 else v.astype(int).tolist()
                else:
                    v = np.asarray(v, dtype=np.float64).tolist()
            elif isinstance(v, tuple):
                v = [
                    x
                    if isinstance(x, str)
                    else int(x)
                    if isinstance(x, (int, np.integer))
                    else float(x)
                    for x in v
                ]
            elif isinstance(v, (np.floating, float)):
                v = float(v)
            elif isinstance(v, (np.integer, int)) and not isinstance(v, bool):
                v = int(v)
            elif isinstance(v, dict):
                v = dict(v)
            out[f.name] = v
        return out

    def to_json(self, path: str | os.PathLike[str]) -> None:
        """Write ``truth.json`` atomically (sorted keys, deterministic)."""
        text = json.dumps(self.to_dict(), sort_keys=True, indent=1) + "\n"
        write_text_atomic(path, text)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Truth:
        kw: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            if f.name not in d:
                if (
                    f.default is not dataclasses.MISSING
                    or f.default_factory is not dataclasses.MISSING
                ):
                    continue  # a field newer than the file: its default
                raise KeyError(f.name)
            v = d[f.name]
            if f.name in _FLOAT_ARRAYS:
                v = np.asarray(v, dtype=np.float64)
            elif f.name == "visible":
                v = np.asarray(v, dtype=bool)
            elif f.name in _INT_ARRAYS:
                cols = _INT_ARRAYS[f.name]
                v = np.asarray(v, dtype=np.int64)
                v = v.reshape(-1, cols) if cols else v.reshape(-1)
            elif f.name in ("raw_size", "ali_size", "excluded_views"):
                v = tuple(int(x) for x in v)
            elif f.name == "bead_kind":
                v = tuple(str(x) for x in v)
            elif f.name == "thickness":
                v = int(v)
            elif f.name in _DICTS:
                v = dict(v)
            else:
                v = float(v)
            kw[f.name] = v
        m = kw["beads_3d"].reshape(-1, 3).shape[0]
        n = kw["proj"].reshape(-1, 4, 4).shape[0]
        kw["beads_3d"] = kw["beads_3d"].reshape(m, 3)
        kw["proj"] = kw["proj"].reshape(n, 4, 4)
        kw["beads_2d"] = kw["beads_2d"].reshape(n, m, 2)
        kw["visible"] = kw["visible"].reshape(n, m)
        return cls(**kw)

    @classmethod
    def from_json(cls, path: str | os.PathLike[str]) -> Truth:
        """Read a ``truth.json`` written by :meth:`to_json`."""
        path = Path(path)
        try:
            d = json.loads(path.read_text(encoding="utf-8"))
            return cls.from_dict(d)
        except FileNotFoundError:
            raise InputError(path, "file not found") from None
        except (ValueError, KeyError, TypeError) as exc:
            raise InputError(path, f"not a simulator truth file ({exc!r})") from None
