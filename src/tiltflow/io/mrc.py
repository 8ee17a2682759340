"""MRC tilt-series stacks: header, memory-mapped reading and atomic, deterministic writing.

Array convention: ``stack[f, y, x]``; frame ``f`` is the ``f``-th section of the file. Pixel
size is in Å, taken from the cell (``cella.x / mx``); a zero cell means "unknown" (None).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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
    #: ``cella.x / mx`` as written, even when not a valid pixel size (negative, NaN); None if mx = 0
    cell_pixel_size: float | None = field(default=None, compare=False)


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
    mx = int(header.mx)
    raw = float(header.cella.x) / mx if mx > 0 else None
    return StackHeader(
        nx=nx, ny=ny, nz=nz, pixel_size=_pixel_size(header), cell_pixel_size=raw
    )


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


def read_stack(path: PathLike, check_finite: bool = True) -> np.ndarray:
    """Read an MRC stack as an ``(n, h, w)`` float32 array (a 2D image becomes ``(1, h, w)``).

    A native-endian float32 file is returned as a read-only memory map (no copy); anything else
    (other byte order, int8, int16, uint16, float16) is converted to a float32 array in memory. Raises
    :class:`~tiltflow.errors.InputError` for a missing, invalid or truncated file, an
    unsupported mode (complex, 4-bit, RGB) or, with ``check_finite``, a frame with NaN or inf
    pixels (each frame is summed once, naming the first bad frame). A step that reads every
    frame anyway passes ``check_finite=False`` and checks each frame as it reads it
    (:func:`require_finite`), so the stack is read once.
    """
    data = open_stack(path)
    p = stack_file(path)
    dtype = data.dtype
    if dtype == np.dtype(np.float32):  # native float32: memory-mapped, no copy
        if check_finite:
            _check_finite(data, p)
        return data
    out = np.asarray(data, dtype=np.float32)
    if check_finite and dtype.kind == "f":  # integer modes cannot hold NaN or inf
        _check_finite(out, p)
    return out


def nonfinite_error(path: PathLike | None, frame: np.ndarray, f: int, n: int) -> InputError:
    """The error for frame ``f`` (0-based) of ``n``, ``frame`` its pixels, holding NaN or inf."""
    frame = np.asarray(frame)
    n_nan = int(np.isnan(frame).sum())
    n_inf = int(np.isinf(frame).sum())
    bad = np.nonzero(~np.isfinite(frame))
    where = f", the first at x={int(bad[1][0])}, y={int(bad[0][0])}" if bad[0].size else ""
    what = " and ".join(
        t for t in (f"{n_nan} NaN" if n_nan else "", f"{n_inf} inf" if n_inf else "") if t
    )
    return InputError(
        path,
        f"frame {f + 1} of {n} (1-based) holds {what or 'NaN or inf'} pixel(s){where}: every "
        "pixel of a tilt series must be a finite number (a corrupt or unfinished file, or gaps "
        "filled with NaN by an earlier program?)",
    )


def require_finite(
    path: PathLike | None, sums: np.ndarray, frames: Any, start: int, n: int
) -> None:
    """Raise :func:`nonfinite_error` for the first frame whose sum in ``sums`` is not finite.

    ``sums`` holds one number per frame of ``frames`` (frames ``start``, ``start + 1``, … of a
    stack of ``n``): any sum over all of a frame's pixels (or a binned copy of them) is finite
    exactly when every pixel is, since float32 values cannot overflow a float64 sum. ``frames``
    is indexed only when a sum is bad, to name the pixel.
    """
    ok = np.isfinite(np.asarray(sums, dtype=np.float64).reshape(-1))
    if not ok.all():
        i = int(np.argmin(ok))
        raise nonfinite_error(path, np.asarray(frames[i], dtype=np.float32), start + i, n)


def _check_finite(stack: np.ndarray, path: Path) -> None:
    """Raise InputError naming the stack and the first frame holding a NaN or inf pixel.

    One pass, a frame at a time: a frame's float64 sum is finite exactly when all its pixels
    are (float32 values cannot overflow a float64 sum); the pages read are released again.
    """
    n = stack.shape[0]
    for f in range(n):
        total = float(np.sum(stack[f], dtype=np.float64))
        if not np.isfinite(total):
            raise nonfinite_error(path, stack[f], f, n)
        release_pages(stack, f, f + 1)


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


def write_stack_frames(
    path: PathLike,
    source: np.ndarray,
    frames: Sequence[int] | np.ndarray,
    pixel_size: float | None,
    source_path: PathLike | None = None,
) -> None:
    """Write frames ``frames`` of ``source`` (n, h, w) as a float32 MRC stack, atomically, a frame
    at a time (memory stays one frame, whatever the stack size). Header as :func:`write_stack`:
    one fixed label, statistics of the written data, image stack, cell from ``pixel_size``.
    A frame with NaN or inf pixels raises :func:`nonfinite_error` naming ``source_path`` (and
    nothing is written)."""
    idx = [int(f) for f in np.asarray(frames).reshape(-1)]
    if source.ndim != 3 or not idx:
        raise ValueError(f"write_stack_frames needs an (n, h, w) source and frames, got {source.shape}")
    if pixel_size is not None and not (np.isfinite(pixel_size) and pixel_size > 0):
        raise ValueError(f"pixel_size must be positive or None, got {pixel_size!r}")
    _n, h, w = source.shape
    total = 0.0
    total_sq = 0.0
    lo, hi = np.inf, -np.inf
    with atomic_path(path) as tmp:
        with mrcfile.new_mmap(tmp, shape=(len(idx), h, w), mrc_mode=2, overwrite=True) as mrc:
            for i, f in enumerate(idx):
                frame = np.asarray(source[f], dtype=np.float32)
                mrc.data[i] = frame
                f64 = frame.astype(np.float64)
                frame_sum = float(f64.sum())
                if not np.isfinite(frame_sum):
                    raise nonfinite_error(source_path, frame, f, _n)
                total += frame_sum
                total_sq += float((f64 * f64).sum())
                lo, hi = min(lo, float(frame.min())), max(hi, float(frame.max()))
                release_pages(source, f, f + 1)
                if i % 4 == 3:
                    mrc.flush()
                    release_pages(mrc.data)
            mrc.set_image_stack()
            mrc.voxel_size = 0.0 if pixel_size is None else float(pixel_size)
            header = mrc.header
            header.label[:] = b""
            header.label[0] = TILTFLOW_LABEL
            header.nlabl = 1
            count = float(len(idx) * h * w)
            mean = total / count
            header.dmin, header.dmax, header.dmean = lo, hi, mean
            header.rms = float(np.sqrt(max(total_sq / count - mean * mean, 0.0)))
            mrc.flush()
            release_pages(mrc.data)


def _mapping_of(arr: object) -> object | None:
    """The :class:`mmap.mmap` behind an array (a memmap or any view of one), or None."""
    import mmap

    obj: object | None = arr
    for _ in range(16):
        if obj is None:
            return None
        if isinstance(obj, mmap.mmap):
            return obj
        inner = getattr(obj, "_mmap", None)
        if isinstance(inner, mmap.mmap):
            return inner
        obj = getattr(obj, "base", None)
    return None


#: bytes Linux maps into a process around each page it faults in from a file mapping
#: (``fault_around_bytes``, 64 KiB by default): one pixel read from a row of a memory-mapped
#: stack makes 64 KiB resident, so a gather of scattered samples costs ~64 KiB per row it touches
FAULT_AROUND_BYTES = 64 * 1024


def release_pages(stack: object, start: int = 0, stop: int | None = None) -> None:
    """Let the kernel drop the resident pages of frames ``[start, stop)`` of a memory-mapped stack
    (``madvise(MADV_DONTNEED)``; the data stay in the page cache and are read again on access).

    A step that reads a stack once, a tilt at a time, would otherwise keep every page it touched
    mapped, so its resident memory would grow to the size of the stack. Works for a memmap and
    any contiguous view of one; no-op for arrays in memory or where ``madvise`` is missing.
    """
    import mmap

    if not hasattr(mmap, "MADV_DONTNEED") or not isinstance(stack, np.ndarray):
        return
    mm = _mapping_of(stack)
    if mm is None or not hasattr(mm, "madvise"):
        return
    n = stack.shape[0] if stack.ndim else 0
    stop = n if stop is None else min(stop, n)
    if n == 0 or stop <= start or not stack.flags.c_contiguous:
        return
    try:
        base_ptr = np.frombuffer(mm, dtype=np.uint8).ctypes.data  # type: ignore[call-overload]
    except (TypeError, ValueError):  # pragma: no cover
        return
    frame_bytes = stack[0].nbytes
    lo = stack.ctypes.data - base_ptr + start * frame_bytes
    hi = stack.ctypes.data - base_ptr + stop * frame_bytes
    page = mmap.PAGESIZE
    lo -= lo % page
    hi = min(hi, len(mm))  # type: ignore[arg-type]
    if hi <= lo or lo < 0:
        return
    try:
        mm.madvise(mmap.MADV_DONTNEED, lo, hi - lo)
    except (OSError, ValueError):  # pragma: no cover - best effort
        pass
