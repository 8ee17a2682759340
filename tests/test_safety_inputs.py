"""Never silently wrong (issue #11 items 4, 5, 11, 12, 13): each input fault from the issue is a
clear one-line error naming the file (and line, label or section) — or, where a documented
fallback exists, a warning saying what was done — through the command line, on a small
simulated project."""

from __future__ import annotations

import logging
import os
import re
import shutil
from pathlib import Path

import mrcfile
import numpy as np
import pytest

from tiltflow.cli import main
from tiltflow.io.star import read_star
from tiltflow.io.tomograms import read_tomogram_set

IMPORT = ["import-imod", "--i", "sim/import.star", "--o", "o", "--angpix", "10"]
NZ = 41


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    root = tmp_path_factory.mktemp("inputs")
    old = os.getcwd()
    os.chdir(root)
    try:
        assert main(["simulate", "--o", "sim", "--size", "96", "--beads", "4", "--seed", "1"]) == 0
        assert main(["import-imod", "--i", "sim/import.star", "--o", "ok", "--angpix", "10"]) == 0
        assert main(["find-fiducials", "--t", "ok/tomograms.star", "--o", "fid"]) == 0
    finally:
        os.chdir(old)
    return root


@pytest.fixture
def proj(sim, tmp_path, monkeypatch):
    """A private copy of the simulated project, as the current directory."""
    for d in ("sim", "ok", "fid"):
        shutil.copytree(sim / d, tmp_path / d)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _run(argv, capsys) -> tuple[int, str]:
    rc = main(argv)
    err = capsys.readouterr().err
    assert "Traceback" not in err and "internal error" not in err, err
    return rc, err


def _fails(argv, capsys, *needles: str) -> str:
    rc, err = _run(argv, capsys)
    assert rc == 2, err
    assert len(err.strip().splitlines()) == 1, err
    for n in needles:
        assert n in err, f"{n!r} not in {err!r}"
    return err


def _add_column(star: Path, label: str, value: str) -> None:
    """Add a column to the (one-row) import STAR."""
    lines = star.read_text().splitlines()
    n = sum(1 for ln in lines if ln.startswith("_"))
    last = max(i for i, ln in enumerate(lines) if ln.startswith("_"))
    lines.insert(last + 1, f"_{label} #{n + 1}")
    row = next(i for i, ln in enumerate(lines) if ln.startswith("sim/"))
    lines[row] += f" {value}"
    star.write_text("\n".join(lines) + "\n")


def _use_mdoc(proj: Path) -> Path:
    mdoc = proj / "sim/TS_01/TS_01.mrc.mdoc"
    _add_column(proj / "sim/import.star", "tfMdocFile", "sim/TS_01/TS_01.mrc.mdoc")
    return mdoc


def _mdoc_sections(mdoc: Path) -> list[list[str]]:
    text = mdoc.read_text()
    head, *secs = re.split(r"\n(?=\[ZValue)", text)
    return [head.splitlines()] + [s.splitlines() for s in secs]


def _write_sections(mdoc: Path, parts: list[list[str]]) -> None:
    mdoc.write_text("\n".join("\n".join(p) for p in parts) + "\n")


# ------------------------------------------------------------------ item 4: mdoc DateTime order
def test_mdoc_one_unreadable_datetime_is_an_error(proj, capsys):
    mdoc = _use_mdoc(proj)
    assert main(IMPORT) == 0  # the mdoc as written imports
    parts = _mdoc_sections(mdoc)
    parts[6] = [ln if not ln.startswith("DateTime") else "DateTime = yesterday" for ln in parts[6]]
    _write_sections(mdoc, parts)
    _fails(IMPORT + ["--o", "o2"], capsys, "TS_01.mrc.mdoc", "[ZValue = 5]", "DateTime", "yesterday")
    assert not (proj / "o2").exists()


def test_mdoc_one_missing_datetime_is_an_error(proj, capsys):
    mdoc = _use_mdoc(proj)
    parts = _mdoc_sections(mdoc)
    parts[3] = [ln for ln in parts[3] if not ln.startswith("DateTime")]
    _write_sections(mdoc, parts)
    _fails(IMPORT, capsys, "TS_01.mrc.mdoc", "[ZValue = 2]", "no DateTime")


