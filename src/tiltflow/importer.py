"""Import IMOD alignments into a RELION 4 tomogram set (``relion_tomo_import_tomograms``, done right).

The numbers follow RELION 4.0 exactly (SPEC §3); where RELION 4 is wrong tiltflow does it right
and says so here:

- EXCLUDELIST ranges ``a-b`` exclude every view from a to b (RELION 4 drops only a and b).
- A ``.tlt`` that lists only the kept views is paired with the ``.xf`` line of each kept raw view
  (RELION 4 pairs them by position).
- A ``.tlt`` without a final newline is read whole (RELION 4 loses the last angle and writes
  identity matrices).
- ctfplotter files: every version is read, view ranges are honoured, the first view of a
  version-2 file is kept (RELION 4 drops it), files without astigmatism give DefocusV = DefocusU
  and angle 0 (RELION 4 leaves them undefined).
- Missing inputs (fractional dose, order list, culled-file name, FULLIMAGE, THICKNESS) are clear
  errors instead of silent zeros or identity matrices; a missing culled-file name defaults to
  ``<output dir>/culled/<name>.mrc``.
- A SerialEM ``.mdoc`` (column ``_tfMdocFile``) may replace the order list; its per-tilt
  ``ExposureDose`` then gives unequal doses their true pre-exposures.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tiltflow.errors import ConfigError, InputError
from tiltflow.geometry import ImodGeometry, projection_matrices
from tiltflow.imod.comfile import NewstCom, TiltCom, read_newst_com, read_tilt_com
from tiltflow.imod.defocus import CtfPlotterTable, read_ctfplotter
from tiltflow.imod.tlt import read_tlt
from tiltflow.imod.xf import read_xf
from tiltflow.io.ctffind import read_ctffind
from tiltflow.io.guard import refuse_output_file_over_inputs
from tiltflow.io.mdoc import pre_exposure_from_mdoc, read_mdoc_acquisition
from tiltflow.io.mrc import read_header, read_stack, stack_file, write_stack_frames
from tiltflow.io.order_list import pre_exposure_from_order, read_order_list
from tiltflow.io.staging import OutputTransaction
from tiltflow.io.star import WHITESPACE_REASON, refuse_whitespace
from tiltflow.io.tomograms import read_tomogram_set, write_tomogram_set
from tiltflow.model import Tomogram, TomogramSet
from tiltflow.params import params_from_dict
from tiltflow.sheet import cell, read_sheet, root_prefix, tomogram_names

#: relative tolerance between --angpix and a stack header's pixel size before it is an error
PIXEL_SIZE_TOLERANCE = 0.01


log = logging.getLogger(__name__)

@dataclass(frozen=True)
class ImportOptions:
    """Options of ``tiltflow import-imod``; names and defaults are RELION 4's (SPEC §3)."""

    angpix: float | None = None
    root: str = ""
    hand: float = -1.0
    voltage: float = 300.0
    cs: float = 2.7
    q0: float = 0.1
    order_list: str | None = None  # --ol, used when the sheet has no rlnTomoImportOrderList column
    fractional_dose: float | None = None  # --fd, likewise for rlnTomoImportFractionalDose
    newst_com: str = "newst.com"  # --nc, relative to the IMOD directory
    tilt_com: str = "tilt.com"  # --tc
    thickness: float = -1.0  # --thick; < 0: tilt.com THICKNESS
    offset_x: float = 0.0
    offset_y: float = 0.0
    offset_z: float = 0.0
    flip_yz: bool = False
    flip_z: bool = False
    flip_ang: bool = False
    ali: bool = False
    ali_size: bool = False
    #: apply tilt.com XAXISTILT and XTILTFILE (not RELION 4, which ignores them; off by default)
    x_axis_tilt: bool = False
    #: refuse a stack whose header pixel size disagrees with angpix by more than 1 %
    check_pixel_size: bool = True

    def __post_init__(self) -> None:
        if self.angpix is not None and not (np.isfinite(self.angpix) and self.angpix > 0):
            raise ConfigError(f"import: angpix must be a positive number of Å, got {self.angpix!r}")
        if any(c.isspace() for c in self.root):
            raise ConfigError(
                f"import: root {self.root!r} contains whitespace: it prefixes the tilt-series "
                f"paths written into the tomogram set, and {WHITESPACE_REASON}"
            )
        if not 0.0 <= self.q0 <= 1.0:
            raise ConfigError(
                f"import: Q0 (amplitude contrast) must lie in [0, 1], got {self.q0!r}"
            )
        if self.hand not in (-1.0, 1.0):
            raise ConfigError(f"import: hand must be +1 or -1, got {self.hand!r}")
        if not (np.isfinite(self.voltage) and self.voltage > 0):
            raise ConfigError(f"import: voltage must be a positive number of kV, got {self.voltage!r}")
        if not (np.isfinite(self.cs) and self.cs >= 0):
            raise ConfigError(
                f"import: Cs (spherical aberration) must be a number of mm >= 0, got {self.cs!r}"
            )
        if not np.isfinite(self.thickness) or self.thickness == 0:
            raise ConfigError(
                f"import: thick must be > 0 (or negative for tilt.com THICKNESS), got {self.thickness!r}"
            )
        for key in ("offset_x", "offset_y", "offset_z"):
            if not np.isfinite(getattr(self, key)):
                raise ConfigError(f"import: {key} must be a finite number, got {getattr(self, key)!r}")
        if self.fractional_dose is not None and not (
            np.isfinite(self.fractional_dose) and self.fractional_dose >= 0
        ):
            raise ConfigError(
                f"import: fd (dose per tilt) must be >= 0, got {self.fractional_dose!r}"
            )

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | None) -> ImportOptions:
        """Build from a config mapping; unknown keys or wrong kinds of value raise ConfigError."""
        return params_from_dict(cls, d, "import")


