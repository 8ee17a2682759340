"""Workflow script of rule qc_summary: the one-file HTML report, the summary TSV and a copy of
the final tomogram set."""

from pathlib import Path

from _common import setup_logging

log = setup_logging(snakemake)  # noqa: F821

from tiltflow.provenance import tiltflow_version  # noqa: E402
from tiltflow.qc.job import dataset_report  # noqa: E402

out = snakemake.output  # noqa: F821
html = Path(str(out.html))
rows = dataset_report(
    [str(p) for p in snakemake.input.metrics],  # noqa: F821
    dict(snakemake.params.thresholds),  # noqa: F821
    tiltflow_version(),
    out_tsv=str(out.tsv),
    out_html=html,
    out_compact=str(out.compact),
    final_star=str(snakemake.input.final),  # noqa: F821
    final_copy=str(out.final),
    files=[
        ("results/ice/tomograms.star", "the final RELION 4 tomogram set"),
        (
            "results/align/<name>/fiducials_<name>.star",
            "refined 3D beads (rlnTomoFiducialsStarFile)",
        ),
        ("results/qc/summary.tsv", "this table, tab-separated"),
        ("results/qc/<name>/", "the figures of each tomogram as files"),
    ],
)
flagged = [r["name"] for r in rows if r["flags"]]
log.info(
    "%d tomograms, flagged: %s; report %s (%d bytes)",
    len(rows),
    ", ".join(flagged) or "none",
    html,
    html.stat().st_size,
)
