#!/usr/bin/env python3
"""Time ``tiltflow find-hand`` per tilt series next to its floor.

The floor, measured in the same run on the same stack, is what the step cannot avoid: reading
the tilts it measures (|tilt| ≥ ``min_tilt_deg``) once from the memory-mapped stack, a tilt at a
time, plus one ``scipy.fft.rfft2`` pass over each of them (same FFT threads). Each of the two
runs in its own Python process (imports excluded from the step time, included in the process
time), with its peak resident memory. ``measure`` is the measurement alone (reading, spectra,
fits); ``step`` adds the STAR files and the PNG (matplotlib, about a second).

Cases (``--sizes``; default ``1k,2k``):

- 1k: 41 tilts (±60°, 3° steps) of 1024² at 1.5 Å/px, 4 µm defocus, hand +1;
- 2k: the same at 2048²;
- 4k: 41 tilts of 4096² at 1.35 Å/px (2.7 GB stack; the generator takes a few minutes).

The tilts the step does not read are flat Poisson images (their content cannot matter); the
measured ones come from the hand package's generator (:mod:`tiltflow.hand.synthetic`), so the
slope found is printed too.

    python benchmarks/bench_hand.py
    python benchmarks/bench_hand.py --sizes 1k,2k,4k --threads 2 --json benchmarks/out/hand.json
    python benchmarks/bench_hand.py --accuracy 4     # hands, slopes, defocus over 24 series
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

CASES: dict[str, dict] = {
    "1k": {"size": [1024, 1024], "pixel_size": 1.5},
    "2k": {"size": [2048, 2048], "pixel_size": 1.5},
    "4k": {"size": [4096, 4096], "pixel_size": 1.35, "band_A": 600.0},
}
TILTS = [float(t) for t in range(-60, 61, 3)]


def _usage() -> tuple[float, float]:
    r = resource.getrusage(resource.RUSAGE_SELF)
    peak = r.ru_maxrss * (1 if sys.platform == "darwin" else 1024)
    return r.ru_utime + r.ru_stime, peak / 2**20


def _child(step: str, threads: int, min_tilt: float, case: str = "") -> dict:
    """Run one measurement in this process (cwd = the case directory)."""
    if step == "simulate":
        return {"step": step, "wall_s": simulate_case(case, Path.cwd())}
    if step == "floor":
        import numpy as np
        import scipy.fft

        from tiltflow.hand.depth import depth_maps, specimen_plane
        from tiltflow.io.mrc import open_stack
        from tiltflow.io.tomograms import read_tomogram_set

        tomo = read_tomogram_set("in/tomograms.star").tomograms[0]
        plane, _ = specimen_plane(tomo, "beam")
        sel = np.flatnonzero(np.abs(depth_maps(tomo.proj, tomo.size, plane).angle_deg) >= min_tilt)

        def call() -> dict:
            stack = open_stack(tomo.tilt_series)
            for i in sel:
                frame = np.asarray(stack[int(i)], dtype=np.float32)
                scipy.fft.rfft2(frame, workers=threads)
            return {"tilts_read": int(sel.size)}
    else:
        import tiltflow.hand.step as step_module
        from tiltflow.hand import HandParams, run_find_hand

        measure: list[float] = []
        original = step_module.find_hand

        def timed(*a, **k):  # the measurement alone (the rest is the STAR files and the PNG)
            t = time.perf_counter()
            out = original(*a, **k)
            measure.append(time.perf_counter() - t)
            return out

        step_module.find_hand = timed

        def call() -> dict:
            _, res = run_find_hand(
                "in/tomograms.star", "out", HandParams(threads=threads, min_tilt_deg=min_tilt)
            )
            r = next(iter(res.values()))
            return {
                "measure_s": sum(measure),
                "status": r.status,
                "slope": r.slope,
                "slope_se": r.slope_se,
                "tilts_read": int(r.selected.sum()),
                "tilts_measured": r.n_tilts_measured,
            }

    cpu0, _ = _usage()
    t0 = time.perf_counter()
    extra = call()
    wall = time.perf_counter() - t0
    cpu1, peak = _usage()
    return {"step": step, "wall_s": wall, "cpu_s": cpu1 - cpu0, "peak_rss_mb": peak, **extra}


def simulate_case(label: str, workdir: Path) -> float:
    """Write the case's stack and tomograms.star into ``workdir/in``; return the generator time."""
    from tiltflow.hand.synthetic import HandSimulation, simulate_hand_series, write_series

    c = CASES[label]
    sim = HandSimulation(
        size=tuple(c["size"]),
        pixel_size=c["pixel_size"],
        tilts_deg=tuple(TILTS),
        hand=1.0,
        defocus_um=4.0,
        seed=42,
        flat_below_deg=29.0,
        band_A=c.get("band_A"),
        thickness_px=int(round(1200 * 1.5 / c["pixel_size"])),
    )
    t0 = time.perf_counter()
    series = simulate_hand_series(sim, workers=os.cpu_count() or 1)
    cwd = Path.cwd()
    os.chdir(workdir)
    try:
        write_series(series, "in", name="TS_01")
    finally:
        os.chdir(cwd)
    return time.perf_counter() - t0


