"""``tiltflow align``: refine the projection matrices of a tomogram set from its fiducials."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from tiltflow.align import AlignParams, run_align
from tiltflow.align.params import GROUPINGS, LOSSES
from tiltflow.align.run import summary_line


def _bool(text: str) -> bool:
    t = text.strip().lower()
    if t in ("1", "true", "yes", "on"):
        return True
    if t in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true/false, got {text!r}")


def add_parser(sub: argparse._SubParsersAction) -> None:
    d = AlignParams()
    p = sub.add_parser(
        "align",
        help="refine every tilt's projection matrix from the fiducial tracks",
        description="Bundle adjustment of the RELION 4 projection matrices and 3D bead positions "
        "from the fiducials linked in the tomogram set (rlnTomoFiducialsStarFile and the tracks "
        "file next to it). Writes DIR/tomograms.star, fiducials/tracks, align_<name>.star/.png.",
    )
    p.add_argument(
        "--t", required=True, help="input tomogram set (tomograms.star) with fiducials linked"
    )
    p.add_argument("--o", required=True, help="output directory")
    p.add_argument(
        "--tomo", action="append", default=None, help="refine only this tomogram (repeatable)"
    )
    g = p.add_argument_group("parameters (true/false for switches)")
    for key, help_text in (
        ("refine_shifts", "refine image shifts"),
        ("refine_tilt", "refine tilt angles"),
        ("refine_rotation", "refine in-plane rotation"),
        ("refine_magnification", "refine magnification"),
        (
            "refine_third_angle",
            "refine the third angle (rotation about the in-image axis normal to the tilt axis)",
        ),
        ("reassociate", "pick up missed detections after the first solve"),
    ):
        g.add_argument(
            f"--{key}",
            type=_bool,
            default=getattr(d, key),
            metavar="BOOL",
            help=f"{help_text} (default {getattr(d, key)})",
        )
    g.add_argument("--rotation_grouping", choices=GROUPINGS, default=d.rotation_grouping)
    g.add_argument("--magnification_grouping", choices=GROUPINGS, default=d.magnification_grouping)
    g.add_argument(
        "--group_size",
        type=int,
        default=d.group_size,
        help=f"tilts per group (default {d.group_size})",
    )
    g.add_argument("--smoothing_weight", type=float, default=d.smoothing_weight)
    g.add_argument("--loss", choices=LOSSES, default=d.loss)
    g.add_argument("--f_scale_px", type=float, default=d.f_scale_px)
    g.add_argument("--reassociation_radius_px", type=float, default=d.reassociation_radius_px)
    g.add_argument(
        "--outlier_mad", type=float, default=d.outlier_mad, help="0 = keep every observation"
    )
    g.add_argument("--outlier_min_px", type=float, default=d.outlier_min_px)
    g.add_argument("--rounds", type=int, default=d.rounds)
    g.add_argument("--min_beads_per_tilt", type=int, default=d.min_beads_per_tilt)
    g.add_argument("--min_tilts_per_bead", type=int, default=d.min_tilts_per_bead)
    g.add_argument("--min_depth_spread_px", type=float, default=d.min_depth_spread_px)
    g.add_argument("--max_iterations", type=int, default=d.max_iterations)
    p.set_defaults(func=run)


def params_from_args(args: argparse.Namespace) -> AlignParams:
    """AlignParams from the parsed options (same names)."""
    import dataclasses

    return AlignParams.from_dict(
        {f.name: getattr(args, f.name) for f in dataclasses.fields(AlignParams)}
    )


def run(args: argparse.Namespace) -> None:
    params = params_from_args(args)
    logging.basicConfig(
        level=logging.WARNING, format="tiltflow align: warning: %(message)s", stream=sys.stderr
    )
    result = run_align(
        args.t,
        args.o,
        params,
        names=args.tomo,
        on_result=lambda r: print("tiltflow align: " + summary_line(r)),
    )
    print(f"tiltflow align: wrote {Path(args.o) / 'tomograms.star'} ({len(result)} tomograms)")
