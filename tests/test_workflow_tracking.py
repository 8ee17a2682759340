"""Every file a job reads is an input and every file it writes an output (issue #12 item 1).

One tiny simulated run (.test/config/config.yaml: 2 tilt series of 19 tilts, 192 x 192 px) is
shared by the tests of this module; they edit, delete and restore its files and read the jobs a
dry run plans. A second, import-only project reads the same data through a TSV sheet.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from test_workflow import copy_workflow, snakemake, write_config

REPO = Path(__file__).resolve().parents[1]
NAMES = ("TS_01", "TS_02")
PER_TOMOGRAM = ("imod_import", "fiducials", "align", "hand", "ice", "step_figure", "qc")
GATHERS = ("gather_import", "gather_fiducials", "gather_align", "gather_hand", "gather_ice")

pytestmark = pytest.mark.slow

#: files inside the workflow's directory() outputs (the RELION 5 export, the culled stacks)
INSIDE_DIR_OUTPUTS = re.compile(r"^results/(relion5|import/[^/]+/culled)/")


def planned_jobs(output: str) -> set[tuple[str, str | None]]:
    """(rule, tomogram name or None) of every job a dry run lists."""
    jobs = set()
    for block in re.split(r"\n(?=(?:local)?rule \w+:)", "\n" + output):
        m = re.match(r"(?:local)?rule (\w+):", block)
        if not m:
            continue
        w = re.search(r"^\s+wildcards: (?:.*, )?name=([^,\s]+)", block, re.M)
        jobs.add((m.group(1), w.group(1) if w else None))
    return jobs


def jobs_of(name: str) -> set[tuple[str, str | None]]:
    """The jobs a change to one tomogram's data re-runs: its own and everything over all."""
    own = {(rule, name) for rule in PER_TOMOGRAM}
    return (
        own
        | {(g, None) for g in GATHERS}
        | {
            ("qc_summary", None),
            ("export_relion5", None),
            ("all", None),
        }
    )


def dry_run(project: Path, *args: str) -> set[tuple[str, str | None]]:
    r = snakemake(project, "-n", *args, "--configfile", "tiny.yaml")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    if "Nothing to be done" in r.stdout + r.stderr:
        return set()
    return planned_jobs(r.stdout)


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    project = copy_workflow(tmp_path_factory.mktemp("tracking") / "project")
    shutil.copy(REPO / ".test" / "config" / "config.yaml", project / "tiny.yaml")
    r = snakemake(project, "--cores", "2", "--configfile", "tiny.yaml")
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-4000:]
    return project


@contextmanager
def edited(path: Path, how: str) -> Iterator[None]:
    """Edit a file (append a line, or only touch it), then put its bytes and times back."""
    st = path.stat()
    data = path.read_bytes()
    try:
        if how == "touch":
            os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9 * 3600))
        else:
            path.write_bytes(data + b"\n# edited\n")
        yield
    finally:
        path.write_bytes(data)
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


@contextmanager
def moved_away(path: Path) -> Iterator[None]:
    aside = path.with_name(path.name + ".aside")
    os.rename(path, aside)
    try:
        yield
    finally:
        os.rename(aside, path)


# ------------------------------------------------------------------------------------ untracked


def test_up_to_date_and_nothing_untracked(run: Path) -> None:
    assert dry_run(run) == set()
    r = snakemake(run, "--list-untracked", "--configfile", "tiny.yaml")
    assert r.returncode == 0, r.stderr[-3000:]
    listed = [line for line in r.stdout.splitlines() if line.startswith("results/")]
    # --list-untracked does not look into directory() outputs: the RELION 5 export and the
    # import's culled-stack folders are those (their files are written by the rule as a whole)
    assert [p for p in listed if not INSIDE_DIR_OUTPUTS.match(p)] == [], listed
    assert (run / "results" / "relion5" / "tomograms.star").is_file()


