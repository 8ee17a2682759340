"""Text-file helpers shared by every line-oriented reader (IMOD files, CTFFIND, order lists, mdoc).

Each turns bad input into one :class:`~tiltflow.errors.InputError` naming the file and line.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from tiltflow.errors import InputError

PathLike = str | os.PathLike[str]


def read_text_lines(path: PathLike, what: str = "text file") -> list[tuple[int, str]]:
    """Read a text file as ``(1-based line number, stripped line)`` pairs, blank lines dropped.

    Handles CRLF/CR line endings, a UTF-8 byte-order mark and a missing final newline (the last
    line is kept). Raises :class:`InputError` when the file is missing, is a directory or is not
    text.
    """
    p = Path(path)
    if not p.exists():
        raise InputError(p, f"file not found (expected {what})")
    if p.is_dir():
        raise InputError(p, f"is a directory, expected {what}")
    try:
        with open(p, encoding="utf-8-sig", newline=None) as fh:
            text = fh.read()
    except UnicodeDecodeError as exc:
        raise InputError(
            p, f"is not a text file (expected {what}): {exc.reason} at byte {exc.start}"
        ) from None
    except OSError as exc:
        raise InputError(p, f"cannot be read ({exc.strerror or exc})") from None
    if "\x00" in text:
        raise InputError(p, f"is a binary file, expected {what}")
    out: list[tuple[int, str]] = []
    for i, raw in enumerate(text.splitlines(), start=1):
        s = raw.strip()
        if s:
            out.append((i, s))
    return out


def parse_float(token: str, path: PathLike | None, line: int | None, what: str) -> float:
    """Parse one finite float; raise :class:`InputError` naming ``what`` otherwise."""
    try:
        value = float(token)
    except ValueError:
        hint = ""
        if "," in token and "." not in token:
            try:
                float(token.replace(",", "."))
                hint = f" (a decimal comma? write {token.replace(',', '.')})"
            except ValueError:
                pass
        raise InputError(
            path, f"expected a number for {what}, found {token!r}{hint}", line=line
        ) from None
    if not math.isfinite(value):
        raise InputError(path, f"expected a finite number for {what}, found {token!r}", line=line)
    return value


def parse_int(token: str, path: PathLike | None, line: int | None, what: str) -> int:
    """Parse one integer (``"3"`` or ``"3.0"``); raise :class:`InputError` otherwise."""
    try:
        return int(token)
    except ValueError:
        pass
    value = parse_float(token, path, line, what)
    if value != int(value):
        raise InputError(path, f"expected an integer for {what}, found {token!r}", line=line)
    return int(value)


def parse_floats(
    tokens: Sequence[str], path: PathLike | None, line: int | None, names: Sequence[str]
) -> list[float]:
    """Parse ``tokens`` as finite floats, naming the column (``names[i]``) in any error."""
    return [
        parse_float(t, path, line, names[i] if i < len(names) else f"column {i + 1}")
        for i, t in enumerate(tokens)
    ]


def require_nonempty(rows: Sequence[object], path: PathLike, what: str) -> None:
    """Raise :class:`InputError` if a file held no data lines."""
    if len(rows) == 0:
        raise InputError(path, f"contains no data lines (expected {what})")


def as_float_array(
    values: Sequence[float] | np.ndarray, shape_tail: tuple[int, ...] = ()
) -> np.ndarray:
    """A float64 array; an empty input gets shape ``(0, *shape_tail)``."""
    arr = np.asarray(values, dtype=np.float64)
    if arr.size == 0:
        arr = arr.reshape((0, *shape_tail))
    return arr


# Re-exports (defined after the helpers, which the submodules import from here).
