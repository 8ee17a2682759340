"""Workflow script of rule step_figure: a step's own figure drawn from its side file."""

from _common import fail_cleanly, setup_logging

log = setup_logging(snakemake)  # noqa: F821

from tiltflow.errors import TiltflowError  # noqa: E402
from tiltflow.qc.step_figures import render_step_figure, write_figure_failure  # noqa: E402

step = str(snakemake.wildcards.step)  # noqa: F821
name = str(snakemake.wildcards.name)  # noqa: F821
side, png = str(snakemake.input.side), str(snakemake.output.png)  # noqa: F821
try:
    status = render_step_figure(step, side, png)
except TiltflowError as exc:
    # a side file the figure cannot be drawn from: like a data error of a step, recorded in the
    # figure (and this log) unless on_tomogram_error is fail
    if str(snakemake.params.on_error) == "fail":  # noqa: F821
        fail_cleanly(f"{step} figure ({name})", exc)
    log.error("%s figure of %s not drawn: %s", step, name, exc)
    write_figure_failure(png, name, step, f"{type(exc).__name__}: {exc}")
    status = "not drawn"
log.info("%s figure of %s: %s", step, name, status)
