"""IMOD ``.xf`` transform files: one line ``A11 A12 A21 A22 DX DY`` per view."""

from __future__ import annotations

import re

import numpy as np

from tiltflow.errors import InputError
from tiltflow.io.text import PathLike, parse_floats, read_text_lines, require_nonempty

XF_COLUMNS = ("A11", "A12", "A21", "A22", "DX", "DY")

# IMOD writes .xf lines as Fortran (4f12.7, 2f12.3); a very large shift can fill its field and
# run into the previous number ("   1.234-12345678.901"). Such a line is split on fixed widths.
_FIELD = 12
_NUMBER = re.compile(r"^\s*[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?\s*$")


def _split_fixed(text: str) -> list[str] | None:
    """Split a 72-character Fortran line into six 12-character fields, or None if it is not one."""
    if len(text) != 6 * _FIELD:
        return None
    fields = [text[i * _FIELD : (i + 1) * _FIELD] for i in range(6)]
    if all(_NUMBER.match(f) for f in fields):
        return [f.strip() for f in fields]
    return None


def read_xf(path: PathLike) -> np.ndarray:
    """Read an IMOD ``.xf`` file as an ``(n, 6)`` float64 array ``A11 A12 A21 A22 DX DY``.

    One row per non-blank line (blank lines are ignored), in file order, i.e. raw view order.
    Every line must hold exactly six finite numbers; anything else raises
    :class:`~tiltflow.errors.InputError` naming the file and line.
    """
    rows: list[list[float]] = []
    for lineno, text in read_text_lines(path, "an IMOD .xf file (6 numbers per line)"):
        tokens = text.split()
        if len(tokens) != 6:
            # keep the raw (unstripped) width: re-read the line with its leading spaces
            fixed = _split_fixed(_raw_line(path, lineno))
            if fixed is None:
                raise InputError(
                    path,
                    f"expected 6 numbers (A11 A12 A21 A22 DX DY), found {len(tokens)} field(s): {text!r}",
                    line=lineno,
                )
            tokens = fixed
        rows.append(parse_floats(tokens, path, lineno, XF_COLUMNS))
    require_nonempty(rows, path, "6 numbers per line (A11 A12 A21 A22 DX DY)")
    return np.asarray(rows, dtype=np.float64).reshape(-1, 6)


def _raw_line(path: PathLike, lineno: int) -> str:
    """Line ``lineno`` (1-based) of ``path`` without its line ending (leading spaces kept)."""
    with open(path, encoding="utf-8-sig", newline=None) as fh:
        for i, raw in enumerate(fh, start=1):
            if i == lineno:
                return raw.rstrip()
    return ""
