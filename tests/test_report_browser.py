"""The QC report in a real headless browser (system Chromium + chromedriver, driven by Selenium).

* the one-file report of a synthetic dataset (good, flagged and failed tomograms), from file://:
  every link and image resolves on the overview and on every tomogram page, the table sorts and
  filters, no console errors, screenshots written as test artefacts;
* the report inside ``snakemake --report`` of a small real run of the example (one tomogram made
  to fail), in the HTML and the zip form: every figure, the final STAR files and the summary are
  registered, and navigating from the summary to a tomogram's page works in the report's frame.

Screenshots go to ``$TILTFLOW_ARTIFACTS`` (``.ci/run`` sets it), else to pytest's temporary
directory (printed). Without Chromium, chromedriver or Selenium the tests are skipped, except on
CI (``CI`` set), where that is a failure: ``.ci/run`` installs them.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
TH = {"enabled": True, "max_residual_px": 1.0, "min_beads": 4, "min_tilts_fraction": 0.5}


def _find(*names: str) -> str | None:
    for n in names:
        p = shutil.which(n)
        if p:
            return p
    return None


CHROMIUM = os.environ.get("TILTFLOW_CHROMIUM") or _find("chromium", "chromium-browser")
CHROMEDRIVER = os.environ.get("TILTFLOW_CHROMEDRIVER") or _find("chromedriver")


def _missing() -> str | None:
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install -e '.[test]')"
    if not CHROMIUM or not CHROMEDRIVER:
        return "chromium / chromedriver not found (apt-get install chromium chromium-driver)"
    return None


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    why = _missing()
    if why:
        if os.environ.get("CI"):
            pytest.fail(f"browser test cannot run on CI: {why}")
        pytest.skip(why)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = str(CHROMIUM)
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1280,900",
        "--hide-scrollbars",
        "--allow-file-access-from-files",
    ):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=opts)
    driver.set_page_load_timeout(120)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    env = os.environ.get("TILTFLOW_ARTIFACTS")
    out = Path(env) if env else tmp_path_factory.mktemp("artifacts")
    out.mkdir(parents=True, exist_ok=True)
    print(f"browser test artefacts: {out}")
    return out


# --------------------------------------------------------------------------------------------
# helpers


def console_errors(d: Any) -> list[dict]:
    return [e for e in d.get_log("browser") if e.get("level") == "SEVERE"]


def wait_for(d: Any, script: str, timeout: float = 20.0) -> Any:
    t0 = time.time()
    while True:
        v = d.execute_script(script)
        if v or time.time() - t0 > timeout:
            return v
        time.sleep(0.1)


def broken_images(d: Any) -> list[str]:
    """Images of the shown page that did not load (waits for the pending ones)."""
    wait_for(d, "return Array.from(document.images).every(i => i.complete)")
    return d.execute_script(
        "return Array.from(document.images)"
        ".filter(i => i.offsetParent !== null && !(i.complete && i.naturalWidth > 0))"
        ".map(i => i.alt || i.src.slice(0, 60))"
    )


def all_hrefs(d: Any) -> list[str]:
    """Every link target, also those inside the tomogram page templates."""
    return d.execute_script(
        "var out = Array.from(document.querySelectorAll('a[href]')).map(a => a.getAttribute('href'));"
        "document.querySelectorAll('template').forEach(t => t.content.querySelectorAll('a[href]')"
        ".forEach(a => out.push(a.getAttribute('href'))));"
        "return out;"
    )


def shown_name(d: Any) -> str | None:
    return d.execute_script(
        "var p = document.getElementById('tomogram');"
        "if (!p || p.hidden) return null; var h = p.querySelector('h1');"
        "return h ? h.firstChild.textContent.trim() : null;"
    )


def column(d: Any, header: str) -> list[str]:
    return d.execute_script(
        "var t = document.getElementById('tomograms');"
        "var idx = Array.from(t.tHead.rows[0].cells).findIndex(c => c.textContent.indexOf(arguments[0]) === 0);"
        "return Array.from(t.tBodies[0].rows).filter(r => !r.hidden).map(r => r.cells[idx].getAttribute('data-sort'));",
        header,
    )


def click_header(d: Any, header: str) -> None:
    d.execute_script(
        "var t = document.getElementById('tomograms');"
        "Array.from(t.tHead.rows[0].cells).find(c => c.textContent.indexOf(arguments[0]) === 0).click();",
        header,
    )


def full_screenshot(d: Any, path: Path, width: int = 1280, max_height: int = 6000) -> None:
    h = d.execute_script("return document.documentElement.scrollHeight")
    d.set_window_size(width, min(max(h, 600), max_height))
    time.sleep(0.3)
    d.save_screenshot(str(path))
    d.set_window_size(1280, 900)


def check_report_pages(d: Any, names: list[str], min_figures: int = 9) -> None:
    """On the loaded report: every link resolves, every image loads, on every page."""
    hrefs = all_hrefs(d)
    assert hrefs
    for href in hrefs:
        assert href.startswith("#"), f"link {href!r} leaves the report"
        if href.startswith("#t="):
            assert href[3:] in names, href
        else:
            assert href == "#overview", href
    assert broken_images(d) == []
    for name in names:
        d.execute_script(
            "arguments[0].click()", d.find_element("css selector", f'a[data-go="{name}"]')
        )
        assert wait_for(
            d,
            "return document.getElementById('tomogram').hidden === false && "
            "document.querySelector('#tomogram h1') !== null",
        )
        assert shown_name(d) == name
        assert broken_images(d) == [], name
        n_img = d.execute_script("return document.querySelectorAll('#tomogram img').length")
        n_na = d.execute_script("return document.querySelectorAll('#tomogram .na li').length")
        assert n_img + n_na >= min_figures, (name, n_img, n_na)
        # back to the overview through the page's own link
        d.execute_script("document.querySelector('#tomogram a[data-go=\"\"]').click()")
        assert wait_for(d, "return document.getElementById('overview').hidden === false")


# --------------------------------------------------------------------------------------------
# the report of a synthetic dataset, from file://


@pytest.fixture(scope="module")
def synthetic_report(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    from tiltflow.qc.job import dataset_report, tomogram_qc
    from tiltflow.qc.synthetic import SyntheticCase, write_synthetic_results

    root = tmp_path_factory.mktemp("report")
    cases = [
        SyntheticCase("TS_01", seed=1, with_truth=True),
        SyntheticCase("TS_02", seed=2, residual_after_px=2.5),
        SyntheticCase("TS_03", seed=3, failed_at="fiducials"),
        SyntheticCase("TS_04", seed=4, n_beads=3, ice_thickness_nm=180.0),
    ]
    q = root / "results" / "qc"
    metrics = []
    for c in cases:
        prov, stars, truth = write_synthetic_results(root, c)
        tomogram_qc(
            c.name,
            prov,
            stars,
            TH,
            q / f"{c.name}.png",
            q / f"{c.name}.json",
            q / c.name,
            truth=truth,
            results=root / "results",
        )
        metrics.append(q / f"{c.name}.json")
    dataset_report(metrics, TH, "test", q / "summary.tsv", q / "summary.html")
    return q / "summary.html", [c.name for c in cases]


def test_report_links_images_sorting_in_chromium(
    browser: Any, synthetic_report: tuple[Path, list[str]], artifacts: Path
) -> None:
    d = browser
    html, names = synthetic_report
    d.get(html.as_uri())
    assert wait_for(d, "return document.getElementById('tomograms') !== null")
    # failed and flagged first, with their reasons, before the table
    attention = d.find_element("css selector", ".attention").text
    assert attention.index("TS_03") < attention.index("TS_02")
    assert "NoDataError: no beads found" in attention
    assert "above 1 px" in attention and "3 beads in 3D, fewer than 4" in attention
    full_screenshot(d, artifacts / "report_overview.png")

    # sorting: numbers numerically (missing last), both directions, and text
    click_header(d, "beads")
    beads = column(d, "beads")
    values = [float(v) for v in beads if v]
    assert values == sorted(values) and beads[-1] == "", beads
    click_header(d, "beads")
    beads = column(d, "beads")
    values = [float(v) for v in beads if v]
    assert values == sorted(values, reverse=True) and beads[-1] == "", beads
    assert (
        d.execute_script(
            "return Array.from(document.querySelectorAll('#tomograms th')).filter(t => t.getAttribute('aria-sort')).length"
        )
        == 1
    )
    click_header(d, "ice thickness")
    thick = [float(v) for v in column(d, "ice thickness") if v]
    assert thick == sorted(thick) and thick[-1] == 180.0
    click_header(d, "tomogram")
    assert column(d, "tomogram") == sorted(names)

    # filtering: text and "only those needing attention"
    box = d.find_element("id", "filter")
    box.send_keys("high residual")
    assert column(d, "tomogram") == ["TS_02"]
    box.clear()
    d.execute_script("document.getElementById('filter').dispatchEvent(new Event('input'))")
    assert len(column(d, "tomogram")) == 4
    d.find_element("id", "only-attention").click()
    assert sorted(column(d, "tomogram")) == ["TS_02", "TS_03", "TS_04"]
    d.find_element("id", "only-attention").click()

    check_report_pages(d, names)

    # the picker and the fragment open a page directly; back to the overview
    d.get(html.as_uri() + "#t=TS_01")
    assert wait_for(d, "return document.querySelector('#tomogram h1') !== null")
    assert shown_name(d) == "TS_01"
    page = d.find_element("id", "tomogram").text
    assert "Against the simulator's truth" in page and "nm" in page
    assert broken_images(d) == []
    full_screenshot(d, artifacts / "report_tomogram.png", max_height=9000)
    from selenium.webdriver.support.ui import Select

    Select(d.find_element("id", "picker")).select_by_value("TS_03")
    assert wait_for(d, "return location.hash === '#t=TS_03'")
    assert shown_name(d) == "TS_03"
    assert "not in the final set" in d.find_element("id", "tomogram").text.lower() or (
        "Not available for this tomogram" in d.find_element("id", "tomogram").text
    )
    d.back()
    assert wait_for(d, "return location.hash === '#t=TS_01'")
    assert console_errors(d) == []
    assert (artifacts / "report_overview.png").stat().st_size > 10_000


# --------------------------------------------------------------------------------------------
# inside snakemake --report (HTML and zip form) of a small real run of the example

SMALL = {
    "simulate": {
        "names": ["TS_01", "TS_02"],
        "params": {
            "raw_size": [256, 256],
            "pixel_size": 10.0,
            "tilt_min": -60.0,
            "tilt_max": 60.0,
            "tilt_step": 6.0,
            "n_beads": 15,
            "perturb_tilt_deg": 1.0,
            "perturb_rotation_deg": 0.5,
            "perturb_shift_px": 5.0,
            "perturb_mag": 0.01,
            "seed": 0,
        },
    },
    "export": {"relion5": False},
}


def snakemake(cwd: Path, *args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env.pop("SNAKEMAKE_PROFILE", None)
    return subprocess.run(
        [sys.executable, "-m", "snakemake", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
    )


@pytest.fixture(scope="module")
def small_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if _missing() and not os.environ.get("CI"):
        pytest.skip(str(_missing()))
    import yaml

    project = tmp_path_factory.mktemp("run")
    for item in ("workflow", "config", "profiles"):
        src = REPO / item
        if src.is_dir():
            shutil.copytree(src, project / item, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(src, project / item)
    (project / "small.yaml").write_text(yaml.safe_dump(SMALL))
    r = snakemake(project, "--cores", "2", "--configfile=small.yaml", "--until", "simulate")
    assert r.returncode == 0, r.stderr[-3000:]
    # TS_02 fails at import: its .tlt lists half of the views
    tlt = project / "results" / "simulated" / "TS_02" / "TS_02.tlt"
    lines = tlt.read_text().splitlines()
    tlt.write_text("\n".join(lines[: len(lines) // 2]) + "\n")
    r = snakemake(project, "--cores", "2", "--configfile=small.yaml")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    for form in ("report.html", "report.zip"):
        r = snakemake(project, "--configfile=small.yaml", "--report", form)
        assert r.returncode == 0, r.stderr[-3000:]
    return project


def _open_qc_report_in_snakemake_report(d: Any, url: str, label: str = "QC report (HTML)") -> None:
    from selenium.webdriver.common.by import By

    d.get(url)
    assert wait_for(
        d,
        "return typeof results !== 'undefined' && document.body.innerText.indexOf('Quality control') >= 0",
    )

    def click(text: str) -> None:
        el = d.find_element(By.XPATH, f"//*[normalize-space(text())='{text}']")
        el.click()
        time.sleep(0.4)

    click("Quality control")
    click("QC report")
    row = d.find_element(By.XPATH, f"//tr[td[normalize-space()='{label}']]")
    row.find_elements(By.TAG_NAME, "a")[0].click()  # the "view" button
    frame = None
    t0 = time.time()
    while frame is None and time.time() - t0 < 30:
        frames = d.find_elements(By.TAG_NAME, "iframe")
        frame = frames[0] if frames else None
        time.sleep(0.2)
    assert frame is not None, "the QC report did not open in the report's frame"
    d.switch_to.frame(frame)
    assert wait_for(d, "return document.getElementById('tomograms') !== null", 60)


def registered(d: Any) -> dict[str, Any]:
    """path -> [category, subcategory, mime type] of every result in Snakemake's report."""
    return d.execute_script(
        "var out = {};"
        "Object.keys(categories).forEach(c => Object.keys(categories[c]).forEach(s =>"
        " categories[c][s].forEach(p => { out[p] = [c, s, results[p].mime_type]; })));"
        "return out;"
    )


