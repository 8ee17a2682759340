"""Workflow script of rule qc: the QC figure and numbers of one tomogram."""

from _common import setup_logging

log = setup_logging(snakemake)  # noqa: F821

from tiltflow.io.atomic import write_json_atomic  # noqa: E402
from tiltflow.qc import Thresholds, collect, plot_tomogram, summary_row  # noqa: E402

name = str(snakemake.wildcards.name)  # noqa: F821
steps = list(snakemake.params.steps)  # noqa: F821
provenance = dict(zip(steps, [str(p) for p in snakemake.input.provenance]))  # noqa: F821
stars = dict(zip(steps, [str(p) for p in snakemake.input.stars]))  # noqa: F821
th = Thresholds.from_dict(snakemake.params.thresholds)  # noqa: F821

qc = collect(name, provenance, stars)
row = summary_row(qc, th)
plot_tomogram(qc, str(snakemake.output.png), th, row["flags"])  # noqa: F821
write_json_atomic(str(snakemake.output.metrics), row)  # noqa: F821
for problem in row["problems"]:
    log.warning("%s", problem)
log.info(
    "%s: flags %s; side-file columns used: %s", name, row["flags"] or "none", row["columns_used"]
)
