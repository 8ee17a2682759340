"""ctfplotter .defocus reader: every version and flag, real fixtures and hand-written cases."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from tiltflow.errors import InputError
from tiltflow.imod.defocus import CtfPlotterTable, read_ctfplotter

FIXTURES = (
    Path(__file__).parent / "data" / "fixtures"
)  # copies of ../shared/fixtures (see its README)
CETS = FIXTURES / "TomoBabel__cets-imod" / "imod" / "tests" / "test_data" / "imod_defocus_files"
PYTOM = FIXTURES / "SBC-Utrecht__pytom-match-pick" / "tests" / "Data" / "test_imod.defocus"
D2R = math.pi / 180.0


def write(tmp_path: Path, name: str, text: str) -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def check_single_views(t: CtfPlotterTable, n: int, first_angle: float, step: float) -> None:
    np.testing.assert_array_equal(t.view_start, np.arange(1, n + 1))
    np.testing.assert_array_equal(t.view_end, np.arange(1, n + 1))
    np.testing.assert_allclose(t.angle_start, first_angle + step * np.arange(n), atol=0.011)
    np.testing.assert_array_equal(t.angle_start, t.angle_end)


# ------------------------------------------------------------------------------ real fixtures
def test_cets_plain_estimation_version2() -> None:
    t = read_ctfplotter(CETS / "TS_03_plain_estimation.defocus")
    assert (t.version, t.flags, len(t)) == (2, 0, 40)
    check_single_views(t, 40, -57.0, 3.0)
    assert t.defocus1_nm[0] == 1360.0 and t.defocus1_nm[1] == 1243.0
    assert t.defocus1_nm[19] == 1452.0 and t.angle_start[19] == 0.0  # line "20 20 0.00 0.00 1452"
    assert t.defocus1_nm[-1] == 1439.0 and t.angle_end[-1] == 60.0
    np.testing.assert_array_equal(t.defocus2_nm, t.defocus1_nm)
    np.testing.assert_array_equal(t.astig_angle_deg, 0.0)
    np.testing.assert_array_equal(t.phase_shift_rad, 0.0)
    assert np.isnan(t.cut_on).all() and not t.inverted_tilt


def test_cets_only_astigmatism_flag1() -> None:
    t = read_ctfplotter(CETS / "TS_03_only_astigmatism.defocus")
    assert (
        (t.version, t.flags, len(t)) == (3, 1, 40) and t.has_astigmatism and not t.has_phase_shift
    )
    check_single_views(t, 40, -57.0, 3.0)
    assert (t.defocus1_nm[0], t.defocus2_nm[0], t.astig_angle_deg[0]) == (1651.6, 1206.7, 31.76)
    assert (t.defocus1_nm[19], t.defocus2_nm[19], t.astig_angle_deg[19]) == (1467.8, 1435.8, 50.36)
    assert (t.defocus1_nm[-1], t.defocus2_nm[-1], t.astig_angle_deg[-1]) == (1460.9, 1417.1, 48.40)
    np.testing.assert_array_equal(t.phase_shift_rad, 0.0)
    assert np.isnan(t.cut_on).all()


def test_cets_only_phase_shift_flag4() -> None:
    t = read_ctfplotter(CETS / "TS_03_only_phase_shift.defocus")
    assert (
        (t.version, t.flags, len(t)) == (3, 4, 40) and t.has_phase_shift and not t.has_astigmatism
    )
    check_single_views(t, 40, -57.0, 3.0)
    assert t.defocus1_nm[0] == 1323.6 and t.defocus1_nm[1] == 987.0
    np.testing.assert_array_equal(t.defocus2_nm, t.defocus1_nm)
    np.testing.assert_array_equal(t.astig_angle_deg, 0.0)
    # phase written in degrees (no flag 8), returned in radians
    assert t.phase_shift_rad[0] == pytest.approx(10.19 * D2R, rel=1e-12)
    assert t.phase_shift_rad[1] == pytest.approx(45.94 * D2R, rel=1e-12)
    assert t.phase_shift_rad[19] == pytest.approx(0.92 * D2R, rel=1e-12)
    assert t.phase_shift_rad[-1] == pytest.approx(-5.05 * D2R, rel=1e-12)


def test_cets_astigmatism_and_phase_flag5() -> None:
    t = read_ctfplotter(CETS / "TS_03_astigmatism_and_phase_shift.defocus")
    assert (t.version, t.flags, len(t)) == (3, 5, 40)
    check_single_views(t, 40, -57.0, 3.0)
    assert (t.defocus1_nm[0], t.defocus2_nm[0], t.astig_angle_deg[0]) == (1483.9, 1068.7, 32.44)
    assert t.phase_shift_rad[0] == pytest.approx(26.49 * D2R, rel=1e-12)
    assert t.phase_shift_rad[2] == pytest.approx(-1.38 * D2R, rel=1e-12)
    assert (t.defocus1_nm[-1], t.defocus2_nm[-1], t.astig_angle_deg[-1]) == (1485.3, 1444.8, 51.87)
    assert np.isnan(t.cut_on).all()


def test_cets_astigmatism_phase_cuton_flag37() -> None:
    t = read_ctfplotter(CETS / "TS_03_astigmatism_phase_shift_and_cutoff_freq.defocus")
    assert (t.version, t.flags, len(t)) == (3, 37, 40) and t.has_cut_on and not t.inverted_tilt
    check_single_views(t, 40, -57.0, 3.0)
    assert (t.defocus1_nm[0], t.defocus2_nm[0], t.astig_angle_deg[0]) == (1331.4, 917.5, 32.43)
    assert t.phase_shift_rad[0] == pytest.approx(29.08 * D2R, rel=1e-12)
    assert t.cut_on[0] == 0.4912 and t.cut_on[1] == 0.0819
    np.testing.assert_array_equal(t.cut_on[2:], 0.0)  # only the first two views have a cut-on
    assert (t.defocus1_nm[16], t.defocus2_nm[16], t.astig_angle_deg[16]) == (1475.1, 1425.6, 50.50)
    d1, d2, ang, ph = t.per_view(40)
    assert (d1[16], d2[16], ang[16]) == (1475.1, 1425.6, 50.50)
    assert ph[16] == pytest.approx(-0.31 * D2R)
    np.testing.assert_array_equal(t.cut_on_per_view(41)[:2], [0.4912, 0.0819])
    assert np.isnan(t.cut_on_per_view(41)[40])


def test_pytom_version2_without_trailing_newline() -> None:
    assert not PYTOM.read_bytes().endswith(b"\n")
    t = read_ctfplotter(PYTOM)
    assert (t.version, t.flags, len(t)) == (2, 0, 35)
    assert t.view_start[0] == 1 and t.view_end[-1] == 35
    assert (t.angle_start[0], t.defocus1_nm[0]) == (-50.99, 3083.0)
    assert (t.angle_start[16], t.defocus1_nm[16]) == (-2.99, 3206.0)
    assert (t.angle_start[17], t.defocus1_nm[17]) == (0.01, 3323.0)
    assert (t.angle_start[-1], t.defocus1_nm[-1]) == (51.0, 3354.0)  # the last, unterminated line
    # the fixture README says "about 3083-3354"; the true minimum is view 12
    assert t.defocus1_nm.min() == 3007.0 and int(np.argmin(t.defocus1_nm)) == 11
    assert t.defocus1_nm.max() == 3354.0


@pytest.mark.parametrize("path", sorted(CETS.glob("*.defocus")) + [PYTOM], ids=lambda p: p.name)
def test_every_fixture_per_view_covers_all_views(path: Path) -> None:
    t = read_ctfplotter(path)
    n = int(t.view_end.max())
    d1, d2, ang, ph = t.per_view(n)
    assert not np.isnan(d1).any() and not np.isnan(d2).any()
    np.testing.assert_array_equal(d1, t.defocus1_nm)  # one line per view, in view order
    assert np.all(d1 > 500) and np.all(d1 < 5000)  # nm, underfocus


# ---------------------------------------------------------------------------- hand-made cases
def test_version1_ranges_and_per_view(tmp_path: Path) -> None:
    p = write(tmp_path, "v1.defocus", "1 3 -60 -54 3000\n4 4 -51 -51 3100\n\n7 9 -42 -36 3300\n")
    t = read_ctfplotter(p)
    assert (t.version, t.flags, len(t)) == (1, 0, 3)
    d1, d2, ang, ph = t.per_view(10)
    np.testing.assert_array_equal(d1[:4], [3000, 3000, 3000, 3100])
    assert np.isnan(d1[4]) and np.isnan(d1[5]) and np.isnan(d1[9])  # views 5, 6, 10 uncovered
    np.testing.assert_array_equal(d1[6:9], 3300)
    np.testing.assert_array_equal(d2[:4], d1[:4])
    np.testing.assert_array_equal(ang[:4], 0.0)
    np.testing.assert_array_equal(ph[:4], 0.0)
    assert np.isnan(ph[4])
    d1s, *_ = t.per_view(2)  # lines past n_views are cut
    np.testing.assert_array_equal(d1s, [3000, 3000])


def test_version2_range_marker_on_first_line(tmp_path: Path) -> None:
    t = read_ctfplotter(write(tmp_path, "v2.defocus", "1 2 -3.0 0.0 2500 2\n3 5 3.0 9.0 2600\n"))
    assert t.version == 2 and len(t) == 2
    np.testing.assert_array_equal(t.per_view(5)[0], [2500, 2500, 2600, 2600, 2600])


def test_version3_radians_and_inverted_flags(tmp_path: Path) -> None:
    # 1 astig + 2 astig in rad + 4 phase + 8 phase in rad + 16 inverted + 32 cut-on = 63
    text = "63 0 0. 0. 0 3\n1 2 -3 3 3000 2800 0.5 0.25 0.1\n3 3 6 6 3100 2900 -1.0 0.5 0\n"
    t = read_ctfplotter(write(tmp_path, "v3.defocus", text))
    assert (t.version, t.flags) == (3, 63) and t.inverted_tilt
    np.testing.assert_allclose(t.astig_angle_deg, [0.5 / D2R, -1.0 / D2R], rtol=1e-12)
    np.testing.assert_array_equal(t.phase_shift_rad, [0.25, 0.5])  # already radians
    np.testing.assert_array_equal(t.cut_on, [0.1, 0.0])
    np.testing.assert_array_equal(t.angle_start, [-3, 6])  # angles kept as written
    d1, d2, ang, ph = t.per_view(3)
    np.testing.assert_array_equal(d1, [3000, 3000, 3100])
    np.testing.assert_array_equal(d2, [2800, 2800, 2900])
    np.testing.assert_allclose(
        ang, [28.64788975654116, 28.64788975654116, -57.29577951308232], rtol=1e-12
    )
    np.testing.assert_array_equal(ph, [0.25, 0.25, 0.5])


def test_version3_flag0_and_overlap_later_wins(tmp_path: Path) -> None:
    t = read_ctfplotter(
        write(tmp_path, "v3.defocus", "0 0 0.0 0.0 0.0 3\n1 4 -9 0 2000\n3 3 -3 -3 2100\n")
    )
    assert (t.version, t.flags, len(t)) == (3, 0, 2)
    np.testing.assert_array_equal(t.per_view(4)[0], [2000, 2000, 2100, 2000])


def test_version3_header_with_crlf(tmp_path: Path) -> None:
    p = tmp_path / "crlf.defocus"
    p.write_bytes(b"1\t0\t0.0\t0.0\t0.0\t3\r\n1\t1\t-3.00\t-3.00\t 1469.7\t 1434.7\t  50.56\r\n")
    t = read_ctfplotter(p)
    assert (t.defocus1_nm[0], t.defocus2_nm[0], t.astig_angle_deg[0]) == (1469.7, 1434.7, 50.56)


@pytest.mark.parametrize(
    "text, line, needle",
    [
        ("1 1 -3 -3 3000 2 7\n", 1, "found 7"),
        ("1 1 -3 -3\n", 1, "expected 5 columns"),
        ("1 1 -3 -3 3000 1\n", 1, "6th field"),
        ("1 1 -3 -3 3000 5\n", 1, "unsupported .defocus version 5"),
        ("1 1 -3 -3 3000\n2 2 0 0\n", 2, "expected 5 columns for version 1"),
        ("1 1 -3 -3 3000 2\n2 2 0 0 3000 2\n", 2, "expected 5 columns for version 2"),
        ("1 1 -3 -3 abc\n", 1, "defocus"),
        ("1 1 -3 -3 nan\n", 1, "finite"),
        ("1.5 2 -3 -3 3000\n", 1, "view_start"),
        ("3 2 -3 -3 3000\n", 1, "invalid view range 3-2"),
        ("0 2 -3 -3 3000\n", 1, "1-based"),
        ("1 0 0. 0. 0 3\n1 1 -3 -3 3000\n", 2, "expected 7 columns for version 3 with flags 1"),
        ("5 0 0. 0. 0 3\n1 1 -3 -3 3000 2900 45\n", 2, "expected 8 columns"),
        ("37 0 0. 0. 0 3\n1 1 -3 -3 3000 2900 45 10\n", 2, "expected 9 columns"),
        ("64 0 0. 0. 0 3\n1 1 -3 -3 3000\n", 1, "unknown flag bits"),
        ("1 0 0. 0. 0 4\n1 1 -3 -3 3000\n", 1, "unsupported .defocus version 4"),
    ],
)
def test_malformed(tmp_path: Path, text: str, line: int, needle: str) -> None:
    with pytest.raises(InputError) as err:
        read_ctfplotter(write(tmp_path, "bad.defocus", text))
    msg = str(err.value)
    assert "bad.defocus" in msg and f"line {line}" in msg and needle in msg, msg


def test_missing_empty_and_header_only(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="nope.defocus.*not found"):
        read_ctfplotter(tmp_path / "nope.defocus")
    with pytest.raises(InputError, match="empty.defocus.*empty"):
        read_ctfplotter(write(tmp_path, "empty.defocus", "\n\n"))
    with pytest.raises(InputError, match="head.defocus.*no data lines"):
        read_ctfplotter(write(tmp_path, "head.defocus", "1 0 0. 0. 0 3\n"))
