"""CTFFIND4 output, RELION order lists and SerialEM mdoc files (dose / acquisition order)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tiltflow.errors import InputError
from tiltflow.io.ctffind import read_ctffind
from tiltflow.io.mdoc import MdocAcquisition, pre_exposure_from_mdoc, read_mdoc_acquisition
from tiltflow.io.order_list import pre_exposure_from_order, read_order_list

FIXTURES = (
    Path(__file__).parent / "data" / "fixtures"
)  # copies of ../shared/fixtures (see its README)
MDOCS = FIXTURES / "teamtomo__mdocfile" / "tests" / "test_data"
TS_MDOC = MDOCS / "tilt_series.mdoc"
TS_MDOC_CRLF = (
    FIXTURES / "alisterburt__tomo_preprocessing" / "test_data" / "mdoc" / "TS_01.mrc.mdoc"
)


def write(tmp_path: Path, name: str, text: str, newline: str = "\n") -> Path:
    p = tmp_path / name
    p.write_bytes(text.replace("\n", newline).encode())
    return p


# ------------------------------------------------------------------------------------ CTFFIND4
CTFFIND_TXT = """# Output from CTFFind version 4.1.5, run on 2017-03-30 15:12:45
# Input file: /data/ts_05/frames/05_f32.mrc ; Number of micrographs: 3
# Pixel size: 1.000 Angstroms ; acceleration voltage: 300.0 keV ; spherical aberration: 2.70 mm ; amplitude contrast: 0.07
# Box size: 512 pixels ; min. res.: 30.0 Angstroms ; max. res.: 5.0 Angstroms ; min. def.: 5000.0 um; max. def. 50000.0 um
# Columns: #1 - micrograph number; #2 - defocus 1 [Angstroms]; #3 - defocus 2; #4 - azimuth of astigmatism; #5 - additional phase shift [radians]; #6 - cross correlation; #7 - spacing (in Angstroms) up to which CTF rings were fit successfully
1.000000 10295.926758 10012.275391 -38.856349 0.000000 0.030650 5.279412
2.000000 20111.500000 19800.250000 12.500000 0.785398 0.041000 7.125000
3.000000 30000.000000 29000.000000 89.000000 1.570796 0.050000 9.000000
"""


def test_read_ctffind(tmp_path: Path) -> None:
    t = read_ctffind(write(tmp_path, "ts_output.txt", CTFFIND_TXT, newline="\r\n"))
    assert len(t) == 3
    np.testing.assert_array_equal(t.micrograph, [1, 2, 3])
    np.testing.assert_array_equal(t.defocus1_A, [10295.926758, 20111.5, 30000.0])
    np.testing.assert_array_equal(t.defocus2_A, [10012.275391, 19800.25, 29000.0])
    np.testing.assert_array_equal(t.astig_angle_deg, [-38.856349, 12.5, 89.0])
    np.testing.assert_array_equal(t.phase_shift_rad, [0.0, 0.785398, 1.570796])
    np.testing.assert_array_equal(t.cross_correlation, [0.030650, 0.041, 0.05])
    np.testing.assert_array_equal(t.fit_resolution_A, [5.279412, 7.125, 9.0])


def test_read_ctffind_extra_columns_tolerated(tmp_path: Path) -> None:
    t = read_ctffind(write(tmp_path, "c5.txt", "# h\n1 100 90 5 0 0.1 4 12.0 30.0 150.0\n"))
    assert (t.defocus1_A[0], t.fit_resolution_A[0]) == (100.0, 4.0)


@pytest.mark.parametrize(
    "text, line, needle",
    [
        ("# h\n1 100 90 5 0 0.1\n", 2, "expected 7 columns"),
        ("# h\n1 100 90 5 0 0.1 4\n2 x 90 5 0 0.1 4\n", 3, "defocus 1"),
        ("1 100 nan 5 0 0.1 4\n", 1, "defocus 2"),
    ],
)
def test_read_ctffind_malformed(tmp_path: Path, text: str, line: int, needle: str) -> None:
    with pytest.raises(InputError) as err:
        read_ctffind(write(tmp_path, "bad_output.txt", text))
    assert (
        "bad_output.txt" in str(err.value)
        and f"line {line}" in str(err.value)
        and needle in str(err.value)
    )


def test_read_ctffind_empty_and_missing(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="h.txt.*no data lines"):
        read_ctffind(write(tmp_path, "h.txt", "# only a header\n"))
    with pytest.raises(InputError, match="none.txt.*not found"):
        read_ctffind(tmp_path / "none.txt")


# ---------------------------------------------------------------------------------- order list
def test_read_order_list_and_pre_exposure(tmp_path: Path) -> None:
    # dose-symmetric acquisition: 0, +3, -3, -6, +6
    p = write(tmp_path, "order_list.csv", "1,0.0\n2,3.0\n3,-3.0\n4, -6.0\n5 ,6.0", newline="\r\n")
    order = read_order_list(p)
    np.testing.assert_array_equal(order, [[1, 0], [2, 3], [3, -3], [4, -6], [5, 6]])
    # .tlt angles (refined, slightly off the nominal ones), in stack order
    tilts = np.array([-6.2, -2.9, 0.1, 3.05, 5.8])
    np.testing.assert_array_equal(
        pre_exposure_from_order(tilts, order, 2.5), [7.5, 5.0, 0.0, 2.5, 10.0]
    )


def test_order_list_rank_from_index_column_and_header(tmp_path: Path) -> None:
    # not sorted in the file: rank comes from the index column
    p = write(tmp_path, "o.csv", "index,angle\n3,-3\n1,0\n2,3\n")
    order = read_order_list(p)
    np.testing.assert_array_equal(order, [[3, -3], [1, 0], [2, 3]])
    np.testing.assert_array_equal(
        pre_exposure_from_order(np.array([-3.0, 0.0, 3.0]), order, 1.5), [3.0, 0.0, 1.5]
    )


def test_order_list_ties_go_to_first_row() -> None:
    order = np.array([[1.0, 0.0], [2.0, 2.0], [3.0, -2.0]])
    # 1.0 is equally close to 0 and 2: RELION keeps the first (strict '<'), i.e. row 0
    np.testing.assert_array_equal(pre_exposure_from_order(np.array([1.0]), order, 4.0), [0.0])


@pytest.mark.parametrize(
    "text, line, needle",
    [
        ("1,0\n2,3,4\n", 2, "expected 2 comma-separated values"),
        ("1,0\n2,abc\n", 2, "tilt angle"),
        ("1,0\nx,3\n", 2, "acquisition index"),
        ("1,0\n2,nan\n", 2, "finite"),
    ],
)
def test_order_list_malformed(tmp_path: Path, text: str, line: int, needle: str) -> None:
    with pytest.raises(InputError) as err:
        read_order_list(write(tmp_path, "order.csv", text))
    assert (
        "order.csv" in str(err.value)
        and f"line {line}" in str(err.value)
        and needle in str(err.value)
    )


def test_order_list_empty(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="e.csv.*no data lines"):
        read_order_list(write(tmp_path, "e.csv", "index,angle\n"))


# ----------------------------------------------------------------------------------------- mdoc
def test_mdoc_tilt_series_fixture() -> None:
    acq = read_mdoc_acquisition(TS_MDOC)
    assert len(acq) == 41 and acq.pixel_size == 5.4 and acq.by_datetime
    # DateTime order equals ZValue order in this file; dose-symmetric 0, +3, -3, -6, +6, +9, ...
    np.testing.assert_array_equal(acq.z_values, np.arange(41))
    np.testing.assert_allclose(
        acq.tilt_angles[:6], [0.000999877, 3.00113, -2.99863, -5.99876, 6.00126, 9.0014]
    )
    assert acq.tilt_angles[-1] == pytest.approx(60.0006)
    np.testing.assert_array_equal(acq.doses, 0.0)  # ExposureDose = 0 in every section
    # with ExposureDose 0, each section counts the fractional dose
    tilts = np.array([-60.0, -3.0, 0.0, 3.0, 6.0, 60.0])
    pre = pre_exposure_from_mdoc(tilts, acq, 3.0)
    np.testing.assert_allclose(pre, [39 * 3.0, 2 * 3.0, 0.0, 3.0, 4 * 3.0, 40 * 3.0])


def test_mdoc_crlf_copy_gives_same_result() -> None:
    assert b"\r\n" in TS_MDOC_CRLF.read_bytes()
    a, b = read_mdoc_acquisition(TS_MDOC), read_mdoc_acquisition(TS_MDOC_CRLF)
    np.testing.assert_array_equal(a.tilt_angles, b.tilt_angles)
    np.testing.assert_array_equal(a.z_values, b.z_values)
    assert a.pixel_size == b.pixel_size == 5.4


def test_mdoc_frame_set_single_crlf() -> None:
    acq = read_mdoc_acquisition(MDOCS / "frame_set_single.mdoc")
    assert len(acq) == 1 and acq.tilt_angles[0] == 32.984 and acq.doses[0] == 7.65892
    assert acq.pixel_size == 1.2827  # written only in the [FrameSet] section
    np.testing.assert_array_equal(pre_exposure_from_mdoc(np.array([33.0]), acq, 1.0), [0.0])


def test_mdoc_frame_set_multiple_crlf() -> None:
    acq = read_mdoc_acquisition(MDOCS / "frame_set_multiple.mdoc")
    # the 20 [ZValue] sections (the [FrameSet] summary section is not a tilt image); no DateTime
    assert len(acq) == 20 and not acq.by_datetime
    np.testing.assert_array_equal(acq.z_values, np.arange(20))
    np.testing.assert_array_equal(acq.tilt_angles, 33.0)
    assert acq.doses[0] == 7.66184 and acq.doses[6] == 7.55522 and acq.doses[13] == 8.10961
    assert acq.pixel_size == 1.2827


def test_mdoc_datetime_order_and_exposure_dose(tmp_path: Path) -> None:
    text = """PixelSpacing = 2.5
