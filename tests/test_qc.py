"""tiltflow.qc: reading side files defensively, flags, figure and summary."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tiltflow.io.star import write_star
from tiltflow.io.tomograms import write_tomogram_set
from tiltflow.model import Tomogram, TomogramSet
from tiltflow.qc import (
    STEPS,
    Thresholds,
    collect,
    plot_tomogram,
    summary_html,
    summary_row,
    summary_tsv,
)
from tiltflow.qc.metrics import tilt_angles_deg

N_TILTS = 9
ANGLES = np.linspace(-40, 40, N_TILTS)


def make_tomo(name: str, stack: str, flip_yz: bool = False) -> Tomogram:
    proj = np.zeros((N_TILTS, 4, 4))
    for i, a in enumerate(np.radians(ANGLES)):
        if flip_yz:
            proj[i] = [
                [np.cos(a), 0, -np.sin(a), 10],
                [0, 1, 0, 5],
                [-np.sin(a), 0, -np.cos(a), 0],
                [0, 0, 0, 1],
            ]
        else:
            proj[i] = [
                [np.cos(a), -np.sin(a), 0, 10],
                [0, 0, 1, 5],
                [-np.sin(a), -np.cos(a), 0, 0],
                [0, 0, 0, 1],
            ]
    pre = np.abs(np.arange(N_TILTS) - N_TILTS // 2) * 3.0
    return Tomogram(
        name=name,
        tilt_series=stack,
        frame_count=N_TILTS,
        size=(64, 32, 64),
        hand=-1.0,
        optics_group="optics1",
        pixel_size=10.0,
        voltage=300.0,
        cs=2.7,
        amplitude_contrast=0.1,
        fractional_dose=3.0,
        proj=proj,
        defocus_u=np.full(N_TILTS, 3e4),
        defocus_v=np.full(N_TILTS, 3e4),
        defocus_angle=np.zeros(N_TILTS),
        ctf_scale=np.ones(N_TILTS),
        pre_exposure=pre,
    )


def project(
    tmp_path: Path,
    name: str = "TS_01",
    *,
    failed_at: str | None = None,
    residual: float = 0.3,
    n_beads: int = 6,
    side_files: bool = True,
) -> tuple[dict, dict]:
    import mrcfile

    res = tmp_path / "results"
    stack = tmp_path / f"{name}.mrc"
    with mrcfile.new(stack, overwrite=True) as mrc:
        mrc.set_data(np.random.default_rng(0).normal(100, 5, (N_TILTS, 64, 64)).astype(np.float32))
    tomo = make_tomo(name, str(stack))
    prov, stars = {}, {}
    status = "ok"
    for step in STEPS:
        d = res / step / name
        d.mkdir(parents=True)
        if step == failed_at:
            status = "failed"
        stars[step] = d / "tomograms.star"
        prov[step] = d / "provenance.json"
        if status == "ok":
            write_tomogram_set(stars[step], TomogramSet((tomo,)))
        else:
            stars[step].write_text("# version 30001\n")
        reason = (
            ""
            if status == "ok"
            else (
                f"{failed_at} failed: NoDataError: no beads"
                if step != failed_at
                else "NoDataError: no beads"
            )
        )
        prov[step].write_text(json.dumps({"status": status, "reason": reason, "step": step}))
    if side_files and failed_at is None:
        rng = np.random.default_rng(1)
        beads = np.repeat(np.arange(n_beads), N_TILTS)
        tilts = np.tile(np.arange(N_TILTS), n_beads)
        obs = rng.uniform(5, 60, (beads.size, 2))
        write_star(
            res / "fiducials" / name / f"fiducials_{name}.star",
            {
                "fiducials": {
                    "rlnOriginXAngst": [1.0] * n_beads,
                    "rlnOriginYAngst": [2.0] * n_beads,
                    "rlnOriginZAngst": [3.0] * n_beads,
                }
            },
        )
        write_star(
            res / "fiducials" / name / f"tracks_{name}.star",
            {
                "tracks": {
                    "tfBeadIndex": beads.tolist(),
                    "tfTiltIndex": tilts.tolist(),
                    "tfObsX": obs[:, 0].tolist(),
                    "tfObsY": obs[:, 1].tolist(),
                    "tfFitX": (obs[:, 0] + 0.5).tolist(),
                    "tfFitY": obs[:, 1].tolist(),
                    "tfResidual": [0.5] * beads.size,
                    "tfScore": [1.0] * beads.size,
                }
            },
        )
        write_star(
            res / "align" / name / f"align_{name}.star",
            {
                "summary": {"tfMeanResidualPx": [residual], "tfStatus": ["refined"]},
                "tilts": {
                    "tfTiltIndex": list(range(N_TILTS)),
                    "tfMeanResidualPx": [residual] * N_TILTS,
                    "tfDTiltDeg": np.linspace(-0.5, 0.5, N_TILTS).tolist(),
                    "tfDRotDeg": [0.1] * N_TILTS,
                },
                "beads": {
                    "tfBeadIndex": list(range(n_beads)),
                    "tfMeanResidualPx": [residual] * n_beads,
                },
            },
        )
        t = 0.3
        pf = 1 / np.cos(np.radians(ANGLES))
        write_star(
            res / "ice" / name / f"ice_{name}.star",
            {
                "fit": {"tfStatus": ["fitted"], "tfRelativeThickness": [t], "tfLuminance": [100.0]},
                "tilts": {
                    "tfTiltIndex": list(range(N_TILTS)),
                    "tfDoseNormIntensity": (100 * np.exp(-t * pf)).tolist(),
                    "tfFitIntensity": (100 * np.exp(-t * pf)).tolist(),
                    "tfUsedInFit": [1] * N_TILTS,
                },
            },
        )
    return prov, stars


@pytest.mark.parametrize("flip_yz", [False, True])
def test_tilt_angles_from_projection(flip_yz: bool) -> None:
    np.testing.assert_allclose(tilt_angles_deg(make_tomo("a", "x.mrc", flip_yz)), ANGLES, atol=1e-9)


def test_good_tomogram_has_no_flags_and_a_figure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    prov, stars = project(tmp_path)
    qc = collect("TS_01", prov, stars)
    row = summary_row(qc, Thresholds())
    assert row["flags"] == [] and row["status"] == "ok"
    assert row["n_beads"] == 6 and row["n_tilts"] == N_TILTS
    assert row["residual_before_px"] == pytest.approx(0.5) and row[
        "residual_after_px"
    ] == pytest.approx(0.3)
    assert row["ice_thickness_rel"] == pytest.approx(0.3)
    assert row["columns_used"]["align_residual_after"] == "align/summary:_tfMeanResidualPx"
    assert "delta:tfDTiltDeg" in row["columns_used"]
    png = tmp_path / "qc" / "TS_01.png"
    plot_tomogram(qc, png, Thresholds(), row["flags"])
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_flags_high_residual_and_few_beads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    prov, stars = project(tmp_path, residual=2.5, n_beads=2)
    row = summary_row(collect("TS_01", prov, stars), Thresholds(max_residual_px=1.0, min_beads=4))
    assert "high_residual" in row["flags"] and "few_beads" in row["flags"]


def test_failed_tomogram_is_flagged_missing_and_still_plotted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    prov, stars = project(tmp_path, failed_at="fiducials")
    qc = collect("TS_01", prov, stars)
    row = summary_row(qc, Thresholds())
    assert row["status"] == "failed" and row["failed_step"] == "fiducials"
    assert "missing" in row["flags"] and "failed_fiducials" in row["flags"]
    assert "no beads" in row["reason"]
    plot_tomogram(qc, tmp_path / "f.png", Thresholds(), row["flags"])
    assert (tmp_path / "f.png").stat().st_size > 1000


def test_missing_side_files_do_not_crash(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    prov, stars = project(tmp_path, side_files=False)
    qc = collect("TS_01", prov, stars)
    row = summary_row(qc, Thresholds())
    assert row["n_beads"] is None and row["residual_after_px"] is None
    assert "ice_fit_failed" not in row["flags"] or row["ice_thickness_rel"] is None
    plot_tomogram(qc, tmp_path / "m.png")


def test_summary_tsv_and_html(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    prov, stars = project(tmp_path)
    rows = [summary_row(collect("TS_01", prov, stars), Thresholds())]
    rows.append(
        {
            "name": "TS_02",
            "status": "failed",
            "failed_step": "import",
            "flags": ["missing"],
            "reason": "import failed: InputError: x",
        }
    )
    tsv = summary_tsv(rows).splitlines()
    assert tsv[0].startswith("name\tstatus\tfailed_step")
    assert tsv[2].split("\t")[:3] == ["TS_02", "failed", "import"]
    assert summary_tsv(rows) == summary_tsv(rows)
    page = summary_html(rows, {"max_residual_px": 1.0}, "0.1.0", {"TS_01": "TS_01.png"})
    assert '<a href="TS_01.png">TS_01</a>' in page and 'class="flagged"' in page
