"""Deterministic STAR writing and checked STAR reading.

Writing is our own so that the same values always give byte-identical files: numbers are
formatted with a fixed number of significant digits, ``-0`` is written as ``0`` and labels keep
the order they are given in. Reading is our own too (:func:`read_star_blocks`: columns as numpy
arrays, typed as the ``starfile`` package types them, which the tests check it against): a step
process then starts without pandas (about 0.3 s of every job), and every fault is one
:class:`~tiltflow.errors.InputError` naming the file and line.
"""

from __future__ import annotations

import math
import os
import re
import shlex
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from tiltflow.errors import InputError
from tiltflow.io.atomic import write_text_atomic

if TYPE_CHECKING:
    import pandas as pd

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


class StarBlock:
    """One data block of a STAR file: labels in file order, each column one numpy array.

    A column is ``int64`` when every value is an integer, ``float64`` when every value is a
    number (``nan`` and ``inf`` included), else an object array of ``str``; labels in
    :data:`TEXT_LABELS` and the reader's ``parse_as_string`` are always text. A key/value block
    (no ``loop_``) is one row. ``block[label]`` is the column, ``block.columns`` the labels,
    ``len(block)`` the number of rows, ``label in block`` whether it has that column.
    """

    __slots__ = ("_cols", "columns", "loop", "name")

    def __init__(self, name: str, columns: Mapping[str, np.ndarray], loop: bool = True):
        cols = {k: np.asarray(v) for k, v in columns.items()}
        n = {v.shape[0] for v in cols.values()}
        if len(n) > 1:
            raise ValueError(f"block {name}: columns have different lengths {sorted(n)}")
        self.name = name
        self.loop = loop
        self._cols = cols
        self.columns: tuple[str, ...] = tuple(cols)

    def __len__(self) -> int:
        return int(next(iter(self._cols.values())).shape[0]) if self._cols else 0

    def __contains__(self, label: object) -> bool:
        return label in self._cols

    def __getitem__(self, label: str) -> np.ndarray:
        return self._cols[label]

    def __repr__(self) -> str:
        return f"StarBlock({self.name!r}, {len(self)} rows, columns {list(self.columns)})"

    def row(self, i: int) -> dict[str, Any]:
        """Row ``i`` (0-based) as ``{label: value}`` (numpy scalars, or ``str``)."""
        return {k: v[i] for k, v in self._cols.items()}

    def equals(self, other: object) -> bool:
        """Same labels in the same order and the same values (NaN equal to NaN)."""
        if not isinstance(other, StarBlock) or other.columns != self.columns:
            return False
        for k in self.columns:
            a, b = self[k], other[k]
            if a.shape != b.shape or (a.dtype.kind == "O") != (b.dtype.kind == "O"):
                return False
            if a.dtype.kind == "O":
                if a.tolist() != b.tolist():
                    return False
            elif not np.array_equal(a, b, equal_nan=a.dtype.kind == "f" or b.dtype.kind == "f"):
                return False
        return True

    def floats(self, label: str) -> np.ndarray:
        """Column ``label`` as floats: NaN where the text is not a number (the ``nan`` of side
        files, or a text column)."""
        v = self._cols[label]
        if v.dtype.kind in "iuf":
            return v.astype(np.float64)
        out = np.full(v.shape[0], np.nan)
        for i, text in enumerate(v):
            try:
                out[i] = float(text)
            except (TypeError, ValueError):
                pass
        return out

    def to_frame(self) -> pd.DataFrame:
        """The block as a pandas DataFrame (pandas is imported here, on first use only)."""
        import pandas as pd

        return pd.DataFrame({k: v for k, v in self._cols.items()}, columns=list(self.columns))


#: how a number is written in a STAR file (what starfile, through pandas, reads as one): decimal
#: integers and floats, nan / NaN, inf / Infinity. Python's int() and float() also take "1_000",
#: "NAN" or Arabic-Indic digits, which are text to RELION and starfile
_NUMBER = re.compile(
    r"[+-]?(?:(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?|(?i:inf(?:inity)?))|nan|NaN"
)
_PLAIN_NUMBER_CHARS = frozenset("0123456789+-.eE")


def _all_numbers(tokens: Sequence[str]) -> bool:
    chars = set("".join(tokens))
    if chars <= _PLAIN_NUMBER_CHARS:  # the common case: digits, signs, points, exponents only
        return True
    return all(_NUMBER.fullmatch(t) for t in tokens)


def _typed_column(tokens: Sequence[str], as_text: bool) -> np.ndarray:
    """Values of one column: int64 if all are integers, else float64 if all are numbers, else
    text (always text when ``as_text``)."""
    if not tokens:
        return np.zeros(0) if not as_text else np.zeros(0, dtype=object)
    if not as_text and _all_numbers(tokens):
        raw = np.array(tokens)
        for kind in (np.int64, np.float64):
            try:
                return raw.astype(kind)
            except (ValueError, OverflowError):
                continue
    return np.array(list(tokens), dtype=object)


def _tokens(line: str, path: Path, lineno: int) -> list[str]:
    """Whitespace-separated values of one line; quoted values (``"a b"``, ``'a b'``) are one
    value; a token starting with ``#`` starts a comment."""
    if '"' in line or "'" in line:
        try:
            toks = shlex.split(line, comments=False, posix=True)
        except ValueError as exc:
            raise InputError(path, f"unbalanced quotes ({exc})", line=lineno) from None
    else:
        toks = line.split()
    for k, tok in enumerate(toks):
        if tok.startswith("#"):
            return toks[:k]
    return toks


