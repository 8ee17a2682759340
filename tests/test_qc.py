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
from tiltflow.qc.figures import FIGURE_KEYS, FIGURES, figure_filename
from tiltflow.qc.job import dataset_report, tomogram_qc
from tiltflow.qc.metrics import tilt_angles_deg
from tiltflow.qc.plots import header_lines, render_figures
from tiltflow.qc.report import _fmt_sd, attention_order
from tiltflow.qc.synthetic import SyntheticCase, write_synthetic_results

REPO = Path(__file__).resolve().parents[1]
TH = {"enabled": True, "max_residual_px": 1.0, "min_beads": 4, "min_tilts_fraction": 0.5}

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
            "flags": ["missing", "failed_import"],
            "flag_reasons": {"failed_import": "InputError: x"},
            "reason": "import failed: InputError: x",
        }
    )
    tsv = summary_tsv(rows).splitlines()
    assert tsv[0].startswith("name\tstatus\tfailed_step")
    assert "ice_thickness_nm" in tsv[0] and "scale_factor_min" in tsv[0]
    assert tsv[2].split("\t")[:3] == ["TS_02", "failed", "import"]
    assert summary_tsv(rows) == summary_tsv(rows)
    page = summary_html(rows, {"max_residual_px": 1.0, "enabled": True}, "0.1.0")
    assert '<template id="tpl-TS_01">' in page and '<template id="tpl-TS_02">' in page
    assert 'data-go="TS_01"' in page and 'class="failed"' in page
    assert "InputError: x" in page
    assert "enabled" not in page  # a switch is not a threshold
    assert "Side-file columns" not in page
    # the failed tomogram comes first (attention order), in the table and the page order
    assert page.index('data-name="TS_02"') < page.index('data-name="TS_01"')


# --------------------------------------------------------------------------------------------
# the full path on synthetic step outputs (real formats, real QC code)


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict]]:
    root = tmp_path_factory.mktemp("synthetic")
    cases = [
        SyntheticCase("TS_ok", seed=1, with_truth=True),
        SyntheticCase("TS_high", seed=2, residual_after_px=2.5),
        SyntheticCase("TS_fail", seed=3, failed_at="fiducials"),
    ]
    q = root / "results" / "qc"
    rows, metrics = [], []
    for c in cases:
        prov, stars, truth = write_synthetic_results(root, c)
        rows.append(
            tomogram_qc(
                c.name,
                prov,
                stars,
                TH,
                q / f"{c.name}.png",
                q / f"{c.name}.json",
                q / c.name,
                truth=truth,
                step_figures={"align": q / c.name / "step_align.png"},
                fiducials_copy=q / "final" / f"fiducials_{c.name}.star",
                results=root / "results",
            )
        )
        metrics.append(q / f"{c.name}.json")
    dataset_report(
        metrics,
        TH,
        "test",
        q / "summary.tsv",
        q / "summary.html",
        out_compact=q / "overview.html",
        final_star=root / "results" / "ice" / "TS_ok" / "tomograms.star",
        final_copy=q / "final" / "tomograms.star",
    )
    return root, rows


def test_synthetic_good_tomogram_numbers_and_figures(synthetic: tuple[Path, list[dict]]) -> None:
    root, rows = synthetic
    ok = rows[0]
    assert ok["flags"] == [] and ok["status"] == "ok"
    assert ok["residual_after_px"] == pytest.approx(0.1, rel=0.3)
    assert ok["residual_before_px"] > 2
    assert ok["ice_thickness_nm"] == pytest.approx(100.0)
    assert ok["ice_normal_tilt_deg"] == pytest.approx(0.0, abs=1e-6)
    assert 0.7 < ok["scale_factor_min"] < 0.8 and ok["scale_factor_max"] == pytest.approx(1.0)
    assert ok["tilts_refined"] == 41 and ok["ice_tilts_used"] == 41
    for key in FIGURE_KEYS:
        info = ok["figures"][key]
        assert info["available"], (key, info["why"])
        data = (root / "results" / "qc" / "TS_ok" / info["file"]).read_bytes()
        assert data[:3] in (b"\x89PN", b"\xff\xd8\xff"), key
    # recovered against the (synthetic) truth: the refined model reprojects the true beads
    t = ok["truth"]
    assert t["reproj_error_refined_mean_px"] < 0.05 < 1.0 < t["reproj_error_imported_mean_px"]
    assert t["tilt_error_refined_rms_deg"] < 1e-6 < t["tilt_error_imported_rms_deg"]
    assert t["n_beads_matched"] == t["n_beads_true"] == 20
    assert abs(t["ice_thickness_error_pct"]) < 1e-9 and t["scale_factor_max_error_pct"] < 1e-6


def test_synthetic_flagged_and_failed(synthetic: tuple[Path, list[dict]]) -> None:
    root, rows = synthetic
    high, fail = rows[1], rows[2]
    assert high["flags"] == ["high_residual"]
    assert (
        "2." in high["flag_reasons"]["high_residual"]
        and "above 1 px" in high["flag_reasons"]["high_residual"]
    )
    assert fail["status"] == "failed" and fail["flags"] == ["missing", "failed_fiducials"]
    assert fail["flag_reasons"]["failed_fiducials"] == "NoDataError: no beads found"
    missing = {k for k, v in fail["figures"].items() if not v["available"]}
    assert {"gallery", "residuals", "quiver", "changes", "coverage", "sideview", "ice"} <= missing
    assert all(fail["figures"][k]["why"] for k in missing)
    q = root / "results" / "qc"
    # every output exists even for the failed tomogram (Snakemake outputs)
    for key in FIGURE_KEYS:
        assert (q / "TS_fail" / figure_filename(key)).stat().st_size > 500
    assert (q / "TS_fail" / "step_align.png").stat().st_size > 500
    fid = (q / "final" / "fiducials_TS_fail.star").read_text()
    assert "not in the final set" in fid and "_rlnOriginXAngst" in fid
    assert (q / "final" / "fiducials_TS_ok.star").read_text().count("\n") > 20