def test_mdoc_without_any_datetime_is_zvalue_order_with_a_warning(proj, capsys, caplog):
    mdoc = _use_mdoc(proj)
    parts = _mdoc_sections(mdoc)
    _write_sections(mdoc, [[ln for ln in p if not ln.startswith("DateTime")] for p in parts])
    with caplog.at_level(logging.WARNING):
        rc, err = _run(IMPORT, capsys)
    assert rc == 0
    text = caplog.text + err
    assert "TS_01.mrc.mdoc" in text and "no DateTime" in text and "ZValue order" in text


def test_mdoc_negative_exposure_dose(proj, capsys):
    mdoc = _use_mdoc(proj)
    parts = _mdoc_sections(mdoc)
    parts[4] = [
        ln if not ln.startswith("ExposureDose") else "ExposureDose = -3.0" for ln in parts[4]
    ]
    _write_sections(mdoc, parts)
    _fails(IMPORT, capsys, "TS_01.mrc.mdoc", "[ZValue = 3]", "ExposureDose", "-3")


def test_mdoc_duplicate_zvalue(proj, capsys):
    mdoc = _use_mdoc(proj)
    parts = _mdoc_sections(mdoc)
    parts[8][0] = "[ZValue = 3]"
    _write_sections(mdoc, parts)
    _fails(IMPORT, capsys, "TS_01.mrc.mdoc", "[ZValue = 3]", "twice")


# ------------------------------------------------------------------ item 5: CTF files vs stack
def test_defocus_with_more_views_than_the_stack(proj, capsys):
    p = proj / "sim/TS_01/TS_01.defocus"
    lines = p.read_text().splitlines()
    lines += [f"{v}\t{v}\t{-60 + 3 * (v - 1):.2f}\t{-60 + 3 * (v - 1):.2f}\t3000\t2950\t-45" for v in range(42, 62)]
    p.write_text("\n".join(lines) + "\n")
    _fails(IMPORT, capsys, "TS_01.defocus", "61", "41 views")


def test_defocus_angles_checked_against_tlt(proj, capsys):
    p = proj / "sim/TS_01/TS_01.defocus"
    lines = p.read_text().splitlines()
    cols = lines[11].split("\t")  # view 11 at -30 deg
    cols[2] = cols[3] = "-20.00"
    lines[11] = "\t".join(cols)
    p.write_text("\n".join(lines) + "\n")
    _fails(IMPORT, capsys, "TS_01.defocus, line 12", "-20", "-30", "TS_01.tlt")


def test_defocus_of_a_reversed_angle_file_is_refused(proj, capsys):
    # the .defocus of another tilt series (here: angles of the reverse order)
    p = proj / "sim/TS_01/TS_01.defocus"
    lines = p.read_text().splitlines()
    for i in range(1, len(lines)):
        cols = lines[i].split("\t")
        cols[2] = cols[3] = f"{-float(cols[2]):.2f}"
        lines[i] = "\t".join(cols)
    p.write_text("\n".join(lines) + "\n")
    _fails(IMPORT, capsys, "TS_01.defocus, line 2", "TS_01.tlt")


def _ctffind(proj: Path, n: int, defocus: float = 30000.0) -> None:
    text = "# Output from CTFFind version 4.1.14\n" + "".join(
        f"{i + 1}.000000 {defocus:.6f} {defocus - 500:.6f} 45.0 0.0 0.05 8.0\n" for i in range(n)
    )
    (proj / "sim/TS_01/ctffind.txt").write_text(text)
    star = proj / "sim/import.star"
    star.write_text(
        star.read_text()
        .replace("_rlnTomoImportCtfPlotterFile", "_rlnTomoImportCtfFindFile")
        .replace("sim/TS_01/TS_01.defocus", "sim/TS_01/ctffind.txt")
    )


def test_ctffind_with_one_line_per_view_imports(proj, capsys):
    _ctffind(proj, NZ)
    rc, err = _run(IMPORT, capsys)
    assert rc == 0, err
    assert read_tomogram_set("o/tomograms.star")["TS_01"].defocus_u[0] == 30000.0


def test_ctffind_with_more_lines_than_views(proj, capsys):
    _ctffind(proj, NZ + 1)
    _fails(IMPORT, capsys, "ctffind.txt", "42", "41 views")


def test_ctffind_defocus_not_positive(proj, capsys):
    _ctffind(proj, NZ, defocus=0.0)
    _fails(IMPORT, capsys, "ctffind.txt, line 2", "defocus", "> 0")


