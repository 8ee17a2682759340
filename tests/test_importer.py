"""``tiltflow import-imod`` on small hand-written IMOD projects.

The expected numbers are written down independently of the importer: matrices come from
``projection_matrices`` with the view pairing worked out by hand, defocus from the ctfplotter
lines (nm × 10), pre-exposures from the order list by hand.
"""

from __future__ import annotations

from pathlib import Path

import mrcfile
import numpy as np
import pytest

from tiltflow.cli import main
from tiltflow.errors import ConfigError, InputError
from tiltflow.geometry import ImodGeometry, projection_matrices
from tiltflow.importer import ImportOptions, read_import_rows, run_import
from tiltflow.io.tomograms import read_tomogram_set

W, H, NZ = 64, 48, 7
TILTS = np.array([-45.0, -30.0, -15.0, 0.0, 15.0, 30.0, 45.0])
ORDER = [0.0, 15.0, -15.0, -30.0, 30.0, 45.0, -45.0]  # dose-symmetric, chronological


def xf_lines() -> np.ndarray:
    rng = np.random.default_rng(3)
    out = []
    for k in range(NZ):
        a = np.deg2rad(86.0 + 0.1 * k)
        m = 1.0 + 0.001 * k
        out.append(
            [m * np.cos(a), -m * np.sin(a), m * np.sin(a), m * np.cos(a), *rng.uniform(-5, 5, 2)]
        )
    out = np.array(out)
    # the values exactly as the .xf file (%12.7f x4, %12.3f x2) stores them
    return np.concatenate([np.round(out[:, :4], 7), np.round(out[:, 4:], 3)], axis=1)


def write_project(
    root: Path,
    *,
    exclude: str | None = None,
    tlt_values: np.ndarray | None = None,
    tlt_final_newline: bool = True,
    pixel_size: float = 10.0,
    extra_tilt_com: str = "",
) -> Path:
    d = root / "imod" / "TS_01"
    d.mkdir(parents=True, exist_ok=True)
    stack = np.arange(NZ * H * W, dtype=np.float32).reshape(NZ, H, W)
    with mrcfile.new(d / "TS_01.mrc", overwrite=True) as m:
        m.set_data(stack)
        m.voxel_size = pixel_size
    xf = xf_lines()
    (d / "TS_01.xf").write_text(
        "".join("{:12.7f}{:12.7f}{:12.7f}{:12.7f}{:12.3f}{:12.3f}\n".format(*r) for r in xf)
    )
    tv = TILTS if tlt_values is None else tlt_values
    text = "\n".join(f"{t:.2f}" for t in tv)
    (d / "TS_01.tlt").write_text(text + ("\n" if tlt_final_newline else ""))
    (d / "newst.com").write_text(
        "$newstack -StandardInput\nInputFile\tTS_01.mrc\nOutputFile\tTS_01.ali\n"
        "TransformFile\tTS_01.xf\nSizeToOutputInXandY\t24,32\nBinByFactor\t2\n"
    )
    tilt = "$tilt -StandardInput\nInputProjections TS_01.ali\nOutputFile TS_01_full_rec.mrc\n"
    tilt += "IMAGEBINNED 1\nTILTFILE TS_01.tlt\nTHICKNESS 40\nFULLIMAGE 48 64\nSHIFT 1.5 -2.0\n"
    if exclude:
        tilt += f"EXCLUDELIST {exclude}\n"
    (d / "tilt.com").write_text(tilt + extra_tilt_com)
    # ctfplotter v3 with astigmatism; views 1-2 share one line (a range)
    lines = ["1 0 0.0 0.0 0 3"]
    lines.append(f"1 2 {TILTS[0]:.2f} {TILTS[1]:.2f} 3000.0 2900.0 12.5")
    for v in range(3, NZ + 1):
        lines.append(
            f"{v} {v} {TILTS[v - 1]:.2f} {TILTS[v - 1]:.2f} {3000 + 10 * v:.1f} {2900 + 10 * v:.1f} {-20.0 + v:.1f}"
        )
    (d / "TS_01.defocus").write_text("\n".join(lines) + "\n")
    (d / "order.csv").write_text("".join(f"{i + 1},{a:.1f}\n" for i, a in enumerate(ORDER)))
    sheet = root / "import.star"
    sheet.write_text(
        "data_\n\nloop_\n_rlnTomoName\n_rlnTomoImportImodDir\n_rlnTomoTiltSeriesName\n"
        "_rlnTomoImportCtfPlotterFile\n_rlnTomoImportOrderList\n_rlnTomoImportFractionalDose\n"
        f"TS_01 {d} {d}/TS_01.mrc:mrc {d}/TS_01.defocus {d}/order.csv 2.5\n"
    )
    return sheet