@dataclass(frozen=True)
class ImportRow:
    """One row of the RELION 4 import STAR, with --root and CLI fallbacks applied."""

    line: int  # 1-based data row, for messages
    name: str
    imod_dir: Path
    tilt_series: str  # as RELION writes it (root + value, any ":mrc" suffix kept)
    ctfplotter: Path | None
    ctffind: Path | None
    order_list: Path | None
    mdoc: Path | None
    fractional_dose: float
    optics_group: str
    offset: tuple[float, float, float]
    culled_file: str | None


def read_import_rows(path: str | os.PathLike[str], options: ImportOptions) -> list[ImportRow]:
    """Rows of the import sheet (a RELION 4 import STAR or a TSV sheet, read by
    :func:`tiltflow.sheet.read_sheet`), resolved as RELION 4 does (``--root`` prefixes the IMOD
    dir, tilt series and CTF files only; names by :func:`tiltflow.sheet.tomogram_names`)."""
    path = Path(path)
    df = read_sheet(path)
    names = tomogram_names(df, options.root, path)
    if "rlnTomoImportCtfPlotterFile" in df.columns and "rlnTomoImportCtfFindFile" in df.columns:
        raise InputError(
            path,
            "has both _rlnTomoImportCtfPlotterFile and _rlnTomoImportCtfFindFile columns; give one CTF source",
        )
    root = root_prefix(options.root)
    rows = []
    for i in range(len(df)):
        line = i + 1
        imod_dir = cell(df, i, "rlnTomoImportImodDir")
        ts = cell(df, i, "rlnTomoTiltSeriesName")
        if imod_dir is None or ts is None:
            raise InputError(
                path, f"row {line}: empty _rlnTomoImportImodDir or _rlnTomoTiltSeriesName"
            )
        tilt_series = root + ts
        name = names[i]
        ctfplotter = cell(df, i, "rlnTomoImportCtfPlotterFile")
        ctffind = cell(df, i, "rlnTomoImportCtfFindFile")
        if ctfplotter is None and ctffind is None:
            raise InputError(
                path,
                f"row {line} ({name}): no CTF file (_rlnTomoImportCtfPlotterFile or _rlnTomoImportCtfFindFile)",
            )
        if "rlnTomoImportOrderList" in df.columns:
            order = cell(df, i, "rlnTomoImportOrderList")
        else:
            order = options.order_list
        mdoc = cell(df, i, "tfMdocFile")
        if order is None and mdoc is None:
            raise InputError(
                path,
                f"row {line} ({name}): no order list (_rlnTomoImportOrderList or --ol) and no _tfMdocFile: pre-exposure unknown",
            )
        if "rlnTomoImportFractionalDose" in df.columns:
            fd_text = cell(df, i, "rlnTomoImportFractionalDose")
        else:
            fd_text = None if options.fractional_dose is None else str(options.fractional_dose)
        if fd_text is None:
            raise InputError(
                path,
                f"row {line} ({name}): no fractional dose (_rlnTomoImportFractionalDose or --fd)",
            )
        try:
            fd = float(fd_text)
        except ValueError:
            raise InputError(
                path, f"row {line} ({name}): fractional dose {fd_text!r} is not a number"
            ) from None
        if not np.isfinite(fd) or fd < 0:
            raise InputError(
                path,
                f"row {line} ({name}): fractional dose must be a finite number >= 0, got {fd_text}",
            )
        offset = [options.offset_x, options.offset_y, options.offset_z]
        for k, axis in enumerate("XYZ"):
            v = cell(df, i, f"rlnTomoImportOffset{axis}")
            if v is not None:
                try:
                    offset[k] = float(v)
                except ValueError:
                    raise InputError(
                        path,
                        f"row {line} ({name}): _rlnTomoImportOffset{axis} {v!r} is not a number",
                    ) from None
        rows.append(
            ImportRow(
                line=line,
                name=name,
                imod_dir=Path(root + imod_dir),
                tilt_series=tilt_series,
                ctfplotter=None if ctfplotter is None else Path(root + ctfplotter),
                ctffind=None if ctffind is None or ctfplotter is not None else Path(root + ctffind),
                order_list=None if order is None else Path(order),
                mdoc=None if mdoc is None else Path(mdoc),
                fractional_dose=fd,
                optics_group=cell(df, i, "rlnOpticsGroupName") or "opticsGroup1",
                offset=(offset[0], offset[1], offset[2]),
                culled_file=cell(df, i, "rlnTomoImportCulledFile"),
            )
        )
    return rows


