"""Domain objects: a RELION 4 tomogram set held in memory.

A :class:`Tomogram` is one row of RELION's ``data_global`` table plus its per-tilt table, with
the projection matrices as one ``(n_tilts, 4, 4)`` float64 array. A :class:`TomogramSet` is an
ordered collection of them. Readers produce these objects, steps transform them (returning new
objects, never mutating their input), writers serialise them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tiltflow.errors import InputError

#: Optional global labels tiltflow may add, in the order they are written.
OPTIONAL_GLOBAL_LABELS: tuple[str, ...] = (
    "rlnTomoFiducialsStarFile",
    "rlnTomoRelativeLuminance",
    "rlnTomoRelativeIceThickness",
    "rlnTomoIceNormalX",
    "rlnTomoIceNormalY",
    "rlnTomoIceNormalZ",
)


@dataclass(frozen=True)
class Tomogram:
    """One tilt series / tomogram of a RELION 4 tomogram set (bin-1 pixels, Å, kV, mm)."""

    name: str
    tilt_series: str
    frame_count: int
    size: tuple[int, int, int]
    hand: float
    optics_group: str
    pixel_size: float
    voltage: float
    cs: float
    amplitude_contrast: float
    fractional_dose: float
    proj: np.ndarray  # (n, 4, 4) float64
    defocus_u: np.ndarray  # (n,) Å
    defocus_v: np.ndarray  # (n,) Å
    defocus_angle: np.ndarray  # (n,) degrees
    ctf_scale: np.ndarray  # (n,)
    pre_exposure: np.ndarray  # (n,) e/Å²
    #: further global labels -> value: the optional ones tiltflow writes (OPTIONAL_GLOBAL_LABELS)
    #: and any other label of an input set, carried through every step unchanged
    extra: Mapping[str, str | float] = field(default_factory=dict)
    #: further per-tilt labels of an input set -> (n,) values, carried through unchanged
    tilt_extra: Mapping[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = self.proj.shape[0]
        if self.proj.shape != (n, 4, 4):
            raise ValueError(f"tomogram {self.name}: proj must be (n,4,4), got {self.proj.shape}")
        for label in ("defocus_u", "defocus_v", "defocus_angle", "ctf_scale", "pre_exposure"):
            arr = getattr(self, label)
            if np.shape(arr) != (n,):
                raise ValueError(
                    f"tomogram {self.name}: {label} must have {n} values, got {np.shape(arr)}"
                )
        for label, values in self.tilt_extra.items():
            if np.shape(values) != (n,):
                raise ValueError(
                    f"tomogram {self.name}: per-tilt label {label} must have {n} values, "
                    f"got {np.shape(values)}"
                )

    @property
    def n_tilts(self) -> int:
        return int(self.proj.shape[0])

    def replace(self, **changes: Any) -> Tomogram:
        """A copy with some fields changed (``extra`` is merged, not replaced, when a dict is
        given; ``tilt_extra`` is kept unless given)."""
        if "extra" in changes:
            merged = dict(self.extra)
            merged.update(changes["extra"])
            changes["extra"] = merged
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True)
class TomogramSet:
    """An ordered set of tomograms with unique names."""

    tomograms: tuple[Tomogram, ...]

    def __post_init__(self) -> None:
        names = [t.name for t in self.tomograms]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise InputError(None, f"duplicate tomogram names in set: {dup}")

    def __iter__(self) -> Iterator[Tomogram]:
        return iter(self.tomograms)

    def __len__(self) -> int:
        return len(self.tomograms)

    @property
    def names(self) -> list[str]:
        return [t.name for t in self.tomograms]

    def __getitem__(self, name: str) -> Tomogram:
        for t in self.tomograms:
            if t.name == name:
                return t
        raise KeyError(f"tomogram {name!r} not in set (have {self.names})")

    def with_tomogram(self, tomo: Tomogram) -> TomogramSet:
        """Replace the tomogram of the same name, or append it."""
        out = [tomo if t.name == tomo.name else t for t in self.tomograms]
        if tomo.name not in self.names:
            out.append(tomo)
        return TomogramSet(tuple(out))

    def merged(self, other: TomogramSet) -> TomogramSet:
        """This set with every tomogram of ``other`` replacing or appended."""
        result = self
        for t in other:
            result = result.with_tomogram(t)
        return result
