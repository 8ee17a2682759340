"""``tiltflow import-imod``: drop-in for ``relion_tomo_import_tomograms`` (same options, same numbers)."""

from __future__ import annotations

import argparse
from pathlib import Path

from tiltflow import __version__
from tiltflow.importer import ImportOptions, run_import


def output_star(o: str) -> Path:
    """``--o`` may name the output STAR file (as in RELION) or a directory for ``tomograms.star``."""
    p = Path(o)
    return p if p.suffix == ".star" else p / "tomograms.star"


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "import-imod",
        help="import IMOD alignments into a RELION 4 tomogram set",
        description="Import IMOD-aligned tilt series into a RELION 4 tomogram set. Options and "
        "defaults are those of relion_tomo_import_tomograms; see README for what tiltflow does "
        "differently (EXCLUDELIST ranges, .tlt pairing, ctfplotter versions, mdoc doses).",
    )
    p.add_argument("--i", required=True, help="RELION 4 import STAR (or TSV with the same labels)")
    p.add_argument("--o", required=True, help="output tomogram set (.star) or directory")
    p.add_argument("--t", default=None, help="existing tomogram set to append to")
    add_import_arguments(p)
    p.add_argument(
        "--tomo", action="append", default=None, help="import only this tomogram (repeatable)"
    )
    p.set_defaults(func=run)


def add_import_arguments(p: argparse.ArgumentParser) -> None:
    """The options that fix the geometry of an IMOD import (shared with ``export-imod``)."""
    p.add_argument(
        "--root", default="", help="root directory prefixed to IMOD dirs, tilt series and CTF files"
    )
    p.add_argument("--hand", type=float, default=-1.0, help="handedness (default -1)")
    p.add_argument("--angpix", type=float, required=True, help="tilt-series pixel size in Å")
    p.add_argument("--voltage", type=float, default=300.0, help="voltage in kV (default 300)")
    p.add_argument("--Cs", type=float, default=2.7, help="spherical aberration in mm (default 2.7)")
    p.add_argument("--Q0", type=float, default=0.1, help="amplitude contrast (default 0.1)")
    p.add_argument(
        "--ol", default=None, help="order list, used when the STAR has no rlnTomoImportOrderList"
    )
    p.add_argument(
        "--fd",
        type=float,
        default=None,
        help="dose per tilt (e/Å²), when the STAR has no rlnTomoImportFractionalDose",
    )
    p.add_argument("--nc", default="newst.com", help="newst.com, relative to the IMOD directory")
    p.add_argument("--tc", default="tilt.com", help="tilt.com, relative to the IMOD directory")
    p.add_argument(
        "--thick", type=float, default=-1.0, help="tomogram thickness (default: tilt.com THICKNESS)"
    )
    p.add_argument("--offx", type=float, default=0.0, help="x offset in px")
    p.add_argument("--offy", type=float, default=0.0, help="y offset in px")
    p.add_argument("--offz", type=float, default=0.0, help="z offset in px")
    p.add_argument("--flipYZ", action="store_true", help="interchange the Y and Z coordinates")
    p.add_argument("--flipZ", action="store_true", help="with --flipYZ: also reverse Z")
    p.add_argument("--flipAng", action="store_true", help="negate the tilt angles")
    p.add_argument(
        "--ali", action="store_true", help="map to the aligned stack (.ali) instead of the raw one"
    )
    p.add_argument("--ali_size", action="store_true", help="take the aligned size from newst.com")
    p.add_argument(
        "--xtilt",
        action="store_true",
        help="apply tilt.com XAXISTILT and XTILTFILE (IMOD's X-axis tilt; RELION 4 ignores them, "
        "so off by default)",
    )
    p.add_argument(
        "--no_pixel_check",
        action="store_true",
        help="accept a stack header pixel size that differs from --angpix",
    )


def options_from_args(args: argparse.Namespace) -> ImportOptions:
    return ImportOptions(
        angpix=args.angpix,
        root=args.root,
        hand=args.hand,
        voltage=args.voltage,
        cs=args.Cs,
        q0=args.Q0,
        order_list=args.ol,
        fractional_dose=args.fd,
        newst_com=args.nc,
        tilt_com=args.tc,
        thickness=args.thick,
        offset_x=args.offx,
        offset_y=args.offy,
        offset_z=args.offz,
        flip_yz=args.flipYZ,
        flip_z=args.flipZ,
        flip_ang=args.flipAng,
        ali=args.ali,
        ali_size=args.ali_size,
        x_axis_tilt=args.xtilt,
        check_pixel_size=not args.no_pixel_check,
    )


def run(args: argparse.Namespace) -> None:
    import logging
    import sys

    logging.basicConfig(
        level=logging.WARNING, format="tiltflow import-imod: warning: %(message)s", stream=sys.stderr
    )
    out = output_star(args.o)
    opts = options_from_args(args)
    result = run_import(
        args.i,
        out,
        opts,
        names=args.tomo,
        append_to=args.t,
        comments=(f"tiltflow {__version__} import-imod",),
    )
    print(f"tiltflow import-imod: wrote {out} ({len(result)} tomograms)")