@pytest.mark.parametrize("value", ["0.00", "-3000.00"])
def test_ctfplotter_defocus_not_positive(proj, capsys, value):
    p = proj / "sim/TS_01/TS_01.defocus"
    lines = p.read_text().splitlines()
    cols = lines[5].split("\t")
    cols[4] = value
    lines[5] = "\t".join(cols)
    p.write_text("\n".join(lines) + "\n")
    _fails(IMPORT, capsys, "TS_01.defocus, line 6", "defocus", "> 0")


# ---------------------------------------------------------------- item 11: whitespace in names
def test_simulate_output_with_a_space_is_refused_before_writing(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    _fails(["simulate", "--o", "my data", "--size", "96", "--beads", "4"], capsys, "my data",
           "whitespace")
    assert not (tmp_path / "my data").exists()


def _tsv(proj: Path, name: str = "TS_01", imod_dir: str = "sim/TS_01") -> Path:
    d = "sim/TS_01"
    tsv = proj / "sheet.tsv"
    tsv.write_text(
        "name\timod_dir\ttilt_series\tctfplotter\torder_list\tdose\n"
        f"{name}\t{imod_dir}\t{d}/TS_01.mrc\t{d}/TS_01.defocus\t{d}/TS_01_order_list.csv\t3\n"
    )
    return tsv


def test_tsv_sheet_imports(proj, capsys):
    _tsv(proj)
    rc, err = _run(["import-imod", "--i", "sheet.tsv", "--o", "o", "--angpix", "10"], capsys)
    assert rc == 0, err


def test_sheet_name_with_a_space(proj, capsys):
    _tsv(proj, name="TS 01")
    _fails(["import-imod", "--i", "sheet.tsv", "--o", "o", "--angpix", "10"], capsys,
           "sheet.tsv", "'TS 01'", "whitespace")
    assert not (proj / "o").exists()


def test_star_sheet_quoted_name_with_a_space(proj, capsys):
    star = proj / "sim/import.star"
    star.write_text(star.read_text().replace(" TS_01 ", ' "TS 01" '))
    _fails(IMPORT, capsys, "import.star", "'TS 01'", "whitespace")


def test_tsv_sheet_path_with_a_space(proj, capsys):
    shutil.copytree(proj / "sim/TS_01", proj / "my data")
    tsv = _tsv(proj, imod_dir="my data")
    _fails(["import-imod", "--i", str(tsv), "--o", "o", "--angpix", "10"], capsys,
           "sheet.tsv, line 2", "imod_dir", "'my data'", "whitespace")


def test_import_culled_stack_under_a_path_with_a_space(proj, capsys):
    with open(proj / "sim/TS_01/tilt.com", "a") as fh:
        fh.write("EXCLUDELIST 1\n")
    _fails(["import-imod", "--i", "sim/import.star", "--o", "out dir/t.star", "--angpix", "10"],
           capsys, "out dir", "whitespace")
    assert not (proj / "out dir").exists()


def test_step_output_dir_with_a_space(proj, capsys):
    _fails(["find-fiducials", "--t", "ok/tomograms.star", "--o", "fid dir"], capsys, "fid dir",
           "whitespace")
    assert not (proj / "fid dir").exists()


# ------------------------------------------------------------------- item 12: unclear messages
def test_nan_pixels_name_the_stack_and_frame(proj, capsys):
    with mrcfile.open(proj / "sim/TS_01/TS_01.mrc", "r+") as m:
        m.data[6, 10, 20] = np.nan
    _fails(["find-fiducials", "--t", "ok/tomograms.star", "--o", "f"], capsys,
           "TS_01.mrc", "frame 7", "NaN")


def test_nan_pixel_in_rows_binning_drops_is_refused(proj, capsys):
    # the detection pass checks each frame as it bins it: the last row and column, which a
    # binning that does not divide 96 leaves out of the binned frame, are checked too
    with mrcfile.open(proj / "sim/TS_01/TS_01.mrc", "r+") as m:
        m.data[12, 95, 40] = np.nan
        m.data[30, 20, 95] = np.inf
    _fails(["find-fiducials", "--t", "ok/tomograms.star", "--o", "f", "--bin", "5"], capsys,
           "TS_01.mrc", "frame 13 of 41", "1 NaN", "x=40, y=95")
    assert not (proj / "f").exists()


def test_nan_pixels_are_refused_by_the_ice_step(proj, capsys):
    with mrcfile.open(proj / "sim/TS_01/TS_01.mrc", "r+") as m:
        m.data[40, 5, 7] = np.nan
    _fails(["estimate-ice", "--t", "ok/tomograms.star", "--o", "i"], capsys,
           "TS_01.mrc", "frame 41 of 41", "NaN", "x=7, y=5")
    assert not (proj / "i").exists()


def test_inf_pixels_are_refused_when_culling(proj, capsys):
    with mrcfile.open(proj / "sim/TS_01/TS_01.mrc", "r+") as m:
        m.data[3, 0, 0] = np.inf
    with open(proj / "sim/TS_01/tilt.com", "a") as fh:
        fh.write("EXCLUDELIST 41\n")
    _fails(IMPORT, capsys, "TS_01.mrc", "frame 4", "inf")


@pytest.mark.parametrize("exclude,n", [("2-41", 1), ("4-41", 3)])
def test_too_few_tilts_for_the_ice_fit(proj, capsys, exclude, n):
    with open(proj / "sim/TS_01/tilt.com", "a") as fh:
        fh.write(f"EXCLUDELIST {exclude}\n")
    assert main(IMPORT) == 0
    _fails(["estimate-ice", "--t", "o/tomograms.star", "--o", "i"], capsys,
           "o/tomograms.star", "TS_01", f"{n} tilt", "at least")


def test_negative_pixel_size_in_the_stack_header(proj, capsys):
    with mrcfile.open(proj / "sim/TS_01/TS_01.mrc", "r+") as m:
        m.header.cella.x = -960.0
    _fails(IMPORT, capsys, "TS_01.mrc", "pixel size", "-10")


def _edit_row(path: Path, start: str, edit) -> None:
    lines = path.read_text().splitlines()
    i = next(j for j, ln in enumerate(lines) if ln.startswith(start))
    lines[i] = edit(lines[i])
    path.write_text("\n".join(lines) + "\n")


def test_negative_pixel_size_in_a_set(proj, capsys):
    star = proj / "ok/tomograms.star"
    lines = star.read_text().splitlines()
    header = [ln for ln in lines if ln.startswith("_rln")]
    k = next(j for j, h in enumerate(header) if h.startswith("_rlnTomoTiltSeriesPixelSize"))

    def edit(row: str) -> str:
        cols = row.split()
        cols[k] = "-10"
        return " ".join(cols)

    _edit_row(star, "TS_01 ", edit)
    _fails(["find-fiducials", "--t", "ok/tomograms.star", "--o", "f"], capsys,
           "ok/tomograms.star", "_rlnTomoTiltSeriesPixelSize", "-10")


def test_duplicate_names_in_a_set_name_the_file(proj, capsys):
    star = proj / "ok/tomograms.star"
    lines = star.read_text().splitlines()
    i = next(j for j, ln in enumerate(lines) if ln.startswith("TS_01 "))
    lines.insert(i + 1, lines[i])
    star.write_text("\n".join(lines) + "\n")
    _fails(["find-fiducials", "--t", "ok/tomograms.star", "--o", "f"], capsys,
           "ok/tomograms.star", "duplicate", "TS_01")


def test_matrix_written_with_spaces(proj, capsys):
    star = proj / "ok/tomograms.star"
    text = star.read_text()
    lines = text.splitlines()
    i = next(j for j, ln in enumerate(lines) if ln.startswith("["))
    lines[i] = lines[i].replace(",", ", ", 3)  # the first vector of the row: [a, b, c, d]
    star.write_text("\n".join(lines) + "\n")
    rc, err = _run(["find-fiducials", "--t", "ok/tomograms.star", "--o", "f"], capsys)
    if rc == 0:  # accepted: the same matrices as the file without spaces
        got = read_tomogram_set("f/tomograms.star")["TS_01"].proj
        np.testing.assert_allclose(got, read_tomogram_set("fid/tomograms.star")["TS_01"].proj)
    else:
        assert rc == 2 and "ok/tomograms.star" in err and f"line {i + 1}" in err
        assert "_rlnTomoProjX" in err and "Length mismatch" not in err


def test_directory_as_fiducials_file(proj, capsys):
    star = proj / "fid/tomograms.star"
    star.write_text(star.read_text().replace("fid/fiducials_TS_01.star", "fid"))
    _fails(["align", "--t", "fid/tomograms.star", "--o", "a"], capsys, "fid", "is a directory")


def test_comma_separated_sheet_says_tab(proj, capsys):
    (proj / "sheet.csv").write_text(
        "name,imod_dir,tilt_series,ctfplotter\nTS_01,sim/TS_01,sim/TS_01/TS_01.mrc,x.defocus\n"
    )
    _fails(["import-imod", "--i", "sheet.csv", "--o", "o", "--angpix", "10"], capsys,
           "sheet.csv, line 1", "TAB")


# ----------------------------------------------------------------- item 13: accepted silently
@pytest.mark.parametrize("value", ["-400.0", "90.0", "-90.0"])
def test_tlt_angle_out_of_range(proj, capsys, value):
    p = proj / "sim/TS_01/TS_01.tlt"
    lines = p.read_text().splitlines()
    lines[0] = value
    p.write_text("\n".join(lines) + "\n")
    _fails(IMPORT, capsys, "TS_01.tlt, line 1", value, "90")


def test_tlt_decimal_comma(proj, capsys):
    p = proj / "sim/TS_01/TS_01.tlt"
    lines = p.read_text().splitlines()
    lines[3] = "-51,5"
    p.write_text("\n".join(lines) + "\n")
    _fails(IMPORT, capsys, "TS_01.tlt, line 4", "-51,5", "decimal comma")


def test_tracks_fractional_bead_index(proj, capsys):
    p = proj / "fid/tracks_TS_01.star"
    _edit_row(p, "0 3 ", lambda row: "0.5" + row[1:])
    _fails(["align", "--t", "fid/tomograms.star", "--o", "a"], capsys, "tracks_TS_01.star",
           "_tfBeadIndex", "0.5", "integer")


def test_unknown_labels_are_kept_through_every_step(proj, capsys):
    star = proj / "ok/tomograms.star"
    lines = star.read_text().splitlines()
    g = next(i for i, ln in enumerate(lines) if ln == "data_global")
    t = next(i for i, ln in enumerate(lines) if ln == "data_TS_01")
    n_g = sum(1 for ln in lines[g:t] if ln.startswith("_"))
    n_t = sum(1 for ln in lines[t:] if ln.startswith("_"))
    last_g = max(i for i in range(g, t) if lines[i].startswith("_"))
    last_t = max(i for i in range(t, len(lines)) if lines[i].startswith("_"))
    out = []
    for i, ln in enumerate(lines):
        if i > last_t and ln.startswith("["):
            ln += " 7"
        elif g < i < t and ln.startswith("TS_01 "):
            ln += " my_lab_note"
        out.append(ln)
        if i == last_g:
            out.append(f"_myTomoNote #{n_g + 1}")
        if i == last_t:
            out.append(f"_myTiltScore #{n_t + 1}")
    star.write_text("\n".join(out) + "\n")
    assert main(["find-fiducials", "--t", "ok/tomograms.star", "--o", "f"]) == 0
    assert main(["align", "--t", "f/tomograms.star", "--o", "a"]) == 0
    assert main(["estimate-ice", "--t", "a/tomograms.star", "--o", "i"]) == 0
    for step in ("f", "a", "i"):
        blocks = read_star(f"{step}/tomograms.star")
        assert list(blocks["global"]["myTomoNote"]) == ["my_lab_note"], step
        assert list(blocks["TS_01"]["myTiltScore"]) == [7] * NZ, step


def test_unknown_label_some_tomograms_lack_is_dropped_with_a_warning(proj, caplog):
    import dataclasses

    from tiltflow.io.tomograms import write_tomogram_set
    from tiltflow.model import TomogramSet

    t1 = read_tomogram_set("ok/tomograms.star")["TS_01"]
    t1 = t1.replace(extra={"myTomoNote": "kept"})
    t2 = dataclasses.replace(t1, name="TS_02", extra={})
    with caplog.at_level(logging.WARNING):
        write_tomogram_set("two.star", TomogramSet((t1, t2)))
    assert "_myTomoNote" in caplog.text and "TS_02" in caplog.text
    assert "myTomoNote" not in read_star("two.star")["global"].columns
    write_tomogram_set("one.star", TomogramSet((t1,)))
    assert read_tomogram_set("one.star")["TS_01"].extra["myTomoNote"] == "kept"
