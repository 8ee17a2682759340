"""Snakemake glue shared by the workflow scripts: logging to ``snakemake.log[0]``, the
``snakemake`` object -> :class:`tiltflow.provenance.TomogramJob`, and clean exits.

Provenance records and the failure policy live in :mod:`tiltflow.provenance`.
"""

from __future__ import annotations

import logging
import os
import sys
import traceback
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, NoReturn


def setup_logging(snakemake: Any) -> logging.Logger:
    """Send logging, stdout and stderr (Python and C level) to ``snakemake.log[0]``; cap the
    threads of numerical libraries at the job's threads."""
    log_path = Path(str(snakemake.log[0]))
    log_path.parent.mkdir(parents=True, exist_ok=True)
    fh = open(log_path, "w", encoding="utf-8", buffering=1)
    sys.stdout.flush()
    sys.stderr.flush()
    os.dup2(fh.fileno(), 1)
    os.dup2(fh.fileno(), 2)
    sys.stdout = sys.stderr = fh
    logging.basicConfig(
        stream=fh,
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        force=True,
    )
    threads = str(getattr(snakemake, "threads", 1) or 1)
    for var in (
        "OMP_NUM_THREADS",
        "OPENBLAS_NUM_THREADS",
        "MKL_NUM_THREADS",
        "NUMEXPR_NUM_THREADS",
    ):
        os.environ.setdefault(var, threads)
    return logging.getLogger(f"tiltflow.workflow.{getattr(snakemake, 'rule', 'job')}")


def fail_cleanly(step: str, exc: BaseException) -> NoReturn:
    """Log the traceback and exit non-zero with a one-line message."""
    logging.getLogger("tiltflow.workflow").error("%s", traceback.format_exc())
    sys.exit(f"tiltflow {step}: error: {exc}")


def run_tomogram_step(snakemake: Any, call: Callable[[str, Path, Mapping[str, Any]], None]) -> None:
    """Run one per-tomogram step job (``tiltflow.provenance.run_tomogram_job``) from a rule
    with output ``star``, ``provenance``, optional input ``provenance`` and params ``step``,
    ``params``, ``on_error``."""
    log = setup_logging(snakemake)
    from tiltflow.errors import ConfigError, TiltflowError
    from tiltflow.provenance import TomogramJob, run_tomogram_job

    upstream = getattr(snakemake.input, "provenance", None)
    job = TomogramJob(
        step=str(snakemake.params.step),
        name=str(snakemake.wildcards.name),
        params=dict(snakemake.params.params),
        inputs=tuple(str(p) for p in snakemake.input),
        out_star=Path(str(snakemake.output.star)),
        provenance=Path(str(snakemake.output.provenance)),
        upstream=Path(str(upstream)) if upstream else None,
        on_error=str(getattr(snakemake.params, "on_error", "record")),  # type: ignore[arg-type]
    )
    try:
        record = run_tomogram_job(job, call)
    except ConfigError as exc:
        log.error("configuration error in %s.params: %s", job.step, exc)
        sys.exit(f"tiltflow {job.step}: configuration error in config key {job.step}.params: {exc}")
    except TiltflowError as exc:
        fail_cleanly(f"{job.step} ({job.name})", exc)
    log.info("%s %s: %s", job.step, job.name, record["status"])