#: geometries of the accuracy run: (tilt axis in the raw image, flipYZ, flipZ)
GEOMETRIES = ((85.0, True, True), (40.0, False, False), (-20.0, True, False))


def accuracy(seeds: int) -> None:
    """Hand, slope and per-tilt defocus accuracy over hands x geometries x seeds (test-size series)."""
    import numpy as np

    from tiltflow.hand import HandParams, find_hand
    from tiltflow.hand.synthetic import HandSimulation, simulate_hand_series

    rows = []
    for hand in (1.0, -1.0):
        for axis, flip_yz, flip_z in GEOMETRIES:
            for seed in range(seeds):
                sim = HandSimulation(
                    hand=hand,
                    seed=100 + seed,
                    tilt_axis_deg=axis,
                    flip_yz=flip_yz,
                    flip_z=flip_z,
                    defocus_um=3.0 + 2.0 * ((seed * 7) % 5) / 4.0,
                    defocus_error_A=300.0,
                )
                series = simulate_hand_series(sim)
                t0 = time.perf_counter()
                r = find_hand(series.tomo, series.stack, HandParams())
                dt = time.perf_counter() - t0
                truth = 0.5 * (series.true_defocus_u + series.true_defocus_v)
                imported = 0.5 * (series.tomo.defocus_u + series.tomo.defocus_v)
                err = np.abs(r.correction_A - (truth - imported))[r.measured]
                rows.append((hand, r.hand_measured, r.slope, r.slope_se, float(np.max(err)), dt))
                print(
                    f"hand {hand:+.0f} axis {axis:+5.0f} flipYZ {flip_yz:d} flipZ {flip_z:d} seed "
                    f"{seed}: {r.status} {r.hand_measured:+.0f} slope {r.slope:+.3f} ± "
                    f"{r.slope_se:.3f}, defocus at the centre depth within {np.max(err):.0f} Å, "
                    f"{dt:.2f} s"
                )
    a = np.array(rows)
    right = int(np.sum(a[:, 0] == a[:, 1]))
    mag = np.abs(a[:, 2])
    print(
        f"{right} of {len(rows)} hands right; |slope| {mag.min():.3f}-{mag.max():.3f} (mean "
        f"{mag.mean():.3f}, sd {mag.std():.3f}, mean se {a[:, 3].mean():.3f}); per-tilt defocus "
        f"within {np.median(a[:, 4]):.0f} Å (median of the worst tilt per series), worst "
        f"{a[:, 4].max():.0f} Å; {a[:, 5].mean():.2f} s per series (7 tilts, 6 measured)"
    )


