"""tiltflow.import_files lists the files the importer reads (the workflow's inputs), the same
paths as tiltflow.importer.read_import_rows + read_imod_alignment."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_importer import write_project

from tiltflow.import_files import import_files, sheet_rows
from tiltflow.importer import ImportOptions, read_imod_alignment, read_import_rows


def importer_reads(sheet: Path, options: ImportOptions) -> dict[str, tuple[Path, ...]]:
    out = {}
    for row in read_import_rows(sheet, options):
        al = read_imod_alignment(row, options)
        ctf = row.ctfplotter or row.ctffind
        acq = row.mdoc if row.mdoc is not None else row.order_list
        files = (al.stack_path, al.newst_path, al.tilt_path, al.xf_path, al.tlt_path)
        out[row.name] = tuple(p for p in (*files, ctf, acq) if p is not None)
    return out


@pytest.mark.parametrize("exclude", [None, "2-3"])
def test_files_agree_with_the_importer(tmp_path: Path, exclude: str | None) -> None:
    sheet = write_project(tmp_path, exclude=exclude)
    options = ImportOptions(angpix=10.0)
    files = import_files(sheet)
    assert {n: f.reads for n, f in files.items()} == importer_reads(sheet, options)
    assert files["TS_01"].excluded_views == ((2, 3) if exclude else ())


def test_com_file_names_root_and_mdoc(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # files named by newst.com TransformFile / tilt.com TILTFILE; --root prefixes the IMOD dir,
    # stack and CTF file but not the order list or mdoc; the mdoc replaces the order list
    root = tmp_path / "proj"
    write_project(root)
    d = root / "imod" / "TS_01"
    (d / "TS_01.xf").rename(d / "other.xf")
    (d / "TS_01.tlt").rename(d / "other.tlt")
    newst = (d / "newst.com").read_text().replace("TS_01.xf", "other.xf")
    (d / "newst.com").write_text(newst)
    (d / "tilt.com").write_text((d / "tilt.com").read_text().replace("TS_01.tlt", "other.tlt"))
    (tmp_path / "TS_01.mdoc").write_text("PixelSpacing = 10\n")
    sheet = tmp_path / "sheet.tsv"
    sheet.write_text(
        "name\timod_dir\ttilt_series\tctfplotter\tdose\tmdoc\torder_list\n"
        "TS_01\timod/TS_01\timod/TS_01/TS_01.mrc:mrc\timod/TS_01/TS_01.defocus\t2.5"
        "\tTS_01.mdoc\tnot-read.csv\n"
    )
    monkeypatch.chdir(tmp_path)
    (f,) = import_files("sheet.tsv", root="proj").values()
    assert f.stack == Path("proj/imod/TS_01/TS_01.mrc")
    assert f.imod == tuple(
        Path("proj/imod/TS_01") / n for n in ("newst.com", "tilt.com", "other.xf", "other.tlt")
    )
    assert f.ctf == Path("proj/imod/TS_01/TS_01.defocus")
    assert f.acquisition == Path("TS_01.mdoc")
    options = ImportOptions(angpix=10.0, root="proj")
    (row,) = read_import_rows("sheet.tsv", options)
    al = read_imod_alignment(row, options)
    assert (al.xf_path, al.tlt_path, row.mdoc) == (f.imod[2], f.imod[3], f.acquisition)


def test_missing_project_gives_default_names(tmp_path: Path) -> None:
    sheet = tmp_path / "sheet.tsv"
    sheet.write_text(
        "name\timod_dir\ttilt_series\tctffind\nA\tnone/A\tnone/A/A.st\tnone/A/ctf.txt\n"
    )
    (f,) = import_files(sheet, order_list="order.csv").values()
    assert f.reads == tuple(
        Path(p)
        for p in (
            "none/A/A.st",
            "none/A/newst.com",
            "none/A/tilt.com",
            "none/A/A.xf",
            "none/A/A.tlt",
            "none/A/ctf.txt",
            "order.csv",
        )
    )
    assert f.excluded_views == ()


def test_sheet_rows(tmp_path: Path) -> None:
    sheet = write_project(tmp_path)
    (row,) = sheet_rows(sheet).values()
    assert row["rlnTomoName"] == "TS_01" and row["rlnTomoImportFractionalDose"] == "2.5"