@pytest.mark.slow
@pytest.mark.parametrize("form", ["report.html", "report.zip"])
def test_qc_report_inside_snakemake_report(
    browser: Any, small_run: Path, artifacts: Path, form: str, tmp_path: Path
) -> None:
    d = browser
    if form.endswith(".zip"):
        with zipfile.ZipFile(small_run / form) as z:
            z.extractall(tmp_path)
        url = (tmp_path / "report" / "report.html").as_uri()
    else:
        url = (small_run / form).as_uri()
    d.get(url)
    assert wait_for(d, "return typeof results !== 'undefined'")
    reg = registered(d)
    paths = set(reg)
    from tiltflow.qc.figures import FIGURES, figure_filename

    expected = {
        "results/qc/summary.html",
        "results/qc/overview.html",
        "results/qc/summary.tsv",
        "results/qc/final/tomograms.star",
    }
    for name in ("TS_01", "TS_02"):
        expected |= {
            f"results/qc/{name}.png",
            f"results/qc/{name}/step_align.png",
            f"results/qc/{name}/step_ice.png",
            f"results/qc/final/fiducials/fiducials_{name}.star",
        }
        expected |= {f"results/qc/{name}/{figure_filename(f.key)}" for f in FIGURES}
    assert expected <= paths, sorted(expected - paths)
    cats = {v[0] for v in reg.values()}
    assert {"Quality control", "Final tomogram set", "Step figures"} <= cats
    assert reg["results/qc/summary.html"][2] == "text/html"

    # the compact overview (always small enough for the HTML form), then the full report
    _open_qc_report_in_snakemake_report(d, url, "QC overview, compact (HTML)")
    assert "TS_02" in d.find_element("css selector", ".attention").text
    check_report_pages(d, ["TS_01", "TS_02"], min_figures=0)
    errors = console_errors(d)
    d.switch_to.default_content()
    errors += console_errors(d)
    _open_qc_report_in_snakemake_report(d, url)
    assert "TS_02" in d.find_element("css selector", ".attention").text
    check_report_pages(d, ["TS_01", "TS_02"])
    d.execute_script("document.querySelector('a[data-go=\"TS_01\"]').click()")
    assert wait_for(d, "return document.querySelector('#tomogram h1') !== null")
    assert shown_name(d) == "TS_01"
    assert broken_images(d) == []
    text = d.find_element("id", "tomogram").text
    assert "Against the simulator's truth" in text
    errors += console_errors(d)
    d.switch_to.default_content()
    errors += console_errors(d)
    assert errors == [], errors
    d.save_screenshot(str(artifacts / f"snakemake_{form.replace('.', '_')}.png"))
    (artifacts / f"snakemake_{form.replace('.', '_')}_registered.json").write_text(
        json.dumps(reg, indent=1, sort_keys=True)
    )