def _length_message(tokens: Sequence[str], labels: Sequence[str], block: str) -> str:
    """Why a loop row with the wrong number of values is wrong (naming the label of a
    ``[a, b, c, d]`` vector written with spaces)."""
    msg = f"{len(tokens)} values for the {len(labels)} labels of data_{block}"
    for k, tok in enumerate(tokens):
        if tok.startswith("[") and not tok.endswith("]") and k < len(labels):
            end = next((j for j in range(k, len(tokens)) if tokens[j].endswith("]")), k)
            vec = " ".join(tokens[k : end + 1])
            return msg + (
                f": the value of _{labels[k]} is written with spaces ({vec}); write it as "
                f"{vec.replace(' ', '')}, without spaces, as RELION does"
            )
    return msg + " (a value containing spaces, or a missing value?)"


def parse_star(
    text: str, path: str | os.PathLike[str], parse_as_string: Sequence[str] = ()
) -> dict[str, StarBlock]:
    """Every block of STAR ``text`` (read from ``path``, named in errors), in file order.

    Raises :class:`~tiltflow.errors.InputError` naming the file and line for a loop row with the
    wrong number of values, a key/value line without exactly one value, text outside any block
    and a block name used twice.
    """
    p = Path(path)
    as_text = {*TEXT_LABELS, *parse_as_string}
    out: dict[str, StarBlock] = {}
    name: str | None = None
    labels: list[str] = []
    rows: list[list[str]] = []
    pairs: dict[str, np.ndarray] = {}
    state = "none"  # none | block (after data_) | header (after loop_) | rows | pairs

    def close() -> None:
        if name is None:
            return
        if state in ("header", "rows"):
            cols = {
                lab: _typed_column([r[j] for r in rows], lab in as_text)
                for j, lab in enumerate(labels)
            }
            out[name] = StarBlock(name, cols, loop=True)
        else:
            out[name] = StarBlock(name, pairs, loop=False)

    for lineno, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("data_"):
            close()
            name = line[5:].split()[0] if len(line) > 5 else ""
            if name in out:
                raise InputError(p, f"block data_{name} appears twice", line=lineno)
            labels, rows, pairs, state = [], [], {}, "block"
            continue
        if name is None:
            raise InputError(p, f"text before the first data_ block: {line[:40]!r}", line=lineno)
        if line.startswith("loop_"):
            if state in ("header", "rows", "pairs"):
                raise InputError(
                    p, f"a second loop_ in data_{name} (one table per block)", line=lineno
                )
            state = "header"
            continue
        if line.startswith("_") and state in ("header", "block", "pairs"):
            if state == "header":
                labels.append(line.split()[0][1:])
                continue
            toks = _tokens(line, p, lineno)
            if len(toks) != 2:
                raise InputError(
                    p,
                    f"data_{name}: expected one value after {toks[0]}, got {len(toks) - 1}",
                    line=lineno,
                )
            lab = toks[0][1:]
            pairs[lab] = _typed_column([toks[1]], lab in as_text)
            state = "pairs"
            continue
        if state in ("header", "rows"):
            if not labels:
                raise InputError(p, f"data_{name}: loop_ values before any label", line=lineno)
            toks = _tokens(line, p, lineno)
            if not toks:
                continue
            if len(toks) != len(labels):
                raise InputError(p, _length_message(toks, labels, name), line=lineno)
            rows.append(toks)
            state = "rows"
            continue
        raise InputError(
            p, f"data_{name}: unexpected line {line[:40]!r} (expected _label value or loop_)",
            line=lineno,
        )
    close()
    return out


def read_star_blocks(
    path: str | os.PathLike[str], parse_as_string: Sequence[str] = ()
) -> dict[str, StarBlock]:
    """Read every block of a STAR file as a :class:`StarBlock` (see there for the column types).

    Labels in :data:`TEXT_LABELS` and ``parse_as_string`` (no leading underscore) stay text, so
    names such as ``001`` or ``1e3`` are not turned into numbers. Any fault is one
    :class:`~tiltflow.errors.InputError` naming the file (and the line where there is one).
    """
    path = Path(path)
    if path.is_dir():
        raise InputError(path, "is a directory, expected a STAR file")
    if not path.is_file():
        raise InputError(path, "file not found (expected a STAR file)")
    try:
        text = path.read_text(encoding="utf-8-sig")  # a byte-order mark is not text
    except UnicodeDecodeError as exc:
        raise InputError(path, f"not a readable STAR file (not UTF-8 text: {exc})") from None
    except OSError as exc:
        raise InputError(path, f"cannot be read ({exc.strerror or exc})") from None
    return parse_star(text, path, parse_as_string)


def read_star(
    path: str | os.PathLike[str], parse_as_string: Sequence[str] = ()
) -> dict[str, pd.DataFrame]:
    """:func:`read_star_blocks` as pandas DataFrames (key/value blocks as one row), for the
    reports and figures; the steps use the blocks directly and do not load pandas."""
    return {k: b.to_frame() for k, b in read_star_blocks(path, parse_as_string).items()}


def float_column(df: pd.DataFrame | StarBlock, label: str) -> np.ndarray:
    """Column ``label`` of a table read by :func:`read_star` / :func:`read_star_blocks` as
    floats (NaN where the text is not a number, e.g. the ``nan`` of side files)."""
    if isinstance(df, StarBlock):
        return df.floats(label)
    import pandas as pd

    return pd.to_numeric(df[label], errors="coerce").to_numpy(dtype=float)


def require_columns(
    df: pd.DataFrame | StarBlock, labels: Sequence[str], path: str | os.PathLike[str],
    block: str,
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