def expected_proj(kept: list[int], **flags) -> np.ndarray:
    geom = ImodGeometry(
        raw_size=(W, H), ali_size=(48, 64), thickness=40, shift=(1.5, -2.0), **flags
    )
    return projection_matrices(geom, xf_lines()[kept], TILTS[kept])


def test_plain_import_matches_hand_computed(tmp_path):
    sheet = write_project(tmp_path)
    s = run_import(sheet, tmp_path / "out" / "tomograms.star", ImportOptions(angpix=10.0))
    t = s["TS_01"]
    np.testing.assert_allclose(t.proj, expected_proj(list(range(NZ))), rtol=1e-9, atol=1e-9)
    assert t.size == (48, 40, 64) and t.frame_count == NZ
    np.testing.assert_allclose(t.defocus_u, [30000, 30000, 30300, 30400, 30500, 30600, 30700])
    np.testing.assert_allclose(t.defocus_v, [29000, 29000, 29300, 29400, 29500, 29600, 29700])
    np.testing.assert_allclose(t.defocus_angle, [12.5, 12.5, -17, -16, -15, -14, -13])
    # chronological rank of each stack view's angle x 2.5 e/A^2
    np.testing.assert_allclose(t.pre_exposure, np.array([6, 3, 2, 0, 1, 4, 5]) * 2.5)
    np.testing.assert_array_equal(t.ctf_scale, 1.0)
    assert (
        t.tilt_series.endswith("TS_01.mrc:mrc")
        and t.hand == -1.0
        and t.optics_group == "opticsGroup1"
    )
    back = read_tomogram_set(tmp_path / "out" / "tomograms.star")["TS_01"]
    np.testing.assert_allclose(back.proj, t.proj, rtol=1e-11, atol=1e-9)


@pytest.mark.parametrize(
    "flags",
    [
        dict(flip_yz=True),
        dict(flip_yz=True, flip_z=True),
        dict(flip_ang=True),
        dict(ali=True),
        dict(offset=(3.0, -2.0, 5.0)),
    ],
)
def test_flags(tmp_path, flags):
    sheet = write_project(tmp_path)
    opt_flags = {k: v for k, v in flags.items() if k != "offset"}
    off = flags.get("offset", (0.0, 0.0, 0.0))
    opts = ImportOptions(
        angpix=10.0, offset_x=off[0], offset_y=off[1], offset_z=off[2], **opt_flags
    )
    t = run_import(sheet, tmp_path / "t.star", opts)["TS_01"]
    np.testing.assert_allclose(
        t.proj, expected_proj(list(range(NZ)), offset=off, **opt_flags), rtol=1e-9, atol=1e-9
    )


def test_thick_override_and_ali_size(tmp_path):
    sheet = write_project(tmp_path)
    t = run_import(
        sheet, tmp_path / "t.star", ImportOptions(angpix=10.0, thickness=55.0, ali_size=True)
    )["TS_01"]
    geom = ImodGeometry(raw_size=(W, H), ali_size=(48, 64), thickness=55.0, shift=(1.5, -2.0))
    np.testing.assert_allclose(
        t.proj, projection_matrices(geom, xf_lines(), TILTS), rtol=1e-9, atol=1e-9
    )
    assert t.size == (48, 55, 64)


