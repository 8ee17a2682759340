"""The files the import of each tomogram reads, listed without importing anything.

The workflow needs them when it is parsed (every file a job reads is one of its inputs, so a
changed ``.xf`` or a truncated stack re-runs exactly that tomogram's jobs). The paths follow
:func:`tiltflow.importer.read_import_rows` and :func:`tiltflow.importer.read_imod_alignment`
(``tests/test_import_files.py`` checks that they agree):

* ``--root`` prefixes the IMOD directory, the tilt series and the CTF file (not the order list
  or the mdoc), as in RELION 4;
* the IMOD directory gives ``newst.com`` and ``tilt.com`` (``ImportOptions.newst_com`` /
  ``tilt_com``), the ``.xf`` named by newst.com ``TransformFile`` and the ``.tlt`` named by
  tilt.com ``TILTFILE`` (defaults ``<stack stem>.xf`` / ``.tlt``), and with ``x_axis_tilt`` the
  tilt.com ``XTILTFILE``;
* the CTF file is the ctfplotter file, else the CTFFIND file;
* the pre-exposure comes from the mdoc when the row has one, else from the order list (the
  sheet column, else ``ImportOptions.order_list``).

Unlike the importer this is lenient: a missing or unreadable ``.com`` file gives the default
names, and rows the importer would refuse (no CTF file, no order list) list what they have; the
import job of that tomogram then fails with the importer's message.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from tiltflow.errors import InputError
from tiltflow.imod.comfile import ComKeywords, read_newst_com, read_tilt_com
from tiltflow.io.mrc import stack_file
from tiltflow.sheet import cell, read_sheet, root_prefix, tomogram_names

PathLike = str | os.PathLike[str]


@dataclass(frozen=True)
class ImportFiles:
    """What the import of one tomogram reads (sheet excluded) and whether it culls views."""

    name: str
    #: the raw tilt stack (``rlnTomoTiltSeriesName`` without a ``:mrc`` suffix)
    stack: Path
    #: newst.com, tilt.com, the .xf, the .tlt (and the X-tilt file with ``x_axis_tilt``)
    imod: tuple[Path, ...]
    #: ctfplotter or CTFFIND file (None when the row names neither)
    ctf: Path | None
    #: the mdoc, else the order list (None when the row names neither)
    acquisition: Path | None
    #: 1-based raw views excluded in tilt.com (empty when it is missing or unreadable); the
    #: import writes a culled stack when there are any
    excluded_views: tuple[int, ...] = ()
    #: the sheet's rlnTomoImportCulledFile, if any
    culled_file: str | None = None

    @property
    def reads(self) -> tuple[Path, ...]:
        """Every file the import of this tomogram reads, in a fixed order."""
        extra = tuple(p for p in (self.ctf, self.acquisition) if p is not None)
        return (self.stack, *self.imod, *extra)


def _named(keywords: ComKeywords, key: str, imod_dir: Path, default: Path) -> Path:
    # as tiltflow.importer: a file named by a .com keyword is relative to the IMOD directory
    found = keywords.last_ci(key)
    if found is not None and found[0].split():
        return imod_dir / found[0].split()[0]
    return default


def imod_files(
    imod_dir: Path,
    stack: Path,
    newst_com: str = "newst.com",
    tilt_com: str = "tilt.com",
    x_axis_tilt: bool = False,
) -> tuple[tuple[Path, ...], tuple[int, ...]]:
    """(newst.com, tilt.com, .xf, .tlt[, .xtilt]) of one IMOD directory and tilt.com's excluded
    views; unreadable .com files give the default names and no exclusions."""
    newst_path = imod_dir / newst_com
    tilt_path = imod_dir / tilt_com
    stem = stack.name.split(".")[0]
    xf = imod_dir / f"{stem}.xf"
    tlt = imod_dir / f"{stem}.tlt"
    xtilt: Path | None = None
    excluded: tuple[int, ...] = ()
    if newst_path.is_file():
        try:
            xf = _named(read_newst_com(newst_path).keywords, "TransformFile", imod_dir, xf)
        except InputError:
            pass
    if tilt_path.is_file():
        try:
            tiltcom = read_tilt_com(tilt_path)
        except InputError:
            pass
        else:
            tlt = _named(tiltcom.keywords, "TILTFILE", imod_dir, tlt)
            excluded = tuple(tiltcom.exclude)
            found = tiltcom.keywords.last_ci("XTILTFILE")
            if x_axis_tilt and found is not None and found[0].split():
                xtilt = imod_dir / found[0].split()[0]
    files = (newst_path, tilt_path, xf, tlt) + ((xtilt,) if xtilt is not None else ())
    return files, excluded


def import_files(
    sheet: PathLike,
    root: str = "",
    newst_com: str = "newst.com",
    tilt_com: str = "tilt.com",
    order_list: str | None = None,
    x_axis_tilt: bool = False,
    names: Sequence[str] | None = None,
) -> dict[str, ImportFiles]:
    """The files each tomogram's import reads, by name in sheet order (all, or ``names``).

    The keyword arguments are the :class:`tiltflow.importer.ImportOptions` fields of the same
    names. Raises InputError only for a sheet that cannot be read at all.
    """
    df = read_sheet(sheet)
    all_names = tomogram_names(df, root, sheet)
    prefix = root_prefix(root)
    wanted = None if names is None else set(names)
    out: dict[str, ImportFiles] = {}
    for i, name in enumerate(all_names):
        if wanted is not None and name not in wanted:
            continue
        imod_dir = Path(prefix + (cell(df, i, "rlnTomoImportImodDir") or ""))
        stack = stack_file(prefix + (cell(df, i, "rlnTomoTiltSeriesName") or ""))
        imod, excluded = imod_files(imod_dir, stack, newst_com, tilt_com, x_axis_tilt)
        ctf_text = cell(df, i, "rlnTomoImportCtfPlotterFile") or cell(
            df, i, "rlnTomoImportCtfFindFile"
        )
        mdoc = cell(df, i, "tfMdocFile")
        if "rlnTomoImportOrderList" in df.columns:
            order = cell(df, i, "rlnTomoImportOrderList")
        else:
            order = order_list
        acquisition = mdoc if mdoc is not None else order
        out[name] = ImportFiles(
            name=name,
            stack=stack,
            imod=imod,
            ctf=None if ctf_text is None else Path(prefix + ctf_text),
            acquisition=None if acquisition is None else Path(acquisition),
            excluded_views=excluded,
            culled_file=cell(df, i, "rlnTomoImportCulledFile"),
        )
    return out


def sheet_rows(sheet: PathLike, root: str = "") -> dict[str, dict[str, str]]:
    """Each tomogram's sheet row as ``{label: text}`` (empty cells left out), by name.

    The workflow passes a tomogram's row to its import job as a parameter, so editing one row
    of the sheet re-runs that tomogram only.
    """
    df = read_sheet(sheet)
    names = tomogram_names(df, root, sheet)
    rows: dict[str, dict[str, str]] = {}
    for i, name in enumerate(names):
        row = {}
        for label in df.columns:
            text = cell(df, i, str(label))
            if text is not None:
                row[str(label)] = text
        rows[name] = row
    return rows


__all__ = ["ImportFiles", "imod_files", "import_files", "sheet_rows"]
