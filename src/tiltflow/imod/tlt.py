"""IMOD tilt-angle files (``.tlt``, ``.rawtlt``): one angle in degrees per line."""

from __future__ import annotations

import re

import numpy as np

from tiltflow.io.text import PathLike, parse_float, read_text_lines, require_nonempty


def read_tlt(path: PathLike) -> np.ndarray:
    """Read a ``.tlt``/``.rawtlt`` file as an ``(n,)`` float64 array of tilt angles in degrees.

    The first number of every non-blank line is the angle; extra columns are tolerated and
    ignored (IMOD reads only the first value too). A last line without a final newline is read
    like any other (RELION 4 loses it; tiltflow does not). CRLF line endings are accepted.
    Raises :class:`~tiltflow.errors.InputError` for a missing/empty file or a non-numeric angle.
    """
    angles: list[float] = []
    for lineno, text in read_text_lines(path, "an IMOD tilt-angle file (one angle per line)"):
        first = re.split(r"[\s,]+", text)[0]
        angles.append(parse_float(first, path, lineno, "the tilt angle (degrees)"))
    require_nonempty(angles, path, "one tilt angle in degrees per line")
    return np.asarray(angles, dtype=np.float64)