def test_exclude_ranges_are_expanded_and_stack_culled(tmp_path):
    sheet = write_project(tmp_path, exclude="1-2,6")
    out = tmp_path / "out" / "tomograms.star"
    t = run_import(sheet, out, ImportOptions(angpix=10.0))["TS_01"]
    kept = [2, 3, 4, 6]
    np.testing.assert_allclose(t.proj, expected_proj(kept), rtol=1e-9, atol=1e-9)
    assert t.frame_count == 4
    np.testing.assert_allclose(t.pre_exposure, np.array([2, 0, 1, 5]) * 2.5)
    culled = Path(t.tilt_series)
    assert culled == tmp_path / "out" / "culled" / "TS_01.mrc"
    with mrcfile.open(culled) as m:
        data = m.data.copy()
        assert float(m.voxel_size.x) == pytest.approx(10.0)
    full = np.arange(NZ * H * W, dtype=np.float32).reshape(NZ, H, W)
    np.testing.assert_array_equal(data, full[kept])


def test_tlt_listing_only_kept_views_is_paired_by_raw_view(tmp_path):
    sheet = write_project(tmp_path, exclude="2", tlt_values=np.delete(TILTS, 1))
    t = run_import(sheet, tmp_path / "t.star", ImportOptions(angpix=10.0))["TS_01"]
    np.testing.assert_allclose(t.proj, expected_proj([0, 2, 3, 4, 5, 6]), rtol=1e-9, atol=1e-9)


def test_tlt_without_final_newline_is_read_whole(tmp_path):
    sheet = write_project(tmp_path, tlt_final_newline=False)
    t = run_import(sheet, tmp_path / "t.star", ImportOptions(angpix=10.0))["TS_01"]
    np.testing.assert_allclose(t.proj, expected_proj(list(range(NZ))), rtol=1e-9, atol=1e-9)


def test_default_name_is_relions(tmp_path):
    sheet = write_project(tmp_path)
    text = sheet.read_text().replace("_rlnTomoName\n", "").replace("TS_01 /", "/", 1)
    sheet.write_text(text)
    rows = read_import_rows(sheet, ImportOptions(angpix=10.0))
    assert rows[0].name == str(tmp_path / "imod" / "TS_01" / "TS_01")


def test_tsv_sheet_imports_like_the_star(tmp_path):
    star = write_project(tmp_path)
    d = tmp_path / "imod" / "TS_01"
    tsv = tmp_path / "sheet.tsv"
    tsv.write_text(
        "name\timod_dir\ttilt_series\tctfplotter\torder_list\tdose\n"
        f"TS_01\t{d}\t{d}/TS_01.mrc:mrc\t{d}/TS_01.defocus\t{d}/order.csv\t2.5\n"
    )
    assert read_import_rows(tsv, ImportOptions(angpix=10.0)) == read_import_rows(
        star, ImportOptions(angpix=10.0)
    )
    run_import(star, tmp_path / "a" / "tomograms.star", ImportOptions(angpix=10.0))
    run_import(tsv, tmp_path / "b" / "tomograms.star", ImportOptions(angpix=10.0))
    assert (tmp_path / "a" / "tomograms.star").read_text() == (
        tmp_path / "b" / "tomograms.star"
    ).read_text()


def test_cli_writes_same_as_library(tmp_path):
    sheet = write_project(tmp_path)
    assert (
        main(
            [
                "import-imod",
                "--i",
                str(sheet),
                "--o",
                str(tmp_path / "cli.star"),
                "--angpix",
                "10",
                "--flipYZ",
            ]
        )
        == 0
    )
    lib = run_import(sheet, tmp_path / "lib.star", ImportOptions(angpix=10.0, flip_yz=True))
    cli = read_tomogram_set(tmp_path / "cli.star")
    np.testing.assert_array_equal(
        cli["TS_01"].proj, read_tomogram_set(tmp_path / "lib.star")["TS_01"].proj
    )
    assert len(lib) == 1


# ----------------------------------------------------------------------------- bad input


def test_wrong_pixel_size_is_refused(tmp_path):
    sheet = write_project(tmp_path, pixel_size=20.0)
    with pytest.raises(
        InputError, match=r"TS_01.mrc: header pixel size 20 Å differs from --angpix 10"
    ):
        run_import(sheet, tmp_path / "t.star", ImportOptions(angpix=10.0))
    assert not (tmp_path / "t.star").exists()