def run_case(label: str, workdir: Path, threads: int, min_tilt: float) -> dict:
    # every part in its own process: peak RSS is per process (and a child forked from a parent
    # that held the simulated stack would inherit its high-water mark)
    workdir.mkdir(parents=True, exist_ok=True)
    rows = {}
    for step in ("simulate", "floor", "find-hand"):
        cmd = [
            sys.executable,
            str(Path(__file__).resolve()),
            "--_child",
            step,
            "--_case",
            label,
            "--threads",
            str(threads),
            "--min_tilt",
            str(min_tilt),
        ]
        t0 = time.perf_counter()
        out = subprocess.run(cmd, cwd=workdir, capture_output=True, text=True, check=True)
        row = json.loads(out.stdout.strip().splitlines()[-1])
        row["process_s"] = time.perf_counter() - t0
        rows[step] = row
    gen = rows.pop("simulate")["wall_s"]
    w, h = CASES[label]["size"]
    return {
        "case": label,
        "image": f"{w}x{h}",
        "pixel_size": CASES[label]["pixel_size"],
        "tilts": len(TILTS),
        "generator_s": gen,
        **{f"{k}_{s}": v for s, r in rows.items() for k, v in r.items() if k != "step"},
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--sizes", default="1k,2k", help="comma-separated cases (1k, 2k, 4k)")
    ap.add_argument("--threads", type=int, default=1, help="FFT threads of the step and the floor")
    ap.add_argument("--min_tilt", type=float, default=30.0)
    ap.add_argument("--keep", default=None, help="keep the case directories under this path")
    ap.add_argument("--json", default=None, help="also write the results here")
    ap.add_argument(
        "--accuracy",
        type=int,
        default=0,
        metavar="SEEDS",
        help="instead: accuracy over both hands x 3 geometries x SEEDS test-size series",
    )
    ap.add_argument("--_child", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--_case", default="", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args._child:
        print(json.dumps(_child(args._child, args.threads, args.min_tilt, args._case)))
        return
    if args.accuracy:
        accuracy(args.accuracy)
        return
    base = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="bench_hand_"))
    results = []
    try:
        for label in [s.strip() for s in args.sizes.split(",") if s.strip()]:
            if label not in CASES:
                raise SystemExit(f"unknown case {label!r} (have {sorted(CASES)})")
            results.append(run_case(label, base / label, args.threads, args.min_tilt))
    finally:
        if not args.keep:
            shutil.rmtree(base, ignore_errors=True)
    head = (
        f"{'case':5} {'image':>10} {'tilts read':>10} {'floor s':>8} {'measure s':>9} "
        f"{'x floor':>8} {'step s':>7} {'step CPU s':>10} {'process s':>9} {'peak MB':>8} "
        f"{'floor MB':>8} "
        f"{'s/tilt':>7}  result"
    )
    print(head)
    print("-" * len(head))
    for r in results:
        ratio = r["measure_s_find-hand"] / max(r["wall_s_floor"], 1e-9)
        per = r["measure_s_find-hand"] / max(r["tilts_read_find-hand"], 1)
        verdict = (
            f"{r['status_find-hand']} slope {r['slope_find-hand']:+.3f} ± "
            f"{r['slope_se_find-hand']:.3f} ({r['tilts_measured_find-hand']} tilts)"
        )
        print(
            f"{r['case']:5} {r['image']:>10} {r['tilts_read_floor']:>10} {r['wall_s_floor']:8.2f} "
            f"{r['measure_s_find-hand']:9.2f} {ratio:8.1f} {r['wall_s_find-hand']:7.2f} "
            f"{r['cpu_s_find-hand']:10.2f} {r['process_s_find-hand']:9.2f} "
            f"{r['peak_rss_mb_find-hand']:8.0f} {r['peak_rss_mb_floor']:8.0f} {per:7.3f}  {verdict}"
        )
    print(
        "floor = the measured tilts read once from the memory-mapped stack + one rfft2 each; "
        "measure = find_hand alone; step = run_find_hand (+ STAR files and PNG); "
        "generator time (not part of the step): "
        + ", ".join(f"{r['case']} {r['generator_s']:.0f} s" for r in results)
    )
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(results, indent=2, sort_keys=True))


if __name__ == "__main__":
    main()
