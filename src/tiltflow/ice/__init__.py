"""Ice thickness from the tilt images' own intensities (SPEC §5).

Public API:

- :func:`estimate_ice` (pure core: one tomogram + stack -> :class:`IceResult`),
- :func:`run_estimate_ice` (file level, used by the CLI verb and the workflow rule),
- :class:`IceParams` (settings, ``from_dict``), :func:`mean_free_path_nm`,
- model helpers :func:`fit_beer_lambert`, :func:`scale_factors`, :func:`attenuation`.
"""

from tiltflow.ice.core import IceResult, estimate_ice
from tiltflow.ice.model import attenuation, fit_beer_lambert, scale_factors, tilt_frame
from tiltflow.ice.params import IceParams, mean_free_path_nm
from tiltflow.ice.step import apply_result, plot_ice, run_estimate_ice, write_ice_star

__all__ = [
    "IceParams",
    "IceResult",
    "apply_result",
    "attenuation",
    "estimate_ice",
    "fit_beer_lambert",
    "mean_free_path_nm",
    "plot_ice",
    "run_estimate_ice",
    "scale_factors",
    "tilt_frame",
    "write_ice_star",
]