def test_inconsistent_tilt_count(tmp_path):
    sheet = write_project(tmp_path, tlt_values=TILTS[:5])
    with pytest.raises(InputError, match=r"TS_01.tlt: 5 tilt angles, expected 7"):
        run_import(sheet, tmp_path / "t.star", ImportOptions(angpix=10.0))
    assert not (tmp_path / "t.star").exists()


def test_exclusion_outside_stack(tmp_path):
    sheet = write_project(tmp_path, exclude="3,9")
    with pytest.raises(InputError, match=r"tilt.com: excluded view\(s\) \[9\] outside 1..7"):
        run_import(sheet, tmp_path / "t.star", ImportOptions(angpix=10.0))


def test_missing_files_named(tmp_path):
    sheet = write_project(tmp_path)
    (tmp_path / "imod" / "TS_01" / "TS_01.xf").unlink()
    with pytest.raises(InputError, match=r"TS_01.xf"):
        run_import(sheet, tmp_path / "t.star", ImportOptions(angpix=10.0))


def test_nan_in_xf_named_with_line(tmp_path):
    sheet = write_project(tmp_path)
    p = tmp_path / "imod" / "TS_01" / "TS_01.xf"
    lines = p.read_text().splitlines()
    lines[3] = "1 0 0 1 nan 0"
    p.write_text("\n".join(lines) + "\n")
    with pytest.raises(InputError, match=r"TS_01.xf.*line 4"):
        run_import(sheet, tmp_path / "t.star", ImportOptions(angpix=10.0))


def test_missing_dose_and_order(tmp_path):
    sheet = write_project(tmp_path)
    text = sheet.read_text()
    sheet.write_text(text.replace("_rlnTomoImportFractionalDose\n", "").replace(" 2.5\n", "\n"))
    with pytest.raises(InputError, match="no fractional dose"):
        run_import(sheet, tmp_path / "t.star", ImportOptions(angpix=10.0))
    # --fd fills it in, as in RELION
    t = run_import(sheet, tmp_path / "t.star", ImportOptions(angpix=10.0, fractional_dose=2.0))[
        "TS_01"
    ]
    assert t.fractional_dose == 2.0


def test_unknown_option_and_bad_values():
    with pytest.raises(ConfigError, match=r"unknown import option\(s\) \['flipyz'\]"):
        ImportOptions.from_dict({"angpix": 1.0, "flipyz": True})
    with pytest.raises(ConfigError, match="Q0"):
        ImportOptions(angpix=1.0, q0=1.5)


def test_cli_reports_error_without_traceback(tmp_path, capsys):
    sheet = write_project(tmp_path, pixel_size=20.0)
    assert (
        main(["import-imod", "--i", str(sheet), "--o", str(tmp_path / "x.star"), "--angpix", "10"])
        == 2
    )
    err = capsys.readouterr().err
    assert "error:" in err and "Traceback" not in err and "TS_01.mrc" in err


def test_ctffind_source_gives_angstrom_values_unchanged(tmp_path):
    sheet = write_project(tmp_path, exclude="3")
    d = tmp_path / "imod" / "TS_01"
    rows = [
        f"{k + 1}.000000 {20000 + 100 * k:.2f} {19000 + 100 * k:.2f} {-30 + k:.2f} 0.000000 0.05 8.0"
        for k in range(NZ)
    ]
    (d / "ctffind.txt").write_text(
        "# Output from CTFFind version 4.1.14\n# Columns: ...\n" + "\n".join(rows) + "\n"
    )
    sheet.write_text(
        sheet.read_text()
        .replace("_rlnTomoImportCtfPlotterFile", "_rlnTomoImportCtfFindFile")
        .replace("TS_01.defocus", "ctffind.txt")
    )
    t = run_import(sheet, tmp_path / "t.star", ImportOptions(angpix=10.0))["TS_01"]
    kept = np.array([0, 1, 3, 4, 5, 6])
    np.testing.assert_allclose(t.defocus_u, 20000 + 100 * kept)
    np.testing.assert_allclose(t.defocus_v, 19000 + 100 * kept)
    np.testing.assert_allclose(t.defocus_angle, -30 + kept)
