"""MRC tilt-series stacks: header, memory-mapped reading and atomic, deterministic writing.

Array convention: ``stack[f, y, x]``; frame ``f`` is the ``f``-th section of the file. Pixel
size is in Å, taken from the cell (``cella.x / mx``); a zero cell means "unknown" (None).
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import mrcfile
import mrcfile.utils
import numpy as np

from tiltflow.errors import InputError
from tiltflow.io.atomic import atomic_path

PathLike = str | os.PathLike[str]

#: the single text label tiltflow writes (no timestamp, so output is byte-identical across runs)
TILTFLOW_LABEL = "tiltflow"


@dataclass(frozen=True)
class StackHeader:
    """Size of a stack (``nx`` = width, ``ny`` = height, ``nz`` = number of frames) and pixel size (Å or None)."""

    nx: int
    ny: int
    nz: int
    pixel_size: float | None


def stack_file(tilt_series: PathLike) -> Path:
    """The file behind a RELION tilt-series name: drops a ``:mrc``/``:mrcs`` type suffix.

    RELION writes ``rlnTomoTiltSeriesName`` as given (``TS_01.st:mrc`` is its documented form), so
    every reader of a stack named in a STAR file goes through this.
    """
    text = os.fspath(tilt_series)
    for suffix in (":mrcs", ":mrc"):
        if text.endswith(suffix):
            return Path(text[: -len(suffix)])
    return Path(text)


def _check_path(p: Path) -> None:
    if not p.exists():
        raise InputError(p, "file not found (expected an MRC stack)")
    if p.is_dir():
        raise InputError(p, "is a directory, expected an MRC stack")


def _open_header(path: PathLike) -> tuple[np.recarray, int]:
    """mrcfile header (strict mode) and the extended-header size in bytes; InputError if invalid."""
    p = stack_file(path)
    _check_path(p)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter(
                "ignore"
            )  # strict mode raises on real problems; the rest is noise
            with mrcfile.open(p, mode="r", header_only=True, permissive=False) as mrc:
                header = mrc.header.copy()
                ext_bytes = int(mrc.header.nsymbt)
    except (ValueError, OSError, EOFError) as exc:
        raise InputError(p, f"is not a valid MRC file: {exc}") from None
    return header, ext_bytes


def _pixel_size(header: np.recarray) -> float | None:
    mx = int(header.mx)
    cx = float(header.cella.x)
    if mx <= 0 or not np.isfinite(cx) or cx <= 0:
        return None
    return cx / mx


def read_header(path: PathLike) -> StackHeader:
    """Read only the header of an MRC stack: ``StackHeader(nx, ny, nz, pixel_size)``.

    Raises :class:`~tiltflow.errors.InputError` naming the file when it is missing or not a valid
    MRC file (mrcfile's strict mode).
    """
    header, _ = _open_header(path)
    nx, ny, nz = int(header.nx), int(header.ny), int(header.nz)
    if nx < 1 or ny < 1 or nz < 1:
        raise InputError(path, f"invalid MRC dimensions nx={nx}, ny={ny}, nz={nz} (expected >= 1)")
    return StackHeader(nx=nx, ny=ny, nz=nz, pixel_size=_pixel_size(header))


def open_stack(path: PathLike) -> np.ndarray:
    """Memory-map an MRC stack as an ``(n, h, w)`` array in the file's own data type (read-only).

    Nothing is read until frames are indexed, so a step that needs a few tilts reads only those
    (convert each frame with ``np.asarray(stack[i], dtype=np.float32)``). Raises
    :class:`~tiltflow.errors.InputError` like :func:`read_stack`.
    """
    p = stack_file(path)
    header, ext_bytes = _open_header(p)
    nx, ny, nz = int(header.nx), int(header.ny), int(header.nz)
    if nx < 1 or ny < 1 or nz < 1:
        raise InputError(p, f"invalid MRC dimensions nx={nx}, ny={ny}, nz={nz} (expected >= 1)")
    try:
        dtype = mrcfile.utils.data_dtype_from_header(header)
    except ValueError as exc:
        raise InputError(p, f"unsupported MRC mode {int(header.mode)}: {exc}") from None
    if dtype.kind == "c" or dtype.fields is not None or int(header.mode) in (3, 4, 16, 101):
        raise InputError(
            p, f"unsupported MRC mode {int(header.mode)} (expected real-valued images)"
        )
    offset = header.nbytes + ext_bytes
    need = offset + nx * ny * nz * dtype.itemsize
    size = p.stat().st_size
    if size < need:
        raise InputError(p, f"MRC file is truncated: {size} bytes, the header announces {need}")
    return np.memmap(p, dtype=dtype, mode="r", offset=offset, shape=(nz, ny, nx))


def read_stack(path: PathLike) -> np.ndarray:
    """Read an MRC stack as an ``(n, h, w)`` float32 array (a 2D image becomes ``(1, h, w)``).

    A native-endian float32 file is returned as a read-only memory map (no copy); anything else
    (other byte order, int8, int16, uint16, float16) is converted to a float32 array in memory. Raises
    :class:`~tiltflow.errors.InputError` for a missing, invalid or truncated file or an
    unsupported mode (complex, 4-bit, RGB).
    """
    data = open_stack(path)
    if data.dtype == np.dtype(np.float32):  # native float32: memory-mapped, no copy
        return data
    return np.asarray(data, dtype=np.float32)


def write_stack(path: PathLike, data: np.ndarray, pixel_size: float | None) -> None:
    """Write ``data`` (``(n, h, w)`` or ``(h, w)``) as a float32 MRC image stack, atomically.

    The file is written to a temporary name beside ``path`` and renamed onto it, so a failure
    never leaves a partial stack. The header is deterministic: one fixed label
    (``"tiltflow"``, no timestamp), statistics from the data, ``ispg = 0`` (image stack) and the
    cell set from ``pixel_size`` (0 when None).
    """
    arr = np.asarray(data)
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3 or min(arr.shape) < 1:
        raise ValueError(
            f"write_stack expects an (n, h, w) or (h, w) array, got shape {np.shape(data)}"
        )
    arr = np.ascontiguousarray(arr, dtype=np.float32)
    if pixel_size is not None and not (np.isfinite(pixel_size) and pixel_size > 0):
        raise ValueError(f"pixel_size must be positive or None, got {pixel_size!r}")

    with atomic_path(path) as tmp:
        with mrcfile.new(tmp, overwrite=True) as mrc:
            mrc.set_data(arr)
            mrc.set_image_stack()
            mrc.voxel_size = 0.0 if pixel_size is None else float(pixel_size)
            header = mrc.header
            header.label[:] = b""
            header.label[0] = TILTFLOW_LABEL
            header.nlabl = 1
            mrc.update_header_stats()
