"""The workflow's end-of-run message and the placeholders of a failed job's side files."""

from __future__ import annotations

from pathlib import Path

import pytest

from tiltflow.errors import InputError
from tiltflow.provenance import (
    TomogramJob,
    provenance_record,
    run_summary,
    run_tomogram_job,
    write_provenance,
)

STEPS = ("import", "fiducials", "align", "ice")


def record(root: Path, step: str, name: str, status: str = "ok", reason: str = "") -> None:
    write_provenance(
        root / step / name / "provenance.json",
        provenance_record(step, name, {}, [], [], status, reason),
    )


def test_run_summary_counts_and_reasons(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    res = Path("results")
    for step in STEPS:
        record(res, step, "A")
    record(res, "import", "B", "failed", "InputError: b.xf: file not found")
    record(res, "ice", "B", "failed", "import failed: InputError: b.xf: file not found")
    (res / "ice" / "tomograms.star").write_text("# version 30001\n")
    text = run_summary(["A", "B", "C"], STEPS, qc_html="results/qc/summary.html")
    first, second = text.splitlines()
    assert first == (
        "tiltflow: 1 of 3 tomograms done; failed: B (import failed: InputError: b.xf: file not "
        "found); not finished: C (see results/qc/summary.html)"
    )
    assert second == "tiltflow: final tomogram set (RELION 4): results/ice/tomograms.star"
    err = run_summary(["A"], STEPS, qc_html=None, error=True)
    assert err.startswith(
        "tiltflow: the workflow stopped with an error (see the log above); 1 of 1"
    )


def test_failed_job_replaces_side_files(tmp_path: Path) -> None:
    side = [tmp_path / "s" / "tracks_A.star", tmp_path / "s" / "align_A.png"]
    stale_dir = tmp_path / "s" / "culled"
    stale_dir.mkdir(parents=True)
    (stale_dir / "A.mrc").write_text("old")
    for p in side:
        p.write_text("old numbers 3.172")
    job = TomogramJob(
        step="align",
        name="A",
        params={},
        inputs=(),
        out_star=tmp_path / "s" / "tomograms.star",
        provenance=tmp_path / "s" / "provenance.json",
        side_outputs=tuple(map(str, side)),
        side_dirs=(str(stale_dir),),
    )

    def fail(name, out_dir, params):
        raise InputError("x.xf", "file not found")

    rec = run_tomogram_job(job, fail)
    assert rec["status"] == "failed" and rec["outputs"][1:] == [*map(str, side), str(stale_dir)]
    star = side[0].read_text()
    assert (
        star.startswith("# version 30001\n# failed A at align: InputError") and "3.172" not in star
    )
    assert side[1].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert stale_dir.is_dir() and not any(stale_dir.iterdir())


def test_ok_job_must_write_its_side_files(tmp_path: Path) -> None:
    job = TomogramJob(
        step="ice",
        name="A",
        params={},
        inputs=(),
        out_star=tmp_path / "tomograms.star",
        provenance=tmp_path / "provenance.json",
        side_outputs=(str(tmp_path / "ice_A.star"),),
    )

    def only_star(name, out_dir, params):
        (out_dir / "tomograms.star").write_text("# version 30001\n")

    with pytest.raises(RuntimeError, match="did not write .*ice_A.star"):
        run_tomogram_job(job, only_star)
