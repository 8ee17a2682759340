"""``tiltflow`` command line: one verb per step, each calling the same library code as the workflow.

Each verb lives in its own module exposing ``add_parser(subparsers)`` (registers the verb and
sets ``func``) so steps stay independent.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from tiltflow import __version__
from tiltflow.errors import TiltflowError

#: (module under tiltflow.cli, verb) in the order shown by --help
VERBS: tuple[tuple[str, str], ...] = (
    ("simulate", "simulate"),
    ("import_imod", "import-imod"),
    ("find_fiducials", "find-fiducials"),
    ("align", "align"),
    ("estimate_ice", "estimate-ice"),
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tiltflow",
        description="IMOD tilt series to a refined RELION 4 tomogram set.",
    )
    parser.add_argument("--version", action="version", version=f"tiltflow {__version__}")
    sub = parser.add_subparsers(dest="verb", metavar="VERB")
    sub.required = True
    for module, _verb in VERBS:
        try:
            mod = importlib.import_module(f"tiltflow.cli.{module}")
        except ModuleNotFoundError as exc:
            if exc.name == f"tiltflow.cli.{module}":
                continue  # verb not built yet
            raise
        mod.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        args.func(args)
    except TiltflowError as exc:
        print(f"tiltflow {args.verb}: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
