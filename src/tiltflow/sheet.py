"""The tomogram sheet: which tilt series to import, read once, by one set of rules.

A sheet is either

* a RELION 4 import STAR (``*.star``; what ``relion_tomo_import_tomograms --i`` reads): the
  first data block is the table; or
* a tab-separated file (any other suffix) with a header line. Columns are the friendly names
  of :data:`TSV_COLUMNS` (``name imod_dir tilt_series ctfplotter ...``) or the labels they stand
  for (``rlnTomoName``, ``_rlnTomoImportImodDir``, ``tfMdocFile``, ...). Blank lines and lines
  starting with ``#`` are skipped; every cell must be filled.

:func:`read_sheet` returns a table whose columns are RELION labels (no leading underscore)
whatever the format; the importer, the workflow (tomogram names at parse time) and the ``sheet``
rule (TSV -> import STAR) all read the sheet through it.

Names follow RELION 4: ``rlnTomoName`` when given, otherwise ``--root`` + rlnTomoTiltSeriesName
with everything from the last '.' removed, directories included
(``tomograms/TS_01/01.mrc:mrc`` -> ``tomograms/TS_01/01``).
"""

from __future__ import annotations

import csv
import math
import os
import re
from pathlib import Path

import numpy as np

from tiltflow.errors import InputError
from tiltflow.io.star import (
    WHITESPACE_REASON,
    StarBlock,
    read_star_blocks,
    refuse_whitespace,
    write_star,
)

PathLike = str | os.PathLike[str]

#: TSV sheet column -> label of the RELION 4 import STAR (``tfMdocFile`` is tiltflow's own)
TSV_COLUMNS: dict[str, str] = {
    "name": "rlnTomoName",
    "imod_dir": "rlnTomoImportImodDir",
    "tilt_series": "rlnTomoTiltSeriesName",
    "ctfplotter": "rlnTomoImportCtfPlotterFile",
    "ctffind": "rlnTomoImportCtfFindFile",
    "dose": "rlnTomoImportFractionalDose",
    "order_list": "rlnTomoImportOrderList",
    "mdoc": "tfMdocFile",
    "optics_group": "rlnOpticsGroupName",
    "offset_x": "rlnTomoImportOffsetX",
    "offset_y": "rlnTomoImportOffsetY",
    "offset_z": "rlnTomoImportOffsetZ",
    "culled": "rlnTomoImportCulledFile",
}

#: labels a sheet may carry, in the order the import STAR written from a TSV lists them
SHEET_LABELS: tuple[str, ...] = tuple(TSV_COLUMNS.values())

#: labels every sheet must have
REQUIRED_LABELS: tuple[str, ...] = ("rlnTomoImportImodDir", "rlnTomoTiltSeriesName")

#: labels holding numbers (everything else is text: names and paths)
NUMERIC_LABELS: frozenset[str] = frozenset(
    {
        "rlnTomoImportFractionalDose",
        "rlnTomoImportOffsetX",
        "rlnTomoImportOffsetY",
        "rlnTomoImportOffsetZ",
    }
)

_FRIENDLY = {label: column for column, label in TSV_COLUMNS.items()}

#: what a tomogram name given in the sheet (rlnTomoName / name) must look like: it becomes a STAR
#: block name and a file name (the workflow requires the same of every name)
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")


def is_star_sheet(path: PathLike) -> bool:
    """True for a RELION import STAR (suffix ``.star``), False for a tab-separated sheet."""
    return Path(path).suffix.lower() == ".star"


def relion_tomogram_name(tilt_series: str) -> str:
    """RELION 4's default name: the tilt-series path with everything from its last '.' removed."""
    dot = tilt_series.rfind(".")
    return tilt_series if dot < 0 else tilt_series[:dot]


def root_prefix(root: str) -> str:
    """``--root`` as RELION prepends it: empty, or ending in '/'."""
    return root if not root or root.endswith("/") else root + "/"


def cell(df: StarBlock, i: int, label: str) -> str | None:
    """Text of row ``i`` (0-based) under ``label``; None when the column is absent or the cell empty."""
    if label not in df.columns:
        return None
    v = df[label][i]
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return None
    text = str(v).strip()
    return text or None


def _label_of(column: str) -> str | None:
    column = column.strip()
    if column in TSV_COLUMNS:
        return TSV_COLUMNS[column]
    bare = column.lstrip("_")
    return bare if bare in _FRIENDLY else None


