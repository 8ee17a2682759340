"""``tiltflow`` command line: one verb per step, each calling the same library code as the workflow.

Each verb lives in its own module exposing ``add_parser(subparsers)`` (registers the verb and
sets ``func``) so steps stay independent.
"""

from __future__ import annotations

import argparse
import importlib
import os
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
    ("find_hand", "find-hand"),
    ("estimate_ice", "estimate-ice"),
    ("export_relion5", "export-relion5"),
    ("export_imod", "export-imod"),
)


#: one-line help per verb, shown by ``tiltflow --help`` without importing any verb module
VERB_HELP: dict[str, str] = {
    "simulate": "write synthetic IMOD projects with known truth",
    "import-imod": "import IMOD alignments into a RELION 4 tomogram set",
    "find-fiducials": "find gold beads, track them through the tilts and place them in 3D",
    "align": "refine every tilt's projection matrix from the fiducial tracks",
    "estimate-ice": "fit the ice thickness and write per-tilt intensity scale factors",
    "find-hand": "measure rlnTomoHand from the defocus gradient of tilted images",
    "export-relion5": "write the tomogram set as RELION 5 STAR files",
    "export-imod": "write the refined alignment back to IMOD (.xf, .tlt, tilt.com)",
}


def _selected_verb(argv: Sequence[str] | None) -> str | None:
    """The verb named on the command line (first argument that is not an option), if any."""
    if argv is None:
        return None
    names = {verb for _module, verb in VERBS}
    for arg in argv:
        if not arg.startswith("-"):
            return arg if arg in names else None
    return None


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The ``tiltflow`` parser.

    Only the verb named in ``argv`` is imported (its module pulls in numpy, scipy, ...); every other
    verb is registered as a stub with its one-line help, so ``tiltflow --help`` and
    ``tiltflow --version`` start without the numerical stack. ``argv=None`` imports every verb.
    """
    parser = argparse.ArgumentParser(
        prog="tiltflow",
        description="IMOD tilt series to a refined RELION 4 tomogram set.",
    )
    parser.add_argument("--version", action="version", version=f"tiltflow {__version__}")
    sub = parser.add_subparsers(dest="verb", metavar="VERB")
    sub.required = True
    selected = _selected_verb(argv)
    for module, verb in VERBS:
        if argv is not None and verb != selected:
            sub.add_parser(verb, help=VERB_HELP.get(verb, ""), add_help=False)
            continue
        try:
            mod = importlib.import_module(f"tiltflow.cli.{module}")
        except ModuleNotFoundError as exc:
            if exc.name == f"tiltflow.cli.{module}":
                continue  # verb not built yet
            raise
        mod.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    if argv is None:
        argv = sys.argv[1:]
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    try:
        args.func(args)
    except TiltflowError as exc:
        print(f"tiltflow {args.verb}: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # disk full, read-only file system, a file where a folder should be
        where = f"{exc.filename}: " if getattr(exc, "filename", None) else ""
        print(f"tiltflow {args.verb}: error: {where}{exc.strerror or exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # a bug: one line, the traceback only on request
        if os.environ.get("TILTFLOW_DEBUG"):
            raise
        print(
            f"tiltflow {args.verb}: internal error: {type(exc).__name__}: {exc} (a bug; please "
            "report it, with the traceback from TILTFLOW_DEBUG=1)",
            file=sys.stderr,
        )
        return 3
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
