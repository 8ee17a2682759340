"""``tiltflow export-imod``: the refined alignment back to IMOD (issue #14 item 2)."""

from __future__ import annotations

import argparse

from tiltflow.cli.import_imod import add_import_arguments, options_from_args


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register the ``export-imod`` verb."""
    p = sub.add_parser(
        "export-imod",
        help="write the refined alignment back to IMOD (.xf, .tlt, tilt.com)",
        description="For every tomogram of --t, write DIR/<name>/ with <stem>.xf, <stem>.tlt "
        "(and <stem>.xtilt when an X-axis tilt is needed) and copies of newst.com / tilt.com that "
        "use them, so IMOD's newstack + tilt reconstruct with the refined alignment; plus "
        "DIR/import.star, which import-imod reads back to the same matrices. Give the import "
        "sheet and the options the set was imported with (they fix the IMOD geometry).",
    )
    p.add_argument("--t", required=True, help="refined tomogram set (tomograms.star)")
    p.add_argument("--i", required=True, help="the import sheet the set was imported from")
    p.add_argument("--o", required=True, help="output directory")
    add_import_arguments(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> None:
    """Export and print one line per tomogram."""
    import logging

    from tiltflow.export.imod import export_imod
    from tiltflow.io.tomograms import read_tomogram_set

    logging.basicConfig(level=logging.INFO, format="tiltflow export-imod: %(message)s")
    tset = read_tomogram_set(args.t)
    res = export_imod(tset, args.i, options_from_args(args), args.o, set_path=args.t)
    for r in res:
        extra = f", {r.xtilt.name}" if r.xtilt else ""
        print(
            f"tiltflow export-imod: {r.name}: {r.xf.name}, {r.tlt.name}{extra} in {r.directory} "
            f"(matrices reproduced to {r.max_change_px:.1g} px)"
        )
    print(f"tiltflow export-imod: wrote {args.o}/import.star ({len(res)} tomograms)")
