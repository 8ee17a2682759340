"""RELION 5 tomogram sets from tiltflow's RELION 4 set (issue #14 item 1).

RELION 5 stores per-tilt angles instead of matrices and builds (``Tomogram::setProjectionMatrix``)

``P5 = T(shift / px) · T(int(W/2), int(H/2), 0) · Rz(ZRot) · Ry(YTilt) · Rx(XTilt)
· T(-int(SizeX/2), -int(SizeY/2), -int(SizeZ/2))``

with W, H the tilt-image size, right-handed rotations in degrees and the shift in Å.

**The two worlds.** Both RELIONs reconstruct a voxel by projecting its world position with these
matrices; RELION 4.0 puts voxel ``i`` at world ``i + 1`` (``relion_tomo_reconstruct_tomogram``
``--x0/--y0/--z0`` default 1), RELION 4.1 and 5 at world ``i`` (default 0, "zero-origins from
relion-4.1 onwards"). The same physical point (the same voxel of the reconstruction) therefore has
``w5 = w4 - 1`` and must project to the same image position:

``P5 = P4 · T(1, 1, 1)``.

The integer centring of the RELION 5 formula (``int(W/2)`` instead of ``(W-1)/2``) is absorbed in
the written shifts, so it causes no error. Fiducial positions are world coordinates (RELION 5 reads
``rlnOriginX/Y/ZAngst / px`` and projects them with P5), so they are rewritten in RELION 5's world.

**What RELION 5 cannot represent.** Its matrices are a rotation plus a 2D shift. A per-tilt
magnification or skew from ``align`` (rows 0 and 1 of P not orthonormal) is replaced by the nearest
rotation (polar decomposition), with the shift chosen so the tomogram centre projects exactly; the
largest resulting reprojection change over the tomogram's corners is reported. A left-handed set
(``--flipYZ`` without ``--flipZ``: det < 0) has no rotation at all: it is refused unless the user
asks for the z-mirrored world (``mirror_z``), which maps RELION 4 voxel ``z`` to ``SizeZ - 1 - z``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import ArrayLike, NDArray

from tiltflow.errors import InputError
from tiltflow.geometry import translation
from tiltflow.model import Tomogram, TomogramSet

F64 = NDArray[np.float64]
log = logging.getLogger(__name__)

#: RELION 4.0 world = RELION 5 world + 1 (voxel index + 1 against voxel index)
R4_TO_R5 = translation((1.0, 1.0, 1.0))

#: reprojection change (px) above which the conversion warns
WARN_CHANGE_PX = 0.05

STAR_VERSION_LINE = "version 50001"


def rot_x(deg: ArrayLike) -> F64:
    """Right-handed rotations about x, (n, 3, 3), angles in degrees."""
    a = np.deg2rad(np.atleast_1d(np.asarray(deg, dtype=np.float64)))
    c, s = np.cos(a), np.sin(a)
    r = np.zeros((a.size, 3, 3))
    r[:, 0, 0] = 1.0
    r[:, 1, 1], r[:, 1, 2], r[:, 2, 1], r[:, 2, 2] = c, -s, s, c
    return r


def rot_y(deg: ArrayLike) -> F64:
    """Right-handed rotations about y, (n, 3, 3), angles in degrees."""
    a = np.deg2rad(np.atleast_1d(np.asarray(deg, dtype=np.float64)))
    c, s = np.cos(a), np.sin(a)
    r = np.zeros((a.size, 3, 3))
    r[:, 1, 1] = 1.0
    r[:, 0, 0], r[:, 0, 2], r[:, 2, 0], r[:, 2, 2] = c, s, -s, c
    return r


def rot_z(deg: ArrayLike) -> F64:
    """Right-handed rotations about z, (n, 3, 3), angles in degrees."""
    a = np.deg2rad(np.atleast_1d(np.asarray(deg, dtype=np.float64)))
    c, s = np.cos(a), np.sin(a)
    r = np.zeros((a.size, 3, 3))
    r[:, 2, 2] = 1.0
    r[:, 0, 0], r[:, 0, 1], r[:, 1, 0], r[:, 1, 1] = c, -s, s, c
    return r


def _int_half(v: Sequence[int] | ArrayLike) -> F64:
    """``int(v / 2)`` of RELION 5 (C++ integer division, toward zero)."""
    return np.trunc(np.asarray(v, dtype=np.float64) / 2.0)


def relion5_matrices(
    xtilt: ArrayLike,
    ytilt: ArrayLike,
    zrot: ArrayLike,
    xshift_angst: ArrayLike,
    yshift_angst: ArrayLike,
    pixel_size: float,
    image_size: tuple[int, int],
    tomo_size: tuple[int, int, int],
) -> F64:
    """RELION 5's projection matrices from its per-tilt labels (``setProjectionMatrix``) -> (n, 4, 4)."""
    r = rot_z(zrot) @ rot_y(ytilt) @ rot_x(xtilt)
    n = r.shape[0]
    p = np.tile(np.eye(4), (n, 1, 1))
    p[:, :3, :3] = r
    c_tomo = _int_half(tomo_size)
    c_img = np.array([*_int_half(image_size), 0.0])
    shift = np.zeros((n, 3))
    shift[:, 0] = np.asarray(xshift_angst, dtype=np.float64) / pixel_size
    shift[:, 1] = np.asarray(yshift_angst, dtype=np.float64) / pixel_size
    p[:, :3, 3] = shift + c_img - r @ c_tomo
    return p


