"""IMOD readers: .xf, .tlt, .com keywords, view lists, tilt.com and newst.com."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from tiltflow.errors import InputError
from tiltflow.imod.comfile import parse_view_list, read_comfile, read_newst_com, read_tilt_com
from tiltflow.imod.tlt import read_tlt
from tiltflow.imod.xf import read_xf

FIXTURES = (
    Path(__file__).parent / "data" / "fixtures"
)  # copies of ../shared/fixtures (see its README)
ETOMO = FIXTURES / "teamtomo__etomofiles" / "test_data" / "TS_001"
YAIW_XF = FIXTURES / "teamtomo__yet-another-imod-wrapper" / "tests" / "test_data" / "xf_file.xf"


def write(tmp_path: Path, name: str, text: str, newline: str = "\n") -> Path:
    p = tmp_path / name
    p.write_bytes(text.replace("\n", newline).encode())
    return p


# ----------------------------------------------------------------------------------------- .xf
def test_read_xf_etomo_fixture() -> None:
    xf = read_xf(ETOMO / "TS_001.xf")
    assert xf.shape == (40, 6) and xf.dtype == np.float64
    np.testing.assert_array_equal(
        xf[0], [0.1020875, 0.9947760, -0.9947760, 0.1020875, 2.395, -3.871]
    )
    np.testing.assert_array_equal(
        xf[1], [0.1023742, 0.9947464, -0.9947464, 0.1023742, 6.193, -0.115]
    )
    np.testing.assert_array_equal(
        xf[-1], [0.1004192, 0.9949457, -0.9949457, 0.1004192, -3.070, 0.039]
    )
    # README: the last two lines are identical (view 40 excluded)
    np.testing.assert_array_equal(xf[-1], xf[-2])
    # pure rotations: determinant 1 up to the rounding of 7 printed decimals
    det = xf[:, 0] * xf[:, 3] - xf[:, 1] * xf[:, 2]
    np.testing.assert_allclose(det, 1.0, atol=5e-6)


def test_read_xf_yaiw_fixture() -> None:
    xf = read_xf(YAIW_XF)
    assert xf.shape == (41, 6)
    assert xf[0, 4] == 342.263 and xf[0, 5] == 2006.328  # unsolved view 1, large shift
    np.testing.assert_array_equal(
        xf[1], [0.0858208, 0.9963112, -0.9963112, 0.0858208, -94.252, -32.178]
    )
    rot = np.degrees(np.arctan2(-xf[:, 2], xf[:, 0]))
    assert rot.min() == pytest.approx(85.08, abs=0.005)
    assert rot.max() == pytest.approx(85.64, abs=0.005)


def test_read_xf_blank_lines_crlf_and_no_final_newline(tmp_path: Path) -> None:
    p = write(tmp_path, "a.xf", "\n1 0 0 1 2.5 -3\n\n  0 -1 1 0 0 0", newline="\r\n")
    np.testing.assert_array_equal(read_xf(p), [[1, 0, 0, 1, 2.5, -3], [0, -1, 1, 0, 0, 0]])


def test_read_xf_run_together_fortran_fields(tmp_path: Path) -> None:
    # 4f12.7, 2f12.3 with a shift that fills its 12-character field
    row = (1.0, 0.0, 0.0, 1.0, -1234567.125, -2345678.5)
    line = "".join(f"{v:12.7f}" for v in row[:4]) + "".join(f"{v:12.3f}" for v in row[4:])
    assert len(line.split()) == 4  # the last three numbers run together
    p = write(tmp_path, "wide.xf", line + "\n")
    np.testing.assert_array_equal(read_xf(p), [[1.0, 0.0, 0.0, 1.0, -1234567.125, -2345678.5]])


@pytest.mark.parametrize(
    "text, line, needle",
    [
        ("1 0 0 1 0 0\n1 0 0 1 0\n", 2, "expected 6 numbers"),
        ("1 0 0 1 0 0 7\n", 1, "found 7"),
        ("1 0 0 1 0 abc\n", 1, "DY"),
        ("1 0 0 nan 0 0\n", 1, "A22"),
    ],
)
def test_read_xf_malformed(tmp_path: Path, text: str, line: int, needle: str) -> None:
    p = write(tmp_path, "bad.xf", text)
    with pytest.raises(InputError) as err:
        read_xf(p)
    assert (
        "bad.xf" in str(err.value) and f"line {line}" in str(err.value) and needle in str(err.value)
    )
    assert err.value.line == line


def test_read_xf_missing_and_empty(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="missing.xf.*not found"):
        read_xf(tmp_path / "missing.xf")
    with pytest.raises(InputError, match="empty.xf.*no data lines"):
        read_xf(write(tmp_path, "empty.xf", "\n  \n"))


# ---------------------------------------------------------------------------------------- .tlt
def test_read_tlt_etomo_fixture() -> None:
    tlt = read_tlt(ETOMO / "TS_001.tlt")
    assert tlt.shape == (40,) and tlt.dtype == np.float64
    assert tlt[0] == -57.12 and tlt[1] == -54.11 and tlt[-2] == 56.96 and tlt[-1] == 59.84


def test_read_tlt_no_final_newline_crlf_extra_columns(tmp_path: Path) -> None:
    p = write(tmp_path, "a.tlt", " -60.0  1.5\n\n-57.0,2\n  0.5 x y\n3.0", newline="\r\n")
    np.testing.assert_array_equal(read_tlt(p), [-60.0, -57.0, 0.5, 3.0])


def test_read_tlt_malformed(tmp_path: Path) -> None:
    with pytest.raises(InputError) as err:
        read_tlt(write(tmp_path, "bad.tlt", "1.0\n\nabc\n"))
    assert "bad.tlt, line 3" in str(err.value) and "tilt angle" in str(err.value)
    with pytest.raises(InputError, match="bad2.tlt, line 1.*finite"):
        read_tlt(write(tmp_path, "bad2.tlt", "inf\n"))
    with pytest.raises(InputError, match="empty.tlt.*no data lines"):
        read_tlt(write(tmp_path, "empty.tlt", ""))
    with pytest.raises(InputError, match="binary"):
        read_tlt(write(tmp_path, "bin.tlt", "1\x00\x002"))


# -------------------------------------------------------------------------------- view lists
@pytest.mark.parametrize(
    "text, expected",
    [
        ("1-3,7,10-12", (1, 2, 3, 7, 10, 11, 12)),
        (" 1 - 3 , 7 ", (1, 2, 3, 7)),
        ("5-3", (3, 4, 5)),
        ("7,1,7,2-3", (1, 2, 3, 7)),
        ("40", (40,)),
        ("1 5 7", (1, 5, 7)),
        ("", ()),
    ],
)
def test_parse_view_list(text: str, expected: tuple[int, ...]) -> None:
    assert parse_view_list(text) == expected


@pytest.mark.parametrize("text", ["1-", "a", "0", "1-3-5", "2.5", "-3"])
def test_parse_view_list_malformed(text: str) -> None:
    with pytest.raises(InputError) as err:
        parse_view_list(text, path="tilt.com", line=9)
    assert "tilt.com, line 9" in str(err.value)


# ---------------------------------------------------------------------------------- comfiles
TILT_COM = """# Command file to run Tilt
#
####CreatedVersion#### 4.11.12
#
$tilt -StandardInput
InputProjections TS_01.ali
OutputFile TS_01_full_rec.mrc
IMAGEBINNED 1
TILTFILE TS_01.tlt
THICKNESS 300
RADIAL 0.35 0.035
FalloffIsTrueSigma 1
XAXISTILT 0.7
SCALE 0.0 250.0
PERPENDICULAR
MODE 2
FULLIMAGE 3838 3710
SUBSETSTART 0 0
AdjustOrigin
OFFSET -1.5
SHIFT 12.5 -4.0
EXCLUDELIST 1-3,40
EXCLUDELIST2 20
EXCLUDE 2 5
UseGPU 0
$if (-e ./savework) ./savework
"""

NEWST_COM = """# THIS IS A COMMAND FILE TO PRODUCE A PRE-ALIGNED STACK
$newstack -StandardInput
InputFile	TS_01.st
OutputFile	TS_01.ali
TransformFile	TS_01.xf
TaperAtFill	1,0
AdjustOrigin
SizeToOutputInXandY	1024,1000
OffsetsInXandY	0.0,0.0
#DistortionField	.idf
ImagesAreBinned	1.0
BinByFactor	4
#GradientFile	TS_01.maggrad
$if (-e ./savework) ./savework
"""


def test_read_comfile_keywords(tmp_path: Path) -> None:
    kw = read_comfile(write(tmp_path, "tilt.com", TILT_COM + "thickness 310\n"))
    assert kw["THICKNESS"] == ["300"] and kw["thickness"] == ["310"]
    assert kw.get_ci("Thickness") == ["300", "310"]
    assert kw["PERPENDICULAR"] == [""] and kw["AdjustOrigin"] == [""]
    assert kw["RADIAL"] == ["0.35 0.035"]
    assert "$tilt" not in kw and "tilt" not in kw and not any(k.startswith("#") for k in kw)
    assert kw.last_ci("SHIFT") == ("12.5 -4.0", 21)
    assert isinstance(kw, dict)


def test_read_comfile_repeated_and_equals(tmp_path: Path) -> None:
    kw = read_comfile(
        write(tmp_path, "x.com", "$prog -StandardInput\nKEY a\nKEY = b\nOther=3\n", newline="\r\n")
    )
    assert kw["KEY"] == ["a", "b"] and kw["Other"] == ["3"]


def test_read_tilt_com(tmp_path: Path) -> None:
    tc = read_tilt_com(write(tmp_path, "tilt.com", TILT_COM))
    assert tc.thickness == 300.0
    assert tc.full_image == (3838, 3710)
    assert tc.shift == (12.5, -4.0)
    assert tc.offset == -1.5
    assert tc.x_axis_tilt == 0.7
    assert tc.exclude == (1, 2, 3, 5, 20, 40)
    assert tc.keywords["TILTFILE"] == ["TS_01.tlt"]


def test_read_tilt_com_defaults(tmp_path: Path) -> None:
    tc = read_tilt_com(
        write(tmp_path, "tilt.com", "$tilt -StandardInput\nInputProjections a.ali\n")
    )
    assert tc.thickness is None and tc.full_image is None
    assert (
        tc.shift == (0.0, 0.0) and tc.offset == 0.0 and tc.x_axis_tilt == 0.0 and tc.exclude == ()
    )


def test_read_tilt_com_lowercase_and_last_wins(tmp_path: Path) -> None:
    text = "$tilt\nthickness 100\nTHICKNESS 250.5\nfullimage 10,20\nshift 3\nOFFSET 2.0 5\n"
    tc = read_tilt_com(write(tmp_path, "tilt.com", text))
    assert (
        tc.thickness == 250.5
        and tc.full_image == (10, 20)
        and tc.shift == (3.0, 0.0)
        and tc.offset == 2.0
    )


@pytest.mark.parametrize(
    "body, line, needle",
    [
        ("THICKNESS abc\n", 2, "THICKNESS"),
        ("FULLIMAGE 1024\n", 2, "FULLIMAGE"),
        ("FULLIMAGE 1024.5 10\n", 2, "integers"),
        ("SHIFT 1 2 3\n", 2, "SHIFT"),
        ("EXCLUDELIST 1-x\n", 2, "view list"),
        ("THICKNESS -5\n", 2, "positive"),
        ("1024,1024\n", 2, "KEYWORD value"),
    ],
)
def test_read_tilt_com_malformed(tmp_path: Path, body: str, line: int, needle: str) -> None:
    p = write(tmp_path, "tilt.com", "$tilt -StandardInput\n" + body)
    with pytest.raises(InputError) as err:
        read_tilt_com(p)
    msg = str(err.value)
    assert "tilt.com" in msg and f"line {line}" in msg and needle in msg


def test_read_comfile_missing_and_empty(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="tilt.com.*not found"):
        read_tilt_com(tmp_path / "tilt.com")
    with pytest.raises(InputError, match="only.com.*no keyword lines"):
        read_comfile(write(tmp_path, "only.com", "# comment\n$tilt\n"))


def test_read_newst_com(tmp_path: Path) -> None:
    nc = read_newst_com(write(tmp_path, "newst.com", NEWST_COM))
    assert nc.size == (1024, 1000) and nc.bin_by_factor == 4
    assert nc.keywords["TransformFile"] == ["TS_01.xf"]
    assert "DistortionField" not in nc.keywords  # commented out


def test_read_newst_com_space_separated_and_defaults(tmp_path: Path) -> None:
    nc = read_newst_com(write(tmp_path, "newst.com", "$newstack\nSizeToOutputInXandY 512 256\n"))
    assert nc.size == (512, 256) and nc.bin_by_factor == 1
    nc = read_newst_com(write(tmp_path, "n2.com", "$newstack\nInputFile a.st\n"))
    assert nc.size is None and nc.bin_by_factor == 1


@pytest.mark.parametrize(
    "body, needle",
    [
        ("SizeToOutputInXandY 1024\n", "SizeToOutputInXandY"),
        ("SizeToOutputInXandY 1024,abc\n", "SizeToOutputInXandY"),
        ("BinByFactor 1.5\n", "integer"),
        ("BinByFactor 0\n", ">= 1"),
    ],
)
def test_read_newst_com_malformed(tmp_path: Path, body: str, needle: str) -> None:
    with pytest.raises(InputError) as err:
        read_newst_com(write(tmp_path, "newst.com", "$newstack -StandardInput\n" + body))
    assert "newst.com, line 2" in str(err.value) and needle in str(err.value)


def test_tlt_matches_xf_count_in_fixture() -> None:
    # the etomo project pairs one .tlt angle with each .xf line
    assert read_tlt(ETOMO / "TS_001.tlt").shape[0] == read_xf(ETOMO / "TS_001.xf").shape[0]
    assert not math.isnan(read_tlt(ETOMO / "TS_001.rawtlt")[0])