def _com_file(imod_dir: Path, com: TiltCom | NewstCom, key: str, default: Path) -> Path:
    """A file named by a .com keyword (prefixed with the IMOD dir, as RELION does) or ``default``."""
    found = com.keywords.last_ci(key)
    if found is not None and found[0].split():
        return imod_dir / found[0].split()[0]
    return default


def _kept_views(exclude: Sequence[int], nz: int, tilt_com: Path) -> np.ndarray:
    bad = [v for v in exclude if not 1 <= v <= nz]
    if bad:
        raise InputError(
            tilt_com, f"excluded view(s) {bad} outside 1..{nz} (the stack has {nz} views)"
        )
    excluded = set(exclude)
    kept = np.array([v for v in range(nz) if v + 1 not in excluded], dtype=np.int64)
    if kept.size == 0:
        raise InputError(
            tilt_com, f"every view of the {nz} is excluded (EXCLUDELIST): nothing to import"
        )
    return kept


#: a constant offset between the .tlt and the .defocus angles larger than this is a wrong file
DEFOCUS_MAX_OFFSET_DEG = 5.0
#: tolerance between a view's .tlt angle and its .defocus angle: the larger of this (deg) and
#: DEFOCUS_STEP_TOL x the tilt step. Views are paired by number; the angles only guard against
#: the .defocus of another series or other numbering (reversed, shifted: >= one step off over
#: many views). IMOD's refined tilt angles scatter by a degree or more about the nominal ones
#: ctfplotter saw, so at a 2° step half a step (1°) refused valid series.
DEFOCUS_MIN_ANGLE_TOL_DEG = 2.0
DEFOCUS_STEP_TOL = 0.75
#: a constant offset above this (deg) between the two is reported (a warning)
DEFOCUS_OFFSET_WARN_DEG = 1.0


