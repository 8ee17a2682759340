"""SerialEM ``.mdoc`` files: acquisition order, tilt angles and doses of a tilt series.

Parsing is done by the ``mdocfile`` package (its :class:`mdocfile.data_models.Mdoc`, which is
what :func:`mdocfile.read` builds its table from; the object keeps the global header separate, so
a ``PixelSpacing`` written only in a section is not lost as it is in ``mdocfile.read``'s table).
Its errors are turned into :class:`~tiltflow.errors.InputError`.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

import numpy as np

from tiltflow.errors import InputError
from tiltflow.io.angle_match import match_angles
from tiltflow.io.text import PathLike, read_text_lines

if TYPE_CHECKING:
    from mdocfile.data_models import Mdoc

log = logging.getLogger(__name__)

_DATETIME_FORMATS = ("%d-%b-%y %H:%M:%S", "%d-%b-%Y %H:%M:%S", "%Y-%m-%d %H:%M:%S")


@dataclass(frozen=True)
class MdocAcquisition:
    """The tilt images of an mdoc in chronological (acquisition) order.

    ``tilt_angles`` (deg), ``doses`` (``ExposureDose``, e/Å², 0 where absent) and ``z_values``
    (the section's ``[ZValue = n]``, or ``[FrameSet = n]`` for a frame-set mdoc) are float64/int64
    arrays in the same order; ``pixel_size`` is ``PixelSpacing`` in Å (header, else the first
    section that has one) or None. ``by_datetime`` says whether the order came from the sections'
    DateTime (all present and readable) or from ZValue (no section has a DateTime).
    """

    tilt_angles: np.ndarray
    doses: np.ndarray
    z_values: np.ndarray
    pixel_size: float | None
    by_datetime: bool = False

    def __len__(self) -> int:
        return int(self.tilt_angles.shape[0])


@contextmanager
def _quiet_mdocfile() -> Iterator[None]:
    """Silence mdocfile's warnings about aliased/unknown fields while reading."""
    log = logging.getLogger("mdocfile")
    old = log.level
    log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        log.setLevel(old)


def _parse_datetime(text: str | None) -> datetime | None:
    if not text:
        return None
    s = " ".join(str(text).split())
    for fmt in _DATETIME_FORMATS:
        try:
            return datetime.strptime(s, fmt)
        except ValueError:
            continue
    return None


def _line_of(path: PathLike, field: str, value: object) -> int | None:
    """1-based line of the first ``field = value`` in the file (for error messages), or None."""
    pattern = re.compile(rf"^\s*\[?\s*{re.escape(field)}\s*=\s*(.*?)\s*\]?\s*$")
    for lineno, text in read_text_lines(path, "a SerialEM .mdoc file"):
        m = pattern.match(text)
        if m and (value is None or m.group(1) == str(value).strip()):
            return lineno
    return None


_SECTION_RE = re.compile(r"^\[\s*(ZValue|FrameSet)\s*=\s*(-?\d+)\s*\]")


def _section_starts(path: PathLike, kind: str, z: int) -> list[int]:
    """1-based lines of every ``[kind = z]`` section header."""
    out = []
    for lineno, text in read_text_lines(path, "a SerialEM .mdoc file"):
        m = _SECTION_RE.match(text)
        if m and m.group(1) == kind and int(m.group(2)) == z:
            out.append(lineno)
    return out


def _section_line(path: PathLike, kind: str, z: int, field: str) -> int | None:
    """1-based line of ``field`` inside section ``[kind = z]`` (else the section's line), or None."""
    inside = False
    section = None
    for lineno, text in read_text_lines(path, "a SerialEM .mdoc file"):
        m = _SECTION_RE.match(text)
        if m:
            inside = m.group(1) == kind and int(m.group(2)) == z
            if inside and section is None:
                section = lineno
            continue
        if text.startswith("["):
            inside = False
        elif inside and re.match(rf"^{re.escape(field)}\s*=", text):
            return lineno
    return section


def _load_mdoc(path: PathLike) -> Mdoc:
    from mdocfile.data_models import Mdoc  # only when an mdoc is read (~0.5 s of import)

    lines = read_text_lines(path, "a SerialEM .mdoc file")  # missing / binary / empty checks
    if not lines:
        raise InputError(path, "is empty (expected a SerialEM .mdoc file)")
    try:
        with _quiet_mdocfile():
            return Mdoc.from_file(str(path))
    except InputError:
        raise
    except Exception as exc:  # pydantic.ValidationError, ValueError from malformed lines, ...
        errors = getattr(exc, "errors", None)
        if callable(errors):
            try:
                first = errors()[0]
                field = str(first.get("loc", ("?",))[0])
                value = first.get("input")
                line = _line_of(path, field, value)
                raise InputError(
                    path,
                    f"invalid value {value!r} for {field} ({first.get('msg', 'invalid')})",
                    line=line,
                ) from None
            except (IndexError, KeyError, TypeError):
                pass
        bad = next(
            (
                n
                for n, t in read_text_lines(path, "a SerialEM .mdoc file")
                if not t.startswith("[") and "=" not in t
            ),
            None,
        )
        raise InputError(
            path,
            f"is not a valid SerialEM .mdoc file (expected 'Key = value' lines and [ZValue = n] sections): {exc}",
            line=bad,
        ) from None


def read_mdoc_acquisition(path: PathLike) -> MdocAcquisition:
    """Read the tilt images of a SerialEM ``.mdoc`` in acquisition order.

    The tilt images are the ``[ZValue = n]`` sections (for a frame-set mdoc without any, the
    ``[FrameSet = n]`` sections). Chronological order is by ``DateTime`` (ties broken by ZValue);
    only when *no* section has a DateTime is it the ZValue order, with a warning saying so. Raises
    :class:`~tiltflow.errors.InputError` for a missing/empty/malformed file, no tilt sections, a
    ZValue given twice, a section without ``TiltAngle``, a negative or non-finite
    ``ExposureDose``, or one section whose DateTime is missing or unreadable while others have one
    (a single such section would otherwise re-order the whole acquisition).
    """
    mdoc = _load_mdoc(path)
    sections = [s for s in mdoc.section_data if s.ZValue is not None]
    kind = "ZValue"
    if not sections:
        sections = [s for s in mdoc.section_data if s.FrameSet is not None]
        kind = "FrameSet"
    if not sections:
        raise InputError(
            path, "contains no [ZValue = n] (or [FrameSet = n]) sections: no tilt images"
        )

    z = np.asarray([getattr(s, kind) for s in sections], dtype=np.int64)
    seen: dict[int, int] = {}
    for k, zi in enumerate(z.tolist()):
        if zi in seen:
            lines = _section_starts(path, kind, zi)
            raise InputError(
                path,
                f"section [{kind} = {zi}] appears twice (sections {seen[zi] + 1} and {k + 1}): "
                f"each tilt image needs its own {kind}",
                line=lines[1] if len(lines) > 1 else None,
            )
        seen[zi] = k
    angles = []
    for s, zi in zip(sections, z):
        if s.TiltAngle is None or not np.isfinite(s.TiltAngle):
            raise InputError(
                path, f"section [{kind} = {zi}] has no TiltAngle", line=_line_of(path, kind, zi)
            )
        angles.append(float(s.TiltAngle))
    doses = []
    for s, zi in zip(sections, z):
        d = 0.0 if s.ExposureDose is None else float(s.ExposureDose)
        if not np.isfinite(d) or d < 0:
            raise InputError(
                path,
                f"section [{kind} = {zi}] has ExposureDose {s.ExposureDose!r}, expected a finite "
                "number >= 0 (e/A^2; 0 = use the fractional dose)",
                line=_section_line(path, kind, int(zi), "ExposureDose"),
            )
        doses.append(d)

    times = [_parse_datetime(s.DateTime) for s in sections]
    if all(not s.DateTime for s in sections):
        by_datetime = False
        log.warning(
            "%s: no DateTime in any section; acquisition order (and so every pre-exposure) "
            "taken from the %s order",
            path, kind,
        )
    else:
        for s, zi, t in zip(sections, z, times):
            if t is not None:
                continue
            if not s.DateTime:
                raise InputError(
                    path,
                    f"section [{kind} = {zi}] has no DateTime, but other sections have one: the "
                    "acquisition order (and every pre-exposure) would be a guess; give every "
                    "section a DateTime (or none: then the ZValue order is used)",
                    line=_line_of(path, kind, zi),
                )
            raise InputError(
                path,
                f"section [{kind} = {zi}]: DateTime {s.DateTime!r} is not readable (expected "
                "e.g. '01-Jan-24  12:20:00', dd-Mon-yy HH:MM:SS); the acquisition order depends "
                "on it",
                line=_section_line(path, kind, int(zi), "DateTime"),
            )
        by_datetime = True
    if by_datetime:
        order = sorted(range(len(sections)), key=lambda i: (times[i], int(z[i]), i))
    else:
        order = sorted(range(len(sections)), key=lambda i: (int(z[i]), i))
    idx = np.asarray(order, dtype=np.int64)

    pixel_size = mdoc.global_data.PixelSpacing
    if pixel_size is None:
        pixel_size = next(
            (s.PixelSpacing for s in mdoc.section_data if s.PixelSpacing is not None), None
        )
    if pixel_size is not None and not (np.isfinite(pixel_size) and pixel_size > 0):
        pixel_size = None

    return MdocAcquisition(
        tilt_angles=np.asarray(angles, dtype=np.float64)[idx],
        doses=np.asarray(doses, dtype=np.float64)[idx],
        z_values=z[idx],
        pixel_size=None if pixel_size is None else float(pixel_size),
        by_datetime=by_datetime,
    )


def pre_exposure_from_mdoc(
    tilt_angles_deg: np.ndarray,
    acq: MdocAcquisition,
    fractional_dose: float,
    path: str | os.PathLike[str] = "mdoc",
) -> np.ndarray:
    """Pre-exposure (e/Å²) of each tilt from the mdoc acquisition order.

    Each tilt is matched to its own mdoc section (:func:`tiltflow.io.angle_match.match_angles`:
    nearest angle after removing a constant tilt offset, one-to-one, within 3/4 of the tilt step;
    ties: the one acquired first; ``path`` is named in errors). A section's dose is its ``ExposureDose`` when > 0, else ``fractional_dose``; a tilt's
    pre-exposure is the sum of the doses of all sections acquired before its section.
    """
    tilts = np.asarray(tilt_angles_deg, dtype=np.float64).reshape(-1)
    if len(acq) == 0:
        raise ValueError("the mdoc acquisition has no sections")
    dose = np.where(acq.doses > 0, acq.doses, float(fractional_dose))
    before = np.concatenate([[0.0], np.cumsum(dose)[:-1]])
    match = match_angles(tilts, acq.tilt_angles, path, "sections").entry
    return before[match]


__all__ = ["MdocAcquisition", "read_mdoc_acquisition", "pre_exposure_from_mdoc"]
