"""Provenance records and the per-tomogram failure policy of the workflow.

Every per-tomogram job writes ``provenance.json`` next to its fragment: step, tomogram, status
(``ok``/``failed``), reason, tiltflow and Python versions, parameters, inputs and outputs. The
record holds no time stamps or host names and is written with sorted keys, so reruns give
byte-identical files.

Failure policy (README "Failures"): a job that fails because of its *data* (any TiltflowError
except ConfigError) records the failure instead of crashing: it writes a marker fragment (a
STAR file holding only comment lines, :func:`write_failed_fragment`) and a provenance record
with ``"status": "failed"`` and the reason. The next step sees the failed status and passes it
on without running (:func:`passed_on_reason`); the gather step leaves the tomogram out and lists
it as missing (:func:`split_fragments`). A ConfigError and any other exception (a bug) propagate;
so does every TiltflowError with ``on_error="fail"``. :func:`run_tomogram_job` applies all of it.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from tiltflow.errors import ConfigError, InputError, TiltflowError
from tiltflow.io.atomic import write_json_atomic, write_text_atomic

PathLike = str | os.PathLike[str]
Record = dict[str, Any]
OnError = Literal["record", "fail"]

#: the per-tomogram steps, in pipeline order
PIPELINE_STEPS: tuple[str, ...] = ("import", "fiducials", "align", "hand", "ice")

#: the steps a workflow runs only when its config enables them (the next step then reads theirs)
OPTIONAL_STEPS: tuple[str, ...] = ("hand",)

#: first line of every STAR file (marker fragments included)
STAR_VERSION_LINE = "# version 30001"

log = logging.getLogger(__name__)


def tiltflow_version() -> str:
    import tiltflow

    return str(tiltflow.__version__)


def jsonable(obj: Any) -> Any:
    """``obj`` as plain JSON types (mappings -> dicts with str keys, sequences -> lists, other -> str)."""
    if isinstance(obj, Mapping):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, (str, int, float, bool)) or obj is None:
        return obj
    return str(obj)


def one_line(text: object) -> str:
    """``text`` with every run of whitespace (newlines included) turned into one space."""
    return " ".join(str(text).split())


def provenance_record(
    step: str,
    name: str | None,
    params: Mapping[str, Any],
    inputs: Sequence[PathLike],
    outputs: Sequence[PathLike],
    status: str = "ok",
    reason: str = "",
) -> Record:
    """The provenance of one job (no time stamps or host names, so reruns give identical files)."""
    if status not in ("ok", "failed"):
        raise ValueError(f"provenance status must be 'ok' or 'failed', got {status!r}")
    return {
        "step": step,
        "tomogram": name,
        "status": status,
        "reason": one_line(reason),
        "tiltflow_version": tiltflow_version(),
        "python": ".".join(str(v) for v in sys.version_info[:3]),
        "params": jsonable(dict(params)),
        "inputs": [str(p) for p in inputs],
        "outputs": [str(p) for p in outputs],
    }


def write_provenance(path: PathLike, record: Mapping[str, Any]) -> None:
    """Write a record as deterministic JSON (sorted keys), atomically."""
    write_json_atomic(path, jsonable(record))


def read_provenance(path: PathLike) -> Record:
    """A provenance record; InputError when the file is missing or not a JSON object."""
    path = Path(path)
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except FileNotFoundError:
        raise InputError(path, "provenance file not found") from None
    except (OSError, ValueError) as exc:
        raise InputError(path, f"not a readable provenance file ({exc})") from None
    if not isinstance(data, dict):
        raise InputError(path, "provenance file does not hold a JSON object")
    return data


def is_ok(record: Mapping[str, Any]) -> bool:
    return record.get("status") == "ok"


def failure_reason(record: Mapping[str, Any]) -> str:
    """The recorded reason of a failed record (a placeholder when none was recorded)."""
    return one_line(record.get("reason") or "") or "failed (no reason recorded)"


def passed_on_reason(upstream: Mapping[str, Any]) -> str | None:
    """None when the upstream step succeeded, else the reason this step records without running:
    ``"<upstream step> failed: <reason>"``, or the upstream reason unchanged when it already
    names the step where the failure happened (so a chain of steps keeps the first cause)."""
    if is_ok(upstream):
        return None
    reason = one_line(upstream.get("reason") or "")
    if reason.startswith(tuple(f"{s} failed:" for s in PIPELINE_STEPS)):
        return reason
    return f"{upstream.get('step') or 'previous step'} failed: {reason}"


def failed_fragment_text(name: str, step: str, reason: str) -> str:
    """The marker fragment of a failed tomogram: comment lines only, no data blocks."""
    return f"{STAR_VERSION_LINE}\n# failed {name} at {step}: {one_line(reason)}\n"


def write_failed_fragment(path: PathLike, name: str, step: str, reason: str) -> None:
    write_text_atomic(path, failed_fragment_text(name, step, reason))


def params_comment(step: str, params: Mapping[str, Any]) -> str:
    """The header comment of a gathered set: ``tiltflow <version> <step> parameters {...}``."""
    return f"tiltflow {tiltflow_version()} {step} parameters " + json.dumps(
        jsonable(dict(params)), sort_keys=True, separators=(",", ":")
    )


def split_fragments(
    names: Sequence[str], fragments: Sequence[PathLike], provenance: Sequence[PathLike]
) -> tuple[list[str], dict[str, str]]:
    """The fragments of the tomograms whose provenance is ok (in order) and the missing ones
    (``{name: reason}``), from parallel lists of names, fragments and provenance files."""
    if not len(names) == len(fragments) == len(provenance):
        raise ValueError(
            f"{len(names)} names, {len(fragments)} fragments, {len(provenance)} provenance files"
        )
    ok, missing = [], {}
    for name, fragment, prov in zip(names, fragments, provenance):
        record = read_provenance(prov)
        if is_ok(record):
            ok.append(str(fragment))
        else:
            missing[str(name)] = failure_reason(record)
    return ok, missing


@dataclass(frozen=True)
class TomogramJob:
    """One per-tomogram step job: what it reads and where its fragment and provenance go."""

    step: str
    name: str
    params: Mapping[str, Any]
    inputs: tuple[str, ...]
    out_star: Path
    provenance: Path
    upstream: Path | None = None  # provenance of the previous step of this tomogram
    on_error: OnError = "record"
    #: the step's other output files (side files), replaced by placeholders on failure
    side_outputs: tuple[str, ...] = ()
    #: the step's output directories (created before the step runs, emptied on failure)
    side_dirs: tuple[str, ...] = ()

    def record(self, status: str = "ok", reason: str = "") -> Record:
        return provenance_record(
            self.step,
            self.name,
            self.params,
            self.inputs,
            [str(self.out_star), *self.side_outputs, *self.side_dirs],
            status,
            reason,
        )


def write_failed_side_output(path: PathLike, name: str, step: str, reason: str) -> None:
    """Replace one side file of a failed job, so no number of an earlier run survives it: a
    ``.png`` becomes a figure saying what failed, any other file the marker text of
    :func:`failed_fragment_text` (a STAR file without data blocks)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() == ".png":
        from tiltflow.io.atomic import write_with_atomic

        def _save(tmp: Path) -> None:
            import matplotlib

            matplotlib.use("Agg")
            import matplotlib.pyplot as plt

            fig = plt.figure(figsize=(6, 1.6))
            fig.text(0.02, 0.65, f"{name}: no {step} result", fontsize=12, weight="bold")
            fig.text(0.02, 0.3, one_line(reason)[:110], fontsize=7, wrap=True)
            fig.savefig(tmp, format="png", dpi=100)
            plt.close(fig)

        write_with_atomic(path, _save)
        return
    write_text_atomic(path, failed_fragment_text(name, step, reason))