def test_every_result_file_is_an_output_of_its_job(run: Path) -> None:
    """--summary lists every output file of the workflow with the rule that writes it."""
    r = snakemake(run, "--summary", "--configfile", "tiny.yaml")
    assert r.returncode == 0, r.stderr[-3000:]
    rows = [line.split("\t") for line in r.stdout.splitlines() if line.startswith("results/")]
    rule_of = {row[0]: row[2] for row in rows}
    for name in NAMES:
        assert rule_of[f"results/fiducials/{name}/tracks_{name}.star"] == "fiducials"
        assert rule_of[f"results/fiducials/{name}/fiducials_{name}.star"] == "fiducials"
        # the steps' figures are rule step_figure's, drawn from the side files
        assert rule_of[f"results/align/{name}/align_{name}.png"] == "step_figure"
        assert rule_of[f"results/align/{name}/tracks_{name}.star"] == "align"
        assert rule_of[f"results/hand/{name}/hand_{name}.star"] == "hand"
        assert rule_of[f"results/hand/{name}/hand_{name}.png"] == "step_figure"
        assert rule_of[f"results/ice/{name}/ice_{name}.png"] == "step_figure"
        assert rule_of[f"results/qc/{name}/step_hand.png"] == "qc"
        assert rule_of[f"results/ice/{name}/ice_{name}.star"] == "ice"
        assert rule_of[f"results/simulated/{name}/{name}.xf"] == "simulate"
        assert rule_of[f"results/import/{name}/culled"] == "imod_import"
    files = {
        p.relative_to(run).as_posix()
        for p in (run / "results").rglob("*")
        if p.is_file() and not INSIDE_DIR_OUTPUTS.match(p.relative_to(run).as_posix())
    }
    assert files <= set(rule_of), sorted(files - set(rule_of))


# ------------------------------------------------------------------------------------ inputs

INPUT_KINDS = {
    "stack": ("{name}.mrc", "touch"),
    "newst.com": ("newst.com", "edit"),
    "tilt.com": ("tilt.com", "edit"),
    "xf": ("{name}.xf", "edit"),
    "tlt": ("{name}.tlt", "edit"),
    "ctfplotter": ("{name}.defocus", "edit"),
    "order list": ("{name}_order_list.csv", "edit"),
}


@pytest.mark.parametrize("kind", list(INPUT_KINDS))
def test_changing_an_input_reruns_that_tomogram_only(run: Path, kind: str) -> None:
    pattern, how = INPUT_KINDS[kind]
    path = run / "results" / "simulated" / "TS_01" / pattern.format(name="TS_01")
    with edited(path, how):
        assert dry_run(run) == jobs_of("TS_01")
    assert dry_run(run) == set()


# ------------------------------------------------------------------------------------ outputs

SIDE_FILES = {
    "results/import/{name}/culled": "imod_import",
    "results/fiducials/{name}/fiducials_{name}.star": "fiducials",
    "results/fiducials/{name}/tracks_{name}.star": "fiducials",
    "results/align/{name}/fiducials_{name}.star": "align",
    "results/align/{name}/tracks_{name}.star": "align",
    "results/align/{name}/align_{name}.star": "align",
    "results/align/{name}/align_{name}.png": "step_figure",
    "results/hand/{name}/hand_{name}.star": "hand",
    "results/hand/{name}/hand_{name}.png": "step_figure",
    "results/hand/{name}/provenance.json": "hand",
    "results/ice/{name}/ice_{name}.star": "ice",
    "results/ice/{name}/ice_{name}.png": "step_figure",
    "results/ice/{name}/provenance.json": "ice",
}


def test_deleting_any_side_file_reruns_its_job(run: Path) -> None:
    for pattern, rule in SIDE_FILES.items():
        path = run / pattern.format(name="TS_02")
        with moved_away(path):
            planned = dry_run(run)
        assert (rule, "TS_02") in planned, (pattern, sorted(planned))
        assert not any(name == "TS_01" for _, name in planned), (pattern, sorted(planned))


def test_deleted_tracks_file_is_recreated(run: Path) -> None:
    # issue #12: "deleting tracks_TS_01.star gives 'Nothing to be done'"
    tracks = run / "results" / "fiducials" / "TS_01" / "tracks_TS_01.star"
    before = tracks.read_bytes()
    tracks.unlink()
    r = snakemake(run, "--cores", "2", "--configfile", "tiny.yaml")
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-4000:]
    assert tracks.read_bytes() == before
    assert dry_run(run) == set()


# ------------------------------------------------------------------------------------ failures