def euler_zyx(r: ArrayLike) -> tuple[F64, F64, F64]:
    """(XTilt, YTilt, ZRot) in degrees with ``R = Rz(ZRot) · Ry(YTilt) · Rx(XTilt)`` (n, 3, 3).

    The same branches as RELION 5's ``getProjectionAnglesFromMatrix`` (gimbal lock at
    YTilt = ±90°: XTilt = 0).
    """
    r = np.asarray(r, dtype=np.float64).reshape(-1, 3, 3)
    r20 = np.clip(r[:, 2, 0], -1.0, 1.0)
    regular = np.abs(r20) < 1.0 - 1e-12
    tx = np.where(regular, np.arctan2(r[:, 2, 1], r[:, 2, 2]), 0.0)
    ty = np.arcsin(-r20)
    tz = np.where(
        regular,
        np.arctan2(r[:, 1, 0], r[:, 0, 0]),
        np.where(r20 <= -1.0 + 1e-12, -np.arctan2(-r[:, 1, 2], r[:, 1, 1]),
                 np.arctan2(-r[:, 1, 2], r[:, 1, 1])),
    )
    return np.rad2deg(tx), np.rad2deg(ty), np.rad2deg(tz)


def nearest_rotation(m: ArrayLike) -> F64:
    """The rotation nearest to each 3x3 matrix (polar decomposition, Frobenius norm) (n, 3, 3).

    Needs det > 0 (a mirror has no nearest rotation that keeps its meaning).
    """
    m = np.asarray(m, dtype=np.float64).reshape(-1, 3, 3)
    u, _s, vt = np.linalg.svd(m)
    return u @ vt


@dataclass(frozen=True)
class Relion5Tilts:
    """RELION 5's per-tilt geometry of one tomogram, and what the conversion changed."""

    xtilt: F64  # degrees
    ytilt: F64
    zrot: F64
    xshift_angst: F64
    yshift_angst: F64
    #: largest change in the projected image position of any tomogram corner, per tilt (px)
    change_px: F64
    mirrored: bool

    @property
    def max_change_px(self) -> float:
        return float(np.max(self.change_px)) if self.change_px.size else 0.0


def mirror_z_matrix(size_z: int) -> F64:
    """World map of the z-mirror: RELION 5 voxel z <-> ``size_z - 1 - z``."""
    m = np.eye(4)
    m[2, 2] = -1.0
    m[2, 3] = float(size_z - 1)
    return m


def _corners(size: tuple[int, int, int]) -> F64:
    """The 8 corner voxels of a tomogram in RELION 5 world (0-based voxel index) (8, 4)."""
    hi = np.asarray(size, dtype=np.float64) - 1.0
    c = np.array([[x, y, z] for x in (0, 1) for y in (0, 1) for z in (0, 1)], dtype=np.float64)
    return np.concatenate([c * hi, np.ones((8, 1))], axis=1)


