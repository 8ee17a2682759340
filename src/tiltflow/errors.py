"""Error types: every user-facing failure is one of these, with the file, line or key named."""

from __future__ import annotations

from os import PathLike


class TiltflowError(Exception):
    """Base class of every error tiltflow raises on purpose."""


class InputError(TiltflowError):
    """An input file is missing, malformed or inconsistent.

    The message always names the file (and the line, when there is one) and what was expected.
    """

    def __init__(self, path: str | PathLike[str] | None, message: str, line: int | None = None):
        self.path = None if path is None else str(path)
        self.line = line
        where = ""
        if self.path is not None:
            where = self.path if line is None else f"{self.path}, line {line}"
            where += ": "
        super().__init__(where + message)


class ConfigError(TiltflowError):
    """A configuration key is unknown, missing or has an invalid value."""


class NoDataError(TiltflowError):
    """A step found nothing to work on (e.g. no fiducials). Not a crash: callers write empty outputs."""
