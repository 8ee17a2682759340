"""The two QC jobs of the workflow (rule ``qc`` per tomogram, rule ``qc_summary`` once), as
library functions so the workflow scripts stay thin and the tests can call them directly."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from tiltflow.qc.metrics import Thresholds, collect, summary_row, summary_tsv


def _copy_or_note(src: Path, dst: Path, title: str, why: str) -> None:
    from tiltflow.qc.plots import message_png, write_png

    if src.is_file():
        dst.parent.mkdir(parents=True, exist_ok=True)
        tmp = dst.with_name(f".{dst.name}.tmp")
        shutil.copyfile(src, tmp)
        os.replace(tmp, dst)
    else:
        write_png(dst, message_png(title, why))


def _final_fiducials(qc: Any, src: Path, dst: Path) -> None:
    """Copy of the fiducials STAR the final set refers to; for a tomogram that is not in the
    final set an empty (valid) fiducials file saying why."""
    from tiltflow.fiducials.io import FIDUCIAL_LABELS, FIDUCIALS_BLOCK, STAR_VERSION_LINE
    from tiltflow.io.star import write_star

    if qc.status.get("ice") == "ok" and src.is_file():
        dst.parent.mkdir(parents=True, exist_ok=True)
        tmp = dst.with_name(f".{dst.name}.tmp")
        shutil.copyfile(src, tmp)
        os.replace(tmp, dst)
        return
    why = " ".join(qc.reason.split()) or "no refined fiducials"
    write_star(
        dst,
        {FIDUCIALS_BLOCK: {label: [] for label in FIDUCIAL_LABELS}},
        header=(STAR_VERSION_LINE, f"{qc.name} is not in the final set: {why}"),
    )


def tomogram_qc(
    name: str,
    provenance: Mapping[str, str | os.PathLike[str]],
    stars: Mapping[str, str | os.PathLike[str]],
    thresholds: Mapping[str, Any] | Thresholds,
    out_png: str | os.PathLike[str],
    out_json: str | os.PathLike[str],
    figures_dir: str | os.PathLike[str],
    keys: Sequence[str] | None = None,
    truth: str | os.PathLike[str] | None = None,
    step_figures: Mapping[str, str | os.PathLike[str]] | None = None,
    fiducials_copy: str | os.PathLike[str] | None = None,
    results: str | os.PathLike[str] = "results",
) -> dict[str, Any]:
    """QC of one tomogram: its figures (``figures_dir/<key>.png|jpg``), the one-page overview
    ``out_png``, the metrics ``out_json`` (a summary row with the figures' status), copies of
    the align and ice steps' own figures (``step_figures``: step -> path) and of the fiducials
    STAR of the final set (``fiducials_copy``). Returns the row."""
    from tiltflow.io.atomic import write_json_atomic
    from tiltflow.qc.plots import plot_tomogram, render_figures

    th = thresholds if isinstance(thresholds, Thresholds) else Thresholds.from_dict(thresholds)
    qc = collect(name, provenance, stars, results=results, truth=truth)
    row = summary_row(qc, th)
    row["figures"] = render_figures(qc, figures_dir, th, keys)
    plot_tomogram(qc, out_png, th, figures_dir=figures_dir)
    r = Path(results)
    for step, dst in (step_figures or {}).items():
        src = r / step / name / f"{step}_{name}.png"
        why = f"the {step} step did not finish for {name}" + (
            f" ({' '.join(qc.reason.split())})" if qc.reason else ""
        )
        _copy_or_note(src, Path(dst), f"{step} step figure of {name}", why)
    if fiducials_copy is not None:
        _final_fiducials(qc, r / "align" / name / f"fiducials_{name}.star", Path(fiducials_copy))
    write_json_atomic(out_json, row)
    return row


def read_rows(paths: Sequence[str | os.PathLike[str]]) -> list[dict[str, Any]]:
    rows = []
    for p in paths:
        with open(p, encoding="utf-8") as fh:
            rows.append(json.load(fh))
    return rows


def dataset_report(
    metrics: Sequence[str | os.PathLike[str]],
    thresholds: Mapping[str, Any] | Thresholds,
    version: str,
    out_tsv: str | os.PathLike[str],
    out_html: str | os.PathLike[str],
    figure_dirs: Mapping[str, str | os.PathLike[str]] | None = None,
    final_star: str | os.PathLike[str] | None = None,
    final_copy: str | os.PathLike[str] | None = None,
    files: Sequence[tuple[str, str]] = (),
    out_compact: str | os.PathLike[str] | None = None,
) -> list[dict[str, Any]]:
    """The summary TSV, the one-file HTML report (and its compact form without the figures,
    ``out_compact``) and a copy of the final tomogram set."""
    from tiltflow.io.atomic import write_text_atomic
    from tiltflow.qc.report import write_report

    rows = read_rows(metrics)
    if figure_dirs is None:
        figure_dirs = {r["name"]: Path(out_html).parent / r["name"] for r in rows}
    write_text_atomic(out_tsv, summary_tsv(rows))
    write_report(out_html, rows, thresholds, version, figure_dirs, files)
    if out_compact is not None:
        write_report(out_compact, rows, thresholds, version, figure_dirs, files, compact=True)
    if final_star is not None and final_copy is not None:
        dst = Path(final_copy)
        dst.parent.mkdir(parents=True, exist_ok=True)
        tmp = dst.with_name(f".{dst.name}.tmp")
        shutil.copyfile(final_star, tmp)
        os.replace(tmp, dst)
    return rows
