"""``tiltflow find-fiducials``: detect, track and triangulate gold beads (RELION option names)."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from tiltflow.fiducials import FiducialParams, run_find_fiducials


def add_parser(sub: argparse._SubParsersAction) -> None:
    d = FiducialParams()
    p = sub.add_parser(
        "find-fiducials",
        help="find gold beads, track them through the tilts and place them in 3D",
        description="Writes DIR/tomograms.star (rlnTomoFiducialsStarFile linked), "
        "DIR/fiducials_<name>.star (RELION) and DIR/tracks_<name>.star (2D tracks for align).",
    )
    p.add_argument("--t", required=True, help="input tomogram set (tomograms.star)")
    p.add_argument("--o", required=True, help="output directory")
    p.add_argument(
        "--r", type=float, default=d.radius_A, help=f"bead radius in Å (default {d.radius_A:g})"
    )
    p.add_argument(
        "--d",
        type=float,
        default=d.threshold,
        help=f"detection threshold in noise sigma (default {d.threshold:g})",
    )
    p.add_argument("--j", type=int, default=d.threads, help=f"threads (default {d.threads})")
    p.add_argument("--bin", type=int, default=d.binning, help="detection binning (0 = automatic)")
    p.add_argument(
        "--device",
        choices=("cpu", "gpu", "auto"),
        default=d.device,
        help=f"array device (default {d.device})",
    )
    p.add_argument(
        "--min_fraction",
        type=float,
        default=d.min_fraction,
        help="minimum fraction of in-image views a bead is seen in",
    )
    p.add_argument(
        "--min_views",
        type=int,
        default=d.min_views,
        help="minimum number of views a bead is seen in",
    )
    p.add_argument(
        "--search_px",
        type=float,
        default=d.search_px,
        help="largest alignment error between neighbouring tilts (px)",
    )
    p.add_argument(
        "--imod_fid",
        default="",
        help="use IMOD tracks from this .fid model instead of detecting ({name} = tomogram name)",
    )
    p.add_argument(
        "--imod_prexg",
        default="",
        help=".prexg of the stack the model was tracked on ({name} allowed)",
    )
    p.add_argument(
        "--tomo", action="append", default=None, help="process only this tomogram (repeatable)"
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> None:
    params = FiducialParams(
        radius_A=args.r,
        threshold=args.d,
        threads=args.j,
        binning=args.bin,
        device=args.device,
        min_fraction=args.min_fraction,
        min_views=args.min_views,
        search_px=args.search_px,
        source="imod" if args.imod_fid else "detect",
        imod_fid=args.imod_fid,
        imod_prexg=args.imod_prexg,
    )
    logging.basicConfig(
        level=logging.INFO, format="tiltflow find-fiducials: %(message)s", stream=sys.stderr
    )
    result = run_find_fiducials(args.t, args.o, params, names=args.tomo)
    print(
        f"tiltflow find-fiducials: wrote {Path(args.o) / 'tomograms.star'} ({len(result)} tomograms)"
    )
