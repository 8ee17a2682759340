"""Workflow script of rule sheet: a tab-separated tomogram sheet -> RELION 4 import STAR."""

from _common import fail_cleanly, setup_logging

log = setup_logging(snakemake)  # noqa: F821

from tiltflow.errors import InputError  # noqa: E402
from tiltflow.sheet import read_sheet, write_import_star  # noqa: E402

try:
    table = read_sheet(str(snakemake.input.tsv))  # noqa: F821
    write_import_star(table, str(snakemake.output.star))  # noqa: F821
except InputError as exc:
    fail_cleanly("sheet", exc)
log.info("wrote %d rows to %s", len(table), snakemake.output.star)  # noqa: F821
