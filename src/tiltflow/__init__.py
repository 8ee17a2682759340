"""tiltflow: IMOD tilt series to a refined RELION 4 tomogram set."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("tiltflow")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0+unknown"

from tiltflow.errors import ConfigError, InputError, TiltflowError  # noqa: E402

__all__ = ["__version__", "TiltflowError", "InputError", "ConfigError"]