def _read_tsv(path: Path) -> StarBlock:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputError(path, f"not a readable tab-separated sheet ({exc})") from None
    lines = [
        (n, ln)
        for n, ln in enumerate(text.splitlines(), 1)
        if ln.strip() and not ln.lstrip().startswith("#")
    ]
    if not lines:
        raise InputError(path, "empty sheet: expected a header line")
    header_line, header = lines[0]
    columns = next(csv.reader([header], delimiter="\t"))
    labels = [_label_of(c) for c in columns]
    unknown = [c for c, lab in zip(columns, labels) if lab is None]
    if unknown:
        hint = ""
        if "\t" not in header:
            sep = "commas" if "," in header else "spaces" if " " in header.strip() else ""
            if sep:
                hint = (
                    f"; the sheet must be tab-separated (one TAB between columns), but this "
                    f"header has {sep} and no TAB"
                )
        raise InputError(
            path,
            f"unknown column(s) {', '.join(repr(c) for c in unknown)}{hint}; known: "
            f"{', '.join(TSV_COLUMNS)} (or the RELION labels {', '.join(SHEET_LABELS)})",
            line=header_line,
        )
    seen: dict[str, str] = {}
    for c, lab in zip(columns, labels):
        assert lab is not None
        if lab in seen:
            raise InputError(
                path, f"columns {seen[lab]!r} and {c!r} both give {lab}", line=header_line
            )
        seen[lab] = c
    data: dict[str, list[object]] = {str(lab): [] for lab in labels}
    for n, line in lines[1:]:
        values = next(csv.reader([line], delimiter="\t"))
        if len(values) != len(columns):
            raise InputError(path, f"{len(values)} values for {len(columns)} columns", line=n)
        for c, lab, v in zip(columns, labels, values):
            assert lab is not None
            v = v.strip()
            if not v:
                raise InputError(path, f"column {c!r} is empty", line=n)
            if lab in NUMERIC_LABELS:
                try:
                    data[lab].append(float(v))
                except ValueError:
                    raise InputError(path, f"column {c!r}: {v!r} is not a number", line=n) from None
            else:
                if lab != "rlnTomoName":  # names: checked (with the name rule) by tomogram_names
                    refuse_whitespace(v, f"column {c!r} value", path, line=n)
                data[lab].append(v)
    return StarBlock(
        "",
        {
            lab: np.array(v, dtype=np.float64 if lab in NUMERIC_LABELS else object)
            for lab, v in data.items()
        },
    )


def read_sheet(path: PathLike) -> StarBlock:
    """The tomogram sheet as a table with RELION labels as columns (one row per tilt series).

    Raises InputError for a missing or malformed file, unknown TSV columns (naming the known
    ones), or a missing rlnTomoImportImodDir / rlnTomoTiltSeriesName column.
    """
    path = Path(path)
    if path.is_dir():
        raise InputError(path, "is a directory, expected a tomogram sheet (.star or .tsv)")
    if not path.is_file():
        raise InputError(path, "file not found (expected a tomogram sheet, .star or .tsv)")
    if is_star_sheet(path):
        text_labels = [lab for lab in SHEET_LABELS if lab not in NUMERIC_LABELS]
        blocks = read_star_blocks(path, parse_as_string=text_labels)
        if not blocks:
            raise InputError(path, "no data block found")
        df = next(iter(blocks.values()))
        for label in df.columns:
            if label in NUMERIC_LABELS or label == "rlnTomoName":  # names: tomogram_names
                continue
            for i, v in enumerate(df[label]):
                if isinstance(v, str):
                    refuse_whitespace(v.strip(), f"row {i + 1}: _{label}", path)
    else:
        df = _read_tsv(path)
    for label in REQUIRED_LABELS:
        if label not in df.columns:
            raise InputError(path, f"missing required column _{label} (TSV: {_FRIENDLY[label]})")
    return df


def tomogram_names(df: StarBlock, root: str = "", path: PathLike | None = None) -> list[str]:
    """Names of the sheet's tomograms in row order: rlnTomoName, or RELION 4's default from
    ``root`` + rlnTomoTiltSeriesName. Raises InputError (naming ``path``) on duplicates, a given
    name that does not match :data:`NAME_RE` or a default name holding whitespace."""
    prefix = root_prefix(root)
    names = []
    for i in range(len(df)):
        name = cell(df, i, "rlnTomoName")
        if name is None:
            ts = cell(df, i, "rlnTomoTiltSeriesName")
            if ts is None:
                raise InputError(path, f"row {i + 1}: no rlnTomoName and no rlnTomoTiltSeriesName")
            name = relion_tomogram_name(prefix + ts)
            refuse_whitespace(name, f"row {i + 1}: tomogram name (from the tilt-series path)", path)
        elif not NAME_RE.match(name):
            why = f"it contains whitespace: {WHITESPACE_REASON}" if any(
                c.isspace() for c in name) else "it becomes a STAR block name and a file name"
            raise InputError(
                path,
                f"row {i + 1}: tomogram name {name!r} does not match {NAME_RE.pattern} ({why})",
            )
        names.append(name)
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise InputError(path, f"duplicate tomogram names {dup}")
    return names


def sheet_names(path: PathLike, root: str = "") -> list[str]:
    """Tomogram names of the sheet at ``path``, in sheet order (see :func:`tomogram_names`)."""
    return tomogram_names(read_sheet(path), root, path)


def write_import_star(df: StarBlock, path: PathLike) -> None:
    """Write a sheet table (from :func:`read_sheet`) as a RELION 4 import STAR.

    Known labels come in :data:`SHEET_LABELS` order, any others after them; numeric labels are
    written as numbers.
    """
    order = [lab for lab in SHEET_LABELS if lab in df.columns]
    order += [lab for lab in df.columns if lab not in SHEET_LABELS]
    columns: dict[str, list[str | float]] = {}
    for lab in order:
        values: list[str | float] = []
        for i in range(len(df)):
            text = cell(df, i, lab)
            if text is None:
                raise InputError(path, f"row {i + 1}: empty value for _{lab}")
            if lab in NUMERIC_LABELS:
                try:
                    values.append(float(text))
                except ValueError:
                    raise InputError(
                        path, f"row {i + 1}: _{lab} {text!r} is not a number"
                    ) from None
            else:
                values.append(text)
        columns[lab] = values
    write_star(path, {"": columns})


__all__ = [
    "NUMERIC_LABELS",
    "REQUIRED_LABELS",
    "SHEET_LABELS",
    "TSV_COLUMNS",
    "cell",
    "is_star_sheet",
    "read_sheet",
    "relion_tomogram_name",
    "root_prefix",
    "sheet_names",
    "tomogram_names",
    "write_import_star",
]