def test_report_is_self_contained(synthetic: tuple[Path, list[dict]]) -> None:
    import re

    root, _ = synthetic
    page = (root / "results" / "qc" / "summary.html").read_text()
    assert "http://" not in page and "https://" not in page
    for src in re.findall(r'src="([^"]*)"', page):
        assert src.startswith("data:image/"), src[:60]
    for href in re.findall(r'href="([^"]*)"', page):
        assert href.startswith("#") or href == "data:,", href
    assert page.count("<template id=") == 3
    # failed first, then flagged, then ok
    assert page.index('data-name="TS_fail"') < page.index('data-name="TS_high"')
    assert page.index('data-name="TS_high"') < page.index('data-name="TS_ok"')
    assert "Against the simulator&#x27;s truth" in page or "Against the simulator's truth" in page
    tsv = (root / "results" / "qc" / "summary.tsv").read_text().splitlines()
    assert [line.split("\t")[0] for line in tsv[1:]] == ["TS_ok", "TS_high", "TS_fail"]


def test_figures_are_deterministic(synthetic: tuple[Path, list[dict]], tmp_path: Path) -> None:
    root, _ = synthetic
    name = "TS_high"
    prov = {s: root / f"results/{s}/{name}/provenance.json" for s in STEPS}
    stars = {s: root / f"results/{s}/{name}/tomograms.star" for s in STEPS}
    qc = collect(name, prov, stars, results=root / "results")
    render_figures(qc, tmp_path / "a", Thresholds(), ["residuals", "beads"])
    render_figures(qc, tmp_path / "b", Thresholds(), ["residuals", "beads"])
    for f in ("residuals.png", "beads.jpg"):
        assert (tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes()


def test_attention_order_is_stable() -> None:
    rows = [
        {"name": "a", "status": "ok", "flags": []},
        {"name": "b", "status": "ok", "flags": ["few_beads"]},
        {"name": "c", "status": "failed", "flags": ["missing"]},
        {"name": "d", "status": "ok", "flags": []},
        {"name": "e", "status": "failed", "flags": ["missing"]},
    ]
    assert [r["name"] for r in attention_order(rows)] == ["c", "e", "b", "a", "d"]


@pytest.mark.parametrize(
    ("value", "sd", "text"),
    [
        (99.9445, 0.062, "99.94 ± 0.06 nm"),
        (99.9445, 0.00017, "99.94450 ± 0.00017 nm"),
        (99.9445, 0.0004, "99.9445 ± 0.0004 nm"),
        (0.285556, 0.000177, "0.28556 ± 0.00018 nm"),
        (150.2, 1.4, "150.2 ± 1.4 nm"),
        (150.2, 23.0, "150 ± 23 nm"),
        (150.2, None, "150 nm"),
    ],
)
def test_uncertainties_are_never_shown_as_zero(value: float, sd: float | None, text: str) -> None:
    assert _fmt_sd(value, sd, "nm") == text


def test_threshold_sentences_have_no_switches() -> None:
    words = " ".join(Thresholds.from_dict(TH).sentences())
    assert "1 px" in words and "4 beads" in words and "50 %" in words and "enabled" not in words


def test_overview_title_wraps_instead_of_cutting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    prov, stars = project(tmp_path, residual=2.5, n_beads=2)
    qc = collect("TS_01", prov, stars)
    lines = header_lines(qc, Thresholds(max_residual_px=1.0, min_beads=4))
    text = " ".join(lines)
    assert "high_residual" in text and "few_beads" in text and "2.50 px" in text
    assert all(len(line) <= 120 for line in lines)


def test_every_figure_has_a_report_caption() -> None:
    for spec in FIGURES:
        rst = (REPO / "workflow" / "report" / "figures" / f"{spec.key}.rst").read_text()
        assert spec.title in rst and spec.caption in rst.replace("\n", " ")


def test_report_rules_register_every_figure() -> None:
    smk = (REPO / "workflow" / "rules" / "report.smk").read_text()
    assert "for i, f in enumerate(QC_FIGURES)" in smk and "report(" in smk
    for what in (
        "results/qc/summary.html",
        "results/qc/summary.tsv",
        "results/qc/final/tomograms.star",
        "step_align.png",
        "step_ice.png",
        "fiducials_{name}.star",
    ):
        assert what in smk


def test_compact_overview_has_the_pages_but_no_figures(synthetic: tuple[Path, list[dict]]) -> None:
    root, _ = synthetic
    q = root / "results" / "qc"
    full, compact = (q / "summary.html").read_text(), (q / "overview.html").read_text()
    assert compact.count("<template id=") == 3 and "data:image/jpeg" not in compact
    assert "Quality control → TS_ok" in compact and "NoDataError: no beads found" in compact
    assert len(compact) < len(full) / 5
    # the dataset histograms are in both
    assert compact.count("data:image/png") == 1
