"""Read and write RELION 4 tomogram sets (``tomograms.star``, format in SPEC §4).

Labels of an input set that tiltflow does not know (global or per tilt, e.g. a lab's own
``_myNote`` or RELION labels of a newer version) are read into ``Tomogram.extra`` /
``Tomogram.tilt_extra`` and written back after tiltflow's own, so every step keeps them.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from tiltflow.errors import InputError
from tiltflow.io.star import (
    StarBlock,
    format_vector,
    parse_vector,
    read_star_blocks,
    require_columns,
    write_star,
)
from tiltflow.model import OPTIONAL_GLOBAL_LABELS, Tomogram, TomogramSet

GLOBAL_LABELS: tuple[str, ...] = (
    "rlnTomoName",
    "rlnTomoTiltSeriesName",
    "rlnTomoFrameCount",
    "rlnTomoSizeX",
    "rlnTomoSizeY",
    "rlnTomoSizeZ",
    "rlnTomoHand",
    "rlnOpticsGroupName",
    "rlnTomoTiltSeriesPixelSize",
    "rlnVoltage",
    "rlnSphericalAberration",
    "rlnAmplitudeContrast",
    "rlnTomoImportFractionalDose",
)

TILT_LABELS: tuple[str, ...] = (
    "rlnTomoProjX",
    "rlnTomoProjY",
    "rlnTomoProjZ",
    "rlnTomoProjW",
    "rlnDefocusU",
    "rlnDefocusV",
    "rlnDefocusAngle",
    "rlnCtfScalefactor",
    "rlnMicrographPreExposure",
)

STAR_VERSION_LINE = "version 30001"

log = logging.getLogger(__name__)


def tomogram_set_blocks(tomo_set: TomogramSet) -> dict[str, dict[str, list]]:
    """The STAR blocks (global first, then one per tomogram) of a tomogram set."""
    tomos = list(tomo_set)
    g: dict[str, list] = {
        "rlnTomoName": [t.name for t in tomos],
        "rlnTomoTiltSeriesName": [t.tilt_series for t in tomos],
        "rlnTomoFrameCount": [int(t.frame_count) for t in tomos],
        "rlnTomoSizeX": [int(t.size[0]) for t in tomos],
        "rlnTomoSizeY": [int(t.size[1]) for t in tomos],
        "rlnTomoSizeZ": [int(t.size[2]) for t in tomos],
        "rlnTomoHand": [float(t.hand) for t in tomos],
        "rlnOpticsGroupName": [t.optics_group for t in tomos],
        "rlnTomoTiltSeriesPixelSize": [float(t.pixel_size) for t in tomos],
        "rlnVoltage": [float(t.voltage) for t in tomos],
        "rlnSphericalAberration": [float(t.cs) for t in tomos],
        "rlnAmplitudeContrast": [float(t.amplitude_contrast) for t in tomos],
        "rlnTomoImportFractionalDose": [float(t.fractional_dose) for t in tomos],
    }
    for label in OPTIONAL_GLOBAL_LABELS:
        have = [label in t.extra for t in tomos]
        if not any(have):
            continue
        if not all(have):
            lacking = [t.name for t in tomos if label not in t.extra]
            raise ValueError(
                f"global label {label} is set for some tomograms but not for {lacking}"
            )
        g[label] = [t.extra[label] for t in tomos]
    # labels of an input set tiltflow does not know: kept, after its own, in first-seen order
    others = list(dict.fromkeys(
        lab for t in tomos for lab in t.extra
        if lab not in OPTIONAL_GLOBAL_LABELS and lab not in GLOBAL_LABELS
    ))
    for label in others:
        lacking = [t.name for t in tomos if label not in t.extra]
        if lacking:
            log.warning(
                "global label _%s (from an input set) is not written: tomogram(s) %s lack it",
                label, lacking,
            )
            continue
        g[label] = [t.extra[label] for t in tomos]
    blocks: dict[str, dict[str, list]] = {"global": g}
    for t in tomos:
        blocks[t.name] = {
            "rlnTomoProjX": [format_vector(m[0]) for m in t.proj],
            "rlnTomoProjY": [format_vector(m[1]) for m in t.proj],
            "rlnTomoProjZ": [format_vector(m[2]) for m in t.proj],
            "rlnTomoProjW": [format_vector(m[3]) for m in t.proj],
            "rlnDefocusU": [float(v) for v in t.defocus_u],
            "rlnDefocusV": [float(v) for v in t.defocus_v],
            "rlnDefocusAngle": [float(v) for v in t.defocus_angle],
            "rlnCtfScalefactor": [float(v) for v in t.ctf_scale],
            "rlnMicrographPreExposure": [float(v) for v in t.pre_exposure],
        }
        for label, values in t.tilt_extra.items():
            if label not in TILT_LABELS:
                blocks[t.name][label] = [_plain(v) for v in values]
    return blocks


def _missing(v: object) -> bool:
    """True for a value read as NaN (an optional column left empty as ``nan``)."""
    return isinstance(v, (float, np.floating)) and bool(np.isnan(v))


def _plain(v: Any) -> Any:
    """A numpy scalar as the Python value the STAR writer formats (int stays int)."""
    return v.item() if isinstance(v, np.generic) else v


def write_tomogram_set(
    path: str | os.PathLike[str], tomo_set: TomogramSet, comments: Sequence[str] = ()
) -> None:
    """Write ``tomograms.star`` atomically (``# version 30001`` first, then any comment lines)."""
    write_star(path, tomogram_set_blocks(tomo_set), header=(STAR_VERSION_LINE, *comments))


def _column(df: StarBlock, label: str, path: Path, block: str, kind: type) -> np.ndarray:
    try:
        values = df[label]
        arr = np.asarray(values, dtype=kind) if kind is not str else values.astype(str)
    except (ValueError, TypeError):
        raise InputError(
            path, f"block data_{block}: column _{label} is not {kind.__name__}"
        ) from None
    if kind is float and not np.all(np.isfinite(arr)):
        bad = int(np.flatnonzero(~np.isfinite(arr))[0])
        raise InputError(path, f"block data_{block}: column _{label} row {bad + 1} is not finite")
    return arr


def _global_number(
    row: Any, label: str, path: Path, where: str, kind: type, positive: bool,
    minimum: float | None,
) -> Any:
    """A number of a data_global row, checked: finite, an integer if ``kind`` is int, > 0 or >=
    ``minimum``; else one InputError naming the file, row, tomogram and label."""
    raw = row[label]
    try:
        val = float(raw)
    except (TypeError, ValueError):
        raise InputError(path, f"{where}: _{label} {raw!r} is not a number") from None
    if not np.isfinite(val) or (kind is int and val != int(val)):
        what = "an integer" if kind is int else "a finite number"
        raise InputError(path, f"{where}: _{label} {raw!r} is not {what}")
    if (positive and val <= 0) or (minimum is not None and val < minimum):
        need = "> 0" if positive else f">= {minimum:g}"
        raise InputError(path, f"{where}: _{label} is {raw!r}, expected {need}")
    return int(val) if kind is int else val


def read_tomogram_set(path: str | os.PathLike[str]) -> TomogramSet:
    """Read a RELION 4 ``tomograms.star`` into a :class:`TomogramSet`."""
    path = Path(path)
    blocks = read_star_blocks(path)
    if "global" not in blocks:
        raise InputError(path, "no data_global block: not a RELION 4 tomogram set")
    g = blocks["global"]
    require_columns(g, GLOBAL_LABELS, path, "global")
    listed = [str(n) for n in g["rlnTomoName"]]
    dup = sorted({n for n in listed if listed.count(n) > 1})
    if dup:
        rows = [i + 1 for i, n in enumerate(listed) if n == dup[0]]
        raise InputError(
            path,
            f"duplicate tomogram names {dup} in data_global (name {dup[0]!r} in rows {rows}): "
            "each tomogram needs its own name",
        )
    tomos = []
    for row_no in range(1, len(g) + 1):
        row = g.row(row_no - 1)
        name = str(row["rlnTomoName"])
        if name not in blocks:
            raise InputError(
                path, f"tomogram {name!r} is listed in data_global but has no data_{name} block"
            )
        tb = blocks[name]
        require_columns(tb, TILT_LABELS, path, name)
        proj = np.stack(
            [
                np.stack(
                    [parse_vector(v, path, f"data_{name} row {j + 1} _{lab}") for v in tb[lab]]
                )
                for j, lab in [
                    (0, "rlnTomoProjX"),
                    (1, "rlnTomoProjY"),
                    (2, "rlnTomoProjZ"),
                    (3, "rlnTomoProjW"),
                ]
            ],
            axis=1,
        )
        extra = {
            lab: row[lab]
            for lab in OPTIONAL_GLOBAL_LABELS
            if lab in g.columns and not _missing(row[lab])
        }
        extra = {
            k: (str(v) if k == "rlnTomoFiducialsStarFile" else float(v)) for k, v in extra.items()
        }
        # any other label is kept as read and written back by every step
        for lab in g.columns:
            if lab not in GLOBAL_LABELS and lab not in OPTIONAL_GLOBAL_LABELS:
                extra[lab] = _plain(row[lab])
        tilt_extra = {
            lab: tb[lab] for lab in tb.columns if lab not in TILT_LABELS
        }
        where = f"data_global row {row_no} ({name})"

        def num(label: str, kind: type = float, positive: bool = False,
                minimum: float | None = None, _row: Any = row, _where: str = where) -> Any:
            return _global_number(_row, label, path, _where, kind, positive, minimum)

        frame_count = num("rlnTomoFrameCount", int, positive=True)
        if frame_count != len(tb):
            raise InputError(
                path,
                f"tomogram {name}: _rlnTomoFrameCount is {frame_count} but data_{name} has "
                f"{len(tb)} rows",
            )
        tomos.append(
            Tomogram(
                name=name,
                tilt_series=str(row["rlnTomoTiltSeriesName"]),
                frame_count=frame_count,
                size=(
                    num("rlnTomoSizeX", int, positive=True),
                    num("rlnTomoSizeY", int, positive=True),
                    num("rlnTomoSizeZ", int, positive=True),
                ),
                hand=num("rlnTomoHand"),
                optics_group=str(row["rlnOpticsGroupName"]),
                pixel_size=num("rlnTomoTiltSeriesPixelSize", positive=True),
                voltage=num("rlnVoltage", positive=True),
                cs=num("rlnSphericalAberration", minimum=0.0),
                amplitude_contrast=num("rlnAmplitudeContrast", minimum=0.0),
                fractional_dose=num("rlnTomoImportFractionalDose", minimum=0.0),
                proj=proj,
                defocus_u=_column(tb, "rlnDefocusU", path, name, float),
                defocus_v=_column(tb, "rlnDefocusV", path, name, float),
                defocus_angle=_column(tb, "rlnDefocusAngle", path, name, float),
                ctf_scale=_column(tb, "rlnCtfScalefactor", path, name, float),
                pre_exposure=_column(tb, "rlnMicrographPreExposure", path, name, float),
                extra=extra,
                tilt_extra=tilt_extra,
            )
        )
    return TomogramSet(tuple(tomos))


def gather_sets(
    fragment_paths: Sequence[str | os.PathLike[str]],
    out_star: str | os.PathLike[str],
    missing: dict[str, str] | None = None,
    comments: Sequence[str] = (),
) -> TomogramSet:
    """Merge per-tomogram fragments into one tomogram set, in the order given.

    ``missing`` maps tomogram names that failed to a reason; they are listed as comment lines
    (``# missing <name>: <reason>``) so the final set says which tomograms are absent and why,
    while the tables stay pure RELION.
    """
    merged = TomogramSet(())
    for p in fragment_paths:
        merged = merged.merged(read_tomogram_set(p))
    notes = list(comments)
    for name, reason in sorted((missing or {}).items()):
        notes.append(f"missing {name}: {' '.join(str(reason).split())}")
    write_tomogram_set(out_star, merged, comments=notes)
    return merged
