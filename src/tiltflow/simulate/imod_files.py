"""Writers of a simulated IMOD project: stack, ``.xf``, ``.tlt``, com files, ``.defocus``,
order list, ``.mdoc`` and ``truth.json``. Every file is written atomically and deterministically.
"""

from __future__ import annotations

import datetime as _dt
import os
from pathlib import Path

import numpy as np

from tiltflow.io.atomic import write_text_atomic
from tiltflow.io.mrc import write_stack
from tiltflow.simulate.core import DOSE_FORMAT, TLT_FORMAT, XF_FORMAT, SimulatedTiltSeries

#: first fake acquisition time stamp and the interval between tilts (chronological order)
_T0 = _dt.datetime(2024, 1, 1, 12, 0, 0)
_DT = _dt.timedelta(seconds=30)


def xf_text(xf: np.ndarray) -> str:
    """IMOD ``.xf`` text, one line per raw view."""
    return "".join(
        (XF_FORMAT % tuple(row)) + "\n" for row in np.asarray(xf, dtype=np.float64).reshape(-1, 6)
    )


def tlt_text(angles: np.ndarray) -> str:
    """IMOD ``.tlt`` text, one angle per line (4 decimals)."""
    return "".join((TLT_FORMAT % a) + "\n" for a in np.asarray(angles, dtype=np.float64).ravel())


def newst_com_text(name: str, ali_size: tuple[int, int]) -> str:
    """IMOD ``newst.com`` of an aligned stack of size ``ali_size`` at bin 1."""
    return (
        "# THIS IS A COMMAND FILE TO PRODUCE A PRE-ALIGNED STACK (written by tiltflow simulate)\n"
        "$newstack -StandardInput\n"
        f"InputFile\t{name}.mrc\n"
        f"OutputFile\t{name}_ali.mrc\n"
        f"TransformFile\t{name}.xf\n"
        "TaperAtFill\t1,0\n"
        "AdjustOrigin\t\n"
        f"SizeToOutputInXandY\t{ali_size[0]},{ali_size[1]}\n"
        "OffsetsInXandY\t0.0,0.0\n"
        "BinByFactor\t1\n"
        "AntialiasFilter\t-1\n"
        "$if (-e ./savework) ./savework\n"
    )


def exclude_list_text(views: tuple[int, ...]) -> str:
    """Comma-separated 1-based view list (no ranges, which RELION 4 mis-reads)."""
    return ",".join(str(v) for v in sorted(set(views)))


def tilt_com_text(
    name: str, ali_size: tuple[int, int], thickness: int, excluded: tuple[int, ...]
) -> str:
    """IMOD ``tilt.com`` with FULLIMAGE, THICKNESS, SHIFT 0 0, IMAGEBINNED 1 and EXCLUDELIST."""
    lines = [
        "# Command file to run Tilt (written by tiltflow simulate)",
        "$tilt -StandardInput",
        f"InputProjections {name}_ali.mrc",
        f"OutputFile {name}_full_rec.mrc",
        "IMAGEBINNED 1",
        f"TILTFILE {name}.tlt",
        f"THICKNESS {int(thickness)}",
        "RADIAL 0.35 0.035",
        "FalloffIsTrueSigma 1",
        "XAXISTILT 0.0",
        "LOG 0.0",
        "SCALE 0.0 1.0",
        "PERPENDICULAR",
        "MODE 2",
        f"FULLIMAGE {ali_size[0]} {ali_size[1]}",
        "SUBSETSTART 0 0",
        "AdjustOrigin",
        "ActionIfGPUFails 1,2",
        "OFFSET 0.0",
        "SHIFT 0.0 0.0",
    ]
    if excluded:
        lines.append(f"EXCLUDELIST {exclude_list_text(excluded)}")
    lines += ["UseGPU 0", "$if (-e ./savework) ./savework"]
    return "\n".join(lines) + "\n"


