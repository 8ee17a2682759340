"""IMOD tilt-angle files (``.tlt``, ``.rawtlt``): one angle in degrees per line."""

from __future__ import annotations

import re

import numpy as np

from tiltflow.errors import InputError
from tiltflow.io.text import PathLike, parse_float, read_text_lines, require_nonempty

#: an integer, a comma and digits (``-51,5``): a decimal comma, not an angle and a second column
_DECIMAL_COMMA = re.compile(r"^[+-]?\d+,\d+$")


def read_tlt(path: PathLike) -> np.ndarray:
    """Read a ``.tlt``/``.rawtlt`` file as an ``(n,)`` float64 array of tilt angles in degrees.

    The first number of every non-blank line is the angle; extra columns are tolerated and
    ignored (IMOD reads only the first value too). A last line without a final newline is read
    like any other (RELION 4 loses it; tiltflow does not). CRLF line endings are accepted.
    Raises :class:`~tiltflow.errors.InputError` for a missing/empty file, a non-numeric angle, an
    angle with a decimal comma (``-51,5``, which would otherwise read as -51) or an angle outside
    (-90°, 90°).
    """
    angles: list[float] = []
    for lineno, text in read_text_lines(path, "an IMOD tilt-angle file (one angle per line)"):
        token = text.split()[0]
        if _DECIMAL_COMMA.match(token):
            raise InputError(
                path,
                f"tilt angle {token!r} has a decimal comma: write it with a point "
                f"({token.replace(',', '.')}); a second column goes after a space",
                line=lineno,
            )
        first = re.split(r"[\s,]+", text)[0]
        angle = parse_float(first, path, lineno, "the tilt angle (degrees)")
        if not -90.0 < angle < 90.0:
            raise InputError(
                path,
                f"tilt angle {first} is outside (-90°, 90°): not a tilt of a specimen (expected "
                "one angle in degrees per line)",
                line=lineno,
            )
        angles.append(angle)
    require_nonempty(angles, path, "one tilt angle in degrees per line")
    return np.asarray(angles, dtype=np.float64)