def _check_defocus_angles(
    table: CtfPlotterTable, line_idx: np.ndarray, tilt_kept: np.ndarray, path: Path,
    tlt_path: Path | None,
) -> None:
    """Each kept view's .tlt angle must lie within the angle range of its .defocus line, after
    removing a constant offset (<= DEFOCUS_MAX_OFFSET_DEG), within max(2°, 3/4 of the tilt step);
    flag 16 (inverted tilt angles) negates the file's angles."""
    tilt = np.asarray(tilt_kept, dtype=np.float64)
    if tilt.size == 0:
        return
    sign = -1.0 if table.inverted_tilt else 1.0
    a = sign * table.angle_start[line_idx]
    b = sign * table.angle_end[line_idx]
    lo, hi = np.minimum(a, b), np.maximum(a, b)
    u = np.unique(np.round(tilt, 6))
    steps = np.diff(u)
    steps = steps[steps > 1e-6]
    step = float(np.median(steps)) if steps.size else 0.0
    tol = max(DEFOCUS_MIN_ANGLE_TOL_DEG, DEFOCUS_STEP_TOL * step)
    off = float(np.median(tilt - np.clip(tilt, lo, hi))) if tilt.size >= 5 else 0.0
    tlt_name = "the .tlt" if tlt_path is None else str(tlt_path)
    if abs(off) > DEFOCUS_MAX_OFFSET_DEG:
        raise InputError(
            path,
            f"the tilt angles of {tlt_name} differ from this file's by a constant {off:+.2f}° "
            f"(more than {DEFOCUS_MAX_OFFSET_DEG:g}°): is this the .defocus of this tilt series?",
        )
    t = tilt - off
    resid = np.abs(t - np.clip(t, lo, hi))
    worst = int(np.argmax(resid))
    if resid[worst] > tol + 1e-9:
        i = int(line_idx[worst])
        written = (
            f"{table.angle_start[i]:g}°" if table.angle_start[i] == table.angle_end[i]
            else f"{table.angle_start[i]:g}° to {table.angle_end[i]:g}°"
        )
        raise InputError(
            path,
            f"view(s) {table.view_start[i]}-{table.view_end[i]} at {written}"
            f"{' (inverted, flag 16)' if table.inverted_tilt else ''}, but {tlt_name} has "
            f"{tilt[worst]:g}° for that view ({resid[worst]:.2f}° apart"
            f"{f' after removing a constant offset of {off:+.2f}°' if off else ''}; tolerance "
            f"{tol:.2f}°): this .defocus does not belong to this tilt series (or its views are "
            "numbered differently)",
            line=table.line_of(i),
        )
    if abs(off) > DEFOCUS_OFFSET_WARN_DEG:  # smaller offsets are the scatter of refined angles
        log.warning(
            "%s: the .defocus angles are offset by %+.2f° from %s; paired by view number",
            path, -off, tlt_name,
        )


def _positive_defocus(
    values: list[tuple[str, np.ndarray]], lines: list[int | None], path: Path, unit: str
) -> None:
    for what, arr in values:
        bad = np.flatnonzero(~(arr > 0))
        if bad.size:
            k = int(bad[0])
            raise InputError(
                path,
                f"{what} is {arr[k]:g} {unit}, expected > 0 (underfocus is positive; 0 or a "
                "negative value is not a CTF fit)",
                line=lines[k],
            )