def test_newly_failing_tomogram_leaves_no_old_numbers(run: Path, tmp_path: Path) -> None:
    project = tmp_path / "project"
    shutil.copytree(run, project, symlinks=True)
    old = json.loads((project / "results" / "qc" / "TS_02.json").read_text())
    old_numbers = [
        f"{old[k]:.4g}"
        for k in (
            "residual_before_px",
            "residual_after_px",
            "ice_thickness_nm",
            "ice_thickness_rel",
        )
    ]
    xf = project / "results" / "simulated" / "TS_02" / "TS_02.xf"
    xf.write_text("".join(xf.read_text().splitlines(keepends=True)[:-1]))  # one view short
    r = snakemake(project, "--cores", "2", "--configfile", "tiny.yaml")
    out = r.stdout + r.stderr
    assert r.returncode == 0, out[-4000:]
    assert "tiltflow: 1 of 2 tomograms done; failed: TS_02 (import failed: InputError: " in out
    assert "(see results/qc/summary.html)" in out
    assert "final tomogram set (RELION 4): results/ice/tomograms.star" in out
    res = project / "results"
    for step, files in {
        "fiducials": ["fiducials_TS_02.star", "tracks_TS_02.star"],
        "align": ["fiducials_TS_02.star", "tracks_TS_02.star", "align_TS_02.star"],
        "hand": ["hand_TS_02.star"],
        "ice": ["ice_TS_02.star"],
    }.items():
        for f in files:
            text = (res / step / "TS_02" / f).read_text()
            assert "data_" not in text and f"# failed TS_02 at {step}: import failed" in text, f
    qc = json.loads((res / "qc" / "TS_02.json").read_text())
    assert qc["status"] == "failed" and qc["failed_step"] == "import"
    for key in ("residual_before_px", "residual_after_px", "ice_thickness_nm", "n_beads"):
        assert qc[key] is None, (key, qc[key])
    row = next(
        line
        for line in (res / "qc" / "summary.tsv").read_text().splitlines()
        if line.startswith("TS_02")
    )
    html = (res / "qc" / "summary.html").read_text()
    for number in old_numbers:
        assert number not in row and number not in html, number
    assert "data_TS_02" not in (res / "ice" / "tomograms.star").read_text()
    assert not re.search(r"^TS_02\b", (res / "relion5" / "tomograms.star").read_text(), re.M)
    assert not (res / "relion5" / "tilt_series" / "TS_02.star").exists()
    log = (project / "logs" / "imod_import" / "TS_02.log").read_text()
    assert "import TS_02 key numbers: failed: InputError" in log


# ------------------------------------------------------------------------------------ a sheet


@pytest.fixture(scope="module")
def sheet_project(run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The simulated data read through a TSV sheet (mdoc instead of order list), imported."""
    project = copy_workflow(tmp_path_factory.mktemp("sheet") / "project")
    lines = ["name\timod_dir\ttilt_series\tctfplotter\tdose\tmdoc"]
    for n in NAMES:
        shutil.copytree(run / "results" / "simulated" / n, project / "data" / n)
        d = f"data/{n}"
        lines.append(f"{n}\t{d}\t{d}/{n}.mrc\t{d}/{n}.defocus\t3.0\t{d}/{n}.mrc.mdoc")
    (project / "sheet.tsv").write_text("\n".join(lines) + "\n")
    write_config(
        project / "tiny.yaml",
        {"tomograms": {"sheet": "sheet.tsv"}, "import": {"params": {"angpix": 10.0}}},
    )
    r = snakemake(
        project, "--cores", "2", "results/import/tomograms.star", "--configfile", "tiny.yaml"
    )
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-4000:]
    return project


IMPORT_TARGET = "results/import/tomograms.star"


def test_sheet_mode_inputs_include_the_mdoc(sheet_project: Path) -> None:
    assert dry_run(sheet_project, IMPORT_TARGET) == set()
    with edited(sheet_project / "data" / "TS_01" / "TS_01.mrc.mdoc", "edit"):
        assert dry_run(sheet_project, IMPORT_TARGET) == {
            ("imod_import", "TS_01"),
            ("gather_import", None),
        }
    # the order list is not read when the row has an mdoc: not an input
    with edited(sheet_project / "data" / "TS_01" / "TS_01_order_list.csv", "edit"):
        assert dry_run(sheet_project, IMPORT_TARGET) == set()


def test_editing_one_sheet_row_reruns_that_tomogram_only(sheet_project: Path) -> None:
    sheet = sheet_project / "sheet.tsv"
    text = sheet.read_text()
    with edited(sheet, "touch"):
        sheet.write_text(text.replace("TS_01.defocus\t3.0", "TS_01.defocus\t3.5"))
        assert dry_run(sheet_project, IMPORT_TARGET) == {
            ("imod_import", "TS_01"),
            ("gather_import", None),
        }
        # rule sheet (the TSV as an import STAR) re-runs too, the import of TS_02 still not
        assert ("imod_import", "TS_02") not in dry_run(sheet_project)


def test_missing_input_is_a_recorded_failure_not_a_stop(sheet_project: Path) -> None:
    tlt = sheet_project / "data" / "TS_02" / "TS_02.tlt"
    with moved_away(tlt):
        r = snakemake(sheet_project, "-n", IMPORT_TARGET, "--configfile", "tiny.yaml")
        assert r.returncode == 0, r.stderr[-3000:]
        assert "tiltflow: 1 tomogram(s) name input files that do not exist (TS_02: " in r.stderr
        assert planned_jobs(r.stdout) == {("imod_import", "TS_02"), ("gather_import", None)}
