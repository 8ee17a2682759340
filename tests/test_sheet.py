"""The tomogram sheet (tiltflow.sheet): STAR and TSV read into one RELION-labelled table,
RELION 4 default naming, errors, and the TSV -> import STAR conversion."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tiltflow.errors import InputError
from tiltflow.io.star import StarBlock, read_star
from tiltflow.sheet import (
    TSV_COLUMNS,
    read_sheet,
    relion_tomogram_name,
    sheet_names,
    tomogram_names,
    write_import_star,
)

STAR = (
    "# version 30001\n\ndata_\n\nloop_\n_rlnTomoName #1\n_rlnTomoImportImodDir #2\n_rlnTomoTiltSeriesName #3\n"
    "_rlnTomoImportCtfPlotterFile #4\n_rlnTomoImportFractionalDose #5\n"
    "001 imod/a imod/a/a.st:mrc imod/a/a.defocus 3\n"
    "TS_b imod/b imod/b/b.mrc imod/b/b.defocus 2.5\n"
)


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_star_sheet(tmp_path: Path) -> None:
    df = read_sheet(write(tmp_path / "import.star", STAR))
    assert list(df.columns) == [
        "rlnTomoName",
        "rlnTomoImportImodDir",
        "rlnTomoTiltSeriesName",
        "rlnTomoImportCtfPlotterFile",
        "rlnTomoImportFractionalDose",
    ]
    # names and paths stay text ("001" is not the number 1); doses are numbers
    assert df["rlnTomoName"].tolist() == ["001", "TS_b"]
    assert df["rlnTomoTiltSeriesName"].tolist() == ["imod/a/a.st:mrc", "imod/b/b.mrc"]
    np.testing.assert_allclose(df["rlnTomoImportFractionalDose"].astype(float), [3.0, 2.5])
    assert sheet_names(tmp_path / "import.star") == ["001", "TS_b"]


def test_tsv_friendly_columns(tmp_path: Path) -> None:
    tsv = write(
        tmp_path / "sheet.tsv",
        "# a comment\nname\timod_dir\ttilt_series\tctfplotter\tdose\tmdoc\toffset_z\n\n"
        "A\timod/A\timod/A/A.st\timod/A/A.defocus\t3\timod/A/A.mdoc\t-12.5\n",
    )
    df = read_sheet(tsv)
    assert list(df.columns) == [
        "rlnTomoName",
        "rlnTomoImportImodDir",
        "rlnTomoTiltSeriesName",
        "rlnTomoImportCtfPlotterFile",
        "rlnTomoImportFractionalDose",
        "tfMdocFile",
        "rlnTomoImportOffsetZ",
    ]
    assert list(df.row(0).values()) == [
        "A",
        "imod/A",
        "imod/A/A.st",
        "imod/A/A.defocus",
        3.0,
        "imod/A/A.mdoc",
        -12.5,
    ]
    assert sheet_names(tsv) == ["A"]


def test_tsv_relion_labels_with_and_without_underscore(tmp_path: Path) -> None:
    tsv = write(
        tmp_path / "sheet.tsv",
        "_rlnTomoImportImodDir\trlnTomoTiltSeriesName\t_rlnTomoImportCtfFindFile\ttfMdocFile\n"
        "imod/A\timod/A/A.st\timod/A/ctf.txt\timod/A/A.mdoc\n",
    )
    df = read_sheet(tsv)
    assert list(df.columns) == [
        "rlnTomoImportImodDir",
        "rlnTomoTiltSeriesName",
        "rlnTomoImportCtfFindFile",
        "tfMdocFile",
    ]
    friendly = write(
        tmp_path / "friendly.tsv",
        "imod_dir\ttilt_series\tctffind\tmdoc\nimod/A\timod/A/A.st\timod/A/ctf.txt\timod/A/A.mdoc\n",
    )
    assert read_sheet(friendly).equals(df)


def test_default_name_keeps_directories(tmp_path: Path) -> None:
    assert relion_tomogram_name("tomograms/TS_01/01.mrc:mrc") == "tomograms/TS_01/01"
    assert relion_tomogram_name("TS_01.st") == "TS_01"
    assert relion_tomogram_name("noext") == "noext"
    star = write(
        tmp_path / "import.star",
        "data_\n\nloop_\n_rlnTomoImportImodDir\n_rlnTomoTiltSeriesName\n"
        "imod/a tomograms/TS_01/01.mrc:mrc\nimod/b TS_02.st\n",
    )
    assert sheet_names(star) == ["tomograms/TS_01/01", "TS_02"]
    # --root is prefixed before the name is derived, as RELION does (a '/' is added when missing)
    assert sheet_names(star, root="/data") == ["/data/tomograms/TS_01/01", "/data/TS_02"]
    tsv = write(
        tmp_path / "sheet.tsv", "imod_dir\ttilt_series\nimod/a\ttomograms/TS_01/01.mrc:mrc\n"
    )
    assert sheet_names(tsv) == ["tomograms/TS_01/01"]


def test_unknown_tsv_column_is_named_with_the_known_ones(tmp_path: Path) -> None:
    tsv = write(
        tmp_path / "sheet.tsv", "name\timod_dir\ttilt_series\tdefocus\nA\timod/A\tA.st\tx\n"
    )
    with pytest.raises(InputError) as err:
        read_sheet(tsv)
    msg = str(err.value)
    assert "'defocus'" in msg and str(tsv) in msg and "line 1" in msg
    assert all(c in msg for c in TSV_COLUMNS) and "rlnTomoImportCtfPlotterFile" in msg


def test_duplicate_names(tmp_path: Path) -> None:
    tsv = write(tmp_path / "sheet.tsv", "name\timod_dir\ttilt_series\nA\tx\tx.st\nA\ty\ty.st\n")
    with pytest.raises(InputError, match=r"duplicate tomogram names \['A'\]"):
        sheet_names(tsv)
    # a default name equal to an explicit one is a duplicate too
    star = write(
        tmp_path / "import.star",
        "data_\n\nloop_\n_rlnTomoImportImodDir\n_rlnTomoTiltSeriesName\nx x.st\ny x.mrc\n",
    )
    with pytest.raises(InputError, match="duplicate"):
        sheet_names(star)


@pytest.mark.parametrize(
    "text, match",
    [
        ("name\ttilt_series\nA\tA.st\n", "missing required column _rlnTomoImportImodDir"),
        ("name\timod_dir\ttilt_series\nA\t\tA.st\n", "line 2: column 'imod_dir' is empty"),
        ("name\timod_dir\ttilt_series\tdose\nA\td\tA.st\tlots\n", "'lots' is not a number"),
        ("name\timod_dir\ttilt_series\nA\td\n", "line 2: 2 values for 3 columns"),
        ("name\timod_dir\ttilt_series\trlnTomoName\nA\td\tA.st\tB\n", "both give rlnTomoName"),
    ],
)
def test_bad_tsv(tmp_path: Path, text: str, match: str) -> None:
    with pytest.raises(InputError, match=match):
        read_sheet(write(tmp_path / "sheet.tsv", text))


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="file not found"):
        read_sheet(tmp_path / "nope.tsv")


def test_write_import_star_round_trips(tmp_path: Path) -> None:
    tsv = write(
        tmp_path / "sheet.tsv",
        "dose\ttilt_series\timod_dir\tname\tctfplotter\n2.5\timod/A/A.st\timod/A\tA\timod/A/A.defocus\n",
    )
    out = tmp_path / "out" / "import.star"
    write_import_star(read_sheet(tsv), out)
    text = out.read_text()
    block = next(iter(read_star(out).values()))
    # canonical label order, numbers as numbers
    assert list(block.columns) == [
        "rlnTomoName",
        "rlnTomoImportImodDir",
        "rlnTomoTiltSeriesName",
        "rlnTomoImportCtfPlotterFile",
        "rlnTomoImportFractionalDose",
    ]
    assert "A imod/A imod/A/A.st imod/A/A.defocus 2.5\n" in text
    # the written STAR reads back as the same table and gives the same names
    back, tsv_table = read_sheet(out), read_sheet(tsv)
    assert back.columns == tuple(block.columns)
    assert all(back[c].tolist() == tsv_table[c].tolist() for c in back.columns)
    assert sheet_names(out) == sheet_names(tsv) == ["A"]
    # deterministic
    write_import_star(read_sheet(tsv), tmp_path / "again.star")
    assert (tmp_path / "again.star").read_text() == text


def test_tomogram_names_of_a_table(tmp_path: Path) -> None:
    df = read_sheet(write(tmp_path / "import.star", STAR))
    unnamed = StarBlock("", {k: df[k] for k in df.columns if k != "rlnTomoName"})
    assert tomogram_names(unnamed) == ["imod/a/a", "imod/b/b"]
