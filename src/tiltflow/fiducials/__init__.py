"""Gold-fiducial detection, tracking and triangulation (``tiltflow find-fiducials``).

Library: :func:`find_fiducials` (one tilt series in memory) and the step API
:func:`run_find_fiducials` (tomogram set in, RELION fiducials STAR + tracks side files out).
"""

from typing import TYPE_CHECKING

from tiltflow._lazy import lazy_exports

if TYPE_CHECKING:
    from tiltflow.fiducials.step import (
        FiducialParams,
        FiducialResult,
        fiducials_from_imod,
        find_fiducials,
        run_find_fiducials,
    )

_EXPORTS = {
    "FiducialParams": "tiltflow.fiducials.step",
    "FiducialResult": "tiltflow.fiducials.step",
    "fiducials_from_imod": "tiltflow.fiducials.step",
    "find_fiducials": "tiltflow.fiducials.step",
    "run_find_fiducials": "tiltflow.fiducials.step",
}

__all__ = [
    "FiducialParams",
    "FiducialResult",
    "find_fiducials",
    "fiducials_from_imod",
    "run_find_fiducials",
]

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
