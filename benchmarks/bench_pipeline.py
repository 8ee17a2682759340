#!/usr/bin/env python3
"""Time every tiltflow step on the standard synthetic case (and a scaled one).

Each step runs in its own Python process (fresh interpreter, so the peak memory is that step's
own): wall time, CPU time (user + system) and peak resident memory (``ru_maxrss``) are measured
inside that process around the step call only (imports excluded). The floor is reading every
stack once. The cases are simulated first (not timed as a step; its time is printed too).

    python benchmarks/bench_pipeline.py                 # standard case: 1 tilt series, 61 x 1024² at 8 Å/px
    python benchmarks/bench_pipeline.py --scaled 8      # and 8 tilt series
    python benchmarks/bench_pipeline.py --device gpu --keep benchmarks/out/bench
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

STEPS = ("simulate", "import", "floor", "fiducials", "align", "ice")


# ------------------------------------------------------------------ child side: one step
def _child(step: str, names: list[str], params: dict) -> dict:
    """Run one step in this process (cwd = the case directory) and measure it."""
    if step == "simulate":
        from tiltflow.simulate import SimulationParams, simulate_dataset

        def call() -> None:
            simulate_dataset(
                SimulationParams.from_dict(params.get("simulate", {})), Path("sim"), names
            )
    elif step == "floor":
        import mrcfile
        import numpy as np

        from tiltflow.io.tomograms import read_tomogram_set

        stacks = [t.tilt_series for t in read_tomogram_set("import/tomograms.star")]

        def call() -> None:
            for s in stacks:
                with mrcfile.open(s, permissive=True) as mrc:
                    np.asarray(mrc.data, dtype=np.float32).sum()
    elif step == "import":
        from tiltflow.importer import ImportOptions, run_import

        def call() -> None:
            run_import(
                "sim/import.star",
                "import/tomograms.star",
                ImportOptions.from_dict(params.get("import", {})),
                names=names,
                culled_dir="import",
            )
    elif step == "fiducials":
        from tiltflow.fiducials import FiducialParams, run_find_fiducials

        def call() -> None:
            run_find_fiducials(
                "import/tomograms.star",
                "fiducials",
                FiducialParams.from_dict(params.get("fiducials", {})),
                names=names,
            )
    elif step == "align":
        from tiltflow.align import AlignParams, run_align

        def call() -> None:
            run_align(
                "fiducials/tomograms.star",
                "align",
                AlignParams.from_dict(params.get("align", {})),
                names=names,
            )
    elif step == "ice":
        from tiltflow.ice import IceParams, run_estimate_ice

        def call() -> None:
            run_estimate_ice(
                "align/tomograms.star",
                "ice",
                IceParams.from_dict(params.get("ice", {})),
                names=names,
            )
    else:
        raise SystemExit(f"unknown step {step}")
    r0 = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.perf_counter()
    call()
    wall = time.perf_counter() - t0
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
    # ru_maxrss is KiB on Linux, bytes on macOS
    peak = r1.ru_maxrss * (1 if sys.platform == "darwin" else 1024)
    return {"step": step, "wall_s": wall, "cpu_s": cpu, "peak_rss_mb": peak / 2**20}


# ------------------------------------------------------------------ parent side
def run_case(label: str, n: int, params: dict, workdir: Path) -> list[dict]:
    workdir.mkdir(parents=True, exist_ok=True)
    names = [f"TS_{i + 1:02d}" for i in range(n)]
    rows = []
    for step in STEPS:
        cmd = [
            sys.executable,
            str(Path(__file__).resolve()),
            "--_child",
            step,
            "--_names",
            ",".join(names),
            "--_params",
            json.dumps(params),
        ]
        proc = subprocess.run(cmd, cwd=workdir, capture_output=True, text=True)
        if proc.returncode != 0:
            print(f"[{label}] step {step} failed:\n{proc.stderr[-3000:]}", file=sys.stderr)
            rows.append(
                {
                    "case": label,
                    "step": step,
                    "wall_s": float("nan"),
                    "cpu_s": float("nan"),
                    "peak_rss_mb": float("nan"),
                }
            )
            break
        row = json.loads(proc.stdout.strip().splitlines()[-1])
        row["case"] = label
        rows.append(row)
    return rows


def print_table(rows: list[dict], n_tilts: dict[str, int]) -> None:
    floors = {r["case"]: r["wall_s"] for r in rows if r["step"] == "floor"}
    head = f"{'case':<14}{'step':<11}{'wall s':>9}{'CPU s':>9}{'peak MB':>9}{'x floor':>9}{'s/series':>10}"
    print(head)
    print("-" * len(head))
    for r in rows:
        floor = floors.get(r["case"], float("nan"))
        ratio = r["wall_s"] / floor if floor and floor == floor and floor > 0 else float("nan")
        per = r["wall_s"] / n_tilts[r["case"]]
        print(
            f"{r['case']:<14}{r['step']:<11}{r['wall_s']:>9.2f}{r['cpu_s']:>9.2f}{r['peak_rss_mb']:>9.0f}"
            f"{ratio:>9.1f}{per:>10.2f}"
        )
    print(
        "\nfloor = reading every stack once (mrcfile, float32); x floor = wall / floor wall;"
        " s/series = wall / number of tilt series"
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--scaled", type=int, default=0, help="also run a case with this many tilt series (e.g. 8)"
    )
    p.add_argument(
        "--device", default="cpu", choices=["cpu", "gpu", "auto"], help="fiducials backend"
    )
    p.add_argument(
        "--keep", default=None, help="keep the cases in this directory (default: a temporary one)"
    )
    p.add_argument("--json", default=None, help="also write the rows as JSON to this file")
    p.add_argument("--_child", help=argparse.SUPPRESS)
    p.add_argument("--_names", help=argparse.SUPPRESS)
    p.add_argument("--_params", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args._child:
        print(json.dumps(_child(args._child, args._names.split(","), json.loads(args._params))))
        return 0

    params = {
        # the standard case of the issues: 61 tilts of 1024 x 1024 at 8 Å/px, 40 beads of 50 Å
        "simulate": {
            "raw_size": [1024, 1024],
            "pixel_size": 8.0,
            "tilt_step": 2.0,
            "n_beads": 40,
            "seed": 42,
        },
        "import": {"angpix": 8.0},
        "fiducials": {"device": args.device},
        "align": {},
        "ice": {},
    }
    root = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="tiltflow-bench-"))
    cases = [("standard", 1)] + ([(f"scaled x{args.scaled}", args.scaled)] if args.scaled else [])
    rows: list[dict] = []
    try:
        for label, n in cases:
            rows += run_case(label, n, params, root / label.replace(" ", "_"))
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    print(f"tiltflow benchmark, {os.cpu_count()} CPUs, device {args.device}\n")
    print_table(rows, {label: n for label, n in cases})
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2) + "\n")
    return 0 if all(r["wall_s"] == r["wall_s"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
