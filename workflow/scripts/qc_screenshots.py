"""Screenshots of the QC report for the README (not a rule script; run it by hand):

    snakemake --cores 2                                   # the bundled example
    python workflow/scripts/qc_screenshots.py results/qc/summary.html docs/

writes ``docs/qc_overview.png`` (the overview) and ``docs/qc_tomogram.png`` (the top of the first
tomogram's page), taken with headless Chromium (selenium + the system chromium/chromedriver),
scaled and reduced to a palette so that they stay small.
"""

from __future__ import annotations

import argparse
import io
import shutil
import sys
import time
from pathlib import Path


def shoot(html: Path, out_dir: Path, tomogram: str | None, width: int = 1280) -> list[Path]:
    from PIL import Image
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = shutil.which("chromium") or "chromium"
    for a in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        f"--window-size={width},900",
        "--hide-scrollbars",
    ):
        opts.add_argument(a)
    d = webdriver.Chrome(
        service=Service(shutil.which("chromedriver") or "chromedriver"), options=opts
    )
    out: list[Path] = []
    try:
        for fragment, name, height in (
            ("", "qc_overview.png", None),
            ("t", "qc_tomogram.png", 1700),
        ):
            d.get(html.resolve().as_uri())
            time.sleep(0.5)
            if fragment:
                first = tomogram or d.execute_script(
                    "return JSON.parse(document.getElementById('names').textContent)[0]"
                )
                d.execute_script("location.hash = arguments[0]", f"#t={first}")
                time.sleep(0.8)
            full = d.execute_script("return document.documentElement.scrollHeight")
            d.set_window_size(width, height or full)
            time.sleep(0.5)
            png = d.get_screenshot_as_png()
            with Image.open(io.BytesIO(png)) as im:
                im = im.convert("RGB")
                im = im.resize((im.width * 3 // 4, im.height * 3 // 4), Image.Resampling.LANCZOS)
                pal = im.quantize(
                    colors=128, method=Image.Quantize.FASTOCTREE, dither=Image.Dither.NONE
                )
                path = out_dir / name
                pal.save(path, format="PNG", optimize=True)
                out.append(path)
            d.set_window_size(width, 900)
    finally:
        d.quit()
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("html", type=Path, help="results/qc/summary.html")
    ap.add_argument("out_dir", type=Path, help="where to write the PNGs (docs/)")
    ap.add_argument("--tomogram", default=None, help="page to show (default: the first)")
    args = ap.parse_args()
    args.out_dir.mkdir(parents=True, exist_ok=True)
    for p in shoot(args.html, args.out_dir, args.tomogram):
        print(f"{p} ({p.stat().st_size // 1024} KiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
