"""File-level alignment step: run_align / `tiltflow align` outputs, checked against the files."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from tiltflow.align.synthetic import reprojection_error, synthetic_case
from tiltflow.cli import main
from tiltflow.io.star import read_star, write_star
from tiltflow.io.tomograms import read_tomogram_set, write_tomogram_set
from tiltflow.model import TomogramSet

PIX = 2.0


def write_inputs(root: Path, seed: int = 21, drop_tilt: int | None = None) -> tuple[Path, object]:
    """A tomogram set (imported = perturbed) with fiducials + tracks files as the fiducials step writes them."""
    case = synthetic_case(seed, n_tilts=41, n_beads=25, pixel_size=PIX, name="TS_01")
    fid_dir = root / "Fiducials"
    fid = fid_dir / "fiducials_TS_01.star"
    b = case.beads_init * PIX
    write_star(
        fid,
        {
            "fiducials": {
                "rlnOriginXAngst": b[:, 0].tolist(),
                "rlnOriginYAngst": b[:, 1].tolist(),
                "rlnOriginZAngst": b[:, 2].tolist(),
            }
        },
    )
    o = case.obs
    if drop_tilt is not None:
        o = o[o["tilt"] != drop_tilt].reset_index(drop=True)
    write_star(
        fid_dir / "tracks_TS_01.star",
        {
            "tracks": {
                "tfBeadIndex": o["bead"].astype(int).tolist(),
                "tfTiltIndex": o["tilt"].astype(int).tolist(),
                "tfObsX": o["x"].tolist(),
                "tfObsY": o["y"].tolist(),
                "tfFitX": o["x"].tolist(),
                "tfFitY": o["y"].tolist(),
                "tfResidual": [0.0] * len(o),
                "tfScore": o["score"].tolist(),
            }
        },
    )
    tomo = case.imported.replace(
        extra={"rlnTomoFiducialsStarFile": "Fiducials/fiducials_TS_01.star"}
    )
    # fiducials file missing: must not matter when not selected
    other = case.imported.replace(
        name="TS_02", extra={"rlnTomoFiducialsStarFile": "Fiducials/fiducials_TS_02.star"}
    )
    star = root / "tomograms.star"
    write_tomogram_set(star, TomogramSet((tomo, other)))
    return star, case


def test_cli_align_outputs_and_report_agree_with_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    star, case = write_inputs(tmp_path)
    assert main(["align", "--t", "tomograms.star", "--o", "Align", "--tomo", "TS_01"]) == 0
    assert "TS_01: refined" in capsys.readouterr().out
    out = tmp_path / "Align"
    for name in (
        "tomograms.star",
        "fiducials_TS_01.star",
        "tracks_TS_01.star",
        "align_TS_01.star",
        "align_TS_01.png",
    ):
        assert (out / name).is_file(), name
    assert (out / "align_TS_01.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    refined = read_tomogram_set(out / "tomograms.star")
    assert refined.names == ["TS_01"]
    t = refined["TS_01"]
    assert t.extra["rlnTomoFiducialsStarFile"] == "Align/fiducials_TS_01.star"
    imp = case.imported
    for field in ("defocus_u", "defocus_v", "defocus_angle", "ctf_scale", "pre_exposure"):
        np.testing.assert_array_equal(getattr(t, field), getattr(imp, field))
    assert (t.size, t.pixel_size, t.tilt_series, t.frame_count) == (
        imp.size,
        imp.pixel_size,
        imp.tilt_series,
        imp.frame_count,
    )

    # independent recomputation from the output files only
    fid = read_star(out / "fiducials_TS_01.star")
    (fblock,) = fid.values()
    beads = fblock[["rlnOriginXAngst", "rlnOriginYAngst", "rlnOriginZAngst"]].to_numpy(float) / PIX
    tr = read_star(out / "tracks_TS_01.star")["tracks"]
    tr = tr[tr["tfBeadIndex"] >= 0]
    bi, ti = tr["tfBeadIndex"].to_numpy(int), tr["tfTiltIndex"].to_numpy(int)
    xh = np.column_stack([beads[bi], np.ones(bi.size)])
    fit = np.einsum("kij,kj->ki", t.proj[ti, :2, :], xh)
    resid = np.linalg.norm(fit - tr[["tfObsX", "tfObsY"]].to_numpy(float), axis=1)
    rep = read_star(out / "align_TS_01.star")
    summary = rep["summary"].iloc[0]
    assert float(summary["tfMeanResidualPx"]) == pytest.approx(resid.mean(), rel=1e-6)
    assert float(summary["tfMaxResidualPx"]) == pytest.approx(resid.max(), rel=1e-6)
    assert float(summary["tfMeanResidualNm"]) == pytest.approx(resid.mean() * PIX / 10, rel=1e-6)
    tilts = rep["tilts"]
    per_tilt = np.bincount(ti, weights=resid, minlength=41) / np.maximum(
        np.bincount(ti, minlength=41), 1
    )
    np.testing.assert_allclose(
        tilts["tfMeanResidualPx"].to_numpy(float), per_tilt, rtol=1e-6, atol=1e-9
    )
    per_bead = np.bincount(bi, weights=resid, minlength=25) / np.maximum(
        np.bincount(bi, minlength=25), 1
    )
    np.testing.assert_allclose(
        rep["beads"]["tfMeanResidualPx"].to_numpy(float), per_bead, rtol=1e-6, atol=1e-9
    )
    assert resid.mean() < 0.5  # noise 0.4 px: residual of a good fit
    # fitted columns of the tracks file are the refined projections
    np.testing.assert_allclose(tr[["tfFitX", "tfFitY"]].to_numpy(float), fit, atol=1e-6)
    # the refined model written to disk meets the recovery target
    err = reprojection_error(t.proj, beads, case.true_2d, case.visible)
    assert err.mean() <= 0.25 and err.max() <= 1.0
    for label in (
        "tfDShiftXPx",
        "tfDShiftYPx",
        "tfDRotDeg",
        "tfDTiltDeg",
        "tfDMag",
        "tfFlagged",
        "tfNObs",
    ):
        assert label in tilts.columns, label
    assert int(summary["tfNOutliers"]) >= 5


def test_run_align_flags_tilt_without_beads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tiltflow.align import AlignParams, run_align

    monkeypatch.chdir(tmp_path)
    star, case = write_inputs(tmp_path, seed=22, drop_tilt=0)
    result = run_align(star, tmp_path / "out", AlignParams(), names=["TS_01"])
    np.testing.assert_array_equal(result["TS_01"].proj[0], read_tomogram_set(star)["TS_01"].proj[0])
    assert (
        np.abs(result["TS_01"].proj[1:] - case.imported.proj[1:]).max() > 1.0
    )  # the others were refined
    tilts = read_star(tmp_path / "out" / "align_TS_01.star")["tilts"]
    assert int(tilts["tfFlagged"].iloc[0]) == 1 and tilts["tfFlag"].iloc[0] == "too_few_beads"
    assert int(tilts["tfFlagged"].iloc[1:].sum()) == 0
    text = (tmp_path / "out" / "align_TS_01.star").read_text()
    assert "# note: tilt 0 " in text


def test_cli_align_without_fiducials_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    write_inputs(tmp_path)
    assert main(["align", "--t", "tomograms.star", "--o", "Align", "--tomo", "TS_02"]) == 2
    err = capsys.readouterr().err
    assert "Fiducials/fiducials_TS_02.star" in err and "not found" in err
    bare = read_tomogram_set(tmp_path / "tomograms.star")["TS_02"]
    bare = dataclasses.replace(bare, extra={})
    write_tomogram_set(tmp_path / "bare.star", TomogramSet((bare,)))
    assert main(["align", "--t", "bare.star", "--o", "Align"]) == 2
    err = capsys.readouterr().err
    assert "TS_02" in err and "rlnTomoFiducialsStarFile" in err and "find-fiducials" in err
    assert main(["align", "--t", "tomograms.star", "--o", "Align", "--tomo", "TS_09"]) == 2
    assert "TS_09" in capsys.readouterr().err
