#!/usr/bin/env python3
"""Time every tiltflow step on the standard cases of issue #10, next to the floor.

One command builds the standard cases and runs the chain on each, every step in its own Python
process as in the workflow. Per step: wall and CPU time of the step call (imports excluded), the
process wall (imports included: what the chain costs), and peak resident memory (``ru_maxrss``).
The align and ice steps run without their figures, as the workflow's step jobs do; the figures
(the workflow's ``step_figure`` jobs, drawn from the side files) are timed as their own rows
``fig_align`` and ``fig_ice``, outside the chain.
The floor, measured in the same run on the same stack, is reading the stack once, a tilt at a
time, plus one ``scipy.fft.rfft2`` pass over every tilt (all CPU workers).

Cases (``--sizes``; default ``1k,2k``, add ``4k`` for the real-size case, 2.7 GB of disk):

- 1k: 61 x 1024² at 8 Å/px, 40 beads, imported alignment perturbed (tilt 0.5°, rotation 0.5°,
  shift 3 px);
- 2k: 41 x 2048² at 2.7 Å/px, 30 beads of 50 Å, 900 px thick, 150 nm ice, perturbed as 4k;
- 4k: 41 x 4096² at 1.35 Å/px, 30 beads of 50 Å, 1800 px thick, 150 nm ice, perturbed (tilt
  0.5°, rotation 0.3°, shift 5 px): issue #10's case;
- 4k81: as 4k with 81 tilts (1.5° step; 5.4 GB of disk): cost and memory against the number of
  tilts.

The cost per (megapixel x tilt) of every step is printed for each case, so linearity in
pixels x tilts can be read off (the ratios between cases should be ~1), and the chain's result
of each case against the simulator's truth (recall, precision, true-bead reprojection after
align, scale-factor and thickness errors), so that speed is never bought with accuracy.

    python benchmarks/bench_pipeline.py                       # 1k and 2k
    python benchmarks/bench_pipeline.py --sizes 1k,2k,4k --json benchmarks/out/bench.json
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

STEPS = ("simulate", "import", "floor", "fiducials", "align", "ice", "fig_align", "fig_ice")
#: the chain whose total is compared with the floor; the step jobs run as in the workflow, without
#: their figures (figure=False), which the workflow's step_figure jobs draw from the side files
#: off the chain: timed as their own rows fig_align and fig_ice
CHAIN = ("import", "fiducials", "align", "ice")


# ------------------------------------------------------------------ child side: one step
def _known(cls: type, values: dict) -> dict:
    """``values`` without the benchmark-wide keys (device, threads) that ``cls`` does not have."""
    import dataclasses

    names = {f.name for f in dataclasses.fields(cls)}
    return {k: v for k, v in values.items() if k in names or k not in ("device", "threads")}


def _child(step: str, names: list[str], params: dict) -> dict:
    """Run one step in this process (cwd = the case directory) and measure it."""
    if step == "simulate":
        from tiltflow.simulate import SimulationParams, simulate_dataset

        def call() -> None:
            simulate_dataset(
                SimulationParams.from_dict(params.get("simulate", {})), Path("sim"), names
            )
    elif step == "floor":
        import numpy as np
        import scipy.fft

        from tiltflow.io.mrc import open_stack
        from tiltflow.io.tomograms import read_tomogram_set

        stacks = [t.tilt_series for t in read_tomogram_set("import/tomograms.star")]
        workers = os.cpu_count() or 1

        def call() -> None:
            for s in stacks:
                stack = open_stack(s)  # memory-mapped, nothing else read
                for i in range(stack.shape[0]):
                    frame = np.array(stack[i], dtype=np.float32)
                    scipy.fft.rfft2(frame, workers=workers)
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
                FiducialParams.from_dict(_known(FiducialParams, params.get("fiducials", {}))),
                names=names,
            )
    elif step == "align":
        from tiltflow.align import AlignParams, run_align

        def call() -> None:
            run_align(
                "fiducials/tomograms.star",
                "align",
                AlignParams.from_dict(_known(AlignParams, params.get("align", {}))),
                names=names,
                figure=False,  # as the workflow's align job (rule step_figure draws it)
            )
    elif step == "ice":
        from tiltflow.ice import IceParams, run_estimate_ice

        def call() -> None:
            run_estimate_ice(
                "align/tomograms.star",
                "ice",
                IceParams.from_dict(_known(IceParams, params.get("ice", {}))),
                names=names,
                figure=False,  # as the workflow's ice job (rule step_figure draws it)
            )
    elif step in ("fig_align", "fig_ice"):
        from tiltflow.qc.step_figures import render_step_figure

        fig_step = step[len("fig_") :]

        def call() -> None:
            # the workflow's step_figure job: the figure from the side file alone
            for n in names:
                render_step_figure(
                    fig_step, f"{fig_step}/{fig_step}_{n}.star", f"{fig_step}/{fig_step}_{n}.png"
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
_PERTURB_4K = {"perturb_tilt_deg": 0.5, "perturb_rotation_deg": 0.3, "perturb_shift_px": 5.0}

#: the standard cases: (simulator params, import params, n tilts, image side)
CASES: dict[str, dict] = {
    "1k": {
        "simulate": {
            "raw_size": [1024, 1024],
            "pixel_size": 8.0,
            "tilt_step": 2.0,
            "n_beads": 40,
            "perturb_tilt_deg": 0.5,
            "perturb_rotation_deg": 0.5,
            "perturb_shift_px": 3.0,
            "seed": 42,
        },
        "import": {"angpix": 8.0},
    },
    "2k": {
        "simulate": {
            "raw_size": [2048, 2048],
            "pixel_size": 2.7,
            "tilt_step": 3.0,
            "n_beads": 30,
            "bead_radius_A": 50.0,
            "thickness_px": 900,
            "ice_thickness_nm": 150.0,
            **_PERTURB_4K,
            "seed": 42,
        },
        "import": {"angpix": 2.7},
    },
    "4k": {
        "simulate": {
            "raw_size": [4096, 4096],
            "pixel_size": 1.35,
            "tilt_step": 3.0,
            "n_beads": 30,
            "bead_radius_A": 50.0,
            "thickness_px": 1800,
            "ice_thickness_nm": 150.0,
            **_PERTURB_4K,
            "seed": 42,
        },
        "import": {"angpix": 1.35},
    },
}
#: 4k with twice the tilts (1.5° step, 81 tilts, 5.4 GB): cost and memory against the number of
#: tilts (not a case of issue #10; ``--sizes 4k81``)
CASES["4k81"] = {
    "simulate": {**CASES["4k"]["simulate"], "tilt_step": 1.5},
    "import": dict(CASES["4k"]["import"]),
}


def case_pixels(case: dict) -> float:
    """Megapixels x tilts of a case (the unit of the linearity check)."""
    sim = case["simulate"]
    w, h = sim["raw_size"]
    n_tilts = int(round(120.0 / sim["tilt_step"])) + 1
    return w * h * n_tilts / 1e6


def _run_child(label: str, step: str, names: list[str], params: dict, workdir: Path) -> dict:
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
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=workdir, capture_output=True, text=True)
    process_wall = time.perf_counter() - t0
    if proc.returncode != 0:
        print(f"[{label}] step {step} failed:\n{proc.stderr[-3000:]}", file=sys.stderr)
        nan = float("nan")
        return {
            "case": label,
            "step": step,
            "wall_s": nan,
            "cpu_s": nan,
            "process_s": nan,
            "peak_rss_mb": nan,
        }
    row = json.loads(proc.stdout.strip().splitlines()[-1])
    row["case"] = label
    row["process_s"] = process_wall
    return row


def run_case(
    label: str, params: dict, workdir: Path, reuse: bool = False, repeat: int = 1
) -> list[dict]:
    """Every step of one case; with ``repeat`` > 1 each measured step (and the floor) runs that
    many times and the fastest run is kept (the least disturbed by other work on the machine)."""
    workdir.mkdir(parents=True, exist_ok=True)
    names = ["TS_01"]
    rows = []
    for step in STEPS:
        if step == "simulate" and reuse and (workdir / "sim" / "import.star").is_file():
            continue  # --reuse: the case's simulated series from an earlier --keep run
        runs = [
            _run_child(label, step, names, params, workdir)
            for _ in range(1 if step == "simulate" else max(1, repeat))
        ]
        if any(r["wall_s"] != r["wall_s"] for r in runs):
            rows.append(next(r for r in runs if r["wall_s"] != r["wall_s"]))
            break
        best = min(runs, key=lambda r: r["process_s"])
        best["repeats"] = len(runs)
        rows.append(best)
    return rows


def chain_row(rows: list[dict], label: str) -> dict:
    """The chain (import + fiducials + align + ice, separate processes) of one case."""
    mine = [r for r in rows if r["case"] == label and r["step"] in CHAIN]
    return {
        "case": label,
        "step": "chain",
        "wall_s": sum(r["process_s"] for r in mine),  # processes, imports included
        "cpu_s": sum(r["cpu_s"] for r in mine),
        "process_s": sum(r["process_s"] for r in mine),
        "peak_rss_mb": max((r["peak_rss_mb"] for r in mine), default=float("nan")),
    }


def print_table(rows: list[dict], mpx: dict[str, float]) -> None:
    floors = {r["case"]: r["wall_s"] for r in rows if r["step"] == "floor"}
    head = (
        f"{'case':<6}{'step':<11}{'wall s':>9}{'CPU s':>9}{'proc s':>9}{'peak MB':>9}"
        f"{'x floor':>9}{'ms/(Mpx*tilt)':>15}"
    )
    print(head)
    print("-" * len(head))
    for r in rows:
        floor = floors.get(r["case"], float("nan"))
        wall = r["process_s"] if r["step"] == "chain" else r["wall_s"]
        ratio = wall / floor if floor == floor and floor > 0 else float("nan")
        per = 1e3 * wall / mpx[r["case"]]
        print(
            f"{r['case']:<6}{r['step']:<11}{r['wall_s']:>9.2f}{r['cpu_s']:>9.2f}"
            f"{r['process_s']:>9.2f}{r['peak_rss_mb']:>9.0f}{ratio:>9.2f}{per:>15.3f}"
        )
    print(
        "\nwall/CPU: the step call only; proc s: its whole process (interpreter start and imports "
        "included);\nchain = import + fiducials + align + ice as separate processes (proc s), "
        "the step jobs without\ntheir figures as in the workflow; fig_align, fig_ice = the "
        "step_figure jobs (off the chain);\n"
        "floor = read the stack once (memory-mapped, a tilt at a time) + one rfft2 pass; "
        "x floor = wall / floor wall (chain: proc s / floor)."
    )
    labels = list(dict.fromkeys(r["case"] for r in rows))
    print("\nchain against the floor as a process too (both with interpreter start and imports):")
    for lab in labels:
        fl = next((r for r in rows if r["case"] == lab and r["step"] == "floor"), None)
        ch = next((r for r in rows if r["case"] == lab and r["step"] == "chain"), None)
        if fl and ch and fl["process_s"] > 0:
            print(
                f"  {lab}: chain {ch['process_s']:.2f} s / floor process {fl['process_s']:.2f} s "
                f"= {ch['process_s'] / fl['process_s']:.2f}"
            )
    if len(labels) > 1:
        print("\nlinearity: cost per (Mpx x tilt) relative to the first case (1.0 = linear)")
        steps = [s for s in (*STEPS[1:], "chain")]
        print(f"{'step':<11}" + "".join(f"{lab:>9}" for lab in labels))
        for step in steps:
            vals = []
            for lab in labels:
                r = next((x for x in rows if x["case"] == lab and x["step"] == step), None)
                w = (r["process_s"] if step == "chain" else r["wall_s"]) if r else float("nan")
                vals.append(w / mpx[lab])
            base = vals[0]
            print(f"{step:<11}" + "".join(f"{v / base:>9.2f}" for v in vals))


def case_accuracy(workdir: Path) -> dict:
    """The chain's outputs of one case against the simulator's truth
    (:func:`tiltflow.simulate.score.score_case`): speed must not cost accuracy."""
    from tiltflow.simulate.score import score_case

    row = score_case(workdir, fid_dir="fiducials", ali_dir="align", ice_dir="ice")
    keys = ("recall", "precision", "reproj_mean", "reproj_max", "scale_err_max", "thickness_err")
    return {k: row[k] for k in keys}


def print_accuracy(accuracy: dict[str, dict]) -> None:
    if not accuracy:
        return
    print(
        "\naccuracy against the simulator's truth (true-bead reprojection after align, px; "
        "scale factors and thickness after ice):"
    )
    print(f"{'case':<6}{'recall':>8}{'precision':>11}{'reproj mean':>13}{'max':>7}"
          f"{'scale err':>11}{'thickness':>11}")
    for lab, a in accuracy.items():
        print(
            f"{lab:<6}{a['recall']:>8.3f}{a['precision']:>11.3f}{a['reproj_mean']:>13.3f}"
            f"{a['reproj_max']:>7.3f}{100 * a['scale_err_max']:>10.2f}%"
            f"{100 * a['thickness_err']:>+10.2f}%"
        )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--sizes", default="1k,2k", help="comma-separated cases: 1k, 2k, 4k")
    p.add_argument(
        "--device", default="cpu", choices=["cpu", "gpu", "auto"], help="fiducials/ice backend"
    )
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="threads per step")
    p.add_argument(
        "--keep", default=None, help="keep the cases in this directory (default: a temporary one)"
    )
    p.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="run every measured step (and the floor) this many times and keep the fastest",
    )
    p.add_argument(
        "--reuse",
        action="store_true",
        help="with --keep: do not simulate a case again whose series is already there",
    )
    p.add_argument("--json", default=None, help="also write the rows as JSON to this file")
    p.add_argument("--_child", help=argparse.SUPPRESS)
    p.add_argument("--_names", help=argparse.SUPPRESS)
    p.add_argument("--_params", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args._child:
        print(json.dumps(_child(args._child, args._names.split(","), json.loads(args._params))))
        return 0

    labels = [x.strip() for x in args.sizes.split(",") if x.strip()]
    unknown = [x for x in labels if x not in CASES]
    if unknown:
        p.error(f"unknown case(s) {', '.join(unknown)}; choose from {', '.join(CASES)}")
    root = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="tiltflow-bench-"))
    rows: list[dict] = []
    accuracy: dict[str, dict] = {}
    try:
        for label in labels:
            params = {
                **CASES[label],
                "fiducials": {"device": args.device, "threads": args.threads},
                "align": {},
                "ice": {"device": args.device, "threads": args.threads},
            }
            case_rows = run_case(
                label,
                params,
                root / label,
                reuse=args.reuse and bool(args.keep),
                repeat=args.repeat,
            )
            rows += case_rows + [chain_row(case_rows, label)]
            if all(r["wall_s"] == r["wall_s"] for r in case_rows):
                accuracy[label] = case_accuracy(root / label)
            if not args.keep:
                shutil.rmtree(root / label, ignore_errors=True)  # 4k: 2.7 GB per stack
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    print(
        f"tiltflow benchmark, {os.cpu_count()} CPUs, {args.threads} threads, device {args.device}, "
        f"best of {max(1, args.repeat)} run(s) per step, load average {os.getloadavg()[0]:.1f}\n"
    )
    print_table(rows, {lab: case_pixels(CASES[lab]) for lab in labels})
    print_accuracy(accuracy)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(
            json.dumps({"steps": rows, "accuracy": accuracy}, indent=2) + "\n"
        )
    return 0 if all(r["wall_s"] == r["wall_s"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
