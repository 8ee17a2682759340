"""Bead tracks made in IMOD: the fiducial model (``.fid``) and tiltalign's ``fid.xyz``.

Conventions (established from the IMOD sources, see the report/README of this module):

- **Image frame of a .fid.** eTomo tracks beads (beadtrack, or by hand in 3dmod) on the
  *prealigned* stack ``<name>.preali``, which newstack makes from the raw stack with the
  ``.prexg`` transforms (tiltxcorr -> xftoxg). The preali has every raw view (nothing is
  excluded), so a point's ``z`` is the 0-based **raw** view index (3dmod shows it as ``z + 1``;
  tiltalign and beadtrack take ``nint(z)``). ``x, y`` are in pixels of the image the model was
  made on; when beadtrack/tiltalign ran on a binned preali (tiltalign ``ImagesAreBinned``), they
  are *binned* pixels, and the model header's ``xmax, ymax`` give that binned size.
- **Pixel centres.** IMOD model coordinates put the first pixel over ``[0, 1)``: the centre of
  pixel ``i`` is ``i + 0.5`` and the image centre is ``n / 2`` (3dmod's Zap window maps mouse
  to ``(mx - border) / zoom + start`` and draws the current point at ``(int)x + 0.5``;
  beadtrack's centroid is ``box index - 0.5 - nbox / 2`` from a box starting at
  ``nint(x) - nbox / 2``, i.e. ``pixel index + 0.5``; tiltalign and xfmodel use ``nx / 2`` as
  the centre). tiltflow's raw-image coordinates put the first pixel's centre at 0 and the image
  centre at ``(n - 1) / 2``; so ``x_tiltflow = x_imod - 0.5`` (unbinned).
- **Back to the raw stack.** An IMOD ``.xf``/``.prexg`` line ``A11 A12 A21 A22 DX DY`` maps
  ``aligned = A (raw - c) + D + c`` about the image centre ``c`` (preali and raw have the same
  size), with shifts in unbinned pixels (eTomo's ``.prexg``; xfproduct scales only the
  ``.tltxf`` shifts by the binning). A preali point therefore comes from
  ``raw = A^-1 (preali - c - D) + c`` (xfmodel ``-back`` does the same).

``fid.xyz`` (tiltalign ``OutputFidXYZFile``; ``<name>fid.xyz``) has one line per 3D bead,
Fortran format ``(i4, 3f10.2, i7, i5)``: point number (1-based), X, Y, Z, IMOD object and
contour (1-based, counting every contour of the object); the first line adds
``Pix: <pixel size of the image file header> Dim: <nx> <ny>`` (the size of the image tiltalign
used, binned when it was). X and Y are positions in the *aligned* image frame of that size
(IMOD pixel units, image centre ``nx/2, ny/2``, pixel centres at ``i + 0.5``): the aligned
projection of bead j in view v is ``x = (X - nx/2) cos(tilt_v) + Z sin(tilt_v) + nx/2`` and
``y = Y`` with the final ``.tlt`` angles (checked on eTomo's BB tutorial data to 0.3 px, the
tiltalign residual). Z is the height above the tilt axis after tiltalign's ``AxisZShift``, before
tilt.com's SHIFT, OFFSET and XAXISTILT. :func:`fid_xyz_to_world` turns this into RELION 4 world
coordinates (SPEC §3) for the same alignment.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from tiltflow.errors import InputError
from tiltflow.geometry import ImodGeometry, centre, translation
from tiltflow.io.text import PathLike, parse_float, parse_int, read_text_lines

F64 = NDArray[np.float64]
I64 = NDArray[np.int64]

#: IMOD model coordinate of the centre of the first pixel (tiltflow: 0)
IMOD_PIXEL_ORIGIN = 0.5

_FLIPYZ_BIT = 1 << 16  # IMODF_FLIPYZ: coordinates stored with Y and Z swapped


@dataclass(frozen=True, eq=False)
class FidTracks:
    """2D bead tracks from an IMOD fiducial model, in raw-image pixels.

    One entry per model point: ``bead`` (0-based, the order of the kept contours in the file:
    object by object, contour by contour), ``view`` (0-based raw view), ``x, y`` (float64,
    unbinned raw-image pixels, 0 = centre of the first pixel). Points are sorted by bead, then
    view. ``labels[b]`` is the 1-based ``(object, contour)`` of bead ``b`` as IMOD numbers them
    (the last two columns of ``fid.xyz``); ``image_size`` the (nx, ny) of the image the model was
    made on, from the model header (``(0, 0)`` when the header does not say).
    """

    bead: I64
    view: I64
    x: F64
    y: F64
    labels: I64 = field(default_factory=lambda: np.zeros((0, 2), dtype=np.int64))
    image_size: tuple[int, int] = (0, 0)

    def __len__(self) -> int:
        return int(self.bead.shape[0])

    @property
    def n_beads(self) -> int:
        return int(self.labels.shape[0])

    def dense(self, kept_views: NDArray[np.integer]) -> F64:
        """Tracks as a (beads, rows, 2) array with NaN where a bead has no point.

        ``kept_views`` are the 0-based raw views of the tomogram's rows (stack frames, i.e. the
        views tilt.com did not exclude, in stack order); points on other views are dropped.
        """
        kept = np.asarray(kept_views, dtype=np.int64).reshape(-1)
        row_of = np.full(
            max(int(kept.max(initial=-1)), int(self.view.max(initial=-1))) + 1, -1, dtype=np.int64
        )
        row_of[kept] = np.arange(kept.size)
        out = np.full((self.n_beads, kept.size, 2), np.nan)
        rows = row_of[self.view] if len(self) else np.zeros(0, dtype=np.int64)
        ok = rows >= 0
        out[self.bead[ok], rows[ok], 0] = self.x[ok]
        out[self.bead[ok], rows[ok], 1] = self.y[ok]
        return out


def _read_model(path: Path):  # -> imodmodel.ImodModel
    if not path.exists():
        raise InputError(path, "file not found (expected an IMOD fiducial model, .fid)")
    if path.is_dir():
        raise InputError(path, "is a directory, expected an IMOD fiducial model (.fid)")
    try:
        import imodmodel
    except ImportError:  # pragma: no cover - dependency of the package
        raise InputError(
            path, "reading IMOD models needs the 'imodmodel' package (pip install imodmodel)"
        ) from None
    try:
        return imodmodel.ImodModel.from_file(path)
    except Exception as exc:  # the parser raises assorted errors on foreign/broken files
        detail = f"{exc.__class__.__name__}: {exc}" if str(exc) else exc.__class__.__name__
        raise InputError(path, f"is not a readable IMOD model file ({detail})") from None


def read_fid_model(
    path: PathLike,
    n_views: int | None = None,
    prexg: np.ndarray | None = None,
    raw_size: tuple[int, int] | None = None,
    binning: float = 1.0,
    min_points: int = 2,
) -> FidTracks:
    """Read an IMOD fiducial model (``.fid``) as 2D tracks in raw-image pixels.

    Every contour of every object is one bead; contours with fewer than ``min_points`` points
    are skipped, as tiltalign does (a 1-point track cannot be triangulated). ``z`` is rounded to
    the view index; two points of one contour on the same view are an error (tiltalign refuses
    them too). With ``n_views`` every view must be in ``0..n_views-1``.

    The model's pixels are mapped to tiltflow's raw-image pixels by
    ``p = c_raw + binning * (p_imod - c_model)`` with ``c_model = (nx/2, ny/2)`` of the model's
    image (its header ``xmax, ymax``; ``raw_size / binning`` when the header has none) and
    ``c_raw = ((w-1)/2, (h-1)/2)``; for ``binning = 1`` that is ``p_imod - 0.5``. Then, when
    ``prexg`` (the ``(n, 6)`` ``.prexg`` lines of the prealigned stack the model was tracked on,
    raw view order, unbinned shifts) is given, each point is taken back to the raw image with
    the inverse of its view's transform about ``c_raw``. ``raw_size`` (w, h of the raw stack)
    is needed with ``prexg`` or ``binning != 1`` unless the model header gives the image size;
    when both are known they must agree with ``binning``.

    Raises :class:`~tiltflow.errors.InputError` naming the file for a missing/unreadable/empty
    model, a view out of range, duplicate views in a contour or a size/binning mismatch.
    """
    path = Path(path)
    if not (binning > 0 and math.isfinite(binning)):
        raise ValueError(f"binning must be a positive number, got {binning!r}")
    model = _read_model(path)

    # --- points, contour by contour (IMOD numbering: 1-based object, 1-based contour) ----------
    try:
        flip_yz = bool(int(model.header.flags) & _FLIPYZ_BIT)
    except (TypeError, ValueError):  # pragma: no cover - other imodmodel versions
        flip_yz = bool(
            getattr(model.header.flags, "model_last_viewed_onYZ_flipped_or_rotated", False)
        )
    n_points_total = 0
    contours: list[tuple[int, int, F64]] = []
    for io, obj in enumerate(model.objects, start=1):
        for ic, cont in enumerate(obj.contours, start=1):
            pts = np.asarray(cont.points, dtype=np.float64).reshape(-1, 3)
            n_points_total += pts.shape[0]
            if flip_yz:
                pts = pts[:, [0, 2, 1]]
            if pts.shape[0] >= max(1, min_points):
                contours.append((io, ic, pts))
    if n_points_total == 0:
        raise InputError(path, "the fiducial model is empty (no points in any contour)")
    if not contours:
        raise InputError(
            path,
            f"the fiducial model has no contour with {min_points} or more points (nothing to track)",
        )

    # --- views -----------------------------------------------------------------------------
    if n_views is None and prexg is not None:
        n_views = int(np.asarray(prexg).reshape(-1, 6).shape[0])
    beads, views, xs, ys = [], [], [], []
    for b, (io, ic, pts) in enumerate(contours):
        if not np.all(np.isfinite(pts)):
            raise InputError(path, f"object {io}, contour {ic}: non-finite coordinates")
        v = np.rint(pts[:, 2]).astype(np.int64)
        bad = (v < 0) if n_views is None else ((v < 0) | (v >= n_views))
        if np.any(bad):
            k = int(np.argmax(bad))
            want = (
                "a view >= 0"
                if n_views is None
                else f"views 0..{n_views - 1} (the stack has {n_views} views)"
            )
            raise InputError(
                path,
                f"object {io}, contour {ic}, point {k + 1}: z = {pts[k, 2]:g} is view {v[k]} "
                f"(0-based; 3dmod shows {v[k] + 1}), expected {want}",
            )
        order = np.argsort(v, kind="stable")
        v, pts = v[order], pts[order]
        dup = np.nonzero(np.diff(v) == 0)[0]
        if dup.size:
            d = int(v[dup[0]])
            raise InputError(
                path,
                f"object {io}, contour {ic} has two points on view {d} (0-based; 3dmod shows {d + 1}); "
                "a bead contour must have at most one point per view (tiltalign refuses it too)",
            )
        beads.append(np.full(v.size, b, dtype=np.int64))
        views.append(v)
        xs.append(pts[:, 0])
        ys.append(pts[:, 1])
    bead = np.concatenate(beads)
    view = np.concatenate(views)
    x = np.concatenate(xs)
    y = np.concatenate(ys)
    labels = np.array([(io, ic) for io, ic, _ in contours], dtype=np.int64).reshape(-1, 2)

    # --- sizes and pixel convention -----------------------------------------------------------
    hdr_size = (int(model.header.xmax), int(model.header.ymax))
    has_hdr = hdr_size[0] > 0 and hdr_size[1] > 0
    if raw_size is not None:
        w, h = int(raw_size[0]), int(raw_size[1])
        if has_hdr:
            for n_model, n_raw, axis in ((hdr_size[0], w, "X"), (hdr_size[1], h, "Y")):
                if abs(n_model * binning - n_raw) >= binning:
                    guess = n_raw / n_model
                    raise InputError(
                        path,
                        f"the model was made on a {hdr_size[0]} x {hdr_size[1]} image, which does not match the "
                        f"raw stack ({w} x {h}) at binning {binning:g} (axis {axis}); was it tracked on a stack "
                        f"binned by {guess:.3g}? Pass that binning (tiltalign's ImagesAreBinned)",
                    )
    elif has_hdr:
        w, h = int(round(hdr_size[0] * binning)), int(round(hdr_size[1] * binning))
    elif prexg is not None or binning != 1.0:
        raise InputError(
            path,
            "the model header gives no image size: pass raw_size (the raw stack's width and height)",
        )
    else:
        w = h = 0  # not needed: binning 1 without prexg is a pure half-pixel shift

    if binning == 1.0 and (not has_hdr or (w, h) == hdr_size):
        x = x - IMOD_PIXEL_ORIGIN
        y = y - IMOD_PIXEL_ORIGIN
    else:
        cm = (
            (hdr_size[0] / 2.0, hdr_size[1] / 2.0)
            if has_hdr
            else (w / binning / 2.0, h / binning / 2.0)
        )
        cr = centre((w, h))
        x = cr[0] + binning * (x - cm[0])
        y = cr[1] + binning * (y - cm[1])

    # --- prealigned -> raw ----------------------------------------------------------------------
    if prexg is not None:
        g = np.asarray(prexg, dtype=np.float64).reshape(-1, 6)
        if view.size and int(view.max()) >= g.shape[0]:
            raise InputError(
                path,
                f"has points on view {int(view.max())} (0-based) but the .prexg has only {g.shape[0]} lines",
            )
        a = g[view, :4].reshape(-1, 2, 2)
        det = a[:, 0, 0] * a[:, 1, 1] - a[:, 0, 1] * a[:, 1, 0]
        if np.any(np.abs(det) < 1e-12):
            bad_view = int(view[np.argmax(np.abs(det) < 1e-12)])
            raise InputError(path, f"the .prexg transform of view {bad_view} (0-based) is singular")
        cr_xy = np.array(centre((w, h)))
        rel = np.stack([x, y], axis=1) - cr_xy - g[view, 4:6]
        inv = np.empty_like(a)
        inv[:, 0, 0] = a[:, 1, 1] / det
        inv[:, 0, 1] = -a[:, 0, 1] / det
        inv[:, 1, 0] = -a[:, 1, 0] / det
        inv[:, 1, 1] = a[:, 0, 0] / det
        raw = np.einsum("nij,nj->ni", inv, rel) + cr_xy
        x, y = raw[:, 0].copy(), raw[:, 1].copy()

    return FidTracks(
        bead=bead,
        view=view,
        x=np.ascontiguousarray(x, dtype=np.float64),
        y=np.ascontiguousarray(y, dtype=np.float64),
        labels=labels,
        image_size=hdr_size if has_hdr else (0, 0),
    )


# ------------------------------------------------------------------------------------------------
# fid.xyz
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class FidXyz:
    """tiltalign's ``fid.xyz``, as in the file (see the module docstring for the frame).

    ``point`` (1-based), ``obj`` and ``contour`` (1-based IMOD numbering) are int64; ``xyz`` is
    (m, 3) float64 in the pixels of the image tiltalign used (``dims``); ``pixel_size`` is the
    ``Pix:`` value (that image's header pixel size, usually Å) and ``dims`` the ``Dim:`` size;
    both None when the first line lacks them (old IMOD versions).
    """

    point: I64
    xyz: F64
    obj: I64
    contour: I64
    pixel_size: float | None = None
    dims: tuple[int, int] | None = None

    def __len__(self) -> int:
        return int(self.point.shape[0])

    @property
    def labels(self) -> I64:
        """(m, 2) 1-based ``(object, contour)``, comparable with :attr:`FidTracks.labels`."""
        return (
            np.stack([self.obj, self.contour], axis=1)
            if len(self)
            else np.zeros((0, 2), dtype=np.int64)
        )


_EXTRA = re.compile(r"^\s*Pix:\s*(\S+)\s+Dim:\s*(\S+)\s+(\S+)\s*$")
_FIXED = ((0, 4), (4, 14), (14, 24), (24, 34), (34, 41), (41, 46))  # (i4, 3f10.2, i7, i5)
_COLUMNS = ("point number", "X", "Y", "Z", "object", "contour")


def _split_line(raw: str, text: str, path: Path, lineno: int) -> tuple[list[str], str]:
    """Six fields and the rest of a fid.xyz line (whitespace-split, fixed widths when run together)."""
    head, sep, tail = text.partition("Pix:")
    tokens = head.split()
    if len(tokens) == 6:
        return tokens, (sep + tail)
    body = raw.rstrip("\r\n")
    k = body.find("Pix:")
    body_head = body if k < 0 else body[:k]
    if len(body_head.rstrip()) <= 46:
        fields = [body_head[a:b].strip() for a, b in _FIXED]
        if all(fields):
            return fields, ("" if k < 0 else body[k:])
    raise InputError(
        path,
        f"expected 'point X Y Z object contour' (6 numbers), found {len(tokens)} field(s): {text!r}",
        line=lineno,
    )


def read_fid_xyz(path: PathLike) -> FidXyz:
    """Read tiltalign's ``fid.xyz`` (``OutputFidXYZFile``): one 3D bead per line.

    Values are returned as written (see :class:`FidXyz`). Raises
    :class:`~tiltflow.errors.InputError` naming the file and line for anything that is not
    ``point X Y Z object contour [Pix: p Dim: nx ny]``, and for an empty file.
    """
    path = Path(path)
    lines = read_text_lines(path, "tiltalign's fid.xyz (point X Y Z object contour per line)")
    raw_lines: list[str] | None = None
    points, xyz, objs, conts = [], [], [], []
    pixel_size: float | None = None
    dims: tuple[int, int] | None = None
    for lineno, text in lines:
        tokens = text.split()
        if len(tokens) < 6 or (len(tokens) > 6 and "Pix:" not in text):
            if raw_lines is None:
                with open(path, encoding="utf-8-sig", newline=None) as fh:
                    raw_lines = fh.read().splitlines()
            fields, rest = _split_line(raw_lines[lineno - 1], text, path, lineno)
        else:
            fields, rest = _split_line(text, text, path, lineno)
        points.append(parse_int(fields[0], path, lineno, _COLUMNS[0]))
        xyz.append(
            [parse_float(t, path, lineno, _COLUMNS[i + 1]) for i, t in enumerate(fields[1:4])]
        )
        objs.append(parse_int(fields[4], path, lineno, _COLUMNS[4]))
        conts.append(parse_int(fields[5], path, lineno, _COLUMNS[5]))
        if rest.strip():
            m = _EXTRA.match(rest)
            if m is None:
                raise InputError(
                    path,
                    f"expected 'Pix: <size> Dim: <nx> <ny>' after the contour, found {rest!r}",
                    line=lineno,
                )
            pixel_size = parse_float(m.group(1), path, lineno, "Pix: (pixel size)")
            dims = (
                parse_int(m.group(2), path, lineno, "Dim: nx"),
                parse_int(m.group(3), path, lineno, "Dim: ny"),
            )
    if not points:
        raise InputError(
            path, "contains no data lines (expected 'point X Y Z object contour' per line)"
        )
    return FidXyz(
        point=np.asarray(points, dtype=np.int64),
        xyz=np.asarray(xyz, dtype=np.float64).reshape(-1, 3),
        obj=np.asarray(objs, dtype=np.int64),
        contour=np.asarray(conts, dtype=np.int64),
        pixel_size=pixel_size,
        dims=dims,
    )


def fid_xyz_to_world(
    fid: FidXyz,
    geom: ImodGeometry,
    binning: float = 1.0,
    dims: tuple[int, int] | None = None,
) -> F64:
    """Positions of ``fid.xyz`` in RELION 4 world coordinates (SPEC §3) -> (m, 3).

    Valid for the tomogram imported from the same alignment (the ``.xf`` = prexg x tltxf and the
    ``.tlt`` that tiltalign wrote) with geometry ``geom``. ``binning`` is tiltalign's
    ``ImagesAreBinned`` (the fid.xyz pixels are binned ones then); ``dims`` the image size
    tiltalign used, by default the file's ``Dim:`` (else the raw size / binning). With
    u = (X - nx/2, Z, Y - ny/2) * binning, the point in RELION's tilt frame is
    ``(c_ali.x + u0, -u1, c_ali.y + u2)`` (``+u1`` with ``--flipAng``), and the world point is
    ``(O · Off · F)^-1`` of it; projecting it with the tomogram's matrices reproduces
    tiltalign's projections. tilt.com's XAXISTILT and local alignments are ignored, as RELION 4
    ignores them.
    """
    d: tuple[float, float] | None = dims if dims is not None else fid.dims
    if d is None:
        d = (geom.raw_size[0] / binning, geom.raw_size[1] / binning)
    c_ali = centre(geom.ali_size)
    u = fid.xyz * binning
    depth_sign = 1.0 if geom.flip_ang else -1.0
    internal = np.stack(
        [
            c_ali[0] + u[:, 0] - binning * d[0] / 2.0,
            depth_sign * u[:, 2],
            c_ali[1] + u[:, 1] - binning * d[1] / 2.0,
            np.ones(len(fid)),
        ],
        axis=1,
    )
    o = translation((-1.0, -geom.thickness / 2.0, -1.0))
    off = translation(
        (geom.offset[0] - geom.shift[0], geom.offset[1] - geom.shift[1], geom.offset[2])
    )
    m = o @ off @ geom.flip_matrix()
    world = np.linalg.solve(m, internal.T).T
    return np.ascontiguousarray(world[:, :3])


__all__ = [
    "FidTracks",
    "FidXyz",
    "IMOD_PIXEL_ORIGIN",
    "read_fid_model",
    "read_fid_xyz",
    "fid_xyz_to_world",
]
