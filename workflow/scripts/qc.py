"""Workflow script of rule qc: the figures, overview PNG and metrics of one tomogram."""

from pathlib import Path

from _common import setup_logging

log = setup_logging(snakemake)  # noqa: F821

from tiltflow.qc.job import tomogram_qc  # noqa: E402

name = str(snakemake.wildcards.name)  # noqa: F821
steps = list(snakemake.params.steps)  # noqa: F821
out = snakemake.output  # noqa: F821
row = tomogram_qc(
    name,
    dict(zip(steps, [str(p) for p in snakemake.input.provenance])),  # noqa: F821
    dict(zip(steps, [str(p) for p in snakemake.input.stars])),  # noqa: F821
    dict(snakemake.params.thresholds),  # noqa: F821
    out_png=str(out.png),
    out_json=str(out.metrics),
    figures_dir=Path(str(out.step_align)).parent,
    keys=list(snakemake.params.figures),  # noqa: F821
    truth=str(snakemake.params.truth) or None,  # noqa: F821
    step_figures={
        step: str(getattr(out, f"step_{step}"))
        for step in ("align", "hand", "ice")
        if hasattr(out, f"step_{step}")
    },
    fiducials_copy=str(out.fiducials),
)
for problem in row["problems"]:
    log.warning("%s", problem)
missing = [k for k, v in row["figures"].items() if not v["available"]]
log.info("%s: flags %s; figures not available: %s", name, row["flags"] or "none", missing or "none")