def record_failure(job: TomogramJob, reason: str) -> Record:
    """Write the marker fragment, placeholders for the side outputs
    (:func:`write_failed_side_output`) and the failed provenance record of ``job``; return the
    record."""
    log.error("%s failed for tomogram %s: %s", job.step, job.name, one_line(reason))
    write_failed_fragment(job.out_star, job.name, job.step, reason)
    for side in job.side_outputs:
        write_failed_side_output(side, job.name, job.step, reason)
    for d in job.side_dirs:
        shutil.rmtree(d, ignore_errors=True)
        Path(d).mkdir(parents=True, exist_ok=True)
    record = job.record("failed", reason)
    write_provenance(job.provenance, record)
    return record


def run_tomogram_job(
    job: TomogramJob, call: Callable[[str, Path, Mapping[str, Any]], None]
) -> Record:
    """Run one per-tomogram step under the failure policy; return the provenance record written.

    ``call(name, out_dir, params)`` runs the library step and must leave ``job.out_star``.
    An upstream failure is passed on without calling. A data error (TiltflowError other than
    ConfigError) is recorded unless ``job.on_error == "fail"``; then, like a ConfigError or any
    other exception, it propagates and nothing is recorded.
    """
    if job.on_error not in ("record", "fail"):
        raise ConfigError(f"on_tomogram_error must be 'record' or 'fail', got {job.on_error!r}")
    job.out_star.parent.mkdir(parents=True, exist_ok=True)
    for d in job.side_dirs:
        Path(d).mkdir(parents=True, exist_ok=True)
    if job.upstream is not None:
        reason = passed_on_reason(read_provenance(job.upstream))
        if reason is not None:
            return record_failure(job, reason)
    log.info(
        "tiltflow %s, step %s, tomogram %s, params %s",
        tiltflow_version(),
        job.step,
        job.name,
        json.dumps(jsonable(dict(job.params)), sort_keys=True),
    )
    try:
        call(job.name, job.out_star.parent, job.params)
    except ConfigError:
        raise
    except TiltflowError as exc:
        if job.on_error == "fail":
            raise
        return record_failure(job, f"{type(exc).__name__}: {exc}")
    if not job.out_star.is_file():
        raise RuntimeError(f"step {job.step} finished but did not write {job.out_star}")
    absent = [p for p in job.side_outputs if not Path(p).is_file()]
    if absent:
        raise RuntimeError(f"step {job.step} finished but did not write {', '.join(absent)}")
    record = job.record()
    write_provenance(job.provenance, record)
    return record


