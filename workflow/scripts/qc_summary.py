"""Workflow script of rule qc_summary: the table over all tomograms (TSV + HTML)."""

import json
from pathlib import Path

from _common import setup_logging

log = setup_logging(snakemake)  # noqa: F821

from tiltflow.io.atomic import write_text_atomic  # noqa: E402
from tiltflow.provenance import tiltflow_version  # noqa: E402
from tiltflow.qc import summary_html, summary_tsv  # noqa: E402

rows = []
for path in snakemake.input.metrics:  # noqa: F821
    with open(path, encoding="utf-8") as fh:
        rows.append(json.load(fh))
out_html = Path(str(snakemake.output.html))  # noqa: F821
figures = {r["name"]: f"{r['name']}.png" for r in rows}
write_text_atomic(str(snakemake.output.tsv), summary_tsv(rows))  # noqa: F821
write_text_atomic(
    out_html, summary_html(rows, dict(snakemake.params.thresholds), tiltflow_version(), figures)
)  # noqa: F821
flagged = [r["name"] for r in rows if r["flags"]]
log.info("%d tomograms, flagged: %s", len(rows), ", ".join(flagged) or "none")