def relion5_tilts(
    tomo: Tomogram,
    image_size: tuple[int, int],
    mirror_z: bool = False,
    path: str | os.PathLike[str] | None = None,
) -> Relion5Tilts:
    """RELION 5 angles and shifts that reproduce ``tomo``'s RELION 4 matrices (see module doc)."""
    p5 = tomo.proj @ R4_TO_R5
    m = p5[:, :3, :3]
    det = np.linalg.det(m)
    mirrored = bool(np.any(det < 0))
    if mirrored:
        if not np.all(det < 0):
            raise InputError(
                path, f"tomogram {tomo.name}: some tilts' matrices are mirrored, some not"
            )
        if not mirror_z:
            raise InputError(
                path,
                f"tomogram {tomo.name}: the matrices are left-handed (imported with --flipYZ "
                "but not --flipZ); RELION 5's angles cannot represent a mirror. Re-import with "
                "--flipZ, or export the z-mirrored world (--mirror_z: RELION 4 voxel z becomes "
                "SizeZ-1-z, fiducials and particles included)",
            )
        p5 = p5 @ mirror_z_matrix(tomo.size[2])
        m = p5[:, :3, :3]
    r = nearest_rotation(m)
    # shift chosen so the tomogram centre projects exactly as before
    centre = (np.asarray(tomo.size, dtype=np.float64) - 1.0) / 2.0
    t = p5[:, :3, 3] + np.einsum("nij,j->ni", m - r, centre)
    c_tomo = _int_half(tomo.size)
    c_img = np.array([*_int_half(image_size), 0.0])
    shift_px = t - c_img + np.einsum("nij,j->ni", r, c_tomo)
    xt, yt, zr = (_snap(a) for a in euler_zyx(r))
    out = Relion5Tilts(
        xtilt=xt,
        ytilt=yt,
        zrot=zr,
        xshift_angst=shift_px[:, 0] * tomo.pixel_size,
        yshift_angst=shift_px[:, 1] * tomo.pixel_size,
        change_px=np.zeros(tomo.n_tilts),
        mirrored=mirrored,
    )
    rebuilt = relion5_matrices(
        out.xtilt, out.ytilt, out.zrot, out.xshift_angst, out.yshift_angst,
        tomo.pixel_size, image_size, tomo.size,
    )
    corners = _corners(tomo.size)
    before = np.einsum("nij,mj->nmi", p5[:, :2, :], corners)
    after = np.einsum("nij,mj->nmi", rebuilt[:, :2, :], corners)
    change = np.linalg.norm(after - before, axis=2).max(axis=1)
    return Relion5Tilts(**{**out.__dict__, "change_px": change})


def _snap(a: F64) -> F64:
    """Round-off (|a| < 1e-9 degrees) written as 0, so exact angles read as exact."""
    return np.where(np.abs(a) < 1e-9, 0.0, a)


def world_r4_to_r5(xyz_r4: ArrayLike, size_z: int, mirror_z: bool = False) -> F64:
    """RELION 4 world positions (m, 3) -> RELION 5 world (the same voxels)."""
    xyz = np.asarray(xyz_r4, dtype=np.float64).reshape(-1, 3) - 1.0
    if mirror_z:
        xyz = xyz.copy()
        xyz[:, 2] = (size_z - 1) - xyz[:, 2]
    return xyz


def world_r5_to_r4(xyz_r5: ArrayLike, size_z: int, mirror_z: bool = False) -> F64:
    """Inverse of :func:`world_r4_to_r5`."""
    xyz = np.asarray(xyz_r5, dtype=np.float64).reshape(-1, 3).copy()
    if mirror_z:
        xyz[:, 2] = (size_z - 1) - xyz[:, 2]
    return xyz + 1.0


#: RELION 5 global labels written for every tomogram, in order
GLOBAL_LABELS_R5: tuple[str, ...] = (
    "rlnTomoName",
    "rlnTomoTiltSeriesStarFile",
    "rlnTomoTiltSeriesName",
    "rlnTomoFrameCount",
    "rlnVoltage",
    "rlnSphericalAberration",
    "rlnAmplitudeContrast",
    "rlnMicrographOriginalPixelSize",
    "rlnTomoHand",
    "rlnOpticsGroupName",
    "rlnTomoTiltSeriesPixelSize",
    "rlnTomoSizeX",
    "rlnTomoSizeY",
    "rlnTomoSizeZ",
    "rlnTomoImportFractionalDose",
)

#: RELION 5 per-tilt labels, in order
TILT_LABELS_R5: tuple[str, ...] = (
    "rlnMicrographName",
    "rlnTomoNominalStageTiltAngle",
    "rlnTomoNominalTiltAxisAngle",
    "rlnMicrographPreExposure",
    "rlnDefocusU",
    "rlnDefocusV",
    "rlnDefocusAngle",
    "rlnCtfScalefactor",
    "rlnTomoXTilt",
    "rlnTomoYTilt",
    "rlnTomoZRot",
    "rlnTomoXShiftAngst",
    "rlnTomoYShiftAngst",
)

