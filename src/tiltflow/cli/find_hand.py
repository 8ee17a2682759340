"""``tiltflow find-hand``: rlnTomoHand measured from the defocus gradient of tilted images (issue #15)."""

from __future__ import annotations

import argparse
from typing import Any

#: CLI defaults (kept equal to tiltflow.hand.HandParams, checked by the tests) without
#: importing numpy at parser-build time
_DEFAULTS: dict[str, Any] = {
    "min_tilt_deg": 30.0,
    "tile_px": 512,
    "tile_overlap": 0.5,
    "strip_px": 256,
    "res_low_A": 30.0,
    "res_high_A": 5.0,
    "min_rings": 4.0,
    "min_strip_z": 5.0,
    "min_z": 5.0,
    "slope_tolerance": 0.5,
    "min_agreement": 0.75,
    "min_tilts": 3,
    "plane": "auto",
    "defocus_tolerance_A": 100.0,
    "defocus_sigma": 3.0,
}

#: option -> HandParams field
OPTIONS: dict[str, str] = {
    "min_tilt": "min_tilt_deg",
    "tile_px": "tile_px",
    "tile_overlap": "tile_overlap",
    "strip_px": "strip_px",
    "res_low": "res_low_A",
    "res_high": "res_high_A",
    "search": "search_A",
    "min_rings": "min_rings",
    "min_strip_z": "min_strip_z",
    "min_z": "min_z",
    "slope_tol": "slope_tolerance",
    "min_agreement": "min_agreement",
    "min_tilts": "min_tilts",
    "plane": "plane",
    "force": "force",
    "correct_defocus": "correct_defocus",
    "defocus_tol": "defocus_tolerance_A",
    "defocus_sigma": "defocus_sigma",
    "j": "threads",
}


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register the ``find-hand`` verb."""
    d = _DEFAULTS
    p = sub.add_parser(
        "find-hand",
        help="measure rlnTomoHand from the defocus gradient of tilted images",
        description="On a tilted image the defocus changes across the image by the depth of the "
        "specimen there; RELION adds hand · pixel size · depth to the defocus. For every tilt of "
        "at least --min_tilt degrees the local defocus of strips parallel to the tilt axis is "
        "fitted and regressed on the depth predicted from the projection matrices: the slope is "
        "the hand (+1 or -1). rlnTomoHand is written into DIR/tomograms.star only when the "
        "measurement is conclusive (or with --force); DIR/hand_<name>.star and "
        "DIR/hand_<name>.png show the measurement.",
    )
    p.add_argument("--t", required=True, help="input tomogram set (tomograms.star)")
    p.add_argument("--o", required=True, help="output directory")
    p.add_argument(
        "--tomo", action="append", default=None, help="process only this tomogram (repeatable)"
    )
    p.add_argument(
        "--min_tilt",
        type=float,
        default=d["min_tilt_deg"],
        help=f"measure tilts at least this far from the specimen normal, deg (default {d['min_tilt_deg']:g})",
    )
    p.add_argument(
        "--tile_px",
        type=int,
        default=d["tile_px"],
        help=f"side of the square tiles whose spectra are averaged, px (default {d['tile_px']})",
    )
    p.add_argument(
        "--tile_overlap",
        type=float,
        default=d["tile_overlap"],
        help=f"overlap of neighbouring tiles (default {d['tile_overlap']:g})",
    )
    p.add_argument(
        "--strip_px",
        type=int,
        default=d["strip_px"],
        help=f"width of the strips across the tilt axis, px (default {d['strip_px']})",
    )
    p.add_argument(
        "--res_low",
        type=float,
        default=d["res_low_A"],
        help=f"low-resolution end of the fitted band, Å (default {d['res_low_A']:g})",
    )
    p.add_argument(
        "--res_high",
        type=float,
        default=d["res_high_A"],
        help=f"high-resolution end of the fitted band, Å (default {d['res_high_A']:g}; "
        "also limited by Nyquist, ring sampling and the defocus spread in a strip)",
    )
    p.add_argument(
        "--search",
        type=float,
        default=None,
        help="half-width of the defocus search around the imported defocus, Å "
        "(default: 1.25 x the largest predicted offset + 2000)",
    )
    p.add_argument(
        "--min_rings",
        type=float,
        default=d["min_rings"],
        help=f"fewest Thon rings in a tilt's band for it to be measured (default {d['min_rings']:g})",
    )
    p.add_argument(
        "--min_strip_z",
        type=float,
        default=d["min_strip_z"],
        help="a strip counts when its Thon rings stand this many noise sigma above the "
        f"background (default {d['min_strip_z']:g})",
    )
    p.add_argument(
        "--min_z",
        type=float,
        default=d["min_z"],
        help=f"fewest standard errors |slope| must reach (default {d['min_z']:g})",
    )
    p.add_argument(
        "--slope_tol",
        type=float,
        default=d["slope_tolerance"],
        help=f"|slope| must be within this of 1 (default {d['slope_tolerance']:g})",
    )
    p.add_argument(
        "--min_agreement",
        type=float,
        default=d["min_agreement"],
        help=f"fraction of tilts whose own slope has the global sign (default {d['min_agreement']:g})",
    )
    p.add_argument(
        "--min_tilts",
        type=int,
        default=d["min_tilts"],
        help=f"fewest measured tilts (default {d['min_tilts']})",
    )
    p.add_argument(
        "--plane",
        choices=("auto", "beam", "ice", "fiducials"),
        default=d["plane"],
        help="specimen plane: perpendicular to the zero-tilt beam, the set's ice normal, the "
        "fiducials' fitted plane, or auto (fiducials, else ice, else beam)",
    )
    p.add_argument(
        "--force",
        action="store_true",
        help="write sign(slope) into rlnTomoHand even when the result is undetermined",
    )
    p.add_argument(
        "--correct_defocus",
        action="store_true",
        help="replace the imported defocus of tilts whose measured defocus differs by more "
        "than --defocus_tol and --defocus_sigma standard errors",
    )
    p.add_argument(
        "--defocus_tol",
        type=float,
        default=d["defocus_tolerance_A"],
        help=f"see --correct_defocus, Å (default {d['defocus_tolerance_A']:g})",
    )
    p.add_argument(
        "--defocus_sigma",
        type=float,
        default=d["defocus_sigma"],
        help=f"see --correct_defocus (default {d['defocus_sigma']:g})",
    )
    p.add_argument("--j", type=int, default=1, help="FFT threads (default 1)")
    p.set_defaults(func=run)


def params_dict(args: argparse.Namespace) -> dict[str, Any]:
    """The HandParams mapping of the parsed command line."""
    return {field: getattr(args, option) for option, field in OPTIONS.items()}


def run(args: argparse.Namespace) -> None:
    """Run the step and print one line per tomogram."""
    from tiltflow.hand import STATUS_DETERMINED, HandParams, run_find_hand

    result, details = run_find_hand(
        args.t, args.o, HandParams.from_dict(params_dict(args)), names=args.tomo
    )
    for tomo in result:
        res = details[tomo.name]
        if res.status == STATUS_DETERMINED:
            what = (
                f"hand {res.hand_measured:+g} (slope {res.slope:+.3f} ± {res.slope_se:.3f}, "
                f"{res.n_tilts_measured} tilts)"
            )
        else:
            what = "undetermined: " + "; ".join(res.reasons)
        print(f"tiltflow find-hand: {tomo.name}: {what}; rlnTomoHand {tomo.hand:+g}")
    print(f"tiltflow find-hand: wrote {args.o}/tomograms.star ({len(result)} tomograms)")
