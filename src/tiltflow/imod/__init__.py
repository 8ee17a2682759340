"""Readers of IMOD's alignment files (``.xf``, ``.tlt``, ``newst.com``, ``tilt.com``, ``.defocus``).

Every reader turns bad input into one :class:`~tiltflow.errors.InputError` that names the file,
the line and what was expected. The text helpers they share live in :mod:`tiltflow.io.text`.

Public readers (re-exported here for convenience):

- :func:`read_xf` -> ``(n, 6)`` float64
- :func:`read_tlt` -> ``(n,)`` float64
- :func:`read_comfile`, :func:`parse_view_list`, :func:`read_tilt_com`, :func:`read_newst_com`
- :func:`read_ctfplotter` -> :class:`CtfPlotterTable`
"""

from __future__ import annotations

from tiltflow.imod.comfile import (
    ComKeywords,
    NewstCom,
    TiltCom,
    parse_view_list,
    read_comfile,
    read_newst_com,
    read_tilt_com,
)
from tiltflow.imod.defocus import CtfPlotterTable, read_ctfplotter
from tiltflow.imod.tlt import read_tlt
from tiltflow.imod.xf import read_xf

__all__ = [
    "read_xf",
    "read_tlt",
    "ComKeywords",
    "read_comfile",
    "parse_view_list",
    "TiltCom",
    "read_tilt_com",
    "NewstCom",
    "read_newst_com",
    "CtfPlotterTable",
    "read_ctfplotter",
]
