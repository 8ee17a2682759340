"""RELION 4 tilt order lists (``order_list.csv``) and the pre-exposure they imply.

Each line is ``index,tilt_angle``: the chronological acquisition index (1-based in RELION's
examples) and the nominal tilt angle in degrees. There is no header, but a first line of
non-numbers (``index,angle``) is tolerated.
"""

from __future__ import annotations

import os
import re

import numpy as np

from tiltflow.errors import InputError
from tiltflow.io.angle_match import match_angles
from tiltflow.io.text import PathLike, parse_float, read_text_lines

_SEP = re.compile(r"\s*,\s*|\s+")


def read_order_list(path: PathLike) -> np.ndarray:
    """Read an order list as an ``(n, 2)`` float64 array ``[index, tilt_angle_deg]`` in file order.

    Separators: a comma (spaces around it allowed) or whitespace. Raises
    :class:`~tiltflow.errors.InputError` for a missing/empty file, a line without exactly two
    values or a non-numeric value (a non-numeric *first* line is taken as a header and skipped).
    """
    rows: list[list[float]] = []
    lines = read_text_lines(path, "a RELION order list (lines 'index,tilt_angle')")
    for k, (lineno, text) in enumerate(lines):
        tokens = [t for t in _SEP.split(text) if t]
        if k == 0 and tokens and not any(_is_number(t) for t in tokens):
            continue  # header line
        if len(tokens) != 2:
            raise InputError(
                path,
                f"expected 2 comma-separated values 'index,tilt_angle', found {len(tokens)}: {text!r}",
                line=lineno,
            )
        rows.append(
            [
                parse_float(tokens[0], path, lineno, "the acquisition index"),
                parse_float(tokens[1], path, lineno, "the tilt angle (degrees)"),
            ]
        )
    if not rows:
        raise InputError(path, "contains no data lines (expected 'index,tilt_angle' per line)")
    return np.asarray(rows, dtype=np.float64).reshape(-1, 2)


def _is_number(token: str) -> bool:
    try:
        float(token)
    except ValueError:
        return False
    return True


def nearest_order_entry(tilt_angles_deg: np.ndarray, order: np.ndarray) -> np.ndarray:
    """For each tilt, the row of ``order`` whose angle is nearest (ties: the earlier row)."""
    tilts = np.asarray(tilt_angles_deg, dtype=np.float64).reshape(-1)
    order = np.asarray(order, dtype=np.float64)
    if order.ndim != 2 or order.shape[1] != 2 or order.shape[0] == 0:
        raise ValueError(f"order must be a non-empty (n, 2) array, got shape {order.shape}")
    d = np.abs(tilts[:, None] - order[None, :, 1])
    return np.argmin(d, axis=1)  # argmin returns the first minimum: ties go to the earlier row


def pre_exposure_from_order(
    tilt_angles_deg: np.ndarray,
    order: np.ndarray,
    dose_per_tilt: float,
    path: str | os.PathLike[str] = "order list",
) -> np.ndarray:
    """Pre-exposure (e/Å²) of each tilt from an order list, as RELION 4 computes it.

    Each tilt is matched to its own order entry (:func:`tiltflow.io.angle_match.match_angles`:
    nearest angle after removing a constant tilt offset, one-to-one, within 3/4 of the tilt step;
    ``path`` is named in errors); its pre-exposure is the
    0-based chronological rank of that entry (its position after a stable sort of the order list
    by the index column) times ``dose_per_tilt``. For an order list already in chronological
    order (RELION's convention) the rank is the line number, exactly as in
    ``relion_tomo_import_tomograms``.
    """
    order = np.asarray(order, dtype=np.float64)
    if order.ndim != 2 or order.shape[1] != 2 or order.shape[0] == 0:
        raise ValueError(f"order must be a non-empty (n, 2) array, got shape {order.shape}")
    entry = match_angles(tilt_angles_deg, order[:, 1], path, "entries").entry
    chrono = np.argsort(order[:, 0], kind="stable")
    rank = np.empty(order.shape[0], dtype=np.int64)
    rank[chrono] = np.arange(order.shape[0])
    return rank[entry].astype(np.float64) * float(dose_per_tilt)