def _defocus(
    row: ImportRow, nz: int, kept: np.ndarray, n_tlt: int,
    tilt_kept: np.ndarray | None = None, tlt_path: Path | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Defocus U, V (Å) and angle (deg) of the kept views.

    ctfplotter: its lines may not cover views beyond the stack, every kept view needs a line,
    and (with ``tilt_kept``) each kept view's .tlt angle is checked against its line's angles.
    CTFFIND: one line per raw view, or one per kept view when the .tlt lists only the kept views.
    Defocus must be > 0 for every kept view.
    """
    if row.ctfplotter is not None:
        table = read_ctfplotter(row.ctfplotter)
        beyond = np.flatnonzero(table.view_end > nz)
        if beyond.size:
            i = int(beyond[0])
            raise InputError(
                row.ctfplotter,
                f"covers views up to {int(table.view_end.max())}, but the stack has {nz} views "
                f"(this line: views {table.view_start[i]}-{table.view_end[i]}): is this the "
                ".defocus of this tilt series?",
                line=table.line_of(i),
            )
        d1, d2, ang, _phase = table.per_view(nz)
        d1, d2, ang = d1[kept], d2[kept], ang[kept]
        missing = np.flatnonzero(~np.isfinite(d1))
        if missing.size:
            views = (kept[missing] + 1).tolist()
            raise InputError(
                row.ctfplotter,
                f"no defocus for view(s) {views} (1-based); the stack has {nz} views",
            )
        line_idx = table.line_index_per_view(nz)[kept]
        lines = [table.line_of(int(i)) for i in line_idx]
        checks = [("defocus1", d1)] + ([("defocus2", d2)] if table.has_astigmatism else [])
        _positive_defocus(checks, lines, row.ctfplotter, "nm")
        if tilt_kept is not None:
            _check_defocus_angles(table, line_idx, tilt_kept, row.ctfplotter, tlt_path)
        # RELION 4: U = 10·defocus1, V = 10·defocus2 (nm -> Å), angle copied unchanged
        return (
            10.0 * d1,
            10.0 * np.where(np.isfinite(d2), d2, d1),
            np.where(np.isfinite(ang), ang, 0.0),
        )
    assert row.ctffind is not None
    ctf = read_ctffind(row.ctffind)
    n = ctf.defocus1_A.shape[0]
    if n == nz:
        idx = kept
    elif n == kept.size and n_tlt == kept.size:
        idx = np.arange(n)
    else:
        kept_case = (
            f" or {kept.size} (one per kept view, with a .tlt of the kept views)"
            if kept.size < nz else ""
        )
        raise InputError(
            row.ctffind,
            f"{n} CTFFIND lines, but the stack has {nz} views ({kept.size} kept): expected {nz} "
            f"(one per view){kept_case}; is this the CTFFIND output of this tilt series?",
        )
    lines = [int(ctf.line[i]) if ctf.line.size else None for i in idx]
    d1 = ctf.defocus1_A[idx].astype(np.float64)
    d2 = ctf.defocus2_A[idx].astype(np.float64)
    _positive_defocus([("defocus 1", d1), ("defocus 2", d2)], lines, row.ctffind, "Å")
    return d1, d2, ctf.astig_angle_deg[idx].astype(np.float64)


@dataclass(frozen=True)
class ImodAlignment:
    """Everything read from one tilt series' IMOD directory that fixes its RELION 4 matrices."""

    stack_path: Path
    nz: int
    newst_path: Path
    tilt_path: Path
    xf_path: Path
    tlt_path: Path
    newst: NewstCom
    tiltcom: TiltCom
    xf: np.ndarray  # (nz, 6), raw view order
    tlt: np.ndarray  # as read: nz angles, or one per kept view
    kept: np.ndarray  # 0-based raw views kept (not excluded)
    tilt_kept: np.ndarray  # the .tlt angle of each kept view
    geom: ImodGeometry
    #: IMOD X-axis tilt of each kept view (tilt.com XAXISTILT + .xtilt), or None (RELION 4)
    x_tilt_kept: np.ndarray | None = None


def read_imod_alignment(row: ImportRow, options: ImportOptions) -> ImodAlignment:
    """Read and check the IMOD files of one sheet row (stack header, newst.com, tilt.com, .xf,
    .tlt) into the geometry of SPEC §3; each inconsistency is one InputError naming the file."""
    if options.angpix is None:
        raise ConfigError("import: --angpix (tilt-series pixel size in Å) is required")
    if not row.imod_dir.is_dir():
        raise InputError(row.imod_dir, f"IMOD directory of tomogram {row.name} not found")
    newst_path = row.imod_dir / options.newst_com
    tilt_path = row.imod_dir / options.tilt_com
    newst = read_newst_com(newst_path)
    tiltcom = read_tilt_com(tilt_path)
    stack_path = stack_file(row.tilt_series)
    header = read_header(stack_path)
    nz = int(header.nz)
    raw_px = header.cell_pixel_size
    if options.check_pixel_size and raw_px is not None and not (np.isfinite(raw_px) and raw_px >= 0):
        raise InputError(
            stack_path,
            f"header pixel size {raw_px:g} Å (cell size / MX) is not a pixel size: a broken "
            "header (fix it, e.g. IMOD alterheader -PixelSize; or set check_pixel_size false / "
            "--no_pixel_check to use --angpix alone)",
        )
    if (
        options.check_pixel_size
        and header.pixel_size is not None
        and header.pixel_size not in (0.0, 1.0)
    ):
        if abs(header.pixel_size - options.angpix) > PIXEL_SIZE_TOLERANCE * options.angpix:
            raise InputError(
                stack_path,
                f"header pixel size {header.pixel_size:g} Å differs from --angpix {options.angpix:g} Å "
                "(binned stack? set check_pixel_size false to override)",
            )

    stem = stack_path.name.split(".")[0]
    xf_path = _com_file(row.imod_dir, newst, "TransformFile", row.imod_dir / f"{stem}.xf")
    tlt_path = _com_file(row.imod_dir, tiltcom, "TILTFILE", row.imod_dir / f"{stem}.tlt")
    xf = read_xf(xf_path)
    det = xf[:, 0] * xf[:, 3] - xf[:, 1] * xf[:, 2]
    singular = np.flatnonzero(~(np.abs(det) > 1e-6))
    if singular.size:
        raise InputError(
            xf_path,
            f"transform of view {int(singular[0]) + 1} has a zero determinant ({det[singular[0]]:g}):"
            " not an alignment (expected A11 A12 A21 A22 DX DY with an invertible 2x2 part)",
            line=int(singular[0]) + 1,
        )
    if xf.shape[0] != nz:
        raise InputError(
            xf_path, f"{xf.shape[0]} transforms, but the stack {stack_path} has {nz} views"
        )
    tlt = read_tlt(tlt_path)
    kept = _kept_views(tiltcom.exclude, nz, tilt_path)
    if tlt.shape[0] == nz:
        tilt_kept = tlt[kept]
    elif tlt.shape[0] == kept.size:
        tilt_kept = tlt  # .tlt lists only the kept views: pair each with its raw view's .xf line
    else:
        raise InputError(
            tlt_path,
            f"{tlt.shape[0]} tilt angles, expected {nz} (all views) or {kept.size} (kept views)",
        )

    if tiltcom.full_image is None:
        raise InputError(tilt_path, "no FULLIMAGE keyword: the aligned stack size is unknown")
    if options.ali_size:
        if newst.size is None:
            raise InputError(newst_path, "--ali_size needs SizeToOutputInXandY")
        ali_size = (
            int(newst.size[0] * newst.bin_by_factor),
            int(newst.size[1] * newst.bin_by_factor),
        )
    else:
        ali_size = (int(tiltcom.full_image[0]), int(tiltcom.full_image[1]))
    if options.thickness >= 0:
        thickness = float(options.thickness)
    elif tiltcom.thickness is not None:
        thickness = float(tiltcom.thickness)
    else:
        raise InputError(tilt_path, "no THICKNESS keyword (and no --thick given)")

    geom = ImodGeometry(
        raw_size=(int(header.nx), int(header.ny)),
        ali_size=ali_size,
        thickness=thickness,
        shift=tiltcom.shift,
        offset=row.offset,
        flip_yz=options.flip_yz,
        flip_z=options.flip_z,
        flip_ang=options.flip_ang,
        ali=options.ali,
    )
    return ImodAlignment(
        stack_path=stack_path,
        nz=nz,
        newst_path=newst_path,
        tilt_path=tilt_path,
        xf_path=xf_path,
        tlt_path=tlt_path,
        newst=newst,
        tiltcom=tiltcom,
        xf=xf,
        tlt=tlt,
        kept=kept,
        tilt_kept=tilt_kept,
        geom=geom,
        x_tilt_kept=_x_tilt(tiltcom, row, options, tilt_path, nz, kept),
    )


def _x_tilt(
    tiltcom: TiltCom, row: ImportRow, options: ImportOptions, tilt_path: Path, nz: int,
    kept: np.ndarray,
) -> np.ndarray | None:
    """Per kept view X-axis tilt (degrees) when ``options.x_axis_tilt``; else warn if IMOD has one.

    IMOD's tilt applies tilt.com XAXISTILT plus, with XTILTFILE, a per-view angle from that file
    (one line per raw view, or per kept view). RELION 4 ignores both, so the default does too.
    """
    xtilt_file = tiltcom.keywords.last_ci("XTILTFILE")
    local = tiltcom.keywords.last_ci("LOCALFILE")
    if not options.x_axis_tilt:
        if tiltcom.x_axis_tilt != 0.0 or xtilt_file is not None:
            log.warning(
                "%s: XAXISTILT %g%s ignored, as RELION 4 does (the imported matrices have no "
                "X-axis tilt); import with --xtilt to apply it",
                tilt_path, tiltcom.x_axis_tilt,
                f" and XTILTFILE {xtilt_file[0]}" if xtilt_file is not None else "",
            )
        if local is not None:
            log.warning(
                "%s: LOCALFILE %s (local alignments) ignored: RELION has no local alignments",
                tilt_path, local[0],
            )
        return None
    angles = np.full(nz, tiltcom.x_axis_tilt, dtype=np.float64)
    if xtilt_file is not None and xtilt_file[0].split():
        path = row.imod_dir / xtilt_file[0].split()[0]
        per_view = read_tlt(path)
        if per_view.shape[0] == nz:
            angles = angles + per_view
        elif per_view.shape[0] == kept.size:
            angles[kept] = angles[kept] + per_view
        else:
            raise InputError(
                path, f"{per_view.shape[0]} X-axis tilts, expected {nz} (all views) or "
                f"{kept.size} (kept views)",
            )
    if local is not None:
        log.warning("%s: LOCALFILE %s ignored: RELION has no local alignments", tilt_path, local[0])
    return angles[kept]


def import_tilt_series(
    row: ImportRow,
    options: ImportOptions,
    out_dir: Path,
    culled_dir: Path | None = None,
    txn: OutputTransaction | None = None,
) -> Tomogram:
    """Import one IMOD-aligned tilt series; writes the culled stack when views are excluded.

    With ``txn`` the culled stack is staged in that transaction (committed with the tomogram
    set by :func:`run_import`); without, it is written straight to its final path.
    """
    al = read_imod_alignment(row, options)
    assert options.angpix is not None  # read_imod_alignment refuses a missing --angpix
    stack_path, nz, kept, tilt_kept, tlt, geom = (
        al.stack_path, al.nz, al.kept, al.tilt_kept, al.tlt, al.geom
    )
    proj = projection_matrices(geom, al.xf[kept], tilt_kept, al.x_tilt_kept)
    defocus_u, defocus_v, defocus_angle = _defocus(
        row, nz, kept, tlt.shape[0], tilt_kept, al.tlt_path
    )

    # pre-exposure from the raw (not --flipAng-negated) angles of the kept views
    if row.mdoc is not None:
        acq = read_mdoc_acquisition(row.mdoc)
        pre = pre_exposure_from_mdoc(tilt_kept, acq, row.fractional_dose, row.mdoc)
    else:
        assert row.order_list is not None
        order = read_order_list(row.order_list)
        pre = pre_exposure_from_order(tilt_kept, order, row.fractional_dose, row.order_list)

    tilt_series = row.tilt_series
    if kept.size < nz:
        culled = row.culled_file
        if culled is None:
            base = culled_dir if culled_dir is not None else out_dir / "culled"
            culled = str(base / f"{row.name.replace('/', '_')}.mrc")
        # the culled stack's path goes into the set: refuse it before the stack is written
        refuse_whitespace(
            culled, f"tomogram {row.name}: culled stack (views excluded in {al.tilt_path})"
        )
        refuse_output_file_over_inputs(stack_file(culled), [stack_path], "culled stack")
        stack = read_stack(stack_path, check_finite=False)  # kept frames checked as written
        culled_path = stack_file(culled)
        dest = culled_path if txn is None else txn.stage(culled_path)
        write_stack_frames(dest, stack, kept, options.angpix, source_path=stack_path)
        tilt_series = culled

    return Tomogram(
        name=row.name,
        tilt_series=tilt_series,
        frame_count=int(kept.size),
        size=geom.tomogram_size,
        hand=float(options.hand),
        optics_group=row.optics_group,
        pixel_size=float(options.angpix),
        voltage=float(options.voltage),
        cs=float(options.cs),
        amplitude_contrast=float(options.q0),
        fractional_dose=float(row.fractional_dose),
        proj=proj,
        defocus_u=np.asarray(defocus_u, dtype=np.float64),
        defocus_v=np.asarray(defocus_v, dtype=np.float64),
        defocus_angle=np.asarray(defocus_angle, dtype=np.float64),
        ctf_scale=np.ones(kept.size),
        pre_exposure=np.asarray(pre, dtype=np.float64),
    )


def run_import(
    import_star: str | os.PathLike[str],
    out_star: str | os.PathLike[str],
    options: ImportOptions,
    names: Sequence[str] | None = None,
    culled_dir: str | os.PathLike[str] | None = None,
    append_to: str | os.PathLike[str] | None = None,
    comments: Sequence[str] = (),
) -> TomogramSet:
    """Import the tomograms of ``import_star`` (all, or ``names``) and write ``out_star``.

    With ``append_to`` (RELION's ``--t``) the new tomograms are added to that set (a tomogram of
    the same name is replaced). Nothing is written unless every tomogram imports: the culled
    stacks and ``out_star`` are staged and moved into place together, ``out_star`` last
    (:class:`~tiltflow.io.staging.OutputTransaction`; issue #11 items 2, 8, 14).
    """
    out_star = Path(out_star)
    refuse_output_file_over_inputs(out_star, [import_star, *([append_to] if append_to else [])])
    rows = read_import_rows(import_star, options)
    if names is not None:
        known = {r.name for r in rows}
        absent = [n for n in names if n not in known]
        if absent:
            raise InputError(
                import_star, f"tomogram(s) {absent} not in the sheet (have {sorted(known)})"
            )
        rows = [r for r in rows if r.name in set(names)]
    with OutputTransaction(out_star.parent) as txn:
        tomos = tuple(
            import_tilt_series(
                r, options, out_star.parent, None if culled_dir is None else Path(culled_dir), txn
            )
            for r in rows
        )
        result = TomogramSet(tomos)
        if append_to is not None:
            result = read_tomogram_set(append_to).merged(result)
        write_tomogram_set(txn.stage(out_star, last=True), result, comments=comments)
    return result
