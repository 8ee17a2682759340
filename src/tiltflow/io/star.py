"""Deterministic STAR writing and checked STAR reading.

Writing is our own so that the same values always give byte-identical files: numbers are
formatted with a fixed number of significant digits, ``-0`` is written as ``0`` and labels keep
the order they are given in. Reading uses the ``starfile`` package and turns its failures into
an :class:`~tiltflow.errors.InputError` naming the file.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import starfile

from tiltflow.errors import InputError
from tiltflow.io.atomic import write_text_atomic

Value = str | int | float | np.integer | np.floating

#: significant digits for floats in STAR files
SIG_DIGITS = 12


def star_path(path: str | os.PathLike[str]) -> str:
    """A path as written into a STAR file: relative to the current working directory (the
    project directory, as RELION does), with ``/`` separators."""
    return Path(os.path.relpath(Path(path).resolve(), Path.cwd().resolve())).as_posix()


def format_float(x: float, digits: int = SIG_DIGITS) -> str:
    """Shortest stable text of a float: ``digits`` significant digits, no ``-0``."""
    x = float(x)
    if not math.isfinite(x):
        raise ValueError(f"refusing to write non-finite value {x!r} to a STAR file")
    text = format(x, f".{digits}g")
    if text in ("-0", "-0.0"):
        text = "0"
    if "e" not in text and "." not in text and "inf" not in text:
        # keep floats recognisable as floats (RELION and starfile read either way)
        text = text
    return text


def format_vector(row: Sequence[float]) -> str:
    """RELION 4's projection-row form: ``[a,b,c,d]`` with no spaces."""
    return "[" + ",".join(format_float(v) for v in row) + "]"


#: why a name or path with whitespace cannot go into a STAR file (shared by every such error)
WHITESPACE_REASON = (
    "STAR files are whitespace-separated, so a name or path written into one may not contain "
    "spaces or tabs (RELION could not read it back either)"
)


def refuse_whitespace(text: str, what: str, path: str | os.PathLike[str] | None = None,
                      line: int | None = None) -> None:
    """Raise InputError when ``text`` (a name or path that goes into a STAR file) holds
    whitespace; ``what`` says what it is (``"output directory"``, ``"tomogram name"``)."""
    if any(c.isspace() for c in str(text)):
        raise InputError(
            path, f"{what} {str(text)!r} contains whitespace: {WHITESPACE_REASON}; choose one without",
            line=line,
        )


class StarValueError(ValueError):
    """A value that cannot be written into a STAR file (empty, or holding whitespace)."""

    def __init__(self, text: str):
        self.text = text
        super().__init__(f"STAR values may not be empty or contain whitespace: {text!r}")


def format_value(v: Value) -> str:
    if isinstance(v, (bool, np.bool_)):
        return "1" if v else "0"
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    if isinstance(v, (float, np.floating)):
        return format_float(float(v))
    text = str(v)
    if text == "" or any(c.isspace() for c in text):
        raise StarValueError(text)
    return text


def loop_block(name: str, columns: Mapping[str, Sequence[Value]]) -> str:
    """Text of one ``data_<name>`` block holding a single loop; columns in the given order."""
    labels = list(columns)
    n = {len(columns[k]) for k in labels}
    if len(n) > 1:
        raise ValueError(f"block {name}: columns have different lengths {sorted(n)}")
    lines = [f"data_{name}", "", "loop_"]
    lines += [f"_{label} #{i + 1}" for i, label in enumerate(labels)]
    cols = []
    for k in labels:
        try:
            cols.append([format_value(v) for v in columns[k]])
        except StarValueError as exc:
            what = "an empty value" if not exc.text else f"{exc.text!r}"
            why = (
                "STAR values may not be empty" if not exc.text
                else f"it contains whitespace: {WHITESPACE_REASON}"
            )
            raise InputError(
                None,
                f"cannot write {what} as _{k} (block data_{name}): {why}; choose names and "
                "paths (output directories included) without whitespace",
            ) from None
    for row in zip(*cols):
        lines.append(" ".join(row))
    return "\n".join(lines) + "\n\n"


def star_text(
    blocks: Mapping[str, Mapping[str, Sequence[Value]]], header: Sequence[str] = ()
) -> str:
    """Text of a whole STAR file: optional comment lines, then one loop block per entry."""
    out = "".join(f"# {h}\n" for h in header)
    if header:
        out += "\n"
    for name, cols in blocks.items():
        out += loop_block(name, cols)
    return out


def write_star(
    path: str | os.PathLike[str],
    blocks: Mapping[str, Mapping[str, Sequence[Value]]],
    header: Sequence[str] = (),
) -> None:
    """Write a STAR file atomically."""
    write_text_atomic(path, star_text(blocks, header))


