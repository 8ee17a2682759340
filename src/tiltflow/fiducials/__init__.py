"""Gold-fiducial detection, tracking and triangulation (``tiltflow find-fiducials``).

Library: :func:`find_fiducials` (one tilt series in memory) and the step API
:func:`run_find_fiducials` (tomogram set in, RELION fiducials STAR + tracks side files out).
"""

from tiltflow.fiducials.step import (
    FiducialParams,
    FiducialResult,
    fiducials_from_imod,
    find_fiducials,
    run_find_fiducials,
)

__all__ = [
    "FiducialParams",
    "FiducialResult",
    "find_fiducials",
    "fiducials_from_imod",
    "run_find_fiducials",
]
