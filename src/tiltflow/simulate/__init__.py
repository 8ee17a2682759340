"""Synthetic IMOD projects with known truth: ``tiltflow simulate``.

In memory: :func:`simulate_tilt_series` -> :class:`SimulatedTiltSeries` (stack + :class:`Truth`).
On disk: :func:`write_imod_project` (one IMOD project) and :func:`simulate_dataset` (several
projects + a RELION 4 import STAR).
"""

from tiltflow.simulate.core import SimulatedTiltSeries, acquisition_order, simulate_tilt_series
from tiltflow.simulate.dataset import simulate_dataset
from tiltflow.simulate.imod_files import write_imod_project
from tiltflow.simulate.params import SimulationParams
from tiltflow.simulate.truth import Truth

__all__ = [
    "SimulatedTiltSeries",
    "SimulationParams",
    "Truth",
    "acquisition_order",
    "simulate_dataset",
    "simulate_tilt_series",
    "write_imod_project",
]