#: labels that are always text: names and paths (a name ``001`` or ``1e3`` must stay itself)
TEXT_LABELS: tuple[str, ...] = (
    "rlnTomoName",
    "rlnTomoTiltSeriesName",
    "rlnOpticsGroupName",
    "rlnTomoImportImodDir",
    "rlnTomoImportCtfPlotterFile",
    "rlnTomoImportCtfFindFile",
    "rlnTomoImportOrderList",
    "rlnTomoImportCulledFile",
    "rlnTomoFiducialsStarFile",
    "rlnTomoTiltSeriesStarFile",
    "rlnMicrographName",
    "tfTomoName",
)


def read_star(
    path: str | os.PathLike[str], parse_as_string: Sequence[str] = ()
) -> dict[str, pd.DataFrame]:
    """Read every block of a STAR file as a DataFrame (single key/value blocks as one row).

    Labels in :data:`TEXT_LABELS` and ``parse_as_string`` (no leading underscore) stay text, so
    names such as ``001`` or ``1e3`` are not turned into numbers.
    """
    path = Path(path)
    if path.is_dir():
        raise InputError(path, "is a directory, expected a STAR file")
    if not path.is_file():
        raise InputError(path, "file not found (expected a STAR file)")
    try:
        blocks = starfile.read(
            path, always_dict=True, parse_as_string=sorted({*TEXT_LABELS, *parse_as_string})
        )
    except Exception as exc:  # starfile raises assorted errors on malformed files
        found = _row_length_fault(path)
        if found is not None:
            line, message = found
            raise InputError(path, message, line=line) from None
        raise InputError(path, f"not a readable STAR file ({exc})") from None
    out: dict[str, pd.DataFrame] = {}
    for name, block in blocks.items():
        if isinstance(block, dict):
            block = pd.DataFrame([block])
        out[name] = block
    return out


def float_column(df: pd.DataFrame, label: str) -> np.ndarray:
    """Column ``label`` of a table read by :func:`read_star` as floats (NaN where the text is
    not a number, e.g. the ``nan`` of side files)."""
    return pd.to_numeric(df[label], errors="coerce").to_numpy(dtype=float)


def _row_length_fault(path: Path) -> tuple[int, str] | None:
    """The first loop row whose number of values differs from its block's labels, as
    ``(line, message)`` (naming the label of a ``[a, b, c, d]`` vector written with spaces), or
    None. Used to explain a STAR file that starfile could not read."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    block = ""
    labels: list[str] = []
    in_loop = False
    for lineno, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("data_"):
            block, labels, in_loop = line[5:], [], False
            continue
        if line == "loop_":
            labels, in_loop = [], True
            continue
        if line.startswith("_"):
            if in_loop:
                labels.append(line.split()[0][1:])
            continue
        if not in_loop or not labels:
            continue
        tokens = line.split()
        if len(tokens) == len(labels):
            continue
        msg = f"{len(tokens)} values for the {len(labels)} labels of data_{block}"
        for k, tok in enumerate(tokens):
            if tok.startswith("[") and not tok.endswith("]") and k < len(labels):
                end = next((j for j in range(k, len(tokens)) if tokens[j].endswith("]")), k)
                vec = " ".join(tokens[k : end + 1])
                msg += (
                    f": the value of _{labels[k]} is written with spaces ({vec}); write it as "
                    f"{vec.replace(' ', '')}, without spaces, as RELION does"
                )
                break
        else:
            msg += " (a value containing spaces, or a missing value?)"
        return lineno, msg
    return None


def require_columns(
    df: pd.DataFrame, labels: Sequence[str], path: str | os.PathLike[str], block: str
) -> None:
    """Raise an InputError naming the file and block if any label is missing."""
    missing = [lab for lab in labels if lab not in df.columns]
    if missing:
        raise InputError(
            path,
            f"block data_{block} lacks required column(s) {', '.join('_' + m for m in missing)}",
        )


def parse_vector(text: object, path: str | os.PathLike[str], where: str) -> np.ndarray:
    """Parse RELION's ``[a,b,c,d]`` text into 4 floats."""
    s = str(text).strip()
    if not (s.startswith("[") and s.endswith("]")):
        raise InputError(path, f"{where}: expected a vector like [a,b,c,d], got {s!r}")
    try:
        vals = np.array([float(v) for v in s[1:-1].split(",")], dtype=np.float64)
    except ValueError:
        raise InputError(path, f"{where}: non-numeric vector {s!r}") from None
    if vals.shape != (4,) or not np.all(np.isfinite(vals)):
        raise InputError(path, f"{where}: expected 4 finite numbers, got {s!r}")
    return vals
