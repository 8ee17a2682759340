"""Alignment refinement from fiducials: bundle adjustment of RELION 4 projection matrices.

``align_tomogram`` (pure) refines one tomogram; ``run_align`` is the file-level step (CLI verb
``tiltflow align`` and the workflow rule call it). Model and gauge: see
:mod:`tiltflow.align.frames` and :mod:`tiltflow.align.core`.
"""

from typing import TYPE_CHECKING

from tiltflow._lazy import lazy_exports

if TYPE_CHECKING:
    from tiltflow.align.core import Observations, align_tomogram, as_observations
    from tiltflow.align.frames import tilt_angles_deg, tilt_axis, triangulate
    from tiltflow.align.params import AlignParams
    from tiltflow.align.report import AlignResult
    from tiltflow.align.run import run_align

_EXPORTS = {
    "Observations": "tiltflow.align.core",
    "align_tomogram": "tiltflow.align.core",
    "as_observations": "tiltflow.align.core",
    "tilt_angles_deg": "tiltflow.align.frames",
    "tilt_axis": "tiltflow.align.frames",
    "triangulate": "tiltflow.align.frames",
    "AlignParams": "tiltflow.align.params",
    "AlignResult": "tiltflow.align.report",
    "run_align": "tiltflow.align.run",
}

__all__ = [
    "AlignParams",
    "AlignResult",
    "Observations",
    "align_tomogram",
    "as_observations",
    "run_align",
    "tilt_angles_deg",
    "tilt_axis",
    "triangulate",
]

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
