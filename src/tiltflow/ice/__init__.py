"""Ice thickness from the tilt images' own intensities (SPEC §5).

Public API:

- :func:`estimate_ice` (pure core: one tomogram + stack -> :class:`IceResult`),
- :func:`run_estimate_ice` (file level, used by the CLI verb and the workflow rule),
- :class:`IceParams` (settings, ``from_dict``), :func:`mean_free_path_nm`,
- model helpers :func:`fit_beer_lambert`, :func:`scale_factors`, :func:`attenuation`.
"""

from typing import TYPE_CHECKING

from tiltflow._lazy import lazy_exports

if TYPE_CHECKING:
    from tiltflow.ice.core import IceResult, estimate_ice
    from tiltflow.ice.model import attenuation, fit_beer_lambert, scale_factors, tilt_frame
    from tiltflow.ice.params import IceParams, mean_free_path_nm
    from tiltflow.ice.step import (
        apply_result,
        plot_ice,
        render_ice_figure,
        run_estimate_ice,
        write_ice_star,
    )

_EXPORTS = {
    "IceResult": "tiltflow.ice.core",
    "estimate_ice": "tiltflow.ice.core",
    "attenuation": "tiltflow.ice.model",
    "fit_beer_lambert": "tiltflow.ice.model",
    "scale_factors": "tiltflow.ice.model",
    "tilt_frame": "tiltflow.ice.model",
    "IceParams": "tiltflow.ice.params",
    "mean_free_path_nm": "tiltflow.ice.params",
    "apply_result": "tiltflow.ice.step",
    "plot_ice": "tiltflow.ice.step",
    "render_ice_figure": "tiltflow.ice.step",
    "run_estimate_ice": "tiltflow.ice.step",
    "write_ice_star": "tiltflow.ice.step",
}

__all__ = [
    "IceParams",
    "IceResult",
    "apply_result",
    "attenuation",
    "estimate_ice",
    "fit_beer_lambert",
    "mean_free_path_nm",
    "plot_ice",
    "render_ice_figure",
    "run_estimate_ice",
    "scale_factors",
    "tilt_frame",
    "write_ice_star",
]

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