#: the side file (tiltflow labels) with what the conversion changed per tomogram
CONVERSION_FILE = "relion5_conversion.star"


@dataclass(frozen=True)
class Relion5Export:
    """What :func:`export_relion5` wrote."""

    tomograms_star: Path
    tilt_series_stars: dict[str, Path]
    fiducials_stars: dict[str, Path]
    tilts: dict[str, Relion5Tilts]
    conversion_star: Path


def _image_size(tomo: Tomogram, path: str | os.PathLike[str] | None) -> tuple[int, int]:
    from tiltflow.io.mrc import read_header, stack_file

    header = read_header(stack_file(tomo.tilt_series))
    if header.nz != tomo.frame_count:
        raise InputError(
            path,
            f"tomogram {tomo.name}: stack {tomo.tilt_series} has {header.nz} images but the set "
            f"says rlnTomoFrameCount {tomo.frame_count}",
        )
    return (header.nx, header.ny)


def _micrograph_name(tilt_series: str, index0: int) -> str:
    """RELION's ``n@stack`` (1-based) name of one image of a stack."""
    return f"{index0 + 1}@{tilt_series}"


def export_relion5(
    tomo_set: TomogramSet,
    out_dir: str | os.PathLike[str],
    *,
    set_path: str | os.PathLike[str] | None = None,
    mirror_z: bool = False,
    image_sizes: dict[str, tuple[int, int]] | None = None,
) -> Relion5Export:
    """Write ``out_dir/tomograms.star`` (``# version 50001``), ``out_dir/tilt_series/<name>.star``
    and, where the set has fiducials, ``out_dir/fiducials/fiducials_<name>.star`` in RELION 5's
    world. Paths inside are written as ``out_dir`` is given (relative to the project directory when
    it is relative, as RELION expects). Everything is computed before the first file is written.

    ``image_sizes`` (name -> (W, H)) skips reading the stack headers (tests).
    """
    from tiltflow.fiducials.io import read_fiducials, write_fiducials
    from tiltflow.io.guard import refuse_output_file_over_inputs, tomogram_set_inputs
    from tiltflow.io.star import write_star

    out = Path(out_dir)
    star_out = out / "tomograms.star"
    inputs = [*tomogram_set_inputs(tomo_set)]
    if set_path is not None:
        inputs.append(os.fspath(set_path))
    for target in [star_out, *(out / "fiducials" / f"fiducials_{t.name}.star" for t in tomo_set)]:
        refuse_output_file_over_inputs(target, inputs)

    tilts: dict[str, Relion5Tilts] = {}
    ts_blocks: dict[str, dict[str, list]] = {}
    fid_xyz: dict[str, F64] = {}
    g: dict[str, list] = {lab: [] for lab in GLOBAL_LABELS_R5}
    extra_labels = [
        lab for lab in ("rlnTomoFiducialsStarFile", "rlnTomoRelativeLuminance",
                        "rlnTomoRelativeIceThickness", "rlnTomoIceNormalX", "rlnTomoIceNormalY",
                        "rlnTomoIceNormalZ")
        if any(lab in t.extra for t in tomo_set)
    ]
    for lab in extra_labels:
        g[lab] = []
    for tomo in tomo_set:
        size = (image_sizes or {}).get(tomo.name) or _image_size(tomo, set_path)
        r = relion5_tilts(tomo, size, mirror_z=mirror_z, path=set_path)
        tilts[tomo.name] = r
        if r.max_change_px > WARN_CHANGE_PX:
            log.warning(
                "tomogram %s: RELION 5 cannot represent the per-tilt magnification/skew; the "
                "nearest rotation moves projected points by up to %.3f px", tomo.name,
                r.max_change_px,
            )
        if r.mirrored:
            log.warning("tomogram %s: exported in the z-mirrored world (--mirror_z)", tomo.name)
        ts_path = out / "tilt_series" / f"{tomo.name}.star"
        ts_blocks[tomo.name] = {
            "rlnMicrographName": [_micrograph_name(tomo.tilt_series, i) for i in range(tomo.n_tilts)],
            "rlnTomoNominalStageTiltAngle": [float(v) for v in r.ytilt],
            "rlnTomoNominalTiltAxisAngle": [float(v) for v in r.zrot],
            "rlnMicrographPreExposure": [float(v) for v in tomo.pre_exposure],
            "rlnDefocusU": [float(v) for v in tomo.defocus_u],
            "rlnDefocusV": [float(v) for v in tomo.defocus_v],
            "rlnDefocusAngle": [float(v) for v in tomo.defocus_angle],
            "rlnCtfScalefactor": [float(v) for v in tomo.ctf_scale],
            "rlnTomoXTilt": [float(v) for v in r.xtilt],
            "rlnTomoYTilt": [float(v) for v in r.ytilt],
            "rlnTomoZRot": [float(v) for v in r.zrot],
            "rlnTomoXShiftAngst": [float(v) for v in r.xshift_angst],
            "rlnTomoYShiftAngst": [float(v) for v in r.yshift_angst],
        }
        row = {
            "rlnTomoName": tomo.name,
            "rlnTomoTiltSeriesStarFile": os.fspath(ts_path),
            "rlnTomoTiltSeriesName": tomo.tilt_series,
            "rlnTomoFrameCount": int(tomo.frame_count),
            "rlnVoltage": float(tomo.voltage),
            "rlnSphericalAberration": float(tomo.cs),
            "rlnAmplitudeContrast": float(tomo.amplitude_contrast),
            "rlnMicrographOriginalPixelSize": float(tomo.pixel_size),
            "rlnTomoHand": float(tomo.hand),
            "rlnOpticsGroupName": tomo.optics_group,
            "rlnTomoTiltSeriesPixelSize": float(tomo.pixel_size),
            "rlnTomoSizeX": int(tomo.size[0]),
            "rlnTomoSizeY": int(tomo.size[1]),
            "rlnTomoSizeZ": int(tomo.size[2]),
            "rlnTomoImportFractionalDose": float(tomo.fractional_dose),
        }
        fid = tomo.extra.get("rlnTomoFiducialsStarFile")
        if fid:
            xyz4 = read_fiducials(str(fid), tomo.pixel_size)
            fid_xyz[tomo.name] = world_r4_to_r5(xyz4, tomo.size[2], mirror_z=r.mirrored)
            row["rlnTomoFiducialsStarFile"] = os.fspath(
                out / "fiducials" / f"fiducials_{tomo.name}.star"
            )
        for lab in extra_labels:
            if lab == "rlnTomoFiducialsStarFile":
                if lab not in row:
                    row[lab] = "empty"  # RELION's word for "no fiducials"
                continue
            value = tomo.extra.get(lab)
            if value is None:
                raise InputError(
                    set_path, f"tomogram {tomo.name} lacks {lab}, which other tomograms have"
                )
            row[lab] = float(value)
        for lab in g:
            g[lab].append(row[lab])

    # every input read and every value computed: now write, all files or none
    from tiltflow.io.staging import OutputTransaction

    fid_paths: dict[str, Path] = {}
    ts_paths: dict[str, Path] = {}
    conv = out / CONVERSION_FILE
    with OutputTransaction(out) as txn:
        for name, xyz in fid_xyz.items():
            fp = out / "fiducials" / f"fiducials_{name}.star"
            write_fiducials(txn.stage(fp), xyz, tomo_set[name].pixel_size)
            fid_paths[name] = fp
        for name, cols in ts_blocks.items():
            tp = out / "tilt_series" / f"{name}.star"
            write_star(txn.stage(tp), {name: cols}, header=(STAR_VERSION_LINE,))
            ts_paths[name] = tp
        _write_conversion(txn.stage(conv), tilts)
        write_star(txn.stage(star_out, last=True), {"global": g}, header=(STAR_VERSION_LINE,))
    return Relion5Export(star_out, ts_paths, fid_paths, tilts, conv)


def _write_conversion(path: Path, tilts: dict[str, Relion5Tilts]) -> None:
    from tiltflow.io.star import write_star

    write_star(
        path,
        {
            "tf_relion5_conversion": {
                "tfTomoName": list(tilts),
                "tfMaxReprojectionChangePx": [t.max_change_px for t in tilts.values()],
                "tfMirroredZ": [int(t.mirrored) for t in tilts.values()],
            }
        },
        header=(
            "tiltflow: RELION 4 -> RELION 5 conversion; change = largest move of a projected "
            "tomogram corner caused by representing the matrices as angles",
        ),
    )
