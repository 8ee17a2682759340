"""Workflow script of rule sheet: a tab-separated tomogram sheet -> RELION 4 import STAR."""

import csv

from _common import fail_cleanly, setup_logging

log = setup_logging(snakemake)  # noqa: F821

from tiltflow.errors import InputError  # noqa: E402
from tiltflow.io.star import write_star  # noqa: E402

#: TSV column -> RELION 4 import STAR label (same table as workflow/rules/common.smk)
COLUMNS = {
    "name": "rlnTomoName",
    "imod_dir": "rlnTomoImportImodDir",
    "tilt_series": "rlnTomoTiltSeriesName",
    "ctfplotter": "rlnTomoImportCtfPlotterFile",
    "ctffind": "rlnTomoImportCtfFindFile",
    "dose": "rlnTomoImportFractionalDose",
    "order_list": "rlnTomoImportOrderList",
    "optics_group": "rlnOpticsGroupName",
    "offset_x": "rlnTomoImportOffsetX",
    "offset_y": "rlnTomoImportOffsetY",
    "offset_z": "rlnTomoImportOffsetZ",
    "culled": "rlnTomoImportCulledFile",
}
NUMERIC = {"dose", "offset_x", "offset_y", "offset_z"}

src = str(snakemake.input.tsv)  # noqa: F821
try:
    with open(src, encoding="utf-8", newline="") as fh:
        lines = [ln for ln in fh if ln.strip() and not ln.lstrip().startswith("#")]
    reader = csv.DictReader(lines, delimiter="\t")
    rows = list(reader)
    cols = [c for c in COLUMNS if c in (reader.fieldnames or [])]
    unknown = [c for c in (reader.fieldnames or []) if c not in COLUMNS]
    if unknown:
        raise InputError(src, f"unknown column(s) {', '.join(unknown)}; known: {', '.join(COLUMNS)}", line=1)
    columns = {}
    for c in cols:
        values = []
        for i, row in enumerate(rows):
            v = (row.get(c) or "").strip()
            if not v:
                raise InputError(src, f"column {c!r} is empty", line=i + 2)
            if c in NUMERIC:
                try:
                    v = float(v)
                except ValueError:
                    raise InputError(src, f"column {c!r}: {v!r} is not a number", line=i + 2) from None
            values.append(v)
        columns[COLUMNS[c]] = values
    write_star(str(snakemake.output.star), {"": columns})  # noqa: F821
except InputError as exc:
    fail_cleanly("sheet", exc)
log.info("wrote %d rows to %s", len(rows), snakemake.output.star)  # noqa: F821
