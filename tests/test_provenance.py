"""tiltflow.provenance: deterministic records, marker fragments, passing failures on, the
missing-tomogram list and the per-tomogram failure policy."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

import tiltflow
from tiltflow.errors import ConfigError, InputError, NoDataError
from tiltflow.provenance import (
    TomogramJob,
    failed_fragment_text,
    params_comment,
    passed_on_reason,
    provenance_record,
    read_provenance,
    run_tomogram_job,
    split_fragments,
    write_failed_fragment,
    write_provenance,
)


def test_record_is_deterministic_and_complete(tmp_path: Path) -> None:
    rec = provenance_record(
        "align", "TS_01", {"b": (1, 2), "a": Path("x")}, ["in.star"], [tmp_path / "o.star"]
    )
    assert rec == {
        "step": "align",
        "tomogram": "TS_01",
        "status": "ok",
        "reason": "",
        "tiltflow_version": tiltflow.__version__,
        "python": ".".join(str(v) for v in sys.version_info[:3]),
        "params": {"b": [1, 2], "a": "x"},
        "inputs": ["in.star"],
        "outputs": [str(tmp_path / "o.star")],
    }
    write_provenance(tmp_path / "p1.json", rec)
    write_provenance(tmp_path / "p2.json", dict(reversed(list(rec.items()))))
    text = (tmp_path / "p1.json").read_text()
    assert text == (tmp_path / "p2.json").read_text()
    assert text.endswith("}\n") and list(json.loads(text)) == sorted(rec)
    assert read_provenance(tmp_path / "p1.json") == rec
    with pytest.raises(ValueError, match="status"):
        provenance_record("align", "TS_01", {}, [], [], status="weird")


def test_read_provenance_errors(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="not found"):
        read_provenance(tmp_path / "none.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(InputError, match="not a readable provenance file"):
        read_provenance(tmp_path / "bad.json")
    (tmp_path / "list.json").write_text("[]")
    with pytest.raises(InputError, match="JSON object"):
        read_provenance(tmp_path / "list.json")


def test_failed_fragment_is_comments_only(tmp_path: Path) -> None:
    assert (
        failed_fragment_text("TS_01", "align", "bad\n  fit")
        == "# version 30001\n# failed TS_01 at align: bad fit\n"
    )
    write_failed_fragment(tmp_path / "f.star", "TS_01", "align", "bad fit")
    lines = (tmp_path / "f.star").read_text().splitlines()
    assert lines and all(ln.startswith("#") for ln in lines)


def test_passed_on_reason_keeps_the_first_cause() -> None:
    assert passed_on_reason({"status": "ok", "step": "import"}) is None
    assert (
        passed_on_reason({"status": "failed", "step": "import", "reason": "InputError: x"})
        == "import failed: InputError: x"
    )
    # an already passed-on reason is kept as it is
    assert passed_on_reason(
        {"status": "failed", "step": "align", "reason": "import failed: InputError: x"}
    ) == ("import failed: InputError: x")
    assert passed_on_reason({"status": "failed"}) == "previous step failed: "


def test_params_comment() -> None:
    assert (
        params_comment("align", {"b": 2, "a": [1]})
        == f'tiltflow {tiltflow.__version__} align parameters {{"a":[1],"b":2}}'
    )


def test_split_fragments_lists_missing(tmp_path: Path) -> None:
    names = ["A", "B", "C"]
    provs = []
    for n, status, reason in [
        ("A", "ok", ""),
        ("B", "failed", "fiducials failed: NoDataError: no beads"),
        ("C", "failed", ""),
    ]:
        p = tmp_path / f"{n}.json"
        write_provenance(p, provenance_record("align", n, {}, [], [], status, reason))
        provs.append(p)
    ok, missing = split_fragments(names, [f"{n}.star" for n in names], provs)
    assert ok == ["A.star"]
    assert missing == {
        "B": "fiducials failed: NoDataError: no beads",
        "C": "failed (no reason recorded)",
    }
    with pytest.raises(ValueError):
        split_fragments(names, ["A.star"], provs)


def make_job(tmp_path: Path, upstream: Path | None = None, on_error: str = "record") -> TomogramJob:
    return TomogramJob(
        step="align",
        name="TS_01",
        params={"iterations": 3},
        inputs=("in.star",),
        out_star=tmp_path / "align" / "TS_01" / "tomograms.star",
        provenance=tmp_path / "align" / "TS_01" / "provenance.json",
        upstream=upstream,
        on_error=on_error,
    )  # type: ignore[arg-type]


def test_job_ok_writes_ok_record(tmp_path: Path) -> None:
    calls = []

    def call(name, out_dir, params):
        calls.append((name, out_dir, dict(params)))
        (out_dir / "tomograms.star").write_text("data_\n")

    job = make_job(tmp_path)
    rec = run_tomogram_job(job, call)
    assert calls == [("TS_01", job.out_star.parent, {"iterations": 3})]
    assert (
        rec["status"] == "ok"
        and rec["outputs"] == [str(job.out_star)]
        and rec["params"] == {"iterations": 3}
    )
    assert read_provenance(job.provenance) == rec


def test_job_records_data_errors(tmp_path: Path) -> None:
    def call(name, out_dir, params):
        raise NoDataError("no beads\nfound")

    job = make_job(tmp_path)
    rec = run_tomogram_job(job, call)
    assert rec["status"] == "failed" and rec["reason"] == "NoDataError: no beads found"
    assert read_provenance(job.provenance) == rec
    assert (
        job.out_star.read_text()
        == "# version 30001\n# failed TS_01 at align: NoDataError: no beads found\n"
    )


def test_job_passes_upstream_failure_on_without_running(tmp_path: Path) -> None:
    up = tmp_path / "up.json"
    write_provenance(
        up, provenance_record("fiducials", "TS_01", {}, [], [], "failed", "NoDataError: no beads")
    )
    job = make_job(tmp_path, upstream=up)
    rec = run_tomogram_job(job, lambda *a: pytest.fail("must not run"))
    assert rec["status"] == "failed" and rec["reason"] == "fiducials failed: NoDataError: no beads"
    assert (
        "# failed TS_01 at align: fiducials failed: NoDataError: no beads"
        in job.out_star.read_text()
    )


def test_job_upstream_ok_runs(tmp_path: Path) -> None:
    up = tmp_path / "up.json"
    write_provenance(up, provenance_record("fiducials", "TS_01", {}, [], []))
    job = make_job(tmp_path, upstream=up)
    rec = run_tomogram_job(
        job, lambda name, out_dir, params: (out_dir / "tomograms.star").write_text("x")
    )
    assert rec["status"] == "ok"


@pytest.mark.parametrize(
    "exc, on_error",
    [
        (ConfigError("bad key"), "record"),
        (RuntimeError("a bug"), "record"),
        (InputError("x.xf", "broken"), "fail"),
    ],
)
def test_job_propagates_config_errors_bugs_and_fail_policy(
    tmp_path: Path, exc: Exception, on_error: str
) -> None:
    def call(name, out_dir, params):
        raise exc

    job = make_job(tmp_path, on_error=on_error)
    with pytest.raises(type(exc)):
        run_tomogram_job(job, call)
    assert not job.provenance.exists() and not job.out_star.exists()


def test_job_without_output_is_a_bug(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="did not write"):
        run_tomogram_job(make_job(tmp_path), lambda *a: None)


def test_bad_on_error_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="on_tomogram_error"):
        run_tomogram_job(make_job(tmp_path, on_error="ignore"), lambda *a: None)
