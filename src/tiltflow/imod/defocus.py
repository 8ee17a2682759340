"""ctfplotter ``.defocus`` files, every version.

Formats (IMOD ``ctfphaseflip``/``ctfplotter`` manual; ``ctfutils.cpp:readDefocusFile``):

- **version 1** (no marker) and **version 2**: one line per view range,
  ``view_start view_end angle_start angle_end defocus_nm``; version 2 adds the number ``2`` as a
  6th field on the first line. No astigmatism (defocus2 = defocus1, angle 0), no phase shift.
- **version 3**: the first line is ``flags 0 0. 0. 0 3`` (6 numbers, the last is the version),
  then ``view_start view_end angle_start angle_end defocus1 [defocus2 astig_angle] [phase]
  [cut_on]`` with the optional columns present according to the flags, a sum of
  1 (astigmatism), 2 (astigmatism angle in radians), 4 (phase shift), 8 (phase shift in
  radians), 16 (tilt angles inverted with respect to what the program expects) and
  32 (cut-on frequency, 1/nm).

Views are 1-based and inclusive; one line may cover a range of views. Defocus is in nm,
positive = underfocus. Values are kept as written except for units: the astigmatism angle is
always returned in degrees and the phase shift in radians (IMOD's defaults are degrees for
both). IMOD itself additionally swaps defocus1/defocus2 so that defocus1 is the larger one
(subtracting 90° from the angle) and takes the absolute phase; RELION 4 does neither, and neither
does this reader.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from tiltflow.errors import InputError
from tiltflow.io.text import PathLike, parse_float, parse_int, read_text_lines

FLAG_ASTIGMATISM = 1
FLAG_ASTIG_IN_RADIANS = 2
FLAG_PHASE_SHIFT = 4
FLAG_PHASE_IN_RADIANS = 8
FLAG_INVERTED_TILT = 16
FLAG_CUT_ON = 32
_ALL_FLAGS = 63


@dataclass(frozen=True)
class CtfPlotterTable:
    """The lines of a ctfplotter ``.defocus`` file, one array element per line (file order).

    ``view_start``/``view_end`` are 1-based inclusive raw views (int64); angles in degrees as
    written; defocus in nm; ``astig_angle_deg`` in degrees (0 without astigmatism);
    ``phase_shift_rad`` in radians (0 without phase shift); ``cut_on`` in 1/nm (NaN without).
    ``inverted_tilt`` is flag 16: the angles in the file have the opposite sign of the stack's.
    ``line`` is the 1-based line of the file each element was read from (for messages).
    """

    version: int
    flags: int
    view_start: np.ndarray
    view_end: np.ndarray
    angle_start: np.ndarray
    angle_end: np.ndarray
    defocus1_nm: np.ndarray
    defocus2_nm: np.ndarray
    astig_angle_deg: np.ndarray
    phase_shift_rad: np.ndarray
    cut_on: np.ndarray
    inverted_tilt: bool
    line: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))

    def __len__(self) -> int:
        return int(self.view_start.shape[0])

    @property
    def has_astigmatism(self) -> bool:
        return bool(self.flags & FLAG_ASTIGMATISM)

    @property
    def has_phase_shift(self) -> bool:
        return bool(self.flags & FLAG_PHASE_SHIFT)

    @property
    def has_cut_on(self) -> bool:
        return bool(self.flags & FLAG_CUT_ON)

    def per_view(self, n_views: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Per raw view (0-based index ``v`` = view ``v + 1``): defocus1 (nm), defocus2 (nm),
        astigmatism angle (deg), phase shift (rad).

        Each view takes the values of the line whose range covers it (if ranges overlap, the later
        line wins, as in IMOD); views no line covers are NaN. Lines beyond ``n_views`` are ignored.
        """
        if n_views < 0:
            raise ValueError(f"n_views must be >= 0, got {n_views}")
        out = [np.full(n_views, np.nan, dtype=np.float64) for _ in range(4)]
        cols = (self.defocus1_nm, self.defocus2_nm, self.astig_angle_deg, self.phase_shift_rad)
        for i in range(len(self)):
            lo = int(self.view_start[i]) - 1
            hi = min(int(self.view_end[i]), n_views)
            if lo >= hi:
                continue
            for arr, col in zip(out, cols):
                arr[lo:hi] = col[i]
        return out[0], out[1], out[2], out[3]

    def line_index_per_view(self, n_views: int) -> np.ndarray:
        """Per raw view (0-based), the index of the line whose range covers it (the later line
        when ranges overlap, as :meth:`per_view`), -1 where no line covers it."""
        out = np.full(n_views, -1, dtype=np.int64)
        for i in range(len(self)):
            lo, hi = int(self.view_start[i]) - 1, min(int(self.view_end[i]), n_views)
            if lo < hi:
                out[lo:hi] = i
        return out

    def line_of(self, index: int) -> int | None:
        """1-based file line of element ``index``, or None when unknown."""
        return int(self.line[index]) if 0 <= index < self.line.shape[0] else None

    def cut_on_per_view(self, n_views: int) -> np.ndarray:
        """Cut-on frequency (1/nm) per raw view, NaN where absent or uncovered."""
        out = np.full(n_views, np.nan, dtype=np.float64)
        for i in range(len(self)):
            lo, hi = int(self.view_start[i]) - 1, min(int(self.view_end[i]), n_views)
            if lo < hi:
                out[lo:hi] = self.cut_on[i]
        return out


