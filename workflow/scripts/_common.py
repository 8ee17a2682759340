"""Snakemake glue shared by the workflow scripts: logging to ``snakemake.log[0]``, the
``snakemake`` object -> :class:`tiltflow.provenance.TomogramJob`, and clean exits.

Provenance records and the failure policy live in :mod:`tiltflow.provenance`.
"""

from __future__ import annotations

import logging
import os
import sys
import traceback
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, NoReturn

#: this checkout's package sources (workflow/scripts/ -> repository root / src): first on the
#: path, so a job runs the tiltflow of the workflow it belongs to (also in a --sdm conda env,
#: which holds the dependencies only)
REPO_SRC = Path(__file__).resolve().parents[2] / "src"
if (REPO_SRC / "tiltflow" / "__init__.py").is_file() and str(REPO_SRC) not in sys.path:
    sys.path.insert(0, str(REPO_SRC))


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


def key_numbers(log: logging.Logger, step: str, name: str, numbers: Mapping[str, str]) -> None:
    """One log line with the step's key numbers (``<step> <name> key numbers: a: x; b: y``)."""
    text = "; ".join(f"{k}: {v}" for k, v in numbers.items())
    log.info("%s %s key numbers: %s", step, name, text or "none")


def side_outputs(
    snakemake: Any, dirs: Sequence[str] = ()
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The job's outputs other than ``star`` and ``provenance``: (files, directories ``dirs``)."""
    main = {str(snakemake.output.star), str(snakemake.output.provenance), *map(str, dirs)}
    files = tuple(str(p) for p in snakemake.output if str(p) not in main)
    return files, tuple(str(d) for d in dirs)


def run_tomogram_step(
    snakemake: Any,
    call: Callable[[str, Path, Mapping[str, Any]], None],
    summarize: Callable[[str, Path], Mapping[str, str]] | None = None,
    dirs: Sequence[str] = (),
) -> None:
    """Run one per-tomogram step job (``tiltflow.provenance.run_tomogram_job``) from a rule
    with output ``star``, ``provenance`` (and side files / directories, replaced by
    placeholders when the tomogram fails), optional input ``provenance`` and params ``step``,
    ``params``, ``on_error``. ``dirs`` are the outputs that are directories; ``summarize(name,
    out_dir)`` gives the key numbers logged after a successful step."""
    log = setup_logging(snakemake)
    from tiltflow.errors import ConfigError, TiltflowError
    from tiltflow.provenance import TomogramJob, run_tomogram_job

    upstream = getattr(snakemake.input, "provenance", None)
    files, dirs = side_outputs(snakemake, dirs)
    job = TomogramJob(
        step=str(snakemake.params.step),
        name=str(snakemake.wildcards.name),
        params=dict(snakemake.params.params),
        inputs=tuple(str(p) for p in snakemake.input),
        out_star=Path(str(snakemake.output.star)),
        provenance=Path(str(snakemake.output.provenance)),
        upstream=Path(str(upstream)) if upstream else None,
        on_error=str(getattr(snakemake.params, "on_error", "record")),  # type: ignore[arg-type]
        side_outputs=files,
        side_dirs=dirs,
    )
    try:
        record = run_tomogram_job(job, call)
    except ConfigError as exc:
        log.error("configuration error in %s.params: %s", job.step, exc)
        sys.exit(f"tiltflow {job.step}: configuration error in config key {job.step}.params: {exc}")
    except TiltflowError as exc:
        fail_cleanly(f"{job.step} ({job.name})", exc)
    if record["status"] == "ok" and summarize is not None:
        try:
            numbers = summarize(job.name, job.out_star.parent)
        except Exception as exc:  # the numbers are for the log only
            numbers = {"not available": f"{type(exc).__name__}: {exc}"}
        key_numbers(log, job.step, job.name, numbers)
    elif record["status"] != "ok":
        key_numbers(log, job.step, job.name, {"failed": str(record["reason"])})
    log.info("%s %s: %s", job.step, job.name, record["status"])


def fmt_range(values: Any, fmt: str = "{:.3g}") -> str:
    """``lo..hi`` of the finite values (``n/a`` when there are none)."""
    import numpy as np

    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return "n/a"
    return f"{fmt.format(v.min())}..{fmt.format(v.max())}"


def star_column(path: str | Path, block: str, label: str) -> Any:
    """Column ``label`` of ``block`` of a STAR file as floats (empty when absent)."""
    import numpy as np

    from tiltflow.io.star import float_column, read_star_blocks

    blocks = read_star_blocks(path)
    df = blocks.get(block)
    if df is None and len(blocks) == 1:
        df = next(iter(blocks.values()))
    if df is None or label not in df.columns:
        return np.empty(0)
    return float_column(df, label)
