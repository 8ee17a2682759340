"""Shared by the workflow scripts: logging to snakemake.log[0], provenance side files and the
per-tomogram failure policy.

Failure policy (see README "Failures"): a per-tomogram job that fails because of its *data*
(any TiltflowError except ConfigError: unreadable IMOD files, no beads, a fit that cannot be
done) records the failure instead of crashing: it writes a marker fragment (a STAR file holding
only comment lines) and ``provenance.json`` with ``"status": "failed"`` and the reason, and exits
0. The next step sees the failed status and passes it on; the gather rules leave the tomogram
out and list it as ``# missing <name>: <reason>`` in ``results/<step>/tomograms.star``. A wrong
configuration (ConfigError) and any other exception (a bug) still fail the job, so Snakemake
stops (or, with --keep-going, carries on with the other tomograms).
With ``on_tomogram_error: fail`` in the config every error fails the job.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import traceback
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

STAR_VERSION_LINE = "# version 30001"


def setup_logging(snakemake: Any) -> logging.Logger:
    """Send logging, stdout and stderr (Python and C level) to ``snakemake.log[0]``."""
    log_path = Path(str(snakemake.log[0]))
    log_path.parent.mkdir(parents=True, exist_ok=True)
    fh = open(log_path, "w", encoding="utf-8", buffering=1)
    sys.stdout.flush()
    sys.stderr.flush()
    os.dup2(fh.fileno(), 1)
    os.dup2(fh.fileno(), 2)
    sys.stdout = fh
    sys.stderr = fh
    logging.basicConfig(
        stream=fh,
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        force=True,
    )
    # numerical libraries: at most the threads Snakemake gave the job
    threads = str(getattr(snakemake, "threads", 1) or 1)
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
        os.environ.setdefault(var, threads)
    return logging.getLogger(f"tiltflow.workflow.{getattr(snakemake, 'rule', 'job')}")


def tiltflow_version() -> str:
    import tiltflow

    return str(tiltflow.__version__)


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, Mapping):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (str, int, float, bool)) or obj is None:
        return obj
    return str(obj)


def provenance_record(step: str, name: str | None, params: Mapping[str, Any], inputs: Sequence[str],
                      outputs: Sequence[str], status: str = "ok", reason: str = "") -> dict[str, Any]:
    """Deterministic provenance (no time stamps or host names, so reruns give identical files)."""
    return {
        "step": step,
        "tomogram": name,
        "status": status,
        "reason": reason,
        "tiltflow_version": tiltflow_version(),
        "python": ".".join(str(v) for v in sys.version_info[:3]),
        "params": _jsonable(dict(params)),
        "inputs": [str(p) for p in inputs],
        "outputs": [str(p) for p in outputs],
    }


def write_json(path: str | os.PathLike[str], data: Any) -> None:
    from tiltflow.io.atomic import write_text_atomic

    write_text_atomic(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


def read_provenance(path: str | os.PathLike[str]) -> dict[str, Any]:
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)


def one_line(text: object) -> str:
    return " ".join(str(text).split())


def write_failed_fragment(path: str | os.PathLike[str], name: str, step: str, reason: str) -> None:
    """The placeholder fragment of a failed tomogram: comment lines only, no data blocks."""
    from tiltflow.io.atomic import write_text_atomic

    write_text_atomic(path, f"{STAR_VERSION_LINE}\n# failed {name} at {step}: {one_line(reason)}\n")


def params_comment(step: str, params: Mapping[str, Any]) -> str:
    return f"tiltflow {tiltflow_version()} {step} parameters " + json.dumps(
        _jsonable(dict(params)), sort_keys=True, separators=(",", ":")
    )


def run_tomogram_step(snakemake: Any, call: Callable[[str, Path, Mapping[str, Any]], None]) -> None:
    """Run one per-tomogram step job under the failure policy described in the module docstring.

    ``call(name, out_dir, params)`` runs the library step; it must leave ``snakemake.output.star``.
    """
    log = setup_logging(snakemake)
    from tiltflow.errors import ConfigError, TiltflowError

    name = str(snakemake.wildcards.name)
    step = str(snakemake.params.step)
    params = dict(snakemake.params.params)
    out_star = Path(str(snakemake.output.star))
    out_dir = out_star.parent
    out_dir.mkdir(parents=True, exist_ok=True)
    inputs = [str(p) for p in snakemake.input]
    outputs = [str(out_star)]
    on_error = str(getattr(snakemake.params, "on_error", "record"))

    def record_failure(reason: str) -> None:
        log.error("%s failed for tomogram %s: %s", step, name, reason)
        write_failed_fragment(out_star, name, step, reason)
        write_json(snakemake.output.provenance,
                   provenance_record(step, name, params, inputs, outputs, "failed", one_line(reason)))

    upstream = getattr(snakemake.input, "provenance", None)
    if upstream:
        prev = read_provenance(str(upstream))
        if prev.get("status") != "ok":
            reason = f"{prev.get('step', 'previous step')} failed: {prev.get('reason', '')}"
            if prev.get("reason", "").startswith(tuple(f"{s} failed:" for s in ("import", "fiducials", "align", "ice"))):
                reason = prev["reason"]
            record_failure(reason)
            return

    log.info("tiltflow %s, step %s, tomogram %s, params %s", tiltflow_version(), step, name,
             json.dumps(_jsonable(params), sort_keys=True))
    try:
        call(name, out_dir, params)
    except ConfigError as exc:
        log.error("configuration error in %s.params: %s", step, exc)
        sys.exit(f"tiltflow {step}: configuration error in config key {step}.params: {exc}")
    except TiltflowError as exc:
        if on_error == "fail":
            log.error("%s", traceback.format_exc())
            sys.exit(f"tiltflow {step} ({name}): {exc}")
        record_failure(f"{type(exc).__name__}: {exc}")
        return
    if not out_star.is_file():
        raise RuntimeError(f"step {step} finished but did not write {out_star}")
    write_json(snakemake.output.provenance, provenance_record(step, name, params, inputs, outputs))
    log.info("done: %s", out_star)


def fail_cleanly(step: str, exc: BaseException) -> None:
    """Log a TiltflowError clearly and exit non-zero (for jobs that are not per tomogram)."""
    logging.getLogger("tiltflow.workflow").error("%s", traceback.format_exc())
    sys.exit(f"tiltflow {step}: error: {exc}")
