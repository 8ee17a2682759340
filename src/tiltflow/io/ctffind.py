"""CTFFIND4 output (``<name>_output.txt`` / diagnostic ``.txt``): one line per micrograph (tilt).

After ``#`` header lines, each line holds: #1 micrograph number; #2 defocus 1 (Å); #3 defocus 2
(Å); #4 azimuth of astigmatism (deg); #5 additional phase shift (rad); #6 cross correlation;
#7 spacing (Å) up to which CTF rings were fit successfully. Later CTFFIND versions may append
columns (e.g. CTFFIND5's tilt and thickness); they are ignored.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from tiltflow.errors import InputError
from tiltflow.io.text import PathLike, parse_float, read_text_lines

CTFFIND_COLUMNS = (
    "micrograph number",
    "defocus 1 (A)",
    "defocus 2 (A)",
    "astigmatism azimuth (deg)",
    "additional phase shift (rad)",
    "cross correlation",
    "fit resolution (A)",
)


@dataclass(frozen=True)
class CtfFindTable:
    """CTFFIND4 results, one element per data line in file order (float64 arrays); ``line`` is
    the 1-based file line of each (for messages)."""

    micrograph: np.ndarray
    defocus1_A: np.ndarray
    defocus2_A: np.ndarray
    astig_angle_deg: np.ndarray
    phase_shift_rad: np.ndarray
    cross_correlation: np.ndarray
    fit_resolution_A: np.ndarray
    line: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))

    def __len__(self) -> int:
        return int(self.micrograph.shape[0])


def read_ctffind(path: PathLike) -> CtfFindTable:
    """Read a CTFFIND4 output text file into a :class:`CtfFindTable`.

    Lines starting with ``#`` are headers; every other non-blank line needs at least 7 finite
    numbers. Raises :class:`~tiltflow.errors.InputError` (file, line, what was expected) for a
    missing file, a file without data lines, too few columns or non-numeric values.
    """
    rows: list[list[float]] = []
    line_nos: list[int] = []
    for lineno, text in read_text_lines(path, "a CTFFIND4 output file"):
        if text.startswith("#"):
            continue
        tokens = text.split()
        if len(tokens) < 7:
            raise InputError(
                path,
                f"expected 7 columns ({'; '.join(CTFFIND_COLUMNS)}), found {len(tokens)}: {text!r}",
                line=lineno,
            )
        line_nos.append(lineno)
        rows.append(
            [parse_float(t, path, lineno, CTFFIND_COLUMNS[i]) for i, t in enumerate(tokens[:7])]
        )
    if not rows:
        raise InputError(
            path, "contains no data lines (expected CTFFIND4 results, one line per micrograph)"
        )
    arr = np.asarray(rows, dtype=np.float64)
    cols = [arr[:, i].copy() for i in range(7)]
    return CtfFindTable(
        micrograph=cols[0],
        defocus1_A=cols[1],
        defocus2_A=cols[2],
        astig_angle_deg=cols[3],
        phase_shift_rad=cols[4],
        cross_correlation=cols[5],
        fit_resolution_A=cols[6],
        line=np.asarray(line_nos, dtype=np.int64),
    )
