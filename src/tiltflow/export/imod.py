"""The refined alignment back to IMOD: ``.xf``, ``.tlt``, ``.xtilt`` and tilt.com/newst.com copies
(issue #14 item 2).

RELION 4's matrices of an IMOD alignment are ``P = B · Tilt · O · Off · F`` (SPEC §3) with
``B = T(c_raw) · A^-1 · T(-c_ali)`` from the ``.xf`` line A and ``Tilt`` from the ``.tlt`` angle.
For a refined P with the same IMOD geometry (sizes, thickness, SHIFT, offsets, flags),

``U = T(-c_raw) · P · (O · Off · F)^-1 · T(c_ali.x, 0, c_ali.y) = A^-1 · R(β, α)``

where ``R`` is the tilt by β after IMOD's X-axis tilt α (:func:`tiltflow.geometry.
x_axis_tilt_matrices`). Row 2 of U (the beam direction, ``(-sin β, -cos β cos α, cos β sin α)``)
gives β and α; rows 0-1 give ``A^-1 = U[:2,:3] · R[:2]^T`` (any in-plane rotation, magnification
or skew: an ``.xf`` holds a general 2x2 matrix) and the shifts ``D = -A · U[:2,3]``. Importing the
written files (with ``--xtilt`` when an X-axis tilt was written) gives back P; whatever U holds
that this model cannot (none for align's parameters) is reported as the largest reprojection
change over the tomogram's corners.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray

from tiltflow.errors import InputError
from tiltflow.geometry import ImodGeometry, centre, projection_matrices, translation
from tiltflow.model import TomogramSet

if TYPE_CHECKING:
    from tiltflow.importer import ImodAlignment, ImportOptions
    from tiltflow.io.staging import OutputTransaction

log = logging.getLogger(__name__)

F64 = NDArray[np.float64]


def imod_from_matrices(
    proj: F64, geom: ImodGeometry
) -> tuple[F64, F64, F64, F64]:
    """(``.xf`` lines (n, 6), ``.tlt`` angles (n,), X-axis tilts (n,), change px (n,)) of ``proj``.

    The angles are as written in the files (``--flipAng`` negation undone). ``change`` is the
    largest move of a projected tomogram corner when ``proj`` is rebuilt from the returned values.
    """
    proj = np.asarray(proj, dtype=np.float64).reshape(-1, 4, 4)
    if geom.ali:
        raise ValueError("--ali: the stack is pre-aligned, so there is no .xf to write back")
    c_raw = centre(geom.raw_size)
    c_ali = centre(geom.ali_size)
    o = translation((-1.0, -geom.thickness / 2.0, -1.0))
    off = translation(
        (geom.offset[0] - geom.shift[0], geom.offset[1] - geom.shift[1], geom.offset[2])
    )
    inner = np.linalg.inv(o @ off @ geom.flip_matrix()) @ translation((c_ali[0], 0.0, c_ali[1]))
    u = translation((-c_raw[0], -c_raw[1], 0.0)) @ proj @ inner
    r2 = u[:, 2, :3] / np.linalg.norm(u[:, 2, :3], axis=1, keepdims=True)
    beta = np.arctan2(-r2[:, 0], np.hypot(r2[:, 1], r2[:, 2]))
    alpha = np.arctan2(r2[:, 2], -r2[:, 1])
    cb, sb, ca, sa = np.cos(beta), np.sin(beta), np.cos(alpha), np.sin(alpha)
    rt = np.zeros((proj.shape[0], 2, 3))
    rt[:, 0, 0], rt[:, 0, 1], rt[:, 0, 2] = cb, -sb * ca, sb * sa
    rt[:, 1, 1], rt[:, 1, 2] = sa, ca
    a_inv = u[:, :2, :3] @ np.transpose(rt, (0, 2, 1))
    a = np.linalg.inv(a_inv)
    d = -np.einsum("nij,nj->ni", a, u[:, :2, 3])
    xf = np.stack([a[:, 0, 0], a[:, 0, 1], a[:, 1, 0], a[:, 1, 1], d[:, 0], d[:, 1]], axis=1)
    tilt = np.rad2deg(beta)
    if geom.flip_ang:
        tilt = -tilt
    x_tilt = np.rad2deg(alpha)
    rebuilt = projection_matrices(geom, xf, tilt, x_tilt)
    size = np.asarray(geom.tomogram_size, dtype=np.float64)
    corners = np.array(
        [[x, y, z, 1.0] for x in (1.0, size[0]) for y in (1.0, size[1]) for z in (1.0, size[2])]
    )
    change = np.linalg.norm(
        np.einsum("nij,mj->nmi", rebuilt[:, :2], corners)
        - np.einsum("nij,mj->nmi", proj[:, :2], corners),
        axis=2,
    ).max(axis=1)
    return xf, tilt, x_tilt, change


def xf_text(xf: F64) -> str:
    """``.xf`` text: six free-format numbers per line (IMOD reads them list-directed), with enough
    digits that re-reading reproduces the matrices to 1e-10 and the shifts to 1e-7 px."""
    return "".join(
        f"{r[0]:14.10f}{r[1]:14.10f}{r[2]:14.10f}{r[3]:14.10f}{r[4]:16.7f}{r[5]:16.7f}\n"
        for r in np.asarray(xf, dtype=np.float64).reshape(-1, 6)
    )


def angles_text(angles: F64) -> str:
    """``.tlt`` / ``.xtilt`` text: one angle in degrees per line."""
    return "".join(f"{a:13.8f}\n" for a in np.asarray(angles, dtype=np.float64).reshape(-1))


def edit_comfile(text: str, replace: dict[str, str], add_after_last_keyword: bool = True) -> str:
    """A ``.com`` file's text with keywords set: each ``KEY`` (any letter case) in ``replace`` gets
    the new value on every line it occurs, or one new line after the last keyword line when it
    does not occur. ``$`` command lines, comments and every other line are kept as they were."""
    lines = text.splitlines()
    done: set[str] = set()
    last_kw = -1
    wanted = {k.lower(): (k, v) for k, v in replace.items()}
    for i, line in enumerate(lines):
        s = line.strip()
        if not s or s[0] in "$#":
            continue
        last_kw = i
        key = s.split(None, 1)[0]
        if key.lower() in wanted:
            lines[i] = f"{key}\t{wanted[key.lower()][1]}"
            done.add(key.lower())
    new = [f"{k}\t{v}" for low, (k, v) in wanted.items() if low not in done]
    if new:
        at = last_kw + 1 if (add_after_last_keyword and last_kw >= 0) else len(lines)
        lines[at:at] = new
    return "\n".join(lines) + "\n"


#: largest reprojection change (px) accepted silently
WARN_CHANGE_PX = 1e-3


@dataclass(frozen=True)
class ImodExport:
    """What :func:`export_imod` wrote for one tomogram."""

    name: str
    directory: Path
    xf: Path
    tlt: Path
    xtilt: Path | None
    max_change_px: float


def _stem(al: ImodAlignment) -> str:
    return al.stack_path.name.split(".")[0]


def _rel(target: Path, start: Path) -> str:
    return os.path.relpath(os.path.abspath(target), os.path.abspath(start))


def export_imod(
    tomo_set: TomogramSet,
    sheet: str | os.PathLike[str],
    options: ImportOptions,
    out_dir: str | os.PathLike[str],
    *,
    set_path: str | os.PathLike[str] | None = None,
) -> list[ImodExport]:
    """Write each tomogram's refined alignment as an IMOD directory ``out_dir/<name>/``.

    ``sheet`` and ``options`` are the import sheet and options the set was imported with (they fix
    the IMOD geometry). Each directory holds ``<stem>.xf`` (every raw view; excluded views keep
    their original line), ``<stem>.tlt`` (as many angles as the original), ``<stem>.xtilt`` when
    an X-axis tilt is needed, and copies of newst.com / tilt.com that use them (newst.com's
    InputFile points at the original stack). ``out_dir/import.star`` imports them again:
    ``import-imod --i out_dir/import.star`` with the same options (plus ``--xtilt`` when an
    ``.xtilt`` was written) gives back the set's matrices.
    """
    from tiltflow.importer import read_imod_alignment, read_import_rows
    from tiltflow.io.guard import refuse_output_dir_over_inputs
    from tiltflow.io.star import write_star

    out = Path(out_dir)
    rows = {r.name: r for r in read_import_rows(sheet, options)}
    plans = []
    for tomo in tomo_set:
        row = rows.get(tomo.name)
        if row is None:
            raise InputError(
                sheet, f"tomogram {tomo.name} of the set is not in the sheet (have {sorted(rows)})"
            )
        al = read_imod_alignment(row, options)
        if al.kept.size != tomo.n_tilts:
            raise InputError(
                set_path,
                f"tomogram {tomo.name}: {tomo.n_tilts} tilts in the set, but the IMOD files keep "
                f"{al.kept.size} views: not the alignment this set was imported from",
            )
        if al.geom.ali:
            raise InputError(set_path, "--ali: the stacks are pre-aligned; there is no .xf to write")
        tdir = out / tomo.name
        refuse_output_dir_over_inputs(tdir, set_path or sheet, [al.xf_path, al.tlt_path])
        if os.path.abspath(tdir) == os.path.abspath(row.imod_dir):
            raise InputError(tdir, "the output is the original IMOD directory; choose another --o")
        xf_k, tlt_k, xt_k, change = imod_from_matrices(tomo.proj, al.geom)
        plans.append((tomo, row, al, tdir, xf_k, tlt_k, xt_k, change))

    results: list[ImodExport] = []
    sheet_cols: dict[str, list] = {
        k: [] for k in ("rlnTomoName", "rlnTomoImportImodDir", "rlnTomoTiltSeriesName",
                        "rlnTomoImportFractionalDose", "rlnOpticsGroupName",
                        "rlnTomoImportOffsetX", "rlnTomoImportOffsetY", "rlnTomoImportOffsetZ")
    }
    ctf_col: dict[str, list] = {"rlnTomoImportCtfPlotterFile": [], "rlnTomoImportCtfFindFile": []}
    dose_col: dict[str, list] = {"rlnTomoImportOrderList": [], "tfMdocFile": []}
    from tiltflow.io.staging import OutputTransaction

    with OutputTransaction(out) as txn:
        for plan in plans:
            results.append(_write_one(plan, txn, sheet_cols, ctf_col, dose_col))
        cols: dict[str, list] = dict(sheet_cols)
        for group in (ctf_col, dose_col):
            for label, values in group.items():
                if any(v is not None for v in values):
                    if not all(v is not None for v in values):
                        raise InputError(sheet, f"some tomograms have {label} and some not")
                    cols[label] = values
        write_star(
            txn.stage(out / "import.star", last=True), {"global": cols},
            header=("tiltflow export-imod",),
        )
    return results


def _write_one(
    plan: tuple, txn: OutputTransaction, sheet_cols: dict[str, list],
    ctf_col: dict[str, list], dose_col: dict[str, list],
) -> ImodExport:
    """Stage one tomogram's IMOD files and add its row to the import sheet columns."""
    from tiltflow.io.atomic import write_text_atomic

    tomo, row, al, tdir, xf_k, tlt_k, xt_k, change = plan
    stem = _stem(al)
    xf_all = al.xf.copy()
    xf_all[al.kept] = xf_k
    if al.tlt.shape[0] == al.nz:
        tlt_all = al.tlt.copy()
        tlt_all[al.kept] = tlt_k
    else:
        tlt_all = tlt_k
    need_xtilt = bool(np.max(np.abs(xt_k)) > 1e-7) or al.x_tilt_kept is not None
    xf_path, tlt_path = tdir / f"{stem}.xf", tdir / f"{stem}.tlt"
    write_text_atomic(txn.stage(xf_path), xf_text(xf_all))
    write_text_atomic(txn.stage(tlt_path), angles_text(tlt_all))
    tilt_set = {"TILTFILE": tlt_path.name}
    xtilt_path = None
    if need_xtilt:
        xt_all = np.zeros(al.nz) if al.tlt.shape[0] == al.nz else np.zeros(al.kept.size)
        if al.tlt.shape[0] == al.nz:
            xt_all[al.kept] = xt_k
        else:
            xt_all = xt_k
        xtilt_path = tdir / f"{stem}.xtilt"
        write_text_atomic(txn.stage(xtilt_path), angles_text(xt_all))
        tilt_set.update({"XTILTFILE": xtilt_path.name, "XAXISTILT": "0.0"})
    elif al.tiltcom.x_axis_tilt != 0.0:
        # the set's matrices have no X-axis tilt (RELION 4 import): IMOD must not add one
        tilt_set["XAXISTILT"] = "0.0"
        log.warning(
            "%s: tilt.com XAXISTILT %g set to 0 in the copy, as the tomogram set has no X-axis "
            "tilt (imported without --xtilt)", tomo.name, al.tiltcom.x_axis_tilt,
        )
    newst_text = Path(al.newst_path).read_text(encoding="utf-8-sig")
    newst_set = {"TransformFile": xf_path.name}
    if (hit := al.newst.keywords.last_ci("InputFile")) is not None and hit[0].split():
        newst_set["InputFile"] = _rel(row.imod_dir / hit[0].split()[0], tdir)
    write_text_atomic(txn.stage(tdir / al.newst_path.name), edit_comfile(newst_text, newst_set))
    tilt_text = Path(al.tilt_path).read_text(encoding="utf-8-sig")
    write_text_atomic(txn.stage(tdir / al.tilt_path.name), edit_comfile(tilt_text, tilt_set))
    mx = float(np.max(change)) if change.size else 0.0
    if mx > WARN_CHANGE_PX:
        log.warning("%s: the IMOD files reproduce the matrices to %.3g px", tomo.name, mx)
    sheet_cols["rlnTomoName"].append(tomo.name)
    sheet_cols["rlnTomoImportImodDir"].append(os.fspath(tdir))
    sheet_cols["rlnTomoTiltSeriesName"].append(row.tilt_series)
    sheet_cols["rlnTomoImportFractionalDose"].append(float(row.fractional_dose))
    sheet_cols["rlnOpticsGroupName"].append(row.optics_group)
    for k, axis in enumerate("XYZ"):
        sheet_cols[f"rlnTomoImportOffset{axis}"].append(float(row.offset[k]))
    ctf_col["rlnTomoImportCtfPlotterFile"].append(
        os.fspath(row.ctfplotter) if row.ctfplotter else None
    )
    ctf_col["rlnTomoImportCtfFindFile"].append(os.fspath(row.ctffind) if row.ctffind else None)
    dose_col["rlnTomoImportOrderList"].append(
        os.fspath(row.order_list) if row.order_list else None
    )
    dose_col["tfMdocFile"].append(os.fspath(row.mdoc) if row.mdoc else None)
    return ImodExport(tomo.name, tdir, xf_path, tlt_path, xtilt_path, mx)