ImageFile = x.mrc

[ZValue = 0]
TiltAngle = -3.0
ExposureDose = 2.0
DateTime = 01-Jan-24  10:00:30

[ZValue = 1]
TiltAngle = 0.0
ExposureDose = 3.0
DateTime = 01-Jan-24  10:00:00

[ZValue = 2]
TiltAngle = 3.0
ExposureDose = 0
DateTime = 01-Jan-24  10:01:00
"""
    acq = read_mdoc_acquisition(write(tmp_path, "t.mdoc", text))
    assert acq.by_datetime and acq.pixel_size == 2.5
    np.testing.assert_array_equal(acq.z_values, [1, 0, 2])
    np.testing.assert_array_equal(acq.tilt_angles, [0.0, -3.0, 3.0])
    np.testing.assert_array_equal(acq.doses, [3.0, 2.0, 0.0])
    # 0 deg first (nothing before), then -3 (after 3.0), then +3 (after 3 + 2)
    pre = pre_exposure_from_mdoc(np.array([3.1, -2.9, 0.2]), acq, 10.0)
    np.testing.assert_array_equal(pre, [5.0, 3.0, 0.0])


def test_mdoc_one_missing_datetime_is_an_error(tmp_path: Path) -> None:
    # one section without a DateTime must not silently re-order the acquisition (issue #11 item 4)
    text = "[ZValue = 1]\nTiltAngle = 3\nDateTime = 01-Jan-24  09:00:00\n\n[ZValue = 0]\nTiltAngle = 0\n"
    with pytest.raises(InputError, match=r"z.mdoc, line 5: section \[ZValue = 0\] has no DateTime"):
        read_mdoc_acquisition(write(tmp_path, "z.mdoc", text))


def test_mdoc_zvalue_order_when_no_section_has_a_datetime(tmp_path: Path, caplog) -> None:
    text = "[ZValue = 1]\nTiltAngle = 3\n\n[ZValue = 0]\nTiltAngle = 0\n"
    acq = read_mdoc_acquisition(write(tmp_path, "z.mdoc", text))
    assert not acq.by_datetime and acq.pixel_size is None
    np.testing.assert_array_equal(acq.z_values, [0, 1])
    np.testing.assert_array_equal(acq.tilt_angles, [0.0, 3.0])
    assert "z.mdoc: no DateTime in any section" in caplog.text and "ZValue order" in caplog.text


def test_pre_exposure_from_mdoc_hand_case() -> None:
    acq = MdocAcquisition(
        tilt_angles=np.array([0.0, 2.0, -2.0, -4.0]),
        doses=np.array([1.0, 0.0, 2.0, 0.0]),
        z_values=np.arange(4),
        pixel_size=None,
    )
    pre = pre_exposure_from_mdoc(np.array([-4.0, -2.0, 0.0, 2.0]), acq, 0.5)
    np.testing.assert_array_equal(pre, [1.0 + 0.5 + 2.0, 1.0 + 0.5, 0.0, 1.0])


@pytest.mark.parametrize(
    "text, needle, line",
    [
        ("[ZValue = 0]\nTiltAngle = abc\n", "TiltAngle", 2),
        ("[ZValue = 0]\nExposureDose = 1\n", "no TiltAngle", 1),
        ("PixelSpacing = 1\nImageFile = a.mrc\n", "no [ZValue", None),
        ("[ZValue = x]\nTiltAngle = 1\n", "ZValue", 1),
    ],
)
def test_mdoc_malformed(tmp_path: Path, text: str, needle: str, line: int | None) -> None:
    with pytest.raises(InputError) as err:
        read_mdoc_acquisition(write(tmp_path, "bad.mdoc", text))
    msg = str(err.value)
    assert "bad.mdoc" in msg and needle in msg, msg
    if line is not None:
        assert f"line {line}" in msg, msg


def test_mdoc_missing_and_empty(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="none.mdoc.*not found"):
        read_mdoc_acquisition(tmp_path / "none.mdoc")
    with pytest.raises(InputError, match="empty.mdoc.*empty"):
        read_mdoc_acquisition(write(tmp_path, "empty.mdoc", "\n"))