def defocus_text(
    angles: np.ndarray, defocus_u_A: np.ndarray, defocus_v_A: np.ndarray, angle_deg: np.ndarray
) -> str:
    """ctfplotter version-3 ``.defocus`` with astigmatism (flag 1), one line per raw view (nm)."""
    out = ["1 0 0.0 0.0 0 3"]
    for i, (a, du, dv, ang) in enumerate(zip(angles, defocus_u_A, defocus_v_A, angle_deg)):
        out.append(
            f"{i + 1}\t{i + 1}\t{a:.2f}\t{a:.2f}\t{du / 10.0:.2f}\t{dv / 10.0:.2f}\t{ang:.2f}"
        )
    return "\n".join(out) + "\n"


def order_list_text(angles: np.ndarray, chrono: np.ndarray) -> str:
    """RELION order list: ``index,tilt`` per line, chronological, 1-based index, no header."""
    order = np.argsort(chrono, kind="stable")
    return "".join(f"{k + 1},{angles[i]:.2f}\n" for k, i in enumerate(order))


def mdoc_text(
    name: str,
    angles: np.ndarray,
    dose: np.ndarray,
    chrono: np.ndarray,
    pixel_size: float,
    raw_size: tuple[int, int],
    voltage: float = 300.0,
) -> str:
    """SerialEM-like ``.mdoc`` (sections in stack order, 0-based ZValue, fake chronological times)."""
    lines = [
        f"PixelSpacing = {pixel_size:g}",
        f"Voltage = {voltage:g}",
        f"ImageFile = {name}.mrc",
        f"ImageSize = {raw_size[0]} {raw_size[1]}",
        "DataMode = 2",
        "",
        "[T = SerialEM: simulated by tiltflow]",
        "",
    ]
    for z, (a, d, c) in enumerate(zip(angles, dose, chrono)):
        stamp = (_T0 + int(c) * _DT).strftime("%d-%b-%y  %H:%M:%S")
        lines += [
            f"[ZValue = {z}]",
            f"TiltAngle = {a:.2f}",
            f"ExposureDose = {DOSE_FORMAT % d}",
            f"PixelSpacing = {pixel_size:g}",
            f"DateTime = {stamp}",
            "",
        ]
    return "\n".join(lines) + "\n"


def write_imod_project(
    ts: SimulatedTiltSeries, out_dir: str | os.PathLike[str], name: str
) -> dict[str, Path]:
    """Write the IMOD project of one simulated tilt series into ``out_dir``.

    Returns the written paths by kind: ``stack`` (``<name>.mrc``), ``xf``, ``tlt``, ``newst``,
    ``tilt``, ``defocus``, ``order_list`` (``<name>_order_list.csv``), ``mdoc``
    (``<name>.mrc.mdoc``) and ``truth`` (``truth.json``).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    t = ts.truth
    paths = {
        "stack": out / f"{name}.mrc",
        "xf": out / f"{name}.xf",
        "tlt": out / f"{name}.tlt",
        "newst": out / "newst.com",
        "tilt": out / "tilt.com",
        "defocus": out / f"{name}.defocus",
        "order_list": out / f"{name}_order_list.csv",
        "mdoc": out / f"{name}.mrc.mdoc",
        "truth": out / "truth.json",
    }
    write_stack(paths["stack"], ts.stack, t.pixel_size)
    write_text_atomic(paths["xf"], xf_text(t.xf_written))
    write_text_atomic(paths["tlt"], tlt_text(t.tilt_written_deg))
    write_text_atomic(paths["newst"], newst_com_text(name, t.ali_size))
    write_text_atomic(paths["tilt"], tilt_com_text(name, t.ali_size, t.thickness, t.excluded_views))
    write_text_atomic(
        paths["defocus"], defocus_text(t.tilt_true_deg, t.defocus_u, t.defocus_v, t.defocus_angle)
    )
    # the order list and the mdoc hold the nominal angles (= the true ones without a tilt offset)
    write_text_atomic(paths["order_list"], order_list_text(t.nominal_tilt_deg, t.chrono_index))
    write_text_atomic(
        paths["mdoc"],
        mdoc_text(name, t.nominal_tilt_deg, t.dose, t.chrono_index, t.pixel_size, t.raw_size),
    )
    t.to_json(paths["truth"])
    return paths
