"""``tiltflow estimate-ice``: per-tilt rlnCtfScalefactor from the ice thickness (SPEC §5)."""

from __future__ import annotations

import argparse
from typing import Any

from tiltflow.ice import IceParams, run_estimate_ice

_D = IceParams()


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register the ``estimate-ice`` verb."""
    p = sub.add_parser(
        "estimate-ice",
        help="fit the ice thickness and write per-tilt intensity scale factors",
        description="Fit I_f/dose_f = L exp(-t/|n.v_f|) to the mean intensity of the bead-free "
        "central field of every tilt image; write rlnCtfScalefactor per tilt and the global "
        "ice labels into DIR/tomograms.star, plus DIR/ice_<name>.star and DIR/ice_<name>.png.",
    )
    p.add_argument("--t", required=True, help="input tomogram set (tomograms.star)")
    p.add_argument("--o", required=True, help="output directory")
    p.add_argument(
        "--tomo", action="append", default=None, help="process only this tomogram (repeatable)"
    )
    p.add_argument(
        "--mfp",
        type=float,
        default=None,
        help="inelastic mean free path in nm (default: 350 at 300 kV, 300 at 200 kV)",
    )
    p.add_argument(
        "--fallback",
        choices=("none", "cos"),
        default=_D.fallback,
        help="when the images are not in counts: 'none' = error (default), 'cos' = cos(tilt) scales",
    )
    p.add_argument(
        "--central_fraction",
        type=float,
        default=_D.central_fraction,
        help=f"measured field: fraction of image width and height (default {_D.central_fraction})",
    )
    p.add_argument(
        "--clip_sigma",
        type=float,
        default=_D.clip_sigma,
        help=f"drop pixels beyond this many robust sigma from the median (default {_D.clip_sigma})",
    )
    p.add_argument(
        "--bead_radius",
        type=float,
        default=_D.bead_radius_A,
        help=f"gold bead radius in Å for masking (default {_D.bead_radius_A})",
    )
    p.add_argument(
        "--bead_mask_factor",
        type=float,
        default=_D.bead_mask_factor,
        help=f"mask discs of this many bead radii (default {_D.bead_mask_factor})",
    )
    p.add_argument(
        "--outlier_sigma",
        type=float,
        default=_D.outlier_sigma,
        help=f"leave out tilts with residuals beyond this many robust sigma; 0 = off (default {_D.outlier_sigma})",
    )
    p.add_argument(
        "--normal_from_beads",
        choices=("auto", "never"),
        default=_D.normal_from_beads,
        help="take the ice normal's tilt-axis component from fiducials on the ice surfaces (default auto)",
    )
    p.add_argument("--j", type=int, default=_D.threads, help=f"threads (default {_D.threads})")
    p.set_defaults(func=run)


def params_from_args(args: argparse.Namespace) -> IceParams:
    """IceParams from the parsed command line."""
    d: dict[str, Any] = {
        "central_fraction": args.central_fraction,
        "clip_sigma": args.clip_sigma,
        "bead_radius_A": args.bead_radius,
        "bead_mask_factor": args.bead_mask_factor,
        "outlier_sigma": args.outlier_sigma,
        "mean_free_path_nm": args.mfp,
        "fallback": args.fallback,
        "normal_from_beads": args.normal_from_beads,
        "threads": args.j,
    }
    return IceParams.from_dict(d)


#: the Beer-Lambert fit has 3 parameters (log L, thickness, in-plane normal angle): it needs at
#: least one more tilt with data (tiltflow.ice.model.fit_beer_lambert)
MIN_ICE_TILTS = 4


def check_tilt_counts(set_path: str, names: list[str] | None) -> None:
    """Refuse, naming the set and the tomogram, a tomogram with too few tilts for the ice fit
    (the library's own message counts only 'tilts with data' and names neither)."""
    from tiltflow.errors import InputError
    from tiltflow.io.tomograms import read_tomogram_set

    tset = read_tomogram_set(set_path)
    for tomo in tset:
        if names and tomo.name not in names:
            continue
        if tomo.n_tilts < MIN_ICE_TILTS:
            raise InputError(
                set_path,
                f"tomogram {tomo.name} has only {tomo.n_tilts} tilt(s): the ice fit (log L, "
                f"thickness and the normal's angle) needs at least {MIN_ICE_TILTS} tilts with data"
                " (were most views excluded at import?)",
            )


def run(args: argparse.Namespace) -> None:
    """Run the step and print one line per tomogram."""
    check_tilt_counts(args.t, args.tomo)
    result = run_estimate_ice(args.t, args.o, params_from_args(args), names=args.tomo)
    for tomo in result:
        t = tomo.extra["rlnTomoRelativeIceThickness"]  # apply_result always sets it
        print(f"tiltflow estimate-ice: {tomo.name}: relative ice thickness {float(t):.4f}")
    print(f"tiltflow estimate-ice: wrote {args.o}/tomograms.star ({len(result)} tomograms)")
