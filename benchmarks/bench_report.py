"""Benchmark of the QC report at scale: build the one-file HTML report for N tomograms.

    python benchmarks/bench_report.py                 # 200 tomograms, figures of 10 distinct ones
    python benchmarks/bench_report.py --n 500 --distinct 20 --open

1. writes ``--distinct`` synthetic tomograms (tiltflow.qc.synthetic: real formats, a mix of good,
   flagged and failed ones) and runs the per-tomogram QC job on each (figures, metrics); this
   part runs once per tomogram in the workflow, in parallel, and is reported per tomogram;
2. makes N metric records (``results/qc/<name>.json``) from them, names and numbers varied, each
   pointing to the figures of one distinct tomogram (the report embeds every tomogram's figures,
   so the size is that of N distinct tomograms);
3. times the report build, what rule qc_summary does (read the N records, dataset histograms,
   table, N pages with their figures embedded, write the file, and the compact overview without
   the figures), and prints time and sizes;
4. with ``--open``: the time headless Chromium takes to open it (needs selenium + chromium).
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

TH = {"max_residual_px": 1.0, "min_beads": 4, "min_tilts_fraction": 0.5}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--n", type=int, default=200, help="tomograms in the report (default 200)")
    ap.add_argument("--distinct", type=int, default=10, help="distinct synthetic tomograms")
    ap.add_argument("--tilts", type=int, default=41)
    ap.add_argument("--size", type=int, default=512, help="image side (px) of the synthetic stacks")
    ap.add_argument("--out", type=Path, default=None, help="keep the files here (default: temp)")
    ap.add_argument("--open", action="store_true", help="also time opening it in headless Chromium")
    args = ap.parse_args()

    from tiltflow.qc.job import dataset_report, tomogram_qc
    from tiltflow.qc.synthetic import dataset_cases, write_synthetic_results

    tmp = None
    if args.out is None:
        tmp = tempfile.mkdtemp(prefix="bench_report_")
        root = Path(tmp)
    else:
        root = args.out
        root.mkdir(parents=True, exist_ok=True)
    try:
        q = root / "results" / "qc"
        # distinct tomograms: one of each kind first, then the usual mix
        pool = dataset_cases(max(args.distinct * 10, 60), seed=7)
        kinds: dict[str, object] = {}
        for c in pool:
            kind = c.failed_at or (
                "few" if c.n_beads < 4 else "high" if c.residual_after_px > 1 else "ok"
            )
            kinds.setdefault(kind, c)
        distinct = list(kinds.values())
        distinct += [c for c in pool if c not in distinct][: max(0, args.distinct - len(distinct))]
        distinct = distinct[: args.distinct]
        rows = []
        t_qc = []
        for c in distinct:
            c = dataclasses.replace(c, n_tilts=args.tilts, image_px=args.size)
            prov, stars, _ = write_synthetic_results(root, c)
            t0 = time.perf_counter()
            rows.append(
                tomogram_qc(
                    c.name,
                    prov,
                    stars,
                    TH,
                    q / f"{c.name}.png",
                    q / f"{c.name}.json",
                    q / c.name,
                    results=root / "results",
                )
            )
            t_qc.append(time.perf_counter() - t0)
        fig_bytes = [
            sum(
                (q / r["name"] / f["file"]).stat().st_size
                for f in r["figures"].values()
                if f["available"]
            )
            for r in rows
        ]

        # N records, each pointing to the figures of one distinct tomogram
        rng = np.random.default_rng(1)
        metrics, figure_dirs = [], {}
        rec_dir = root / "records"
        rec_dir.mkdir(exist_ok=True)
        for i in range(args.n):
            src = rows[i % len(rows)]
            r = copy.deepcopy(src)
            r["name"] = f"TS_{i + 1:04d}"
            for key in ("residual_after_px", "residual_before_px", "ice_thickness_nm"):
                if r.get(key) is not None:
                    r[key] = float(r[key]) * float(rng.lognormal(0, 0.15))
            path = rec_dir / f"{r['name']}.json"
            path.write_text(json.dumps(r, sort_keys=True))
            metrics.append(path)
            figure_dirs[r["name"]] = q / src["name"]

        t0 = time.perf_counter()
        dataset_report(
            metrics,
            TH,
            "bench",
            q / "summary.tsv",
            q / "summary.html",
            figure_dirs,
            out_compact=q / "overview.html",
        )
        t_build = time.perf_counter() - t0
        size = (q / "summary.html").stat().st_size
        compact = (q / "overview.html").stat().st_size

        n_failed = sum(1 for r in rows if r["status"] == "failed")
        print(
            f"distinct synthetic tomograms: {len(rows)} ({n_failed} failed), {args.tilts} tilts of {args.size}²"
        )
        print(
            f"per-tomogram QC job (figures + overview PNG; one job per tomogram, in parallel): "
            f"mean {np.mean(t_qc):.2f} s, max {np.max(t_qc):.2f} s"
        )
        ok = [b for b, r in zip(fig_bytes, rows) if r["status"] == "ok"]
        print(f"figures per tomogram: {np.mean(ok) / 1024:.0f} KiB (mean of the complete ones)")
        print(
            f"report of {args.n} tomograms: built in {t_build:.2f} s, "
            f"{size / 1e6:.1f} MB ({size / args.n / 1024:.0f} KiB per tomogram)"
        )
        print(
            f"compact overview (no figures; for the HTML form of snakemake --report, whose "
            f"Chromium limit is 2 MiB): {compact / 1e6:.2f} MB (built in the same time)"
        )
        if args.open:
            print(f"opened in headless Chromium in {open_in_chromium(q / 'summary.html'):.1f} s")
        if args.out is not None:
            print(f"report: {q / 'summary.html'}")
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0


def open_in_chromium(html: Path) -> float:
    import shutil as sh

    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = sh.which("chromium") or "chromium"
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        opts.add_argument(a)
    d = webdriver.Chrome(service=Service(sh.which("chromedriver") or "chromedriver"), options=opts)
    try:
        t0 = time.perf_counter()
        d.get(html.as_uri())
        while not d.execute_script(
            "return document.getElementById('count').textContent.length > 0"
        ):
            time.sleep(0.05)
        return time.perf_counter() - t0
    finally:
        d.quit()


if __name__ == "__main__":
    sys.exit(main())
