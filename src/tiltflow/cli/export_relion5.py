"""``tiltflow export-relion5``: the tomogram set as RELION 5 STAR files (issue #14)."""

from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register the ``export-relion5`` verb."""
    p = sub.add_parser(
        "export-relion5",
        help="write the tomogram set as RELION 5 STAR files",
        description="Write DIR/tomograms.star (# version 50001), DIR/tilt_series/<name>.star "
        "(rlnTomoXTilt/YTilt/ZRot, rlnTomoX/YShiftAngst, ...) and the fiducials in RELION 5's "
        "world (DIR/fiducials/). Every physical point projects where the RELION 4 matrices put "
        "it; what RELION 5 cannot represent (per-tilt magnification) is reported in "
        "DIR/relion5_conversion.star and warned above 0.05 px.",
    )
    p.add_argument("--t", required=True, help="input RELION 4 tomogram set (tomograms.star)")
    p.add_argument("--o", required=True, help="output directory")
    p.add_argument(
        "--mirror_z",
        action="store_true",
        help="for a left-handed set (imported with --flipYZ but not --flipZ): export the "
        "z-mirrored world (voxel z -> SizeZ-1-z) instead of refusing",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> None:
    """Export and print one line per tomogram."""
    import logging

    from tiltflow.export.relion5 import export_relion5
    from tiltflow.io.tomograms import read_tomogram_set

    logging.basicConfig(level=logging.INFO, format="tiltflow export-relion5: %(message)s")
    tset = read_tomogram_set(args.t)
    res = export_relion5(tset, args.o, set_path=args.t, mirror_z=args.mirror_z)
    for name, tilts in res.tilts.items():
        print(
            f"tiltflow export-relion5: {name}: {tilts.xtilt.size} tilts, largest reprojection "
            f"change {tilts.max_change_px:.2g} px" + (" (z-mirrored)" if tilts.mirrored else "")
        )
    print(f"tiltflow export-relion5: wrote {res.tomograms_star} ({len(res.tilts)} tomograms)")