def _v3_columns(flags: int) -> list[str]:
    names = ["view_start", "view_end", "angle_start", "angle_end", "defocus1 (nm)"]
    if flags & FLAG_ASTIGMATISM:
        names += ["defocus2 (nm)", "astigmatism angle"]
    if flags & FLAG_PHASE_SHIFT:
        names += ["phase shift"]
    if flags & FLAG_CUT_ON:
        names += ["cut-on frequency"]
    return names


def _is_int_token(token: str) -> bool:
    try:
        int(token)
    except ValueError:
        return False
    return True


def read_ctfplotter(path: PathLike) -> CtfPlotterTable:
    """Read a ctfplotter ``.defocus`` file of any version (see the module docstring).

    Raises :class:`~tiltflow.errors.InputError` naming file and line for a missing or empty file,
    a wrong number of columns for the version/flags, non-numeric or non-finite values, unknown
    flag bits or an invalid view range.
    """
    lines = [
        (n, t)
        for n, t in read_text_lines(path, "a ctfplotter .defocus file")
        if not t.startswith("#")
    ]
    if not lines:
        raise InputError(path, "is empty (expected a ctfplotter .defocus file)")

    first_no, first = lines[0]
    tokens = first.split()
    version = 1
    flags = 0
    data = lines
    if len(tokens) == 6 and _is_int_token(tokens[5]) and int(tokens[5]) >= 3:
        version = int(tokens[5])
        if version != 3:
            raise InputError(
                path, f"unsupported .defocus version {version} (expected 1, 2 or 3)", line=first_no
            )
        flags = parse_int(tokens[0], path, first_no, "the version-3 flags")
        if flags < 0 or flags & ~_ALL_FLAGS:
            raise InputError(
                path,
                f"unknown flag bits in {flags} (expected a sum of 1, 2, 4, 8, 16, 32)",
                line=first_no,
            )
        data = lines[1:]
        if not data:
            raise InputError(path, "has a version-3 header but no data lines")
    elif len(tokens) == 6:
        if tokens[5] not in ("2", "2.", "2.0"):
            raise InputError(
                path,
                f"expected 5 columns (view_start view_end angle_start angle_end defocus_nm), a 6th field '2' "
                f"(version 2) or a version-3 header 'flags 0 0. 0. 0 3'; found {first!r}",
                line=first_no,
            )
        version = 2
    elif len(tokens) != 5:
        raise InputError(
            path,
            f"expected 5 columns (view_start view_end angle_start angle_end defocus_nm) or a version-3 header "
            f"'flags 0 0. 0. 0 3', found {len(tokens)} field(s): {first!r}",
            line=first_no,
        )

    if version == 3:
        names = _v3_columns(flags)
    else:
        names = ["view_start", "view_end", "angle_start", "angle_end", "defocus (nm)"]

    vs: list[int] = []
    ve: list[int] = []
    line_nos: list[int] = []
    rows: list[list[float]] = []
    for k, (lineno, text) in enumerate(data):
        toks = text.split()
        if version == 2 and k == 0:
            toks = toks[:5]  # drop the version marker
        if len(toks) != len(names):
            what = f"version {version}" + (f" with flags {flags}" if version == 3 else "")
            raise InputError(
                path,
                f"expected {len(names)} columns for {what} ({' '.join(names)}), found {len(toks)}: {text!r}",
                line=lineno,
            )
        a = parse_int(toks[0], path, lineno, "view_start")
        b = parse_int(toks[1], path, lineno, "view_end")
        if a < 1 or b < a:
            raise InputError(
                path, f"invalid view range {a}-{b} (views are 1-based, start <= end)", line=lineno
            )
        vs.append(a)
        ve.append(b)
        line_nos.append(lineno)
        rows.append([parse_float(t, path, lineno, names[j + 2]) for j, t in enumerate(toks[2:])])

    n = len(rows)
    arr = np.asarray(rows, dtype=np.float64).reshape(n, len(names) - 2)
    angle_start, angle_end, defocus1 = arr[:, 0], arr[:, 1], arr[:, 2]
    col = 3
    if flags & FLAG_ASTIGMATISM:
        defocus2 = arr[:, col].copy()
        astig = arr[:, col + 1].copy()
        if flags & FLAG_ASTIG_IN_RADIANS:
            astig = np.degrees(astig)
        col += 2
    else:
        defocus2 = defocus1.copy()
        astig = np.zeros(n)
    if flags & FLAG_PHASE_SHIFT:
        phase = arr[:, col].copy()
        if not flags & FLAG_PHASE_IN_RADIANS:
            phase = phase * (math.pi / 180.0)
        col += 1
    else:
        phase = np.zeros(n)
    cut_on = arr[:, col].copy() if flags & FLAG_CUT_ON else np.full(n, np.nan)

    return CtfPlotterTable(
        version=version,
        flags=flags,
        view_start=np.asarray(vs, dtype=np.int64),
        view_end=np.asarray(ve, dtype=np.int64),
        angle_start=angle_start.copy(),
        angle_end=angle_end.copy(),
        defocus1_nm=defocus1.copy(),
        defocus2_nm=defocus2,
        astig_angle_deg=astig,
        phase_shift_rad=phase,
        cut_on=cut_on,
        inverted_tilt=bool(flags & FLAG_INVERTED_TILT),
        line=np.asarray(line_nos, dtype=np.int64),
    )