def run_summary(
    names: Sequence[str],
    steps: Sequence[str] = PIPELINE_STEPS,
    results: PathLike = "results",
    qc_html: str | None = "results/qc/summary.html",
    relion5: str | None = None,
    error: bool = False,
) -> str:
    """What a workflow run left, from the provenance records (workflow onsuccess/onerror):

    ``tiltflow: N of M tomograms done; failed: A (reason), B (reason) (see <qc_html>)`` and
    where the final set is. A tomogram is done when the last step's record says ok, failed when
    a record of any step says failed (the first such step gives the reason), and otherwise not
    finished (after an error: its jobs did not all run).
    """
    root = Path(results)
    done: list[str] = []
    failed: list[tuple[str, str]] = []
    unfinished: list[str] = []
    for name in names:
        records: list[Record | None] = []
        for step in steps:
            path = root / step / name / "provenance.json"
            try:
                records.append(read_provenance(path))
            except InputError:
                records.append(None)
        last = records[-1] if records else None
        if last is not None and is_ok(last):
            done.append(name)
            continue
        bad = next(
            ((step, r) for step, r in zip(steps, records) if r is not None and not is_ok(r)), None
        )
        if bad is not None:
            why = failure_reason(bad[1])
            if not why.startswith(tuple(f"{s} failed:" for s in steps)):
                why = f"{bad[0]} failed: {why}"
            failed.append((name, why))
        else:
            unfinished.append(name)
    n = len(names)
    head = (
        "tiltflow: the workflow stopped with an error (see the log above); "
        if error
        else "tiltflow: "
    )
    text = f"{head}{len(done)} of {n} tomogram{'s' if n != 1 else ''} done"
    if failed:
        text += "; failed: " + ", ".join(f"{nm} ({why})" for nm, why in failed)
    if unfinished:
        text += "; not finished: " + ", ".join(unfinished)
    if qc_html is not None and (failed or unfinished or Path(qc_html).exists()):
        text += f" (see {qc_html})"
    lines = [text]
    final = root / steps[-1] / "tomograms.star"
    if final.is_file():
        where = f"tiltflow: final tomogram set (RELION 4): {final.as_posix()}"
        if relion5 is not None and Path(relion5).is_file():
            where += f"; RELION 5: {relion5}"
        lines.append(where)
    elif not error:
        lines.append(f"tiltflow: no final set written ({final.as_posix()} is missing)")
    return "\n".join(lines)
