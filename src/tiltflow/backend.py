"""Array backend seam: numpy/scipy on the CPU, CuPy/cupyx on a GPU.

Every per-pixel operation of the heavy steps (FFT filtering, correlation, maximum filters) goes
through the module returned here, so one code path serves both devices::

    xp = get_array_module(device)          # numpy or cupy
    fft = get_fft(xp); nd = get_ndimage(xp)
    img = xp.asarray(frame); ...; result = to_numpy(img)

``device`` is ``"cpu"`` (always numpy), ``"gpu"`` (CuPy; :class:`~tiltflow.errors.ConfigError`
when CuPy or a GPU is unavailable) or ``"auto"`` (CuPy when it imports and sees a GPU, else numpy).
"""

from __future__ import annotations

import types
from typing import Any

import numpy as np

from tiltflow.errors import ConfigError

DEVICES: tuple[str, ...] = ("cpu", "gpu", "auto")


def _cupy_or_reason() -> tuple[types.ModuleType | None, str]:
    """(cupy, "") when CuPy imports and sees at least one GPU, else (None, reason)."""
    try:
        import cupy
    except Exception as exc:  # ImportError, or CUDA libraries missing
        return (
            None,
            f"CuPy is not installed or cannot be imported ({exc.__class__.__name__}: {exc})",
        )
    try:
        n = int(cupy.cuda.runtime.getDeviceCount())
    except Exception as exc:
        return None, f"CuPy cannot reach a GPU ({exc.__class__.__name__}: {exc})"
    if n < 1:
        return None, "CuPy found no GPU"
    return cupy, ""


def gpu_available() -> bool:
    """True when CuPy imports and a GPU is present."""
    return _cupy_or_reason()[0] is not None


def get_array_module(device: str = "cpu") -> types.ModuleType:
    """The array module for ``device``: numpy for "cpu", cupy for "gpu", either for "auto"."""
    if device not in DEVICES:
        raise ConfigError(f"device must be one of {', '.join(DEVICES)}, got {device!r}")
    if device == "cpu":
        return np
    cp, reason = _cupy_or_reason()
    if cp is not None:
        return cp
    if device == "gpu":
        raise ConfigError(
            f"device 'gpu' was requested but {reason}; install tiltflow[gpu] on a machine with a "
            "CUDA GPU, or use device 'cpu' / 'auto'"
        )
    return np


def is_gpu(xp: types.ModuleType) -> bool:
    """True when ``xp`` is CuPy."""
    return xp is not np


def get_fft(xp: types.ModuleType) -> types.ModuleType:
    """``scipy.fft`` for numpy, ``cupyx.scipy.fft`` for cupy."""
    if xp is np:
        import scipy.fft  # imported when first needed: ~0.2 s of a step's start

        return scipy.fft
    import cupyx.scipy.fft

    return cupyx.scipy.fft


def get_ndimage(xp: types.ModuleType) -> types.ModuleType:
    """``scipy.ndimage`` for numpy, ``cupyx.scipy.ndimage`` for cupy."""
    if xp is np:
        import scipy.ndimage

        return scipy.ndimage
    import cupyx.scipy.ndimage

    return cupyx.scipy.ndimage


def fft_workers(xp: types.ModuleType, threads: int) -> dict[str, Any]:
    """Keyword arguments for the FFT calls: ``workers`` on the CPU, nothing on the GPU."""
    return {"workers": max(1, int(threads))} if xp is np else {}


def to_numpy(x: Any) -> np.ndarray:
    """A numpy array of ``x`` (copied from the GPU when it is a CuPy array)."""
    if isinstance(x, np.ndarray):
        return x
    get = getattr(x, "get", None)
    if callable(get) and type(x).__module__.startswith("cupy"):
        return get()
    return np.asarray(x)
