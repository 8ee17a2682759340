"""tiltflow: IMOD tilt series to a refined RELION 4 tomogram set."""

from tiltflow.errors import ConfigError, InputError, TiltflowError

__all__ = ["__version__", "TiltflowError", "InputError", "ConfigError"]


def __getattr__(name: str) -> str:
    # the version is looked up when asked for: importlib.metadata costs ~0.1 s of every start
    if name == "__version__":
        from importlib.metadata import PackageNotFoundError, version

        try:
            return version("tiltflow")
        except PackageNotFoundError:  # pragma: no cover - running from a source tree
            return "0.0.0+unknown"
    raise AttributeError(f"module 'tiltflow' has no attribute {name!r}")
